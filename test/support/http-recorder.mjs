// A real HTTP server on 127.0.0.1 that records every request it gets (method, URL, headers, body,
// arrival time), standing in for a check-in service (healthchecks.io's ping URLs) or an upload
// target. `mode` chooses how it answers: 'ok' (200 "OK" at once), 'hang' (reads the request and
// never answers until closed: a service slower than any timeout).
//
//   const rec = await httpRecorder();
//   ... rec.url, await rec.waitFor((reqs) => reqs.some(...)), rec.requests ...
//   await rec.close();
import http from 'node:http';
import { once } from 'node:events';

export async function httpRecorder({ mode = 'ok' } = {}) {
  const requests = [];
  const waiters = new Set();
  const held = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      requests.push({
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      });
      for (const w of waiters) w();
      if (mode === 'hang') return held.add(res);
      res.end('OK');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    /** Resolves with the requests once `predicate(requests)` is true; rejects after timeoutMs with what came. */
    waitFor(predicate, timeoutMs = 15000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!predicate(requests)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve([...requests]);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `http recorder :${port}: not there within ${timeoutMs} ms; got:\n${requests.map((r) => `  ${r.method} ${r.url}`).join('\n') || '  (nothing)'}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close() {
      for (const res of held) res.destroy();
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
