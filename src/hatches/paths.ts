/**
 * The storage checks of the health hatch (HATCH_HEALTH_PATHS): a directory must take a real write
 * (a small temporary file created exclusively, written, flushed to disk, closed and removed), a file
 * must give a real read of its first bytes. Anything else (missing, neither file nor directory) fails.
 * At most one check per path runs at a time: a hung mount keeps one libuv thread busy until the
 * kernel answers, and a health check polled every few seconds must not take the thread pool the
 * app's own file and DNS work needs; a check asked for while one runs shares its result.
 * Limitations: the caller's timeout reports a hung check failed, but cannot cancel the system call;
 * a write check needs the directory to allow creating files (a write-only mount that forbids
 * creation fails it).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

const running = new Map<string, Promise<string>>();

async function check(p: string): Promise<string> {
  const st = await fsp.stat(p);
  if (st.isDirectory()) {
    const file = path.join(p, `.hatch-health-${process.pid}-${randomBytes(4).toString('hex')}`);
    const fh = await fsp.open(file, 'wx', 0o600);
    try {
      try {
        await fh.write('hatch-agent health check\n');
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } finally {
      await fsp.unlink(file);
    }
    return 'writable: a file was written, flushed and removed';
  }
  if (!st.isFile()) throw new Error('is neither a directory nor a regular file');
  const fh = await fsp.open(p, 'r');
  try {
    const { bytesRead } = await fh.read(Buffer.alloc(64), 0, 64, 0);
    return `readable: read ${bytesRead} bytes`;
  } finally {
    await fh.close();
  }
}

export function pathProbe(p: string): Promise<string> {
  let now = running.get(p);
  if (now === undefined) {
    now = check(p).finally(() => running.delete(p));
    running.set(p, now);
  }
  return now;
}
