// Instruction counts from valgrind's callgrind, for the benchmarks: on this shared VM wall and CPU
// time of the same loop vary 10-60x between windows (bench/RESULTS.md), while the number of
// instructions a piece of code executes does not depend on what else the machine is doing.
// - wrap(dir, args): the command line that runs `args` under callgrind with counting off at start and
//   V8's JIT left on (--smc-check=all-non-file lets valgrind see code V8 writes and rewrites).
// - inProcess(): in a process started that way, count(fn) returns the instructions the process
//   executed while fn ran (all its threads), switching counting on and off with callgrind_control.
//   The process's event loop keeps turning meanwhile (the switch is asynchronous), so what the
//   switch itself costs is a few hundred thousand instructions: negligible against a loop of
//   thousands of calls, and the same for both sides of a comparison.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ENV = 'HATCH_BENCH_CALLGRIND_DIR';

/** A fresh output directory and the env var that tells the child where its dumps go. */
export function outputDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-callgrind-'));
}

/** [command, args] that run `args` under callgrind writing to `dir`; with no dir, `args` as they are. */
export function wrap(dir, args) {
  if (!dir) return [args[0], args.slice(1)];
  // --separate-threads: a dump per thread, so the main thread (the event loop, what bounds a
  // server's throughput) is counted apart from V8's compiler and GC helper threads.
  return ['valgrind', ['--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${dir}/cg.%p`, '--smc-check=all-non-file', ...args]];
}

/** The env a child started by wrap() needs for inProcess() (none without a dir). */
export function env(dir) {
  return dir ? { [ENV]: dir } : {};
}

// Callgrind reads a command only while the process runs code: a process that waits in its event
// loop for callgrind_control to exit would wait forever, so a timer keeps it ticking meanwhile.
function ctl(pid, ...args) {
  const tick = setInterval(() => {}, 20);
  return new Promise((resolve, reject) =>
    execFile('callgrind_control', [...args, String(pid)], { encoding: 'utf8', timeout: 120000 }, (err, out) => {
      clearInterval(tick);
      if (err) reject(err);
      else resolve(out);
    }),
  );
}

/**
 * Instructions in the newest dump of `pid` (each thread file's `totals:` line; `summary:` is 0 in
 * part dumps): { total, main }, all threads and the main thread (thread 01) alone.
 */
export function readDump(dir, pid) {
  // With --separate-threads, names are cg.<pid>.<part>-<thread> (cg.<pid>-<thread> for the dump at exit).
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.`) || f.startsWith(`cg.${pid}-`));
  if (files.length === 0) throw new Error(`callgrind wrote no dump for ${pid} in ${dir}`);
  const partOf = (f) => Number(/^cg\.\d+\.(\d+)/.exec(f)?.[1] ?? 0);
  const newest = Math.max(...files.map(partOf));
  let total = 0;
  let main = 0;
  for (const f of files.filter((x) => partOf(x) === newest)) {
    const file = path.join(dir, f);
    const m = /^totals: (\d+)/m.exec(fs.readFileSync(file, 'utf8'));
    if (!m) throw new Error(`no totals line in ${file}`);
    total += Number(m[1]);
    if (/-0*1$/.test(f)) main = Number(m[1]);
    // HATCH_BENCH_KEEP_DUMPS=dir keeps each dump there, for callgrind_annotate (function names: Node's
    // C++ and its builtins; JIT-compiled JavaScript shows as bare addresses).
    const keep = process.env.HATCH_BENCH_KEEP_DUMPS;
    if (keep) fs.copyFileSync(file, path.join(keep, `${f}.${Date.now()}`));
  }
  for (const f of files) fs.rmSync(path.join(dir, f));
  return { total, main };
}

/**
 * Counting around a piece of work, from outside the process: the instructions of process `pid` (all
 * threads, and `main`: its main thread alone), and the wall time of the counted window in seconds
 * (about: the switches take a moment each).
 */
export async function countOutside(dir, pid, work) {
  await ctl(pid, '--zero');
  await ctl(pid, '--instr=on');
  const t0 = performance.now();
  let result;
  let seconds;
  try {
    result = await work();
  } finally {
    seconds = (performance.now() - t0) / 1000;
    await ctl(pid, '--instr=off');
  }
  await ctl(pid, '--dump=part');
  const { total, main } = readDump(dir, pid);
  return { instructions: total, main, result, seconds };
}

/** Inside a process started by wrap(): count(fn) → instructions while fn ran; null when not under callgrind. */
export function inProcess() {
  const dir = process.env[ENV];
  if (!dir) return null;
  return { count: async (fn) => (await countOutside(dir, process.pid, fn)).instructions };
}
