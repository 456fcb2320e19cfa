// Run the real `swaks` binary (SMTP or LMTP client) and parse its transcript into replies: one
// per RCPT, and after DATA one per accepted recipient for LMTP (RFC 2033) or one for SMTP.
//
//   const r = await swaks({ server: '127.0.0.1', port, protocol: 'LMTP', from: 'a@x.test', to: ['alice@x.test', 'bob@x.test'] });
//   t.is(r.reply('alice@x.test')?.code, 250);
//   t.is(r.reply('bob@x.test')?.code, 550);
//
// Transcript format (swaks 20201014, `--hide-informational`): every line starts with a 3-character
// hint and a space: ' ->' sent, '<- ' received as expected, '<**' received but unexpected (an
// error reply, or a swaks error such as a timeout), '***' swaks error, '===' information.

import { spawn } from 'node:child_process';
import os from 'node:os';

export interface SwaksArgs {
  /** Host name or IP address. */
  server: string;
  port: number;
  /** Default 'SMTP'. 'SMTP' talks EHLO (swaks' ESMTP; swaks' own "SMTP" would be HELO only). */
  protocol?: 'SMTP' | 'LMTP';
  /** Envelope sender; '' or '<>' for the null sender. */
  from: string;
  /** Envelope recipients, one RCPT TO each, in order. */
  to: string[];
  /**
   * The raw message (header + body). Sent byte for byte with swaks' `--no-data-fixup`: this
   * wrapper only dot-stuffs, makes sure it ends in CRLF and appends the final '.'. Bare LFs are
   * turned into CRLF unless `bareLf: true`. Without `data`, swaks builds a small message from
   * `headers` / `body`.
   */
  data?: Buffer | string;
  /** Send `data`'s line endings as they are (default: LF → CRLF). */
  bareLf?: boolean;
  /** Extra/replacement headers for swaks' own message (`--header`), e.g. `{ Subject: 'hi' }`. */
  headers?: Record<string, string>;
  /** Body for swaks' own message (`--body`). */
  body?: string;
  /** SMTP AUTH (PLAIN unless `mech`). */
  auth?: { user: string; password: string; mech?: 'PLAIN' | 'LOGIN' };
  /** STARTTLS before anything else (`--tls`; the server certificate is not verified). */
  tls?: boolean;
  /** swaks' `--timeout` for each reply (rounded up to whole seconds); the process is killed if it runs 5 s longer than this in all. Default 30 s. */
  timeoutMs?: number;
  /** More swaks arguments, appended last. */
  extra?: string[];
}

/** A server reply (multi-line replies joined). */
export interface SmtpReply {
  code: number;
  /** Enhanced status code (`5.1.1`) if the first line has one, else null. */
  enhanced: string | null;
  /** Everything after the code (and its separator); lines of a multi-line reply joined with '\n'. */
  text: string;
  /**
   * The command this answers: 'BANNER', 'EHLO', 'LHLO', 'HELO', 'AUTH' (also its 334 steps),
   * 'MAIL', 'RCPT', 'DATA' (the 354), 'DOT' (after the final '.'), 'QUIT', …
   */
  command: string;
}

export interface RcptReply extends SmtpReply {
  /** The recipient as sent in RCPT TO:<…>. */
  address: string;
}

export interface SwaksResult {
  /** swaks' exit status (0 all fine; 24 no RCPT accepted; 25 DATA refused; 26 not accepted after DATA; …). */
  code: number;
  stdout: string;
  stderr: string;
  /** Every reply in order, banner to QUIT. Swaks' own errors (timeouts, lost connection) are in `errors`. */
  replies: SmtpReply[];
  mailFrom: SmtpReply | null;
  /** One per RCPT, in order. */
  rcpt: RcptReply[];
  /** Replies after the final '.': one per accepted recipient for LMTP, one for SMTP. */
  final: SmtpReply[];
  /**
   * The outcome for each recipient, in RCPT order: its RCPT reply if that was not 2xx, else its
   * reply after DATA (LMTP: matched to the accepted recipients in order; SMTP: the one reply).
   * Missing (undefined reply) if the session ended before it arrived.
   */
  recipients: { address: string; reply: SmtpReply | undefined }[];
  /** `Ok: queued as XXXX` from a Postfix SMTP server, else null. */
  queueId: string | null;
  /** Lines swaks marked as its own errors (`***`, or `<**` lines that are not replies). */
  errors: string[];
  /** The outcome for one recipient (case-insensitive address match). */
  reply(address: string): SmtpReply | undefined;
}

/** Dot-stuff, terminate with CRLF '.', as `--no-data-fixup` leaves all framing to us (swaks adds the last CRLF). */
export function frameData(data: Buffer | string, bareLf = false): Buffer {
  let s = Buffer.isBuffer(data) ? data.toString('latin1') : Buffer.from(data, 'utf8').toString('latin1');
  if (!bareLf) s = s.replace(/\r?\n/g, '\r\n');
  if (s.length > 0 && !s.endsWith('\n')) s += '\r\n';
  s = s.replace(/(^|\n)\./g, '$1..');
  return Buffer.from(`${s}.`, 'latin1');
}

const REPLY_LINE = /^(\d{3})([ -])(.*)$/;

/** Parse a swaks transcript (stdout). Exported for tests of the parser itself. */
export function parseTranscript(stdout: string, protocol: 'SMTP' | 'LMTP'): Omit<SwaksResult, 'code' | 'stdout' | 'stderr' | 'reply'> {
  const replies: SmtpReply[] = [];
  const errors: string[] = [];
  const rcpt: RcptReply[] = [];
  const final: SmtpReply[] = [];
  let mailFrom: SmtpReply | null = null;
  let command = 'BANNER';
  let rcptAddress = '';
  let inData = false; // between the 354 and the end of the message
  let pending: { code: number; lines: string[] } | null = null;

  const finish = (code: number, lines: string[]) => {
    const first = lines[0] ?? '';
    const enh = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)/.exec(first);
    const reply: SmtpReply = { code, enhanced: enh ? enh[1]! : null, text: lines.join('\n'), command };
    replies.push(reply);
    if (command === 'MAIL') mailFrom = reply;
    else if (command === 'RCPT') rcpt.push({ ...reply, address: rcptAddress });
    else if (command === 'DOT') final.push(reply);
  };

  for (const raw of stdout.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const hint = line.slice(0, 3);
    const text = line.slice(4);
    if (hint === ' ->' || hint === '**>' || hint === ' ~>' || hint === '*~>') {
      if (inData) continue; // message lines (or swaks' "N lines sent" summary)
      if (replies.at(-1)?.code === 334) continue; // an AUTH exchange line: still 'AUTH'
      const verb = /^(\S+)/.exec(text)?.[1]?.toUpperCase() ?? '';
      if (verb === 'MAIL') command = 'MAIL';
      else if (verb === 'RCPT') {
        command = 'RCPT';
        rcptAddress = /^RCPT TO:\s*<([^>]*)>/i.exec(text)?.[1] ?? text.replace(/^RCPT TO:\s*/i, '');
      } else command = verb;
    } else if (hint === '<- ' || hint === '<**' || hint === '<~ ' || hint === '<~*') {
      if (inData) {
        inData = false; // the first reply after the message: end of data
        command = 'DOT';
      }
      const m = REPLY_LINE.exec(text);
      if (!m) {
        errors.push(text);
        continue;
      }
      const code = Number(m[1]);
      pending ??= { code, lines: [] };
      pending.lines.push(m[3]!);
      if (m[2] === ' ') {
        finish(pending.code, pending.lines);
        pending = null;
        if (command === 'DATA' && code === 354) inData = true;
      }
    } else if (hint === '***') {
      errors.push(text);
    }
  }

  // Who got which answer after DATA.
  let i = 0;
  const recipients = rcpt.map((r): { address: string; reply: SmtpReply | undefined } => {
    if (r.code < 200 || r.code >= 300) return { address: r.address, reply: r };
    const reply = protocol === 'LMTP' ? final[i++] : final[0];
    return { address: r.address, reply };
  });

  const queueId = final.map((r) => /queued as ([0-9A-Za-z]+)/.exec(r.text)?.[1]).find((x) => x !== undefined) ?? null;
  return { replies, mailFrom, rcpt, final, recipients, queueId, errors };
}

/**
 * Run swaks once. Never rejects for an SMTP-level failure (see `code`, `recipients`); rejects only
 * if swaks cannot be run or outlives `timeoutMs` + 5 s (it is then killed).
 * @throws synchronously for no recipients or a recipient containing ',' or whitespace
 */
export function swaks(args: SwaksArgs): Promise<SwaksResult> {
  const protocol = args.protocol ?? 'SMTP';
  const timeoutMs = args.timeoutMs ?? 30_000;
  if (args.to.length === 0) throw new Error('swaks: no recipients');
  for (const a of args.to) if (/[,\s]/.test(a)) throw new Error(`swaks: recipient with ',' or whitespace: ${JSON.stringify(a)}`);
  const argv = [
    '--server', args.server,
    '--port', String(args.port),
    '--protocol', protocol === 'LMTP' ? 'LMTP' : 'ESMTP',
    '--from', args.from === '' ? '<>' : args.from,
    '--to', args.to.join(','),
    '--timeout', `${Math.max(1, Math.ceil(timeoutMs / 1000))}s`,
    '--hide-informational',
    '--suppress-data',
    // one stream, so error lines keep their place in the transcript
    '--output-file-stderr', '&STDOUT',
  ];
  let stdin: Buffer | null = null;
  if (args.data !== undefined) {
    argv.push('--data', '-', '--no-data-fixup');
    stdin = frameData(args.data, args.bareLf);
  } else {
    for (const [k, v] of Object.entries(args.headers ?? {})) argv.push('--header', `${k}: ${v}`);
    if (args.body !== undefined) argv.push('--body', args.body);
  }
  if (args.tls) argv.push('--tls');
  if (args.auth) argv.push('--auth', args.auth.mech ?? 'PLAIN', '--auth-user', args.auth.user, '--auth-password', args.auth.password);
  argv.push(...(args.extra ?? []));

  return new Promise((resolve, reject) => {
    const child = spawn('swaks', argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`swaks timed out after ${timeoutMs} ms:\n${Buffer.concat(out).toString('utf8')}${Buffer.concat(err).toString('utf8')}`));
    }, timeoutMs + 5000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`swaks: cannot run: ${e.message} (apt-get install swaks)`));
    });
    child.stdin.on('error', () => undefined); // swaks may quit before reading all of it (e.g. no RCPT accepted)
    child.stdin.end(stdin ?? undefined);
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const parsed = parseTranscript(stdout, protocol);
      resolve({
        code: code ?? 128 + (sig ? (os.constants.signals[sig] ?? 0) : 0),
        stdout,
        stderr,
        ...parsed,
        reply: (address) => parsed.recipients.find((r) => r.address.toLowerCase() === address.toLowerCase())?.reply,
      });
    });
  });
}
