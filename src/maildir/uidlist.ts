// The mailbox GUID, as Dovecot keeps it for Maildir: the `G<guid>` field of the first line of
// `dovecot-uidlist` (`3 V<uidvalidity> N<next uid> G<guid>`, spec §4.2). A new mailbox gets
// its uidlist created under Dovecot's lock (`dovecot-uidlist.lock`, O_EXCL, rename over).

import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { badFormat, MailsealError } from '../errors.ts';
import { nativeAddon } from '../mailcrypt/native.ts';

export const UIDLIST = 'dovecot-uidlist';

/** Parse the GUID out of a uidlist header line. @throws MailsealError bad-format */
export function parseUidlistGuid(text: string): string {
  const first = text.slice(0, Math.min(text.length, 4096)).split('\n', 1)[0]!;
  const fields = first.split(' ');
  if (fields[0] !== '3') throw badFormat(`${UIDLIST}: unsupported version ${JSON.stringify(fields[0]?.slice(0, 8))}`);
  const g = fields.find((f) => f.startsWith('G'));
  if (!g || !/^G[0-9a-f]{32}$/.test(g)) throw badFormat(`${UIDLIST}: no mailbox GUID in the header`);
  return g.slice(1);
}

/**
 * The GUID of the mailbox in `folder`, or null if it has no uidlist yet. Read afresh each time
 * (a folder deleted and made again has a new GUID): one native job where the addon is built.
 */
export async function readMailboxGuid(folder: string): Promise<string | null> {
  const file = path.join(folder, UIDLIST);
  const native = nativeAddon();
  if (native) {
    const head = await native.readHead(file, 512);
    return head === null ? null : parseUidlistGuid(head.toString('latin1'));
  }
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return parseUidlistGuid(buf.subarray(0, bytesRead).toString('latin1'));
  } finally {
    await fh.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Make `folder` a Maildir (cur/ new/ tmp/, 0700) with a uidlist; returns its GUID. Safe against
 * a concurrent creator (Dovecot or another delivery): whoever renames first wins, the other
 * reads that GUID.
 */
export async function ensureMailbox(folder: string): Promise<string> {
  for (const sub of ['cur', 'new', 'tmp']) await fs.mkdir(path.join(folder, sub), { recursive: true, mode: 0o700 });
  const file = path.join(folder, UIDLIST);
  const lock = `${file}.lock`;
  for (let attempt = 0; attempt < 600; attempt++) {
    const existing = await readMailboxGuid(folder);
    if (existing) return existing;
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fs.stat(lock).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 120_000) await fs.unlink(lock).catch(() => undefined);
      await sleep(10);
      continue;
    }
    try {
      if (!(await readMailboxGuid(folder))) {
        const guid = crypto.randomBytes(16).toString('hex');
        await fh.writeFile(`3 V${Math.floor(Date.now() / 1000)} N1 G${guid}\n`);
        await fh.sync();
        await fh.close();
        await fs.rename(lock, file);
        return guid;
      }
      await fh.close();
      await fs.unlink(lock);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fs.unlink(lock).catch(() => undefined);
      throw err;
    }
  }
  throw new MailsealError('locked', `${lock} is held by another process`);
}
