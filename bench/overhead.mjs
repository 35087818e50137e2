#!/usr/bin/env node
// Overhead of the agent against the same app without it, in one run, interleaved (A B A B …).
//   node bench/overhead.mjs [--rounds 3] [--seconds 5] [--connections 50] [--routes /hello,/db]
//                           [--variant 'name:HATCH_X=v,HATCH_Y=w' …]   (extra agent variants, to find what costs)
// Per route and variant: median requests/s, p50/p99 latency, server CPU µs per request (from
// /proc/<pid>/stat, steadier than throughput on a shared machine) and peak RSS; each as a ratio
// to no agent from the same round. Start-up: median wall time of `node [-r hatch-agent] -e 0`.
// Writes bench/RESULTS.md. Not part of `npm test`: timings belong here, not in tests.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as dgram from 'node:dgram';
import { startPostgres } from '../test/support/postgres.mjs';
import { writeSection } from './results-file.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, d) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const ROUNDS = arg('rounds', 3);
const SECONDS = arg('seconds', 5);
const CONNECTIONS = arg('connections', 50);
const WARMUP = 2;
const ROUTES = (process.argv.includes('--routes') ? process.argv[process.argv.indexOf('--routes') + 1] : '/hello,/db,/fetch').split(',');
// Extra agent variants with their own HATCH_* settings, e.g. --variant 'no-sql-comment:HATCH_SQL_COMMENT=off'
const EXTRA = {};
process.argv.forEach((a, i) => {
  if (a !== '--variant') return;
  const [name, settings = ''] = process.argv[i + 1].split(':');
  EXTRA[name] = Object.fromEntries(settings.split(',').filter(Boolean).map((kv) => kv.split('=')));
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const HZ = 100; // USER_HZ on Linux

function cpuTicks(pid) {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}
function peakRss(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function load(port, route, seconds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const lat = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const one = () =>
    new Promise((resolve) => {
      const t = performance.now();
      http
        .get({ host: '127.0.0.1', port, path: route, agent }, (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200) errors++;
            lat.push(performance.now() - t);
            resolve();
          });
        })
        .on('error', () => {
          errors++;
          resolve();
        });
    });
  const worker = async () => {
    while (performance.now() < end) await one();
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  lat.sort((a, b) => a - b);
  return { rps: lat.length / elapsed, p50: lat[Math.floor(lat.length * 0.5)], p99: lat[Math.floor(lat.length * 0.99)], n: lat.length, errors };
}

async function startApp(variant, env) {
  const args = variant === 'none' ? ['bench/app.js'] : ['-r', 'hatch-agent', 'bench/app.js'];
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env, ...EXTRA[variant] }, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (c) => reject(new Error(`${variant} exited ${c}`)));
  });
  return { child, port };
}

const pg = await startPostgres();
const sink = dgram.createSocket('udp4'); // a local StatsD receiver, so the agent's sends are real
let received = 0;
sink.on('message', (m) => (received += m.toString().split('\n').length));
await new Promise((r) => sink.bind(0, '127.0.0.1', r));
// The /fetch route's downstream: a plain server in a process of its own, never under the agent.
const downstream = spawn(process.execPath, ['-e', "const s = require('http').createServer((q, r) => r.end('downstream')).listen(0, '127.0.0.1', () => console.log(s.address().port))"], { stdio: ['ignore', 'pipe', 'inherit'] });
const downstreamPort = await new Promise((r) => downstream.stdout.once('data', (d) => r(Number(String(d).trim()))));
const env = { DATABASE_URL: pg.url, HATCH_STATSD_PORT: String(sink.address().port), DOWNSTREAM_URL: `http://127.0.0.1:${downstreamPort}/` };

const VARIANTS = ['none', 'hatch-agent', ...Object.keys(EXTRA)];
const results = {}; // route -> variant -> [{rps,p50,p99,cpu,rss}]
for (let round = 1; round <= ROUNDS; round++) {
  for (const variant of round % 2 ? VARIANTS : [...VARIANTS].reverse()) {
    const { child, port } = await startApp(variant, env);
    for (const route of ROUTES) {
      await load(port, route, WARMUP);
      const c0 = cpuTicks(child.pid);
      const r = await load(port, route, SECONDS);
      const cpu = ((cpuTicks(child.pid) - c0) / HZ / r.n) * 1e6;
      const rss = peakRss(child.pid);
      ((results[route] ??= {})[variant] ??= []).push({ ...r, cpu, rss });
      process.stderr.write(`round ${round} ${variant.padEnd(11)} ${route.padEnd(6)} ${r.rps.toFixed(0)} req/s p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms cpu ${cpu.toFixed(0)} µs/req rss ${rss.toFixed(0)} MB errors ${r.errors}\n`);
    }
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));
  }
}

// Wall time, and the process's own CPU time (user+sys, reported by the child at exit), which a
// busy shared machine disturbs much less.
function startup(args) {
  const t = performance.now();
  const r = spawnSync(process.execPath, [...args, '-e', "process.on('exit', () => { const u = process.cpuUsage(); process.stdout.write(String(u.user + u.system)); })"], {
    cwd: root,
    env: { ...process.env, HATCH_STATSD: 'on' },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(String(r.stderr));
  return { wall: performance.now() - t, cpu: Number(r.stdout) / 1000 };
}
const su = { none: [], 'hatch-agent': [] };
for (let i = 0; i < 21; i++) {
  su.none.push(startup([]));
  su['hatch-agent'].push(startup(['-r', 'hatch-agent']));
}

sink.close();
downstream.kill();
await pg.stop();

const rows = [];
for (const route of ROUTES) {
  const base = results[route].none;
  for (const variant of VARIANTS.slice(1)) {
    const ours = results[route][variant];
    const ratio = (k) => median(ours.map((o, i) => o[k] / base[i][k]));
    const name = variant === 'hatch-agent' ? '' : ` (${variant})`;
    rows.push(
      `| \`${route}\`${name} | ${median(base.map((x) => x.rps)).toFixed(0)} | ${median(ours.map((x) => x.rps)).toFixed(0)} | **${ratio('rps').toFixed(2)}** | ${median(base.map((x) => x.p99)).toFixed(2)} / ${median(ours.map((x) => x.p99)).toFixed(2)} (${ratio('p99').toFixed(2)}x) | ${median(base.map((x) => x.cpu)).toFixed(0)} / ${median(ours.map((x) => x.cpu)).toFixed(0)} (${ratio('cpu').toFixed(2)}x) | ${median(base.map((x) => x.rss)).toFixed(0)} / ${median(ours.map((x) => x.rss)).toFixed(0)} |`,
    );
  }
}
const s0 = median(su.none.map((x) => x.wall));
const s1 = median(su['hatch-agent'].map((x) => x.wall));
const c0 = median(su.none.map((x) => x.cpu));
const c1 = median(su['hatch-agent'].map((x) => x.cpu));
const report = `## Overhead under load: hatch-agent against the same app without it

- date: ${new Date().toISOString().slice(0, 10)}; machine: ${os.cpus().length} × ${os.cpus()[0].model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}
- command: \`node bench/overhead.mjs --rounds ${ROUNDS} --seconds ${SECONDS} --connections ${CONNECTIONS}\`
- app: \`bench/app.js\` (node:http; \`/db\` = one \`SELECT 1\` through a pg.Pool of 10 on embedded PostgreSQL;
  \`/fetch\` = global fetch to a plain server in another process); agent with every feature on: request IDs,
  SQL comments, header propagation, StatsD to a local UDP receiver (${received} lines received)
- load: ${CONNECTIONS} keep-alive connections from a Node client in the same machine, ${WARMUP} s warm-up not counted, ${SECONDS} s measured,
  variants interleaved for ${ROUNDS} rounds; ratios are medians of per-round ratios

| route | req/s none | req/s agent | ratio | p99 ms none / agent | server CPU µs/req none / agent | peak RSS MB none / agent |
|---|---|---|---|---|---|---|
${rows.join('\n')}

Start-up (medians of 21, interleaved): \`node -e 0\` ${s0.toFixed(0)} ms wall / ${c0.toFixed(0)} ms CPU,
\`node -r hatch-agent -e 0\` ${s1.toFixed(0)} ms wall / ${c1.toFixed(0)} ms CPU (+${(s1 - s0).toFixed(0)} ms wall, +${(c1 - c0).toFixed(0)} ms CPU).

This machine is a shared VM with heavy steal: the same no-agent run can differ 2x between rounds, so
read the ratios with the CPU-time columns, and distrust a single round.
`;
writeSection('overhead', report);
console.log(report);
