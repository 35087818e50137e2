// Where `npm test` keeps what it can reuse between runs, and how it tells whether it still may:
// a folder in the system's temporary folder, named after this checkout's path
// (/tmp/hatch-test-cache-<hash>), holds one install folder per matrix line
// (lines/<name>/, with the stamp .hatch-test.json saying what was installed), the packed agent,
// and an initialised PostgreSQL data dir (pg/). test/run.mjs fills it; test/support/app.mjs reads
// it when a test file runs without the harness (`node --test <file>`).
// It is outside the checkout on purpose: an app folder inside it would find the checkout's own
// node_modules (and tsconfig.json) when it looks up the tree, which a user's app never does.
// Limitations: one run at a time uses the cache (a lock file with the run's pid; a second run at
// the same time installs into a temporary folder, as a fresh machine would). Delete the folder
// to start from nothing; a fresh clone (or a rebooted machine) has none.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cacheDir = path.join(
  os.tmpdir(),
  `hatch-test-cache-${createHash('sha256').update(root).digest('hex').slice(0, 12)}`,
);
export const linesDir = path.join(cacheDir, 'lines');
export const pgDir = path.join(cacheDir, 'pg');
/** The matrix lines' names in the order of MATRIX (test/run.mjs writes it): the first is the default. */
export const orderFile = path.join(cacheDir, 'lines.json');
const STAMP = '.hatch-test.json';

/** What a line's folder says about itself ({ key, agent, sources, node, installedAt }), or null. */
export function readStamp(dir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, STAMP), 'utf8'));
  } catch {
    return null;
  }
}
export function writeStamp(dir, stamp) {
  fs.writeFileSync(path.join(dir, STAMP), JSON.stringify(stamp, null, 1));
}
/** The entries of a line's folder that a run keeps: the rest is what earlier tests wrote there. */
export const KEEP = new Set(['package.json', 'package-lock.json', 'node_modules', STAMP]);

export function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A hash of what the packed agent is built from (src/, patches/, package.json, tsconfig.json), so
 * that a test file run without the harness can tell that the installed agent is older than the code.
 */
export function sourceHash() {
  const h = createHash('sha256');
  const walk = (rel) => {
    const abs = path.join(root, rel);
    let st;
    try {
      st = fs.statSync(abs);
    } catch {
      return;
    }
    if (st.isDirectory()) for (const e of fs.readdirSync(abs).sort()) walk(path.join(rel, e));
    else {
      h.update(`${rel}\0`);
      h.update(fs.readFileSync(abs));
      h.update('\0');
    }
  };
  for (const rel of ['src', 'patches', 'package.json', 'tsconfig.json']) walk(rel);
  return h.digest('hex');
}

function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return e.code === 'EPERM';
  }
  // A reused pid that is no test run does not hold the lock.
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('run.mjs');
  } catch {
    return true;
  }
}

/**
 * Takes the cache for this process. Returns a release function, or { heldBy: pid } when another
 * live run has it. A lock left by a run that died (SIGKILL, crash) is taken over.
 */
export function lockCache() {
  fs.mkdirSync(cacheDir, { recursive: true });
  const file = path.join(cacheDir, 'lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return {
        release: () => {
          try {
            if (fs.readFileSync(file, 'utf8') === String(process.pid)) fs.unlinkSync(file);
          } catch {}
        },
      };
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(file, 'utf8'));
      if (pid && pid !== process.pid && alive(pid)) return { heldBy: pid };
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error(`could not take the test cache lock ${file}`);
}
