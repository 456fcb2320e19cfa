// Creating a user: login hash, Maildir, mailbox GUID, user key (enctype 2, the login password)
// and INBOX folder key (enctype 1 to the user key), so that mail can be sealed from the first
// delivery and stock Dovecot opens it with the login password. Files first, DB row last: a
// crash in between leaves a keyed home that a re-run refuses to overwrite, never a DB user
// without keys.

import fs from 'node:fs/promises';
import path from 'node:path';
import { MailsealError } from '../errors.ts';
import { curveByName } from '../mailcrypt/curves.ts';
import { generateKey } from '../mailcrypt/keys.ts';
import { formatPrivateKey, formatPublicKey } from '../mailcrypt/keystring.ts';
import { ensureMailbox } from '../maildir/uidlist.ts';
import { isInside, userHome } from '../maildir/paths.ts';
import { updateDict } from '../store/dictfile.ts';
import { DICT_NAME } from '../store/folderkeys.ts';
import { activeId, putKey } from '../store/keyring.ts';
import { audit, type Db, findUser } from './db.ts';
import { hashPassword, weakPassword } from './password.ts';
import { newRecoveryCode, sealEscrow, storeEscrow } from './recovery.ts';

export interface AddUser {
  address: string;
  password: string;
  curve: string;
  /** Owner of the files (the mail user), when running as root. */
  owner?: { uid: number; gid: number };
}

export interface Added {
  address: string;
  home: string;
  userKeyId: string;
  folderKeyId: string;
  /** Shown once; the only way back in without the password. */
  recoveryCode: string;
}

/** Normalise an address as Dovecot looks logins up: trimmed and lowercase. */
export function normalizeAddress(address: string): string {
  return address.trim().toLowerCase();
}

async function chownTree(dir: string, owner: { uid: number; gid: number }): Promise<void> {
  await fs.chown(dir, owner.uid, owner.gid);
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, owner);
    else await fs.chown(p, owner.uid, owner.gid);
  }
}

/**
 * Create a user with keys. The password must already have passed `weakPassword`.
 * @throws MailsealError usage (exists, weak password), bad-address.
 */
export async function addUser(db: Db, mailRoot: string, req: AddUser): Promise<Added> {
  const address = normalizeAddress(req.address);
  const home = userHome(mailRoot, address);
  const domain = address.slice(address.lastIndexOf('@') + 1);
  if (findUser(db, address)) throw new MailsealError('usage', `user ${address} already exists`);
  const weak = weakPassword(req.password, address);
  if (weak) throw new MailsealError('usage', weak);
  const curve = curveByName(req.curve);
  const hash = await hashPassword(req.password);

  const maildir = path.join(home, 'Maildir');
  // Directories we create belong to the mail user: Dovecot (as that user) must traverse them.
  for (const dir of [mailRoot, path.dirname(home), home, maildir]) {
    if ((await fs.mkdir(dir, { recursive: true, mode: 0o700 })) !== undefined && req.owner) {
      await fs.chown(dir, req.owner.uid, req.owner.gid);
    }
  }
  const inboxGuid = await ensureMailbox(maildir);
  const userKey = await generateKey(curve);
  const folderKey = await generateKey(curve);
  const recoveryCode = newRecoveryCode();
  const escrow = await sealEscrow(address, userKey, recoveryCode);
  await updateDict(path.join(maildir, DICT_NAME), async (dict) => {
    if (activeId(dict, 'user', inboxGuid)) {
      throw new MailsealError('usage', `${maildir} already holds keys of an earlier user ${address}; remove the home or restore the user`);
    }
    putKey(dict, 'user', inboxGuid, {
      id: userKey.id,
      publicString: formatPublicKey(userKey),
      privateString: await formatPrivateKey(userKey, { password: req.password }),
    }, true);
    putKey(dict, 'folder', inboxGuid, {
      id: folderKey.id,
      publicString: formatPublicKey(folderKey),
      privateString: await formatPrivateKey(folderKey, { to: userKey }),
    }, true);
    return true;
  });
  if (req.owner) await chownTree(home, req.owner);

  db.transaction(() => {
    db.prepare('INSERT OR IGNORE INTO domains (name) VALUES (?)').run(domain);
    db.prepare('INSERT INTO users (address, domain, password, home, curve, key_id) VALUES (?, ?, ?, ?, ?, ?)')
      .run(address, domain, hash, home, curve.name, userKey.id);
    storeEscrow(db, address, escrow);
    audit(db, address, 'user-add', `user key ${userKey.id} ${curve.name}, INBOX key ${folderKey.id}`);
  }).immediate();
  return { address, home, userKeyId: userKey.id, folderKeyId: folderKey.id, recoveryCode };
}

/** Enable or disable a user: disabled users get no mail (550 5.1.1) and cannot log in. */
export function setEnabled(db: Db, address: string, enabled: boolean): void {
  const r = db.prepare("UPDATE users SET enabled = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE address = ?")
    .run(enabled ? 1 : 0, address);
  if (r.changes === 0) throw new MailsealError('no-user', `no such user: ${address}`);
  audit(db, address, enabled ? 'user-enable' : 'user-disable');
}

/**
 * Delete a user: the row, its recovery escrow and the aliases that point only to it. The mail
 * and keys stay on disk unless `purge` (then the home is removed; it must lie inside `mailRoot`).
 */
export async function deleteUser(db: Db, mailRoot: string, address: string, opts: { purge: boolean }): Promise<{ home: string; aliases: number }> {
  const u = findUser(db, address);
  if (!u) throw new MailsealError('no-user', `no such user: ${address}`);
  if (opts.purge && !isInside(mailRoot, u.home)) {
    throw new MailsealError('usage', `the home ${u.home} is not inside the mail root ${mailRoot}: not removing it (give the right --maildir)`);
  }
  let aliases = 0;
  db.transaction(() => {
    aliases = db.prepare('DELETE FROM aliases WHERE destination = ?').run(address).changes;
    db.prepare('DELETE FROM users WHERE address = ?').run(address);
    audit(db, address, 'user-del', opts.purge ? `home ${u.home} removed` : `home ${u.home} kept`);
  }).immediate();
  if (opts.purge) await fs.rm(u.home, { recursive: true, force: true });
  return { home: u.home, aliases };
}
