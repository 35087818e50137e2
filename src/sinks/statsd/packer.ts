/**
 * The StatsD sink's packer: formats every value a flush drains from the series (./series.ts) into
 * datagrams of at most MAX_PACKET bytes, written byte by byte into two kept buffers.
 * Limitations: a single line longer than a packet (a very long name with tags) is sent alone, in a
 * packet longer than MAX_PACKET.
 */
import type { TagMode } from '../../config';
import type { Metric } from './series';

const MAX_PACKET = 1432; // fits one Ethernet-MTU UDP datagram, hot-shots' own recommendation

function num(v: number): string {
  return String(Math.round(v * 1000) / 1000);
}

const DOT = 46;
const COLON = 58;
const NEWLINE = 10;
const SLACK = 2048; // a packet buffer's room past MAX_PACKET: one line is written before it is known to fit

// The two packet buffers every flush writes into (a line that does not fit moves to the other):
// kept, not allocated per packet, so a flush leaves no buffers behind for the GC (hot-shots copies
// each packet as it is handed over).
const scratch = [Buffer.allocUnsafeSlow(MAX_PACKET + SLACK), Buffer.allocUnsafeSlow(MAX_PACKET + SLACK)] as const;

/**
 * Writes the flush's lines straight into datagram buffers: no string per value. A flush formats
 * every value recorded in the interval (tens of thousands a second on a busy server), and building
 * `name:value|ms` strings, joining them into packets and encoding those again cost about 1 µs per
 * value, more than recording it.
 */
class Packer {
  private buf: Buffer = scratch[0];
  private spare: Buffer = scratch[1];
  private len = 0;
  /** Where the line being written began (after its newline); 0 for the packet's first line. */
  private lineAt = 0;
  /** `packet` is a view of a reused buffer: valid only during the call. */
  constructor(private readonly emit: (packet: Buffer) => void) {}

  /** Starts a line (after a newline, unless it is the packet's first). */
  begin(): void {
    if (this.len > 0) this.buf[this.len++] = NEWLINE;
    this.lineAt = this.len;
  }

  /** Ends the line: if it made the packet too long, the packet is sent without it and it starts the next. */
  end(): void {
    if (this.len <= MAX_PACKET || this.lineAt === 0) return this.maybeFull();
    const old = this.buf;
    const size = this.len - this.lineAt;
    const next = size + SLACK <= this.spare.length ? this.spare : Buffer.allocUnsafe(size + SLACK);
    const n = old.copy(next, 0, this.lineAt, this.len);
    this.emit(old.subarray(0, this.lineAt - 1)); // without the newline
    this.buf = next;
    // The spare is whichever kept buffer is not in use (a grown one is not kept).
    this.spare = old === scratch[0] || old === scratch[1] ? old : next === scratch[0] ? scratch[1] : scratch[0];
    this.len = n;
    this.lineAt = 0;
    this.maybeFull();
  }

  private maybeFull(): void {
    if (this.len >= MAX_PACKET) this.cut();
  }

  /** Room left in this packet for the current line. */
  room(): number {
    return MAX_PACKET - this.len;
  }

  /** Ends the packet (and, at the end of a flush, the last one). */
  cut(): void {
    if (this.len === 0) return;
    this.emit(this.buf.subarray(0, this.len));
    this.len = 0;
    this.lineAt = 0;
  }

  bytes(b: Buffer): void {
    if (this.len + b.length > this.buf.length) this.grow(b.length);
    this.buf.set(b, this.len); // a builtin, no call into C++ as Buffer.copy
    this.len += b.length;
  }

  byte(c: number): void {
    if (this.len === this.buf.length) this.grow(1);
    this.buf[this.len++] = c;
  }

  /** A value as num() prints it (at most three decimals, no trailing zeros), digit by digit. */
  number(v: number): void {
    if (this.len + 32 > this.buf.length) this.grow(32);
    const n = Math.round(v * 1000);
    if (!(n >= 0 && n < 1e15)) {
      this.len += this.buf.write(num(v), this.len, 'latin1'); // negative, huge or not a number: rare
      return;
    }
    const whole = Math.floor(n / 1000);
    const frac = n - whole * 1000;
    this.int(whole);
    if (frac !== 0) {
      const b = this.buf;
      b[this.len++] = DOT;
      b[this.len++] = 48 + Math.floor(frac / 100);
      const rest = frac % 100;
      if (rest !== 0) {
        b[this.len++] = 48 + Math.floor(rest / 10);
        if (rest % 10 !== 0) b[this.len++] = 48 + (rest % 10);
      }
    }
  }

  private int(x: number): void {
    const b = this.buf;
    const start = this.len;
    do {
      const q = Math.floor(x / 10);
      b[this.len++] = 48 + (x - q * 10);
      x = q;
    } while (x > 0);
    // digits were written lowest first
    for (let i = start, j = this.len - 1; i < j; i++, j--) {
      const t = b[i]!;
      b[i] = b[j]!;
      b[j] = t;
    }
  }

  private grow(need: number): void {
    const bigger = Buffer.allocUnsafe(this.buf.length + need + SLACK);
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }
}

/**
 * Formats and empties every series into datagrams of at most MAX_PACKET bytes, lines joined by
 * newlines: a counter's `name:sum|c`, and multi-value lines for timings, `name:v1|ms:v2|ms:…` or
 * (dogstatsd) `name:v1:v2:…|ms|#tags`, cut so each fits a packet.
 */
export function drainPackets(metrics: Metric[], mode: TagMode): Buffer[] {
  const packets: Buffer[] = [];
  drainTo(metrics, mode, (packet) => packets.push(Buffer.from(packet)));
  return packets;
}

/** As drainPackets, handing each datagram to `send` as a view of a reused buffer (copy it or send it at once). */
export function drainTo(metrics: Metric[], mode: TagMode, send: (packet: Buffer) => void): void {
  const p = new Packer(send);
  for (const m of metrics) {
    for (const s of m.all) {
      if (m.type === 'c') {
        if (s.sum !== 0) {
          const { head, tail } = s;
          p.begin();
          p.bytes(head);
          p.byte(COLON);
          p.number(s.sum);
          p.bytes(tail);
          p.end();
        }
        s.sum = 0;
        continue;
      }
      const vals = s.values;
      const count = s.count;
      if (count === 0) continue;
      const { head, tail } = s;
      // Several values to a line, cut so each line fits its packet: dogstatsd's `name:v1:v2|ms|#tags`,
      // or `name:v1|ms:v2|ms` (the Etsy daemon, Telegraf and statsd_exporter split a line at each
      // `:`). The name is written once per line, not once per value: five times fewer bytes and
      // datagrams for a request's timing, which cost the sender about 0.4 us per /hello request.
      const eachValue = mode !== 'dogstatsd';
      let i = 0;
      while (i < count) {
        // A new packet when this one cannot take the line's name, one value and its suffix.
        if (p.room() < head.length + tail.length + 24) p.cut();
        p.begin();
        p.bytes(head);
        do {
          p.byte(COLON);
          p.number(vals[i++]!);
          if (eachValue) p.bytes(tail);
        } while (i < count && p.room() > tail.length + 24);
        if (!eachValue) p.bytes(tail);
        p.end();
      }
      s.reset();
    }
  }
  p.cut();
}

/** The lines of one flush, as text (for tests and debugging; the sink itself sends with drainTo). */
export function drainLines(metrics: Metric[], mode: TagMode): string[] {
  return drainPackets(metrics, mode).flatMap((b) => b.toString('latin1').split('\n'));
}
