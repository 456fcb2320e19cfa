// The dovecot-attributes file on disk (spec §4.3): read without a lock; update with Dovecot's
// dotlock protocol — create `<file>.lock` exclusively, re-read under it, write the complete new
// contents into the lock file, fsync, rename it over the dict, fsync the directory. Readers
// (Dovecot reloads on inode change) always see a whole old or a whole new file.

import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { MailsealError } from '../errors.ts';
import { syncDir } from '../maildir/writer.ts';
import { parseDict, serializeDict } from './attributes.ts';

export interface DictStat {
  ino: number;
  size: number;
  mtimeMs: number;
}

/** Read a dict; a missing file is an empty dict (stat null). @throws MailsealError bad-format */
export async function readDict(file: string): Promise<{ dict: Map<string, string>; stat: DictStat | null }> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { dict: new Map(), stat: null };
    throw err;
  }
  try {
    const st = await fh.stat();
    const text = await fh.readFile('utf8');
    return { dict: parseDict(text), stat: { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs } };
  } finally {
    await fh.close();
  }
}

export interface LockOptions {
  /** Give up after this long (Dovecot's dict dotlock: 120 s). */
  timeoutMs?: number;
  /** A lock file unchanged for this long is stale and removed (Dovecot: 60 s). */
  staleMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Take `<file>.lock` (O_CREAT|O_EXCL); the returned handle is where the new contents go. */
async function acquire(lock: string, mode: number, o: Required<LockOptions>): Promise<fs.FileHandle> {
  const start = Date.now();
  for (let wait = 2; ; wait = Math.min(wait * 2, 100)) {
    try {
      return await fs.open(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    try {
      const st = await fs.stat(lock);
      if (Date.now() - st.mtimeMs > o.staleMs) {
        // Break it by moving it aside, then check that what moved is the file judged stale: a
        // plain unlink by name could remove a fresh lock that replaced it meanwhile.
        const aside = `${lock}.stale.${process.pid}.${Math.random().toString(36).slice(2)}`;
        try {
          await fs.rename(lock, aside);
        } catch {
          continue;
        }
        const moved = await fs.stat(aside).catch(() => null);
        if (moved && moved.ino !== st.ino) await fs.link(aside, lock).catch(() => undefined); // a live lock: put it back
        await fs.unlink(aside).catch(() => undefined);
        continue;
      }
    } catch {
      continue; // released meanwhile
    }
    if (Date.now() - start > o.timeoutMs) {
      throw new MailsealError('locked', `${path.basename(lock)} is held by another process (waited ${Math.round((Date.now() - start) / 1000)} s)`);
    }
    await sleep(wait + Math.random() * wait);
  }
}

/**
 * Change a dict under Dovecot's dotlock. `mutate` edits the freshly re-read Map; returning
 * false means "no change" (nothing is written). Mode and owner of the old file are kept (a new
 * file gets 0600 and, as root, the owner of its directory).
 * @returns whether the file was written.
 * @throws MailsealError locked (timeout), or whatever mutate throws (the dict is left as it was).
 */
export async function updateDict(
  file: string,
  mutate: (dict: Map<string, string>) => boolean | void | Promise<boolean | void>,
  opts: LockOptions = {},
): Promise<boolean> {
  const o = { timeoutMs: opts.timeoutMs ?? 120_000, staleMs: opts.staleMs ?? 60_000 };
  const dir = path.dirname(file);
  const lock = `${file}.lock`;
  let owner: { uid: number; gid: number; mode: number };
  try {
    const st = await fs.stat(file);
    owner = { uid: st.uid, gid: st.gid, mode: st.mode & 0o777 };
  } catch {
    const st = await fs.stat(dir);
    owner = { uid: st.uid, gid: st.gid, mode: 0o600 };
  }
  const fh = await acquire(lock, owner.mode, o);
  const mine = (await fh.stat()).ino;
  /** Is `<file>.lock` still the file we created (not broken as stale and re-taken by another)? */
  const stillOurs = async () => (await fs.lstat(lock).catch(() => null))?.ino === mine;
  let closed = false;
  let renamed = false;
  try {
    const { dict } = await readDict(file);
    if ((await mutate(dict)) === false) {
      await fh.close();
      closed = true;
      if (await stillOurs()) await fs.unlink(lock);
      return false;
    }
    await fh.writeFile(serializeDict(dict));
    await fh.sync();
    if (process.getuid?.() === 0) await fh.chown(owner.uid, owner.gid);
    await fh.chmod(owner.mode);
    await fh.close();
    closed = true;
    // Renaming the path would install whatever file is there now: make sure it is ours.
    if (!(await stillOurs())) {
      throw new MailsealError('locked', `${path.basename(lock)} was taken over by another process (held too long?): nothing written`);
    }
    await fs.rename(lock, file);
    renamed = true;
    await syncDir(dir);
    return true;
  } catch (err) {
    if (!closed) await fh.close().catch(() => undefined);
    if (!renamed && (await stillOurs())) await fs.unlink(lock).catch(() => undefined);
    throw err;
  }
}
