// Apps as users run them: a script written into the fixture app folder (where `npm test` installed
// the packed agent next to pg), started with `node -r hatch-agent` or, for comparison, without it.
// The folder is HATCH_TEST_APP_DIR, which `npm test` sets. A file run as `node --test <file>` uses
// the matrix line an earlier `npm test` left in its cache (test/support/cache.mjs; the first line run
// by this same Node, or the first of HATCH_TEST_LINES), provided its agent was built from the
// sources as they are now; otherwise it says in one line what to run first.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { linesDir, orderFile, readStamp, sourceHash } from './cache.mjs';

export const appDir = process.env.HATCH_TEST_APP_DIR || cachedLine();

function cachedLine() {
  const first =
    'run `npm test -- <this file>` first: it installs the packed agent and starts PostgreSQL (test/README.md)';
  let names = [];
  try {
    names = JSON.parse(fs.readFileSync(orderFile, 'utf8'));
  } catch {}
  const wanted = process.env.HATCH_TEST_LINES?.split(',')[0];
  if (wanted) names = names.includes(wanted) ? [wanted] : [];
  const real = (p) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return p;
    }
  };
  const node = real(process.execPath);
  const line = names
    .map((name) => ({ name, dir: path.join(linesDir, name) }))
    .map((l) => ({ ...l, stamp: readStamp(l.dir) }))
    .find((l) => l.stamp && real(l.stamp.node) === node);
  if (!line)
    throw new Error(
      `HATCH_TEST_APP_DIR is not set and no installed matrix line${wanted ? ` ${wanted}` : ''} runs on ${node}: ${first}`,
    );
  if (line.stamp.sources !== sourceHash())
    throw new Error(
      `the agent installed in ${line.dir} was built from other sources than src/ and patches/ hold now: ${first}`,
    );
  return line.dir;
}

/** Writes `source` to a new file in the fixture folder and returns its path. */
export function writeApp(source, ext = '.js') {
  const file = path.join(appDir, `app-${randomBytes(6).toString('hex')}${ext}`);
  fs.writeFileSync(file, source);
  return file;
}

/**
 * How the agent is loaded: true (`-r hatch-agent`), false (not at all), 'twice' (`-r` twice),
 * 'import' (`--import hatch-agent`, as an ES-module app loads it), 'require+import' (both flags),
 * 'import-twice' (`--import` twice).
 */
const LOADERS = {
  true: ['-r', 'hatch-agent'],
  false: [],
  twice: ['-r', 'hatch-agent', '-r', 'hatch-agent'],
  import: ['--import', 'hatch-agent'],
  'require+import': ['-r', 'hatch-agent', '--import', 'hatch-agent'],
  'import-twice': ['--import', 'hatch-agent', '--import', 'hatch-agent'],
};
function nodeArgs(file, agent) {
  const flags = LOADERS[String(agent)];
  if (!flags) throw new Error(`unknown agent mode ${agent}`);
  return [...flags, file];
}

function baseEnv(env) {
  // Defaults that keep a test's metrics away from a real StatsD on 8125; tests override.
  return { ...process.env, HATCH_STATSD: 'off', ...env };
}

/** Runs a script to completion: { code, signal, stdout, stderr }. */
export function runScript(source, { agent = true, env = {}, timeout = 180000, file, ext } = {}) {
  const f = file ?? writeApp(source, ext ?? (String(agent).includes('import') ? '.mjs' : '.js'));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs(f, agent), { cwd: appDir, env: baseEnv(env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`script timed out after ${timeout} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeout);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Starts a server app; the app must print `listening <port>` on stdout once it listens. `file` runs
 * a file written before (writeApp) instead of `source`: the same file with and without the agent
 * gives the same stack traces.
 * `uid`/`gid` run it as another user (a test running as root, for which permissions do not apply).
 * Returns { port, url, stdout(), stderr(), stop(): Promise<{code, signal}> }.
 */
export function startApp(source, { agent = true, env = {}, timeout = 90000, ext, file, uid, gid } = {}) {
  const f = file ?? writeApp(source, ext ?? (String(agent).includes('import') ? '.mjs' : '.js'));
  const user = uid === undefined ? {} : { uid, gid };
  const child = spawn(process.execPath, nodeArgs(f, agent), { cwd: appDir, env: baseEnv(env), ...user });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`app did not listen within ${timeout} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeout);
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`app exited (${code}) before listening\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /listening (\d+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        const port = Number(m[1]);
        resolve({
          port,
          url: `http://127.0.0.1:${port}`,
          child,
          stdout: () => stdout,
          stderr: () => stderr,
          async stop(signal = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
          exited,
        });
      }
    });
  });
}

/** The events a flight recorder file (HATCH_FLIGHT_RECORDER) holds, one JSON object per line, in order. */
export function recordedEvents(file) {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** GET with headers; resolves { status, headers, body }. Uses node:http (not fetch) so raw header bytes are possible. */
export async function get(url, headers = {}) {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
  });
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * A fake package `name@version` (main `index.js` = `body`) in a node_modules of a fresh folder under
 * the app dir: run a script from that folder to have it required instead of the installed one.
 */
export function fakeModule(name, version, body) {
  const dir = fs.mkdtempSync(path.join(appDir, 'fake-'));
  fs.mkdirSync(path.join(dir, 'node_modules', name), { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'node_modules', name, 'package.json'),
    JSON.stringify({ name, version, main: 'index.js' }),
  );
  fs.writeFileSync(path.join(dir, 'node_modules', name, 'index.js'), body);
  return dir;
}

/**
 * Type-checks one TypeScript file of the app dir against the installed package's .d.ts, strictly,
 * with the checkout's own tsc and @types: { status, stdout, stderr } of tsc --noEmit.
 */
export async function typeCheck(file) {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  // tsc on this line's Node (not the first `node` on PATH), so the line's NODE_OPTIONS suit it.
  return spawnSync(
    process.execPath,
    [
      path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
      '--noEmit',
      '--strict',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--types',
      'node',
      '--typeRoots',
      path.join(root, 'node_modules/@types'),
      file,
    ],
    { cwd: appDir, encoding: 'utf8' },
  );
}
