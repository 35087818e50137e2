// Shared by the reliability tests: a downstream service (run without the agent) that records the
// X-Request-ID and traceparent each call brings, raw HTTP requests (bytes node:http refuses to
// send), and a bounded-concurrency loop.
import net from 'node:net';
import http from 'node:http';

/**
 * The downstream service's source. GET /rec?expect=<tag> records the request ID received for
 * that tag (or `-` when none); /stats answers { count, received: { tag: [ids…] }, traceparents }.
 * /cut writes the head and part of a body, then destroys the socket.
 */
export const DOWNSTREAM = `
const http = require('node:http');
const received = Object.create(null);
const traceparents = [];
let count = 0;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/rec') {
    count++;
    const tag = url.searchParams.get('expect') || '';
    (received[tag] ??= []).push(req.headers['x-request-id'] ?? '-');
    if (req.headers.traceparent !== undefined) traceparents.push(req.headers.traceparent);
    return res.end('rec ' + tag);
  }
  if (url.pathname === '/stats') {
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify({ count, received, traceparents }));
  }
  if (url.pathname === '/cut') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
    res.write('partial');
    return setTimeout(() => req.socket.destroy(), 20);
  }
  if (url.pathname === '/hangup') return req.socket.destroy();
  res.end('downstream ' + url.pathname);
});
// No server-side idle timeout: the client closes its idle sockets first. With one (even 60 s) a
// client stalled on a loaded machine could send on a socket the server had just closed.
server.keepAliveTimeout = 0;
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

/** GET returning { status, headers, body }, through a given agent (keep-alive pools for load). */
export function request(url, { headers = {}, agent } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: agent ?? false }, (res) => {
      // no keep-alive race by default
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/**
 * Sends `head` (a Buffer: request line and header lines, without the final blank line) on a new
 * TCP connection with `Connection: close`, and resolves with the status code and body, or
 * { status: 0 } when the server closed without a response.
 */
export function rawRequest(port, head, timeoutMs = 60000) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ status: -1, raw: 'timeout' });
    }, timeoutMs);
    // write, not end: a half-closed client makes Node's server abort the request (httpAllowHalfOpen
    // is off); `Connection: close` has the server close once it answered.
    sock.on('connect', () => sock.write(Buffer.concat([head, Buffer.from('\r\nConnection: close\r\n\r\n')])));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(raw);
      const split = raw.indexOf('\r\n\r\n');
      const headText = split === -1 ? raw : raw.slice(0, split);
      const rid = /\r\nx-request-id: ([^\r\n]*)/i.exec(headText)?.[1];
      resolve({ status: m ? Number(m[1]) : 0, body: split === -1 ? '' : raw.slice(split + 4), requestId: rid, raw });
    });
  });
}

/** Runs fn(item, index) over items with at most `limit` in flight; resolves with the results in order. */
export async function pool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i], i);
      }
    }),
  );
  return results;
}

/**
 * HATCH_TEST_RELIABILITY_SCALE (0 < s <= 1, default 1) shrinks the request counts for a quick run on
 * an overloaded machine; `npm test` runs the full counts.
 */
export const SCALE = Math.min(1, Math.max(0.01, Number(process.env.HATCH_TEST_RELIABILITY_SCALE) || 1));
export const scaled = (n, min = 10) => Math.max(min, Math.round(n * SCALE));

export const ALLOWED_ID = /^[A-Za-z0-9._:-]{1,128}$/;
export const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
