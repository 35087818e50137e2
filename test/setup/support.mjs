// Helpers of the set-up tests: run a command to its end, clone the project (its committed HEAD) into
// a fresh 0700 folder with the root checkout's node_modules copied in, and read the demo's output
// by its titled sections. No network: node_modules is copied, the package built with its own tsc.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The environment of a newcomer's shell: no test server to borrow, no test-only settings. */
export function cleanEnv(extra = {}) {
  const env = { ...process.env };
  for (const k of Object.keys(env))
    if (k.startsWith('HATCH_') || k.startsWith('npm_') || k === 'DATABASE_URL' || k === 'NODE_OPTIONS') delete env[k];
  return { ...env, NO_COLOR: '1', ...extra };
}

/** Runs a command to its end: { code, signal, stdout, stderr }. */
export function run(cmd, args, { cwd, env, uid, gid, timeout = 300000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: env ?? cleanEnv(), uid, gid, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out\n${stdout}\n${stderr}`));
    }, timeout);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/**
 * A fresh `mktemp -d` folder (0700) holding a clone of the project's HEAD at <dir>/p, with a copy
 * of the root checkout's node_modules (cp -a, so the PostgreSQL binaries live inside the 0700 tree)
 * and the package built, as `npm install`'s `prepare` would. `owner` ({ uid, gid }) hands the whole
 * folder to another user.
 */
export function cloneProject({ owner } = {}) {
  const dir = sh('mktemp', ['-d']).trim();
  const p = path.join(dir, 'p');
  sh('git', ['clone', '--quiet', repo, p]);
  sh('cp', ['-a', path.join(repo, 'node_modules'), path.join(p, 'node_modules')]);
  sh('npm', ['run', '--silent', 'build'], { cwd: p, env: cleanEnv() });
  if (owner) sh('chown', ['-R', `${owner.uid}:${owner.gid}`, dir]);
  return { dir, p, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A folder for TMPDIR that any user can enter (the test's own, so opening it changes nothing of the user's). */
export function openTempDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-setup-tmp-'));
  fs.chmodSync(d, 0o755);
  return d;
}

/** The demo's output split at its `== N. title` lines: { 1: text, 2: text, … }, and their order. */
export function sections(stdout) {
  const out = {};
  const order = [];
  let cur = null;
  for (const line of stdout.split('\n')) {
    const m = /^== (\d+)\. /.exec(line);
    if (m) {
      cur = Number(m[1]);
      order.push(cur);
      out[cur] = '';
      continue;
    }
    if (/^== /.test(line)) {
      cur = null;
      continue;
    }
    if (cur !== null) out[cur] += `${line}\n`;
  }
  return { ...out, order };
}

/** Request ID per path, from section 1's `GET <path> -> <status>  X-Request-ID: <id>` lines. */
export function requestIds(section1) {
  const ids = {};
  for (const m of section1.matchAll(/^GET (\S+)\s+-> (\d+)\s+X-Request-ID: (\S+)/gm))
    ids[m[1]] = { status: Number(m[2]), id: m[3] };
  return ids;
}
