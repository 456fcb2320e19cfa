// Read back what the agent stored: every file of a Maildir folder, decrypted with the user's
// password through our own reader (the real-Dovecot tests check the same files over IMAP).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openFile } from '../../src/mailcrypt/open.ts';
import { parseMaildirName } from '../../src/maildir/filename.ts';
import { readDict } from '../../src/store/dictfile.ts';
import { DICT_NAME } from '../../src/store/folderkeys.ts';
import { dictKeyLookup } from '../../src/store/unlock.ts';
import { Collect } from './streams.ts';

export interface Stored {
  file: string;
  /** Decrypted content (LF, as stored). */
  plain: Buffer;
  size?: number;
  vsize?: number;
}

/** Home of user@domain under a mail root. */
export function homeOf(maildir: string, address: string): string {
  const [local, domain] = address.split('@');
  return path.join(maildir, domain!, local!);
}

export function files(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/** Decrypt every message in `<home>/Maildir[/.<folder>]/{new,cur}`. */
export async function readMailbox(home: string, password: string, folder = ''): Promise<Stored[]> {
  const maildir = path.join(home, 'Maildir');
  const dir = folder ? path.join(maildir, `.${folder}`) : maildir;
  const { dict } = await readDict(path.join(maildir, DICT_NAME));
  const lookup = dictKeyLookup(dict, async () => password);
  const out: Stored[] = [];
  for (const file of [...files(path.join(dir, 'new')), ...files(path.join(dir, 'cur'))]) {
    const c = new Collect();
    await openFile(file, lookup, c);
    const { size, vsize } = parseMaildirName(path.basename(file));
    out.push({ file, plain: c.data, size, vsize });
  }
  return out;
}

/** What we stored after our 7 trace header lines (Return-Path, Delivered-To, Received). */
export function afterTrace(plain: Buffer): Buffer {
  let at = 0;
  for (let i = 0; i < 7; i++) at = plain.indexOf(10, at) + 1;
  return plain.subarray(at);
}

/** A message as Dovecot stores it: CRLF → LF. */
export function lf(msg: Buffer): Buffer {
  return Buffer.from(msg.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
}

/** `grep -r -l TOKEN ROOT`: the files that contain a token in clear. */
export function grepTree(root: string, token: string): string[] {
  try {
    return execFileSync('grep', ['-r', '-l', '-a', '-F', token, root], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return []; // grep exits 1 when nothing matches
  }
}
