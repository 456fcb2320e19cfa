// A small IMAP4rev1 client over node:net for tests against a real Dovecot (RFC 3501).
// Byte-exact: responses are kept as Buffers and literals `{n}\r\n` are cut by byte count, so
// message bodies come back exactly as the server sent them. No TLS, no IDLE, one command at a time.

import net from 'node:net';

export interface ImapMessage {
  uid: number;
  /** RFC822.SIZE as the server reports it. */
  size: number;
  /** BODY[] bytes, exactly as sent. */
  body: Buffer;
}

/** A parsed response value: atom (string), string/literal (Buffer), NIL (null) or list. */
export type ImapValue = string | Buffer | null | ImapValue[];

export interface TaggedResult {
  status: 'OK' | 'NO' | 'BAD';
  /** Text after the status, e.g. `[AUTHENTICATIONFAILED] Authentication failed.` */
  text: string;
  /** Raw untagged responses (without `* ` and the final CRLF), in arrival order. */
  untagged: Buffer[];
}

/** An argument to send as an IMAP string (quoted, or a literal when it must be). */
export class ImapString {
  readonly bytes: Buffer;
  constructor(v: string | Buffer) {
    this.bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  }
}

/** Error for a tagged NO/BAD, an untagged BYE or a dropped connection; `message` is the server's text. */
export class ImapError extends Error {
  constructor(
    message: string,
    readonly status: 'NO' | 'BAD' | 'BYE' | 'CLOSED' | 'TIMEOUT',
  ) {
    super(message);
    this.name = 'ImapError';
  }
}

const LITERAL_END = /\{(\d+)\+?\}\r?$/;

/**
 * Split one complete response off the front of `buf`: a line, plus any literals announced by
 * `{n}` at the end of a line and the lines that continue after them.
 * Returns null if `buf` does not hold a whole response yet.
 */
export function splitResponse(buf: Buffer): { response: Buffer; rest: Buffer } | null {
  let pos = 0;
  for (;;) {
    const lf = buf.indexOf(0x0a, pos);
    if (lf < 0) return null;
    const tailText = buf.subarray(Math.max(pos, lf - 24), lf).toString('latin1');
    const m = LITERAL_END.exec(tailText);
    if (!m) {
      const end = lf > 0 && buf[lf - 1] === 0x0d ? lf - 1 : lf;
      return { response: buf.subarray(0, end), rest: buf.subarray(lf + 1) };
    }
    const next = lf + 1 + Number(m[1]);
    if (buf.length < next) return null;
    pos = next;
  }
}

/** Byte-level tokenizer for one raw response (literals inline). */
export class ImapParser {
  i = 0;
  constructor(readonly b: Buffer) {}

  get done(): boolean {
    return this.i >= this.b.length;
  }

  skipSpaces(): void {
    while (this.b[this.i] === 0x20) this.i++;
  }

  /** The rest of the response as text (resp-text). */
  rest(): string {
    const s = this.b.subarray(this.i).toString('utf8');
    this.i = this.b.length;
    return s;
  }

  value(): ImapValue {
    this.skipSpaces();
    const c = this.b[this.i];
    if (c === undefined) throw new Error('imap: unexpected end of response');
    if (c === 0x28 /* ( */) {
      this.i++;
      const list: ImapValue[] = [];
      for (;;) {
        this.skipSpaces();
        if (this.b[this.i] === 0x29 /* ) */) {
          this.i++;
          return list;
        }
        if (this.done) throw new Error('imap: unterminated list');
        list.push(this.value());
      }
    }
    if (c === 0x22 /* " */) {
      this.i++;
      const out: number[] = [];
      for (;;) {
        const d = this.b[this.i++];
        if (d === undefined) throw new Error('imap: unterminated quoted string');
        if (d === 0x22) return Buffer.from(out);
        if (d === 0x5c /* \ */) {
          const e = this.b[this.i++];
          if (e === undefined) throw new Error('imap: unterminated quoted string');
          out.push(e);
        } else out.push(d);
      }
    }
    if (c === 0x7b /* { */) {
      const close = this.b.indexOf(0x7d, this.i);
      const m = /^\{(\d+)\+?$/.exec(this.b.subarray(this.i, close).toString('latin1'));
      if (close < 0 || !m) throw new Error('imap: bad literal');
      let p = close + 1;
      if (this.b[p] === 0x0d) p++;
      if (this.b[p] !== 0x0a) throw new Error('imap: literal without CRLF');
      p++;
      const n = Number(m[1]);
      if (p + n > this.b.length) throw new Error('imap: short literal');
      this.i = p + n;
      return this.b.subarray(p, p + n);
    }
    // atom, possibly with a [section] (which may hold spaces and parens) and a <partial>
    const start = this.i;
    while (this.i < this.b.length) {
      const d = this.b[this.i]!;
      if (d === 0x5b /* [ */) {
        const close = this.b.indexOf(0x5d, this.i);
        if (close < 0) throw new Error('imap: unterminated [');
        this.i = close + 1;
        continue;
      }
      if (d === 0x20 || d === 0x28 || d === 0x29 || d === 0x0d || d === 0x0a) break;
      this.i++;
    }
    if (this.i === start) throw new Error(`imap: unexpected byte 0x${c.toString(16)}`);
    const atom = this.b.subarray(start, this.i).toString('latin1');
    return atom.toUpperCase() === 'NIL' ? null : atom;
  }

  atom(): string {
    const v = this.value();
    if (typeof v !== 'string') throw new Error('imap: expected an atom');
    return v;
  }
}

/** Encode a mailbox name in modified UTF-7 (RFC 3501 §5.1.3). */
export function encodeMailboxName(name: string): string {
  let out = '';
  let pending = '';
  const flush = () => {
    if (!pending) return;
    const b = Buffer.from(pending, 'utf16le').swap16();
    out += '&' + b.toString('base64').replace(/=+$/, '').replaceAll('/', ',') + '-';
    pending = '';
  };
  for (const ch of name) {
    const cp = ch.codePointAt(0)!;
    if (cp >= 0x20 && cp <= 0x7e) {
      flush();
      out += ch === '&' ? '&-' : ch;
    } else pending += ch;
  }
  flush();
  return out;
}

function serializeArg(a: string | ImapString): { text: Buffer; literal?: Buffer } {
  if (typeof a === 'string') return { text: Buffer.from(a, 'latin1') };
  const b = a.bytes;
  if (b.includes(0)) throw new Error('imap: NUL cannot be sent in a string');
  const quotable = b.length < 1024 && b.every((x) => x >= 0x01 && x <= 0x7f && x !== 0x0d && x !== 0x0a);
  if (quotable) {
    return { text: Buffer.from('"' + b.toString('latin1').replace(/[\\"]/g, (m) => '\\' + m) + '"', 'latin1') };
  }
  return { text: Buffer.from(`{${b.length}}`, 'latin1'), literal: b };
}

/** One IMAP connection. Commands run one at a time. */
export class ImapClient {
  private buf: Buffer = Buffer.alloc(0);
  private queue: Buffer[] = [];
  private waiter: ((r: Buffer | Error) => void) | null = null;
  private failure: ImapError | null = null;
  private bye: string | null = null;
  private seq = 0;
  /** The server greeting text (after `* OK `). */
  greeting = '';

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      for (;;) {
        const r = splitResponse(this.buf);
        if (!r) break;
        // copy: the response must not pin (or alias) the receive buffer
        this.queue.push(Buffer.from(r.response));
        this.buf = r.rest;
      }
      this.pump();
    });
    sock.on('error', (e) => this.fail(new ImapError(this.bye ?? `connection error: ${e.message}`, this.bye ? 'BYE' : 'CLOSED')));
    sock.on('close', () => this.fail(new ImapError(this.bye ?? 'connection closed by server', this.bye ? 'BYE' : 'CLOSED')));
  }

  /**
   * Connect to 127.0.0.1:`port` (or `host`) and read the greeting.
   * @throws ImapError on `* BYE` greeting or connection failure
   */
  static async connect(port: number, host = '127.0.0.1', timeoutMs = 30_000): Promise<ImapClient> {
    const sock = net.connect(port, host);
    sock.setTimeout(timeoutMs);
    const c = new ImapClient(sock);
    sock.on('timeout', () => {
      c.fail(new ImapError(`no answer from IMAP server for ${timeoutMs} ms`, 'TIMEOUT'));
      sock.destroy();
    });
    const g = await c.next();
    const s = g.toString('utf8');
    if (s.startsWith('* OK')) {
      c.greeting = s.slice(5);
      return c;
    }
    sock.destroy();
    throw new ImapError(s.startsWith('* BYE') ? s.slice(6) : `unexpected greeting: ${s}`, 'BYE');
  }

  private fail(e: ImapError): void {
    this.failure ??= e;
    this.pump();
  }

  private pump(): void {
    if (!this.waiter) return;
    const w = this.waiter;
    const r = this.queue.shift();
    if (r) {
      this.waiter = null;
      w(r);
    } else if (this.failure) {
      this.waiter = null;
      w(this.failure);
    }
  }

  private next(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.waiter) throw new Error('imap: concurrent read');
      this.waiter = (r) => (r instanceof Error ? reject(r) : resolve(r));
      this.pump();
    });
  }

  private write(b: Buffer): void {
    if (this.failure) throw this.failure;
    this.sock.write(b);
  }

  /**
   * Send one command (`args` joined by spaces; ImapString args are quoted or sent as literals)
   * and collect responses up to its tagged completion. Does not throw on NO/BAD.
   * @throws ImapError if the connection drops first (message = the BYE text if there was one)
   */
  async command(...args: (string | ImapString)[]): Promise<TaggedResult> {
    const tag = `t${++this.seq}`;
    const untagged: Buffer[] = [];
    const parts = args.map(serializeArg);
    let line: Buffer[] = [Buffer.from(tag, 'latin1')];
    for (const p of parts) {
      line.push(Buffer.from(' '), p.text);
      if (p.literal) {
        // synchronizing literal: wait for "+ " before sending the bytes
        line.push(Buffer.from('\r\n'));
        this.write(Buffer.concat(line));
        line = [];
        for (;;) {
          const r = await this.next();
          if (r[0] === 0x2b /* + */) break;
          const done = this.classify(r, tag, untagged);
          if (done) return done;
        }
        line.push(p.literal);
      }
    }
    line.push(Buffer.from('\r\n'));
    this.write(Buffer.concat(line));
    for (;;) {
      const r = await this.next();
      if (r[0] === 0x2b) continue; // stray continuation
      const done = this.classify(r, tag, untagged);
      if (done) return done;
    }
  }

  private classify(r: Buffer, tag: string, untagged: Buffer[]): TaggedResult | null {
    if (r[0] === 0x2a /* * */) {
      const body = r.subarray(2);
      if (body.subarray(0, 4).toString('latin1').toUpperCase() === 'BYE ') this.bye = body.subarray(4).toString('utf8');
      untagged.push(body);
      return null;
    }
    const s = r.subarray(0, Math.min(r.length, 300)).toString('latin1');
    if (!s.startsWith(tag + ' ')) throw new ImapError(`unexpected response: ${s}`, 'BAD');
    const p = new ImapParser(r);
    p.atom();
    const status = p.atom().toUpperCase();
    if (status !== 'OK' && status !== 'NO' && status !== 'BAD') throw new ImapError(`unexpected status: ${s}`, 'BAD');
    p.skipSpaces();
    return { status, text: p.rest(), untagged };
  }

  /**
   * LOGIN; true on OK, false on NO.
   * @throws ImapError on BAD or a dropped connection
   */
  async login(user: string, password: string): Promise<boolean> {
    const r = await this.command('LOGIN', new ImapString(user), new ImapString(password));
    if (r.status === 'BAD') throw new ImapError(r.text, 'BAD');
    return r.status === 'OK';
  }

  /**
   * SELECT (name encoded as modified UTF-7); returns the EXISTS count.
   * @throws ImapError on NO/BAD with the server's text
   */
  async select(mailbox: string): Promise<number> {
    const r = await this.ok('SELECT', new ImapString(encodeMailboxName(mailbox)));
    let exists = 0;
    for (const u of r.untagged) {
      const m = /^(\d+) EXISTS$/i.exec(u.toString('latin1'));
      if (m) exists = Number(m[1]);
    }
    return exists;
  }

  /**
   * `UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])` in the selected mailbox, sorted by UID.
   * @throws ImapError on NO/BAD/BYE with the server's text
   */
  async fetchAll(): Promise<ImapMessage[]> {
    const r = await this.ok('UID', 'FETCH', '1:*', '(UID RFC822.SIZE BODY.PEEK[])');
    const bySeq = new Map<number, Partial<ImapMessage>>();
    for (const u of r.untagged) {
      const p = new ImapParser(u);
      const n = p.atom();
      if (!/^\d+$/.test(n)) continue;
      p.skipSpaces();
      if (p.done) continue;
      if (p.atom().toUpperCase() !== 'FETCH') continue;
      const items = p.value();
      if (!Array.isArray(items) || items.length % 2) throw new ImapError(`bad FETCH response: ${u.subarray(0, 200).toString('latin1')}`, 'BAD');
      const msg = bySeq.get(Number(n)) ?? {};
      bySeq.set(Number(n), msg);
      for (let i = 0; i < items.length; i += 2) {
        const k = items[i];
        const v = items[i + 1];
        const key = typeof k === 'string' ? k.toUpperCase() : '';
        if (key === 'UID' && typeof v === 'string') msg.uid = Number(v);
        else if (key === 'RFC822.SIZE' && typeof v === 'string') msg.size = Number(v);
        else if (key === 'BODY[]') {
          if (!Buffer.isBuffer(v)) throw new ImapError(`BODY[] is not a string (seq ${n})`, 'BAD');
          msg.body = v;
        }
      }
    }
    const out: ImapMessage[] = [];
    for (const [seq, m] of bySeq) {
      if (m.uid === undefined || m.size === undefined || m.body === undefined) {
        throw new ImapError(`incomplete FETCH for seq ${seq}`, 'BAD');
      }
      out.push({ uid: m.uid, size: m.size, body: m.body });
    }
    return out.sort((a, b) => a.uid - b.uid);
  }

  /** Send a command; resolve on OK, reject with the server's text on NO/BAD. */
  async ok(...args: (string | ImapString)[]): Promise<TaggedResult> {
    const r = await this.command(...args);
    if (r.status !== 'OK') throw new ImapError(`${String(args[0])} ${r.status}: ${r.text}`, r.status);
    return r;
  }

  /** LOGOUT (errors ignored) and close the socket. */
  async logout(): Promise<void> {
    try {
      if (!this.failure) await this.command('LOGOUT');
    } catch {
      // the server may close first
    } finally {
      this.close();
    }
  }

  close(): void {
    this.sock.destroy();
  }
}

/**
 * Log in, SELECT `mailbox`, fetch every message (UID, RFC822.SIZE, BODY[] byte-exact), LOGOUT.
 * @throws ImapError with the server's text on a failed login (NO), NO/BAD, or BYE
 */
export async function imapFetchAll(port: number, login: string, password: string, mailbox = 'INBOX'): Promise<ImapMessage[]> {
  const c = await ImapClient.connect(port);
  try {
    const r = await c.command('LOGIN', new ImapString(login), new ImapString(password));
    if (r.status !== 'OK') throw new ImapError(`LOGIN ${r.status}: ${r.text}`, r.status);
    const exists = await c.select(mailbox);
    const msgs = exists > 0 ? await c.fetchAll() : [];
    await c.logout();
    return msgs;
  } finally {
    c.close();
  }
}

/**
 * Try LOGIN: true on OK, false on NO (wrong password, unknown user).
 * @throws ImapError on BAD, BYE or a dropped connection
 */
export async function imapLogin(port: number, login: string, password: string): Promise<boolean> {
  const c = await ImapClient.connect(port);
  try {
    const ok = await c.login(login, password);
    await c.logout();
    return ok;
  } finally {
    c.close();
  }
}
