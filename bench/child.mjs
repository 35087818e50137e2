import { spawnSync } from 'node:child_process';
import * as os from 'node:os';

/**
 * --pin: the machine's last CPU for the measured process (`cpu`), the others for this script and what
 * it starts (`others`, as taskset lists them). Called first, it runs this script again under taskset
 * on the others and exits with that run's status; in that run (BENCH_PINNED=1) it returns. `what`
 * names the measured process in the error a 1-CPU machine gets.
 */
export function pinSelf(what) {
  const cpu = os.cpus().length - 1; // not availableParallelism(): under taskset that counts only the allowed CPUs
  if (cpu < 1) throw new Error(`--pin needs at least 2 CPUs: one for ${what}, one for everything else`);
  const others = cpu === 1 ? '0' : `0-${cpu - 1}`;
  if (process.env.BENCH_PINNED !== '1') {
    const r = spawnSync('taskset', ['-c', others, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, BENCH_PINNED: '1' },
    });
    process.exit(r.status ?? 1);
  }
  return { cpu, others };
}

// The port a benchmark app prints once it listens (`listening <port>`); rejects if it exits first.
export function listeningPort(child, label) {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (c) => reject(new Error(`${label} exited ${c}`)));
  });
}
