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
