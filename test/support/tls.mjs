// A throw-away self-signed certificate for 127.0.0.1 (openssl, valid one day), for the tests of https
// and http2 servers: a new folder holding key.pem and cert.pem. The caller removes the folder.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Returns { dir, key, cert }: the folder, and the paths of the key and the certificate in it. */
export function throwAwayCertificate(prefix = 'hatch-tls-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { dir, key, cert };
}
