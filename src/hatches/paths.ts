/**
 * The storage checks of the health hatch (HATCH_HEALTH_PATHS): a directory must take a real write
 * (a small temporary file created exclusively, written, flushed to disk, closed and removed), a file
 * must give a real read of its first bytes. Anything else (missing, neither file nor directory) fails.
 * At most one check per path runs at a time: a hung mount keeps one libuv thread busy until the
 * kernel answers, and a health check polled every few seconds must not take the thread pool the
 * app's own file and DNS work needs; while one still runs, the next reports it and fails.
 * Limitations: the caller's timeout reports a hung check failed, but cannot cancel the system call;
 * a write check needs the directory to allow creating files (a write-only mount that forbids
 * creation fails it).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

const running = new Map<string, number>();

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

export async function pathProbe(p: string): Promise<string> {
  const since = running.get(p);
  if (since !== undefined)
    throw new Error(`the previous check of this path is still running (${Math.round(performance.now() - since)} ms)`);
  running.set(p, performance.now());
  try {
    return await check(p);
  } finally {
    running.delete(p);
  }
}
