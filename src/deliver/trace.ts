// The trace header lines Dovecot LMTP prepends to each delivered message (spec §8; fixtures'
// plain/*.eml): Return-Path, Delivered-To and Received, with LF line endings as stored.

export interface TraceInfo {
  /** Envelope sender ('' for the null sender <>). */
  from: string;
  /** The recipient as given in RCPT TO (with +detail). */
  rcpt: string;
  /** LHLO name of the client. */
  helo: string;
  remoteAddress: string;
  /** Our host name. */
  host: string;
  /** Delivery id (also in the log and the 250 reply). */
  id: string;
  date?: Date;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date in UTC, as Dovecot writes it: `Mon, 23 Nov 2026 07:52:54 +0000`. */
export function rfc5322Date(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** Keep a client-supplied token printable and free of header syntax. */
function clean(s: string, max = 255): string {
  return s.replace(/[^\x21-\x7e\u00a0-\uffff]/g, '').replace(/[<>();]/g, '').slice(0, max);
}

export function traceHeaders(t: TraceInfo): Buffer {
  const from = clean(t.from);
  const rcpt = clean(t.rcpt);
  const helo = clean(t.helo) || 'unknown';
  const ip = clean(t.remoteAddress) || 'unknown';
  return Buffer.from(
    `Return-Path: <${from}>\n` +
    `Delivered-To: ${rcpt}\n` +
    `Received: from ${helo} ([${ip}])\n` +
    `\tby ${clean(t.host)} with LMTP\n` +
    `\tid ${clean(t.id)}\n` +
    `\t(envelope-from <${from}>)\n` +
    `\tfor <${rcpt}>; ${rfc5322Date(t.date ?? new Date())}\n`,
    'utf8',
  );
}
