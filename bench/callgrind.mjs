// Instruction counts from valgrind's callgrind, for the benchmarks: on this shared VM wall and CPU
// time of the same loop vary 10-60x between windows (bench/RESULTS.md), while the number of
// instructions a piece of code executes does not depend on what else the machine is doing.
// - wrap(dir, args): the command line that runs `args` under callgrind with counting off at start and
//   V8's JIT left on (--smc-check=all-non-file lets valgrind see code V8 writes and rewrites).
// - inProcess(): in a process started that way, count(fn) returns the instructions the process
//   executed while fn ran (all its threads), switching counting on and off with callgrind_control.
//   The process's event loop keeps turning meanwhile (the switch is asynchronous), so what the
//   switch itself costs is a few hundred thousand instructions: negligible against a loop of
//   thousands of calls, and the same for both sides of a comparison. ownWork(fn) counts the main
//   thread alone, without its compiling and GC.
// - wholeRun({ node, argv, cwd, env }): the instructions of a whole process, start to exit (start-up
//   benchmarks).
import { execFile, spawnSync } from 'node:child_process';
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
  return [
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      '--separate-threads=yes',
      `--callgrind-out-file=${dir}/cg.%p`,
      '--smc-check=all-non-file',
      ...args,
    ],
  ];
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

// V8 compiling code: TurboFan and the other tiers, the parser and bytecode generator, their zone
// memory, code emission and deoptimisation. Which functions V8 optimises, and when, follows call
// counts, so a server compiles for thousands of requests after it starts (bench/app.js natively:
// 10-30 TurboFan jobs per 500 /hello requests until about 3,000, and still a few at 5,000); each
// job costs millions of instructions, which a window of a few hundred requests may or may not hold.
const COMPILE =
  /v8::internal::(compiler|maglev|baseline|wasm|interpreter)::|v8::internal::(Compiler|Parser|PreParser|Scanner|Zone|AccountingAllocator|Assembler|TurboAssembler|MacroAssembler|Deoptimizer|OptimizedCompilationJob|TurbofanCompilationJob|OptimizedCompilationInfo|BytecodeGenerator)\b|^Builtins_CompileLazy/;

// V8's garbage collector on the thread that counts: the scavenger, mark-compact and their helpers.
// How much a window holds is chance too, and more than its own requests' doing: a process settles in
// one of two pretenuring regimes (on /fetch, 4.7 KB or 11.5 KB surviving each scavenge per request),
// which halves or doubles GC for every variant alike, and a scavenge falls in one window or the next.
export const GC =
  /Scaveng|MarkCompact|Marking|Sweep|Evacuat|Pretenuring|SemiSpace|NewSpace|OldSpace|PagedSpace|Heap::|GCTracer|MemoryChunk|RememberedSet|SlotSet|TypedSlot|MinorMC|ConcurrentMark|IncrementalMark|WeakObjects|GlobalHandles|BodyDescriptor|HeapObject::SizeFromMap|EmbedderHeap|CppHeap|cppgc|LocalHeap|Safepoint/;

/**
 * The instructions of one thread's dump spent in functions whose name matches `re` (self cost,
 * not inclusive). Cost lines follow `fn=`; the line after `calls=` is the callee's inclusive cost
 * and is skipped; names are compressed as `(id) name` once and `(id)` after.
 */
export function selfCostOf(text, re = COMPILE) {
  const names = new Map();
  const name = (ref) => {
    const m = /^\((\d+)\)(?: (.*))?$/.exec(ref);
    if (!m) return ref;
    if (m[2] !== undefined) names.set(m[1], m[2]);
    return names.get(m[1]) ?? ref;
  };
  let matching = false;
  let skip = false;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (skip) {
      skip = false;
      continue;
    }
    const c = line.charCodeAt(0);
    if ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 42) {
      if (matching) {
        const sp = line.indexOf(' ');
        if (sp !== -1) sum += Number(line.slice(sp + 1)) || 0;
      }
    } else if (line.startsWith('fn=')) matching = re.test(name(line.slice(3)));
    else if (line.startsWith('cfn=')) name(line.slice(4));
    else if (line.startsWith('calls=')) skip = true;
  }
  return sum;
}

/**
 * Instructions in the newest dump of `pid` (each thread file's `totals:` line; `summary:` is 0 in
 * part dumps): { total, main, mainCompile, mainGc, compile }, all threads, the main thread (thread 01)
 * alone, what the main thread spent compiling (see COMPILE) and collecting garbage (see GC), and what
 * every thread together spent compiling (V8's compiler threads and the main thread's own tiers).
 */
export function readDump(dir, pid) {
  // With --separate-threads, names are cg.<pid>.<part>-<thread> (cg.<pid>-<thread> for the dump at exit).
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.`) || f.startsWith(`cg.${pid}-`));
  if (files.length === 0) throw new Error(`callgrind wrote no dump for ${pid} in ${dir}`);
  const partOf = (f) => Number(/^cg\.\d+\.(\d+)/.exec(f)?.[1] ?? 0);
  const newest = Math.max(...files.map(partOf));
  let total = 0;
  let main = 0;
  let mainCompile = 0;
  let mainGc = 0;
  let compile = 0;
  for (const f of files.filter((x) => partOf(x) === newest)) {
    const file = path.join(dir, f);
    const text = fs.readFileSync(file, 'utf8');
    const m = /^totals: (\d+)/m.exec(text);
    if (!m) throw new Error(`no totals line in ${file}`);
    total += Number(m[1]);
    const compiling = selfCostOf(text);
    compile += compiling;
    if (/-0*1$/.test(f)) {
      main = Number(m[1]);
      mainCompile = compiling;
      mainGc = selfCostOf(text, GC);
    }
    // HATCH_BENCH_KEEP_DUMPS=dir keeps each dump there, for callgrind_annotate (function names: Node's
    // C++ and its builtins; JIT-compiled JavaScript shows as bare addresses).
    const keep = process.env.HATCH_BENCH_KEEP_DUMPS;
    if (keep) fs.copyFileSync(file, path.join(keep, `${f}.${Date.now()}`));
  }
  for (const f of files) fs.rmSync(path.join(dir, f));
  return { total, main, mainCompile, mainGc, compile };
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
  const { total, main, mainCompile, mainGc, compile } = readDump(dir, pid);
  return { instructions: total, main, mainCompile, mainGc, compile, result, seconds };
}

/**
 * Inside a process started by wrap(), null when not under callgrind: count(fn) → instructions while
 * fn ran, every thread; ownWork(fn) → the main thread's alone, without what it spent compiling and
 * collecting garbage (a scavenge falls in one sample or the next: the code's own work does not).
 */
export function inProcess() {
  const dir = process.env[ENV];
  if (!dir) return null;
  return {
    count: async (fn) => (await countOutside(dir, process.pid, fn)).instructions,
    ownWork: async (fn) => {
      const c = await countOutside(dir, process.pid, fn);
      return c.main - c.mainCompile - c.mainGc;
    },
  };
}

/**
 * The instructions a whole process executes, start to exit, all threads (V8 --jitless, so that the
 * count does not depend on when the JIT kicks in): `node argv…` in `cwd` with `env` as its whole
 * environment.
 */
export function wholeRun({ node = process.execPath, argv, cwd, env }) {
  const r = spawnSync(
    'valgrind',
    ['--tool=callgrind', '--callgrind-out-file=/dev/null', '--smc-check=all-non-file', node, '--jitless', ...argv],
    { cwd, encoding: 'utf8', env },
  );
  const m = /Collected : (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`valgrind failed: ${r.error?.message ?? r.stderr.slice(-500)}`);
  return Number(m[1]);
}
