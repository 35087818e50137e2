/**
 * The way to StatsD, used by the sink (./sink.ts, a flush's packets) and the hatches (an unbuffered
 * line): the only importer of hot-shots and of node:dns.
 *
 * - An IP literal is used as it is; a host name is looked up in the background (IPv4 first:
 *   `localhost` often lists ::1 first, while StatsD daemons mostly listen on IPv4), and again every
 *   RESOLVE_EVERY_MS when a packet is sent, so a moved StatsD is followed; a new address replaces the
 *   client.
 * - hot-shots and node:dns are loaded at the first packet or lookup, not at start-up.
 * Limitations: UDP confirms nothing: a send is `ok` when the host resolved and the datagram left
 * without a socket error, not when StatsD got it. Until an address is known, packets are dropped.
 */
import type { Config } from '../../config';
import { log } from '../../log';

const RESOLVE_EVERY_MS = 60_000;

type Addresses = Array<{ address: string; family: number }>;

/** An IP literal (what HATCH_STATSD_HOST's allowed characters can form): no lookup, no node:net at start-up. */
function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
}

/** The address to send to: the first IPv4 one, else the first. */
function pick(all: Addresses | undefined): string | undefined {
  return all?.find((a) => a.family === 4)?.address ?? all?.[0]?.address;
}

/** dns.lookup of every address, with node:dns loaded at the first name to look up. */
function lookup(host: string, cb: (err: NodeJS.ErrnoException | null, all: Addresses) => void): void {
  (require('node:dns') as typeof import('node:dns')).lookup(host, { all: true }, cb);
}

/**
 * A script's last packets (its `job.run`), sent through Node's own UDP handle (`udp_wrap`), which is
 * what node:dgram drives. Why not node:dgram: its first bind loads node:cluster (to ask whether
 * this is a cluster worker), and with it child_process, net and the streams: 63 M instructions on
 * Node 20, about 10 ms of the exit of a script that never used the network, against 0.1 M here.
 * The handle is bound to an ephemeral port of the IP's family and sends synchronously (the kernel
 * takes a datagram at once or reports an error); it is never closed: the process is ending, and
 * Node closes its handles at exit.
 * Used only where it is quiet and sure: undefined (node:dgram is used) when process.binding is
 * gone or refuses (the permission model), when the app asked for pending deprecations (the
 * binding would print DEP0111 on its stderr), or when the handle lacks the methods it needs.
 */
function rawUdpSender(
  ip: string,
  port: number,
  onSent: (err?: Error | null) => void,
): ((packet: Buffer) => void) | undefined {
  try {
    const opts = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
    if (opts.includes('--pending-deprecation') || process.env.NODE_PENDING_DEPRECATION === '1') return undefined;
    const binding = (process as unknown as { binding?(name: string): unknown }).binding;
    if (typeof binding !== 'function') return undefined;
    const { UDP, SendWrap } = binding.call(process, 'udp_wrap') as {
      UDP: new () => {
        bind(ip: string, port: number, flags: number): number;
        bind6(ip: string, port: number, flags: number): number;
        send(req: object, list: Buffer[], count: number, port: number, ip: string, hasCallback: boolean): number;
      };
      SendWrap: new () => { oncomplete?: () => void };
    };
    if (typeof UDP !== 'function' || typeof SendWrap !== 'function') return undefined;
    const handle = new UDP();
    if (typeof handle.send !== 'function') return undefined;
    const v6 = ip.includes(':');
    const bound = v6 ? handle.bind6('::', 0, 0) : handle.bind('0.0.0.0', 0, 0);
    if (bound !== 0) return undefined;
    return (packet) => {
      const req = new SendWrap();
      req.oncomplete = () => {};
      // A copy: the packet is a view of a buffer the packer reuses.
      const sent = handle.send(req, [Buffer.from(packet)], 1, port, ip, false);
      if (sent < 0) onSent(new Error(`sending to ${ip}:${port} failed (${sent})`));
    };
  } catch {
    return undefined;
  }
}

interface HotShotsLike {
  sendMessage(message: string | Buffer, callback?: (err?: Error | null) => void): void;
  close(cb?: () => void): void;
}

/** What an unbuffered send reports. */
export interface SendResult {
  ok: boolean;
  detail: string;
}

type Waiter = (err: NodeJS.ErrnoException | null | undefined, address: string | undefined) => void;

export class StatsdTransport {
  private client: HotShotsLike | undefined;
  private sendPacket: ((packet: Buffer) => void) | undefined;
  private address: string | undefined;
  private resolvedAt = 0;
  /** Callers waiting for the lookup in flight; undefined when none is. */
  private waiting: Waiter[] | undefined;
  private readonly host: string;
  private readonly port: number;

  constructor(config: Pick<Config, 'statsdHost' | 'statsdPort'>) {
    this.host = config.statsdHost;
    this.port = config.statsdPort;
  }

  /** Takes an IP as it is, or starts looking the name up early, so the first packets find an address. */
  start(): void {
    if (isIp(this.host)) this.address = this.host;
    else this.resolve();
  }

  /**
   * The function that sends one packet (a view of a reused buffer: hot-shots copies it before
   * sendMessage returns), or undefined while no address is known. Asked once per flush.
   */
  sender(): ((packet: Buffer) => void) | undefined {
    const client = this.getClient();
    if (client === undefined) return undefined;
    return (this.sendPacket ??= (packet) => client.sendMessage(packet, this.onSent));
  }

  /**
   * The sender for the process's last flush (its end: 'exit', a crash, a signal it dies of). The
   * client's when there is one (a server's); else one that sends synchronously, before the process
   * is gone, without hot-shots (loading it there added 30-55 ms to the exit of a script that sent
   * nothing before, on the loaded 2-CPU test machine): rawUdpSender, else node:dgram.
   */
  exitSender(): ((packet: Buffer) => void) | undefined {
    if (this.client !== undefined) return this.sender();
    if (this.sendAtExit !== undefined) return this.sendAtExit;
    const ip = this.address;
    if (ip === undefined) return undefined;
    return (this.sendAtExit = rawUdpSender(ip, this.port, this.onSent) ?? this.dgramSender(ip));
  }
  private sendAtExit: ((packet: Buffer) => void) | undefined;

  /** node:dgram's socket, with a lookup that answers at once with the known IP (see rawUdpSender). */
  private dgramSender(ip: string): (packet: Buffer) => void {
    const family = ip.includes(':') ? 6 : 4;
    const dgram = require('node:dgram') as typeof import('node:dgram');
    const socket = dgram.createSocket({
      type: family === 6 ? 'udp6' : 'udp4',
      lookup: ((_host: string, options: unknown, cb?: (err: null, address: string, family: number) => void) => {
        (typeof options === 'function' ? (options as typeof cb)! : cb!)(null, ip, family);
      }) as unknown as import('node:dgram').SocketOptions['lookup'],
    });
    socket.unref();
    socket.on('error', (err) => this.onSent(err));
    // A copy: the packet is a view of a buffer the packer reuses, and a send the kernel does not
    // take at once is queued.
    return (packet) => socket.send(Buffer.from(packet), this.port, ip);
  }

  /** Sends one line now, unbuffered (the health probe, the statsd hatch). Never rejects. */
  send(line: string): Promise<SendResult> {
    return new Promise((resolve) => {
      const to = `${this.host}:${this.port}`;
      const send = () => {
        try {
          const client = this.getClient();
          if (!client) return resolve({ ok: false, detail: `${this.host} does not resolve` });
          client.sendMessage(line, (err) =>
            resolve(
              err
                ? { ok: false, detail: `sending to ${to} failed: ${err.message}` }
                : { ok: true, detail: `sent to ${to} (UDP: sent without error, receipt not confirmed)` },
            ),
          );
        } catch (err) {
          resolve({ ok: false, detail: `sending to ${to} failed: ${(err as Error).message}` });
        }
      };
      if (this.address !== undefined) return send();
      // Not resolved yet (or it failed): look it up now rather than report a stale failure.
      this.resolve((err, address) => {
        if (err || address === undefined)
          return resolve({ ok: false, detail: `${this.host} does not resolve (${err?.code ?? 'no address'})` });
        send();
      });
    });
  }

  private readonly onSent = (err?: Error | null) => {
    if (err)
      log.warnOnce(
        'statsd-send',
        `statsd: sending to ${this.host}:${this.port} failed (${err.message}); metrics are dropped until it answers`,
      );
  };

  /** Looks the host name up in the background (one lookup at a time); a new address replaces the client. */
  private resolve(then?: Waiter): void {
    if (this.waiting !== undefined) {
      if (then) this.waiting.push(then);
      return;
    }
    const waiting: Waiter[] = (this.waiting = then ? [then] : []);
    lookup(this.host, (err, all) => {
      this.waiting = undefined;
      this.resolvedAt = Date.now();
      const address = pick(all);
      if (err || address === undefined) {
        const why = err ?? Object.assign(new Error('no address'), { code: 'ENODATA' });
        log.warnOnce(
          'statsd-dns',
          `statsd: cannot resolve HATCH_STATSD_HOST=${this.host} (${why.code ?? why.message}); metrics are dropped until it resolves`,
        );
      } else if (address !== this.address) {
        this.address = address;
        const old = this.client;
        this.client = undefined;
        this.sendPacket = undefined;
        old?.close();
      }
      for (const w of waiting) w(err, address);
    });
  }

  private getClient(): HotShotsLike | undefined {
    if (!isIp(this.host) && Date.now() - this.resolvedAt > RESOLVE_EVERY_MS) this.resolve();
    if (this.client) return this.client;
    if (this.address === undefined) return undefined;
    // Loaded at the first packet, not at start-up.
    const StatsD = require('hot-shots') as new (opts: object) => HotShotsLike;
    this.client = new StatsD({
      host: this.address,
      port: this.port,
      maxBufferSize: 0, // the sink already packs whole packets
      errorHandler: (err: Error) => this.onSent(err),
    });
    return this.client;
  }
}
