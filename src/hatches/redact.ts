/**
 * Secrets kept out of what the hatches show: environment variables whose names say they hold one
 * are replaced whole; in every other value, passwords in URLs (`//user:pw@`, `?password=`) and the
 * hatch token itself are replaced wherever they appear, and so are the signatures of pre-signed URLs
 * (`X-Amz-Signature=`, `sig=`: HATCH_FLIGHT_RECORDER may be one).
 * Limitations: a secret in a variable with an innocent name and no URL shape is shown as it is.
 */
const SECRET_NAME = /secret|passw|pwd|token|key|credential|auth|cookie|session|private|signature|salt/i;

export function redactValue(v: string, token: string | undefined): string {
  let s = v.replace(/(\/\/[^\s:@/]*):[^\s@/]*@/g, '$1:[redacted]@');
  s = s.replace(
    /([?&;](?:password|passwd|pass|pwd|secret|token|key|sslkey|sslpassword|api_key|apikey|access_token|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential)=)[^&;\s]*/gi,
    '$1[redacted]',
  );
  if (token !== undefined && token !== '') s = s.split(token).join('[redacted]');
  return s;
}

/** The environment, sorted by name, redacted. */
export function redactEnv(env: Record<string, string | undefined>, token: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(env).sort()) {
    const v = env[name];
    if (v === undefined) continue;
    out[name] = SECRET_NAME.test(name) ? '[redacted]' : redactValue(v, token);
  }
  return out;
}
