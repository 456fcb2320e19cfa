// The public key a folder's new mail is sealed to, as the delivery path needs it: read from the
// user's dict, cached, and re-read when the file changes (Dovecot and the CLI replace it by
// rename, so a changed inode, size or mtime means new contents). The folder's mailbox GUID is
// read from its dovecot-uidlist every time: one small read, and never a stale GUID. A folder
// without a key gets one, created under the dict lock and encrypted to the user's active public
// key (spec §7.3); a user without a key is a `no-key` error (451: never plaintext).

import fs from 'node:fs/promises';
import path from 'node:path';
import { MailsealError } from '../errors.ts';
import { type EcPublicKey, generateKey, publicOnly } from '../mailcrypt/keys.ts';
import type { Probe, ProbePaths } from '../mailcrypt/native.ts';
import { formatPrivateKey, formatPublicKey } from '../mailcrypt/keystring.ts';
import { ensureMailbox, parseUidlistGuid, readMailboxGuid, UIDLIST } from '../maildir/uidlist.ts';
import { readDict, updateDict } from './dictfile.ts';
import { activePublicKey, putKey } from './keyring.ts';

export const DICT_NAME = 'dovecot-attributes';

interface Cached {
  ino: number;
  size: number;
  mtimeMs: number;
  dict: Map<string, string>;
  /** Parsed active public keys by folder GUID (a parse costs a point decompression). */
  keys: Map<string, EcPublicKey | null>;
}

/** A file's identity for cache checks: a replaced (renamed-over) or rewritten file differs. */
type Stamp = { ino: number; size: number; mtimeMs: number } | null;

async function stamp(file: string): Promise<Stamp> {
  try {
    return await fs.stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

const same = (a: Stamp, b: Stamp) => !!a && !!b && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;

export class FolderKeys {
  private cache = new Map<string, Cached>();
  /** The key activeKey() last returned for each folder. */
  private last = new Map<string, EcPublicKey>();

  /** Forget every cached dict, and the last keys (SIGHUP). */
  clear(): void {
    this.cache.clear();
    this.last.clear();
  }

  /**
   * The key activeKey() last returned for `folder`, from memory: a guess, for work that can
   * start before activeKey() has checked the dict and the GUID (see deliver's Sink.open), never
   * a key to seal to on its own.
   */
  lastKey(folder: string): EcPublicKey | undefined {
    return this.last.get(folder);
  }

  /** The files activeKey(maildir, folder) reads: for a probe made elsewhere. */
  static probePaths(maildir: string, folder: string): ProbePaths {
    return [path.join(folder, UIDLIST), path.join(maildir, DICT_NAME)];
  }

  /** The dict of a Maildir, from cache if the file is unchanged (`st`: its stamp now). */
  private async dict(maildir: string, st: Stamp): Promise<Cached> {
    const file = path.join(maildir, DICT_NAME);
    const hit = this.cache.get(file);
    if (hit && same(hit, st)) return hit;
    const { dict, stat } = await readDict(file);
    const entry: Cached = { ino: stat?.ino ?? -1, size: stat?.size ?? -1, mtimeMs: stat?.mtimeMs ?? -1, dict, keys: new Map() };
    if (stat) this.cache.set(file, entry);
    else this.cache.delete(file);
    return entry;
  }

  /**
   * The active public key of `folder` (a directory inside `maildir`, or `maildir` itself for
   * INBOX), creating the folder key if there is none yet. `probe`: the uidlist head and dict
   * stamp, read for this delivery by the seal's native job (see probePaths()).
   * @throws MailsealError no-key (no user key: the user was never keyed), bad-format (damaged dict).
   */
  async activeKey(maildir: string, folder: string, probe?: Probe | null): Promise<EcPublicKey> {
    // The GUID read afresh (a re-created folder is a new mailbox), beside a stat of the dict;
    // or both as `probe` found them a moment ago, in the seal's job (one job fewer).
    const [found, dictStamp] = probe
      ? [probe.head && parseUidlistGuid(probe.head.toString('latin1')), probe.dict]
      : await Promise.all([readMailboxGuid(folder), stamp(path.join(maildir, DICT_NAME))]);
    const guid = found ?? (await ensureMailbox(folder));
    const c = await this.dict(maildir, dictStamp);
    let key = c.keys.get(guid);
    if (key === undefined) {
      key = activePublicKey(c.dict, 'folder', guid);
      c.keys.set(guid, key);
    }
    const active = key ?? (await this.createFolderKey(maildir, guid));
    this.last.set(folder, active);
    return active;
  }

  private async createFolderKey(maildir: string, folderGuid: string): Promise<EcPublicKey> {
    const inboxGuid = await readMailboxGuid(maildir);
    if (!inboxGuid) throw new MailsealError('no-key', 'the user has no INBOX (no dovecot-uidlist): not provisioned');
    let result: EcPublicKey | null = null;
    await updateDict(path.join(maildir, DICT_NAME), async (dict) => {
      // Another process may have made one while we waited for the lock.
      result = activePublicKey(dict, 'folder', folderGuid);
      if (result) return false;
      const userKey = activePublicKey(dict, 'user', inboxGuid);
      if (!userKey) throw new MailsealError('no-key', 'the user has no key: set it up with "mailseal user add" before mail arrives');
      const key = await generateKey(userKey.curve);
      putKey(dict, 'folder', folderGuid, {
        id: key.id,
        publicString: formatPublicKey(key),
        privateString: await formatPrivateKey(key, { to: userKey }),
      }, true);
      result = publicOnly(key);
      return true;
    });
    return result!;
  }
}
