// `mailseal cat <file>`: decrypt one stored mail to stdout. The keys come from the dict of the
// Maildir the file sits in; the user key is opened with the password (prompt or
// --password-stdin), asked for only if the file is encrypted. Plaintext files pass through.
// The file is authenticated before a single byte is printed.

import type { Command } from 'commander';
import fs from 'node:fs';
import path from 'node:path';
import { MailParser } from 'mailparser';
import { Writable } from 'node:stream';
import { MailsealError } from '../errors.ts';
import { openFile } from '../mailcrypt/open.ts';
import { readDict } from '../store/dictfile.ts';
import { DICT_NAME } from '../store/folderkeys.ts';
import { dictKeyLookup } from '../store/unlock.ts';
import { passwordStdinOption } from './common.ts';
import { askSecret } from './prompt.ts';

/** The Maildir root (where the dict is) of a mail file in `<root>[/.<folder>]/{cur,new,tmp}/`. */
export function maildirOf(file: string): string {
  const sub = path.dirname(path.resolve(file));
  if (!['cur', 'new', 'tmp'].includes(path.basename(sub))) {
    throw new MailsealError('usage', `${file} is not inside a Maildir cur/, new/ or tmp/ directory`);
  }
  const folder = path.dirname(sub);
  return path.basename(folder).startsWith('.') ? path.dirname(folder) : folder;
}

function summary(): Writable & { done: Promise<void> } {
  const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true });
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  parser.on('headers', (h) => {
    const get = (k: string) => {
      const v = h.get(k) as unknown;
      if (v && typeof v === 'object' && 'text' in v) return String((v as { text: string }).text);
      if (v instanceof Date) return v.toUTCString();
      return v === undefined ? '' : String(v);
    };
    for (const [label, key] of [['From', 'from'], ['To', 'to'], ['Cc', 'cc'], ['Date', 'date'], ['Subject', 'subject'], ['Message-ID', 'message-id']] as const) {
      const v = get(key);
      if (v) process.stdout.write(`${label}: ${v}\n`);
    }
    resolveDone();
  });
  parser.on('data', (d: { type: string; release?: () => void; filename?: string; size?: number }) => {
    if (d.type === 'attachment') {
      process.stdout.write(`Attachment: ${d.filename ?? '(unnamed)'}\n`);
      d.release?.();
    }
  });
  parser.on('end', () => resolveDone());
  return Object.assign(parser as unknown as Writable, { done });
}

export function registerCat(program: Command): void {
  program
    .command('cat')
    .description('decrypt a stored mail file to standard output')
    .argument('<file>', 'a message file in a Maildir (cur/, new/ or tmp/)')
    .option('--headers', 'print a short summary (From, To, Date, Subject, attachments) instead of the message')
    .addOption(passwordStdinOption())
    .option('--crlf', 'print CRLF line endings, as IMAP serves the message')
    .action(async (file: string, o: { headers?: boolean; passwordStdin?: boolean; crlf?: boolean }) => {
      if (!fs.existsSync(file)) throw new MailsealError('usage', `no such file: ${file}`);
      const maildir = maildirOf(file);
      const { dict } = await readDict(path.join(maildir, DICT_NAME));
      const home = path.dirname(maildir);
      const user = `${path.basename(home)}@${path.basename(path.dirname(home))}`;
      const lookup = dictKeyLookup(dict, () => askSecret(`password for ${user}`, o));
      const out = o.headers ? summary() : crlfStdout(!!o.crlf);
      try {
        await openFile(file, lookup, out);
      } catch (err) {
        if (err instanceof MailsealError && err.code === 'bad-password') {
          throw Object.assign(err, { hint: 'the password is the one the user logs in to IMAP with' });
        }
        throw err;
      }
      out.end();
      if ('done' in out) await out.done;
    });
}

/** stdout, optionally turning LF into CRLF. */
function crlfStdout(crlf: boolean): Writable {
  let lastCr = false;
  return new Writable({
    write(chunk: Buffer, _e, cb) {
      let data = chunk;
      if (crlf && chunk.length) {
        const s = (lastCr ? '\r' : '') + chunk.toString('latin1');
        data = Buffer.from(s.replace(/\r?\n/g, '\r\n').slice(lastCr ? 1 : 0), 'latin1');
        lastCr = chunk[chunk.length - 1] === 13;
      }
      if (process.stdout.write(data)) cb();
      else process.stdout.once('drain', () => cb());
    },
  });
}
