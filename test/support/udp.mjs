// UDP sinks for StatsD-style tests: a listener that records every line, and a
// port where nothing listens (sends there are silently lost, or raise
// ECONNREFUSED on a connected socket, which is what "statsd is down" looks like).
import dgram from 'node:dgram';
import { once } from 'node:events';

/**
 * Listen on 127.0.0.1:<free port> (udp4). Returns
 *   { port, lines, packets, waitFor(predicate, timeoutMs = 30000), clear(), close() }
 *   lines   every non-empty line received, in order (packets split on \n)
 *   packets every datagram as a string
 */
export async function udpListener() {
  const sock = dgram.createSocket('udp4');
  const lines = [];
  const packets = [];
  const waiters = new Set();
  const check = () => {
    for (const w of waiters) w();
  };

  sock.on('message', (msg) => {
    const text = msg.toString('utf8');
    packets.push(text);
    for (const l of text.split('\n')) if (l !== '') lines.push(l);
    check();
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  const { port } = sock.address();
  // Nothing to read means nothing to wait for: don't keep the test process up.
  sock.unref();

  return {
    port,
    lines,
    packets,
    /**
     * `predicate(lines)` is called with all lines received so far after each
     * packet. It may return:
     *   - true            -> resolves with a copy of all lines
     *   - an array        -> resolves with that array if it is non-empty
     *                        (so `ls => ls.filter(l => l.startsWith('db.'))`
     *                        waits for the first matching line)
     *   - false/undefined -> keep waiting
     * Rejects after timeoutMs with the lines received so far in the message.
     */
    waitFor(predicate, timeoutMs = 30000) {
      return new Promise((resolve, reject) => {
        const evaluate = () => {
          let r;
          try {
            r = predicate(lines);
          } catch (e) {
            done();
            reject(e);
            return;
          }
          if (Array.isArray(r) ? r.length > 0 : r) {
            done();
            resolve(Array.isArray(r) ? r : [...lines]);
          }
        };
        const timer = setTimeout(() => {
          done();
          const got = lines.length ? lines.map((l) => `  ${JSON.stringify(l)}`).join('\n') : '  (nothing)';
          reject(
            new Error(
              `udpListener :${port}: predicate not satisfied within ${timeoutMs} ms; received ${lines.length} line(s):\n${got}`,
            ),
          );
        }, timeoutMs);
        function done() {
          clearTimeout(timer);
          waiters.delete(evaluate);
        }
        waiters.add(evaluate);
        evaluate();
      });
    },
    clear() {
      lines.length = 0;
      packets.length = 0;
    },
    close() {
      return new Promise((resolve) => {
        try {
          sock.close(resolve);
        } catch {
          resolve();
        }
      }); // idempotent
    },
  };
}

/** A 127.0.0.1 UDP port with no listener (freed right after probing it). */
export async function closedUdpPort() {
  const sock = dgram.createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  const { port } = sock.address();
  await new Promise((r) => sock.close(r));
  return port;
}

/** The values StatsD lines carry, in order: `name:v1|ms:v2|ms…`, or (dogstatsd) `name:v1:v2|ms|#tags`. */
export function statsdValues(lines) {
  return lines.flatMap((l) =>
    l
      .split('|#')[0]
      .split(':')
      .slice(1)
      .map((v) => Number(v.split('|')[0])),
  );
}
