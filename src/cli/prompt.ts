// Secrets for the CLI: a no-echo prompt on the terminal, or `--password-stdin` (one secret per
// line, in prompt order). Never from argv.

import readline from 'node:readline';
import { MailsealError } from '../errors.ts';

let stdinLines: AsyncIterator<string> | null = null;

async function nextStdinLine(what: string): Promise<string> {
  stdinLines ??= readline.createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const r = await stdinLines.next();
  if (r.done) throw new MailsealError('usage', `--password-stdin: no line for the ${what}`);
  return r.value;
}

/** Read a secret without echo from the controlling terminal. */
function promptTty(question: string): Promise<string> {
  if (!process.stdin.isTTY) {
    return Promise.reject(new MailsealError('usage', 'no terminal to ask for a password on; use --password-stdin'));
  }
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    let buf = '';
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(buf);
    };
    const onData = (d: Buffer) => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new MailsealError('usage', 'interrupted'));
        if (ch === '\u007f' || ch === '\b') buf = buf.slice(0, -1);
        else buf += ch;
      }
    };
    stdin.on('data', onData);
  });
}

export interface SecretOptions {
  passwordStdin?: boolean;
}

/** Ask for one secret (`what` names it, e.g. "password for alice@example.org"). */
export function askSecret(what: string, opts: SecretOptions): Promise<string> {
  return opts.passwordStdin ? nextStdinLine(what) : promptTty(`${what[0]!.toUpperCase()}${what.slice(1)}: `);
}
