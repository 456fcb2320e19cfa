// The bench's LMTP load generator: N connections, each reused for its share of M messages.
// Per transaction the envelope (MAIL, RCPT…, DATA) goes out in one pipelined write (RFC 2920),
// the body — prebuilt, dot-stuffed, with its final dot — in one more; TCP_NODELAY, since Nagle
// plus delayed ACKs would add tens of milliseconds to every message. Replies are parsed per
// RFC 2033: one per accepted RCPT after the data.

import crypto from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface Reply {
  code: number;
  text: string;
}

/** How long one reply may take before the run is abandoned. */
const REPLY_TIMEOUT_MS = 60_000;

export class LmtpConnection {
  private buf = '';
  private lines: string[] = [];
  private waiters: { n: number; got: Reply[]; resolve: (r: Reply[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  private queued: Reply[] = [];
  private closed: Error | null = null;

  private constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => this.onData(d));
    const fail = (e: Error) => {
      this.closed ??= e;
      for (const w of this.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(this.closed);
      }
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('connection closed by the server')));
  }

  static connect(port: number, host = '127.0.0.1'): Promise<LmtpConnection> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, host, () => {
        s.off('error', reject);
        resolve(new LmtpConnection(s));
      });
      s.once('error', reject);
    });
  }

  private onData(d: Buffer): void {
    this.buf += d.toString('latin1');
    let i: number;
    while ((i = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      this.lines.push(line);
      if (line.length > 3 && line[3] === '-') continue; // continuation of a multi-line reply
      const r = { code: Number(line.slice(0, 3)) || 0, text: this.lines.map((l) => l.slice(4)).join('\n') };
      this.lines = [];
      this.deliver(r);
    }
  }

  private deliver(r: Reply): void {
    const w = this.waiters[0];
    if (!w) {
      this.queued.push(r);
      return;
    }
    w.got.push(r);
    if (w.got.length === w.n) {
      this.waiters.shift();
      clearTimeout(w.timer);
      w.resolve(w.got);
    }
  }

  /** The next `n` replies. */
  replies(n: number): Promise<Reply[]> {
    const got = this.queued.splice(0, n);
    if (got.length === n) return Promise.resolve(got);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer);
        reject(new Error(`no LMTP reply within ${REPLY_TIMEOUT_MS / 1000} s`));
      }, REPLY_TIMEOUT_MS);
      this.waiters.push({ n, got, resolve, reject, timer });
    });
  }

  write(data: string | Buffer): void {
    this.sock.write(data);
  }

  /** Greeting and LHLO. @throws if the server does not greet with 220 or refuses LHLO */
  async hello(): Promise<void> {
    const [greeting] = await this.replies(1);
    if (greeting!.code !== 220) throw new Error(`LMTP greeting ${greeting!.code} ${greeting!.text}`);
    this.write('LHLO bench.mailseal.invalid\r\n');
    const [lhlo] = await this.replies(1);
    if (lhlo!.code !== 250) throw new Error(`LHLO refused: ${lhlo!.code} ${lhlo!.text}`);
  }

  async quit(): Promise<void> {
    if (!this.closed) {
      this.write('QUIT\r\n');
      await this.replies(1).catch(() => undefined);
    }
    this.sock.destroy();
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/**
 * A message of exactly `size` bytes (CRLF lines, ≤ 78 octets, random base64 so nothing in the
 * path can shortcut it), no line starts with a dot (no stuffing needed), with the terminating `.` line appended.
 */
export function benchMessage(size: number, from: string): Buffer {
  const head = `From: mailseal bench <${from}>\r\nTo: undisclosed-recipients:;\r\nSubject: mailseal bench ${size} bytes\r\n` +
    `Message-ID: <${crypto.randomBytes(9).toString('hex')}@bench.mailseal.invalid>\r\n` +
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`;
  let left = size - head.length;
  if (left < 2) throw new Error(`message size ${size} is too small for the headers`);
  const parts: string[] = [head];
  const noise = crypto.randomBytes(Math.ceil((left * 3) / 4) + 3).toString('base64').replace(/[+/]/g, 'A');
  let at = 0;
  while (left > 0) {
    let len = Math.min(76, left - 2);
    if (left - len - 2 === 1) len--; // never leave one byte: no line is 1 byte long with its CRLF
    const line = noise.slice(at, at + len);
    at += len;
    parts.push(line, '\r\n');
    left -= line.length + 2;
  }
  const body = parts.join('');
  if (body.length !== size) throw new Error(`bench message is ${body.length} bytes, wanted ${size}`);
  return Buffer.from(body + '.\r\n', 'latin1');
}

export interface LoadSpec {
  port: number;
  connections: number;
  messages: number;
  /** Recipients of message i (all of them must exist on the server). */
  recipientsOf: (i: number) => string[];
  from: string;
  /** The message, as benchMessage() makes it. */
  body: Buffer;
  /**
   * One transaction per recipient (Postfix's lmtp_destination_recipient_limit = 1): what a
   * server needs that cannot store one message for several recipients.
   */
  onePerRecipient?: boolean;
  /** Stop taking new messages after this many ms (the run is then marked incomplete). */
  timeLimitMs: number;
}

export interface LoadResult {
  /** Messages whose transaction was completed (all replies received). */
  sent: number;
  /** Recipients answered 250 after the data (stored). */
  accepted: number;
  /** Recipients not answered 250, anywhere in the transaction. */
  refused: number;
  /** The first few refusals, for the report. */
  errors: string[];
  /** Wall time from the first envelope written to the last reply, seconds. */
  seconds: number;
  /** Per-message latency (first envelope byte written → last data reply of its last transaction), ms, sorted. */
  latencies: number[];
  /** True if the time limit stopped the run early. */
  incomplete: boolean;
}

/** Send `messages` messages over `connections` reused connections; connection setup is not timed. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const conns: LmtpConnection[] = [];
  try {
    for (let i = 0; i < spec.connections; i++) {
      const c = await LmtpConnection.connect(spec.port);
      conns.push(c);
      await c.hello();
    }
    let next = 0;
    let accepted = 0;
    let refused = 0;
    let sent = 0;
    let incomplete = false;
    const errors: string[] = [];
    const latencies: number[] = [];
    const note = (r: Reply, where: string) => {
      if (errors.length < 5) errors.push(`${where}: ${r.code} ${r.text}`);
    };
    /** MAIL, RCPT…, DATA in one write; the body in one more; the per-recipient replies. */
    const transaction = async (c: LmtpConnection, rcpts: string[]) => {
      c.write(`MAIL FROM:<${spec.from}>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`);
      const env = await c.replies(rcpts.length + 2);
      const [mail, data] = [env[0]!, env[env.length - 1]!];
      const ok = env.slice(1, -1).filter((r) => r.code === 250).length;
      for (const r of env.slice(0, -1)) if (r.code !== 250) note(r, r === mail ? 'MAIL' : 'RCPT');
      let stored = 0;
      if (data.code !== 354) {
        if (mail.code === 250 && ok > 0) note(data, 'DATA');
        c.write('RSET\r\n');
        await c.replies(1);
        return { stored, transferred: false };
      }
      c.write(spec.body);
      for (const r of await c.replies(ok)) {
        if (r.code === 250) stored++;
        else note(r, 'after DATA');
      }
      return { stored, transferred: true };
    };
    const t0 = performance.now();
    const deadline = t0 + spec.timeLimitMs;
    const worker = async (c: LmtpConnection) => {
      for (;;) {
        if (next >= spec.messages) return;
        if (performance.now() > deadline) {
          incomplete = true;
          return;
        }
        const rcpts = spec.recipientsOf(next++);
        const start = performance.now();
        let stored = 0;
        let transferred = false;
        for (const group of spec.onePerRecipient ? rcpts.map((r) => [r]) : [rcpts]) {
          const r = await transaction(c, group);
          stored += r.stored;
          transferred ||= r.transferred;
        }
        if (transferred) latencies.push(performance.now() - start);
        accepted += stored;
        refused += rcpts.length - stored;
        sent++;
      }
    };
    await Promise.all(conns.map(worker));
    const seconds = (performance.now() - t0) / 1000;
    await Promise.all(conns.map((c) => c.quit()));
    latencies.sort((a, b) => a - b);
    return { sent, accepted, refused, errors, seconds, latencies, incomplete };
  } finally {
    for (const c of conns) c.destroy();
  }
}

/** The q-quantile (0…1) of sorted values, nearest-rank; NaN if empty. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}
