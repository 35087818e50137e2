// One GET on a connection of its own, read to its end: the whole response as latin1 text (status
// line, headers, body), for tests that compare an app's bytes with and without the agent (a client
// library would parse, merge or drop what they compare).
import * as net from 'node:net';

/** GET `p` from 127.0.0.1:`port` with `headers`; `Connection: close`, so the server's end is the response's. */
export function rawGet(port, p, headers = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks = [];
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    socket.on('connect', () =>
      socket.write(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extra}\r\n`),
    );
    socket.on('data', (d) => chunks.push(d));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', (e) => reject(new Error(`GET ${p}: ${e.message}`)));
  });
}
