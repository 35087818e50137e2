/**
 * nodemailer: the agent notices the transports the app creates, for the hatches. `createTransport`
 * is wrapped to announce the Mail object it returns on `hatch:instance` (src/instances.ts), with
 * what this file knows about it (`mailKind`): its target (`host:port` of an SMTP transport, never
 * its credentials; the transport's own name for sendmail, stream, JSON or SES), its probe
 * (`verify()`, which for SMTP opens a connection of its own, greets and logs in, then quits) and how
 * to send the mail hatch's test message through it (the app's own `sendMail`, so its defaults,
 * plugins and credentials apply).
 * Nothing else is touched: the app's sendMail, its results and its errors are nodemailer's own.
 * Limitations: transports made with `new Mail(...)` from nodemailer's internals are not seen; the
 * fields read (`transporter`, `options`, `_defaults`, `_closed`) are those of nodemailer 6 to 10;
 * a verify() or send that outlives the hatch's timeout runs on until nodemailer's own timeouts end
 * it, and one verify() at a time runs per transport (a probe meanwhile shares its result).
 */
import * as os from 'node:os';
import { channels, type InstanceEvent } from '../src/bus';
import { wrap, unwrap, type Fn } from '../src/shim';
import { log } from '../src/log';
import type { MailAnswer, ResourceKind, TestMail } from '../src/instances';
import type { PatchDefinition } from '../src/registry';

/** The Mail object as read here: its public methods and the fields the constructor sets. */
interface MailSeen {
  sendMail?: (data: object) => Promise<Record<string, unknown>>;
  verify?: () => unknown;
  _defaults?: { from?: unknown };
  transporter?: {
    name?: unknown;
    verify?: unknown;
    _closed?: unknown;
    options?: { host?: unknown; port?: unknown; secure?: unknown; auth?: { user?: unknown } };
  };
}

/** Each transport's verify() now: at most one at a time (a stalled server must not pile up connections); a probe asked for meanwhile shares it. */
const verifying = new WeakMap<object, Promise<string>>();

const isSmtp = (t: MailSeen['transporter']): boolean => typeof t?.name === 'string' && t.name.startsWith('SMTP');

const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
const str = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : String(v));

/** Who the test message is from: the app's own default sender, else its SMTP login if an address, else this host. */
function sender(mail: MailSeen): string | undefined {
  if (mail._defaults?.from) return undefined; // sendMail applies the app's default itself
  const user = mail.transporter?.options?.auth?.user;
  if (typeof user === 'string' && /^[^\s@]+@[^\s@]+$/.test(user)) return user;
  return `hatch-agent@${os.hostname()}`;
}

export const mailKind: ResourceKind<MailSeen> = {
  system: 'mail',
  kind: 'transport',
  max: 100,
  target(mail) {
    const t = mail.transporter;
    if (!isSmtp(t)) return typeof t?.name === 'string' ? t.name : '';
    const o = t!.options ?? {};
    // nodemailer's own defaults (smtp-connection): localhost, 465 when secure, else 587.
    return `${o.host || 'localhost'}:${Number(o.port) || (o.secure ? 465 : 587)}`;
  },
  listed: (mail) => mail.transporter?._closed !== true,
  async probe(mail) {
    if (typeof mail.transporter?.verify !== 'function' || typeof mail.verify !== 'function')
      return `${String(mail.transporter?.name ?? 'this transport')} has no verify(); not probed`;
    let now = verifying.get(mail);
    if (now === undefined) {
      const smtp = isSmtp(mail.transporter);
      now = Promise.resolve(mail.verify())
        .then(() => (smtp ? 'verify() passed: connected, greeted and logged in' : 'verify() passed'))
        .finally(() => verifying.delete(mail));
      verifying.set(mail, now);
    }
    return now;
  },
  async sendTest(mail, test: TestMail): Promise<MailAnswer> {
    const from = sender(mail);
    const data = { ...(from !== undefined && { from }), to: test.to, subject: test.subject, text: test.text };
    const shown = from ?? str(mail._defaults?.from);
    try {
      const info = await mail.sendMail!({ ...data, headers: test.headers });
      return {
        sent: true,
        from: shown,
        accepted: list(info.accepted),
        rejected: list(info.rejected),
        response: str(info.response),
        messageId: str(info.messageId),
      };
    } catch (err) {
      const e = (err ?? {}) as { message?: unknown; code?: unknown; response?: unknown; rejected?: unknown };
      return {
        sent: false,
        from: shown,
        accepted: [],
        rejected: list(e.rejected),
        response: str(e.response),
        error: str(e.message) ?? String(err),
        code: str(e.code),
      };
    }
  },
};

function announce(mail: unknown): void {
  if (mail !== null && typeof mail === 'object' && channels.instance.hasSubscribers)
    channels.instance.publish({ of: mailKind, instance: mail } satisfies InstanceEvent);
}

function wrapCreateTransport(original: Fn) {
  return function createTransport(this: unknown) {
    const mail = original.apply(this, arguments as unknown as unknown[]);
    try {
      announce(mail);
    } catch (err) {
      log.warnOnce('nodemailer-announce', `nodemailer: announcing a transport failed (${(err as Error)?.message})`);
    }
    return mail;
  };
}

type Nodemailer = { createTransport?: unknown };

export const nodemailer: PatchDefinition<Nodemailer> = {
  module: 'nodemailer',
  feature: 'mail',
  versions: ['6.0.0', '11.0.0'],
  patch(exports) {
    if (!wrap(exports, 'createTransport', wrapCreateTransport)) throw new Error('createTransport not found');
  },
  unpatch(exports) {
    unwrap(exports, 'createTransport');
  },
};
