// What an operator does to a user's secrets, each as one crash-safe change (journal.ts):
// password change, recovery with the recovery code, admin reset (old mail stays sealed),
// user-key and folder-key rotation, and a new recovery code. Mail files are never touched:
// keys are re-wrapped, never re-generated under mail that needs them.

import path from 'node:path';
import { MailsealError } from '../errors.ts';
import { type EcPrivateKey, generateKey } from '../mailcrypt/keys.ts';
import { curveByName } from '../mailcrypt/curves.ts';
import { formatPrivateKey, formatPublicKey, openPrivateKey, parsePrivateKey } from '../mailcrypt/keystring.ts';
import { folderPath } from '../maildir/paths.ts';
import { readMailboxGuid } from '../maildir/uidlist.ts';
import { readDict, updateDict } from '../store/dictfile.ts';
import { activeId, activePublicKey, keyPaths, listKeys, putKey } from '../store/keyring.ts';
import { audit, type Db, findUser, type UserRow } from './db.ts';
import { dictFile, inboxGuidOf, runChange, scrubWal, settle } from './journal.ts';
import { hashPassword, weakPassword } from './password.ts';
import { newRecoveryCode, openEscrow, readEscrow, sealEscrow, storeEscrow } from './recovery.ts';

/** The user row; settles an interrupted change first. @throws no-user */
export async function loadUser(db: Db, address: string): Promise<UserRow> {
  const u = findUser(db, address);
  if (!u) throw new MailsealError('no-user', `no such user: ${address}`);
  await settle(db, address, u.home);
  return findUser(db, address)!;
}

function checkNewPassword(password: string, address: string): void {
  const weak = weakPassword(password, address);
  if (weak) throw new MailsealError('usage', weak);
}

/** The user's private key strings in the dict, active first. */
function userKeyStrings(dict: Map<string, string>, inboxGuid: string): { id: string; active: boolean; s: string }[] {
  const p = keyPaths('user', inboxGuid);
  return listKeys(dict)
    .filter((k) => k.scope === 'user' && k.guid === inboxGuid && k.hasPrivate)
    .map((k) => ({ id: k.id, active: k.active, s: dict.get(p.priv(k.id))! }))
    .sort((a, b) => Number(b.active) - Number(a.active));
}

/**
 * Open every user key that `password` opens. The active one must open.
 * @throws MailsealError bad-password, no-key (no active user key)
 */
async function openUserKeys(dict: Map<string, string>, inboxGuid: string, password: string): Promise<{ active: EcPrivateKey; all: EcPrivateKey[] }> {
  const id = activeId(dict, 'user', inboxGuid);
  if (!id) throw new MailsealError('no-key', 'the user has no active user key');
  const all: EcPrivateKey[] = [];
  let active: EcPrivateKey | null = null;
  for (const k of userKeyStrings(dict, inboxGuid)) {
    try {
      const key = await openPrivateKey(k.s, { password });
      all.push(key);
      if (key.id === id) active = key;
    } catch (err) {
      if (!(err instanceof MailsealError && err.code === 'bad-password')) throw err;
    }
  }
  if (!active) throw new MailsealError('bad-password', 'wrong password');
  return { active, all };
}

/** Re-encrypt every folder private key encrypted to one of `from` to `to` (same folder keys). */
async function rewrapFolderKeys(dict: Map<string, string>, from: EcPrivateKey[], to: EcPrivateKey): Promise<{ done: number; left: number }> {
  let done = 0;
  let left = 0;
  for (const k of listKeys(dict)) {
    if (k.scope !== 'folder' || !k.hasPrivate) continue;
    const slot = keyPaths('folder', k.guid).priv(k.id);
    const parsed = parsePrivateKey(dict.get(slot)!);
    const parent = parsed.enctype === 1 ? from.find((u) => u.id === parsed.encryptedTo) : undefined;
    if (!parent) {
      left++;
      continue;
    }
    const key = await openPrivateKey(parsed, { key: parent });
    dict.set(slot, await formatPrivateKey(key, { to }));
    done++;
  }
  return { done, left };
}

/** `user passwd`: the user keys re-wrapped with the new password, the login hash replaced. */
export async function changePassword(db: Db, address: string, oldPassword: string, newPassword: string): Promise<void> {
  const u = await loadUser(db, address);
  checkNewPassword(newPassword, address);
  if (newPassword === oldPassword) throw new MailsealError('usage', 'the new password is the old one');
  const hash = await hashPassword(newPassword);
  await runChange(db, address, u.home, {
    kind: 'passwd',
    password: hash,
    async mutate(dict, inboxGuid) {
      const { active, all } = await openUserKeys(dict, inboxGuid, oldPassword);
      const p = keyPaths('user', inboxGuid);
      let privateString = '';
      for (const key of all) {
        const s = await formatPrivateKey(key, { password: newPassword });
        dict.set(p.priv(key.id), s);
        if (key.id === active.id) privateString = s;
      }
      return { keyId: active.id, privateString, detail: `${all.length} user key(s) re-wrapped` };
    },
  });
}

/**
 * `user recover`: the recovery code opens the escrowed user key, which is re-wrapped with the
 * new password; a new recovery code replaces the old one. A wrong code changes nothing.
 * @returns the new recovery code (show it once).
 */
export async function recoverUser(db: Db, address: string, code: string, newPassword: string, show?: (code: string) => void): Promise<string> {
  const u = await loadUser(db, address);
  checkNewPassword(newPassword, address);
  const opened = readEscrow(db, address);
  const key = await openEscrow(address, opened, code);
  const hash = await hashPassword(newPassword);
  const newCode = newRecoveryCode();
  const escrow = await sealEscrow(address, key, newCode);
  await runChange(db, address, u.home, {
    kind: 'recover',
    password: hash,
    escrow,
    recorded: () => show?.(newCode),
    async mutate(dict, inboxGuid) {
      // Under the lock: the code must still be the current one (two recoveries with one code:
      // the second finds it void) and the key still the active one.
      const now = readEscrow(db, address);
      const id = activeId(dict, 'user', inboxGuid);
      if (!now.box.equals(opened.box) || id !== key.id) {
        throw new MailsealError('bad-password', 'the recovery code was used or replaced meanwhile; it is no longer valid');
      }
      const privateString = await formatPrivateKey(key, { password: newPassword });
      dict.set(keyPaths('user', inboxGuid).priv(key.id), privateString);
      return { keyId: key.id, privateString, detail: 'user key re-wrapped with a new password; new recovery code' };
    },
  });
  return newCode;
}

/** Put a new active key on every folder that has keys (and INBOX), encrypted to `userKey`. */
async function newFolderKeys(dict: Map<string, string>, inboxGuid: string, userKey: EcPrivateKey): Promise<number> {
  const guids = new Set([inboxGuid, ...listKeys(dict).filter((k) => k.scope === 'folder').map((k) => k.guid)]);
  for (const guid of guids) {
    const key = await generateKey(userKey.curve);
    putKey(dict, 'folder', guid, { id: key.id, publicString: formatPublicKey(key), privateString: await formatPrivateKey(key, { to: userKey }) }, true);
  }
  return guids.size;
}

/**
 * Admin reset without the password or the code: a new user key and new folder keys; the old
 * keys stay in the dict (old mail stays sealed to them, readable only with the old password).
 * @returns the new recovery code.
 */
export async function resetUser(db: Db, address: string, newPassword: string, show?: (code: string) => void): Promise<{ code: string; folders: number }> {
  const u = await loadUser(db, address);
  checkNewPassword(newPassword, address);
  const hash = await hashPassword(newPassword);
  const userKey = await generateKey(curveByName(u.curve));
  const code = newRecoveryCode();
  const escrow = await sealEscrow(address, userKey, code);
  let folders = 0;
  await runChange(db, address, u.home, {
    kind: 'reset',
    password: hash,
    escrow,
    recorded: () => show?.(code),
    async mutate(dict, inboxGuid) {
      const privateString = await formatPrivateKey(userKey, { password: newPassword });
      putKey(dict, 'user', inboxGuid, { id: userKey.id, publicString: formatPublicKey(userKey), privateString }, true);
      folders = await newFolderKeys(dict, inboxGuid, userKey);
      return { keyId: userKey.id, privateString, detail: `admin reset: new user key, ${folders} new folder key(s); old mail stays sealed to the old keys` };
    },
  });
  return { code, folders };
}

/**
 * A new user key: the folder private keys are re-encrypted to it (mail untouched), old user
 * keys stay. The escrow must follow the new key, so a new recovery code replaces the old one.
 * @returns the new key id and recovery code.
 */
export async function rotateUserKey(db: Db, address: string, password: string, show?: (code: string) => void): Promise<{ keyId: string; code: string; rewrapped: number; left: number }> {
  const u = await loadUser(db, address);
  // Check the password before the slow escrow work; checked again under the lock.
  const { dict: current } = await readDict(dictFile(u.home));
  await openUserKeys(current, await inboxGuidOf(u.home), password);
  const userKey = await generateKey(curveByName(u.curve));
  const code = newRecoveryCode();
  const escrow = await sealEscrow(address, userKey, code);
  let counts = { done: 0, left: 0 };
  await runChange(db, address, u.home, {
    kind: 'rotate',
    escrow,
    recorded: () => show?.(code),
    async mutate(dict, inboxGuid) {
      const { all } = await openUserKeys(dict, inboxGuid, password);
      counts = await rewrapFolderKeys(dict, all, userKey);
      const privateString = await formatPrivateKey(userKey, { password });
      putKey(dict, 'user', inboxGuid, { id: userKey.id, publicString: formatPublicKey(userKey), privateString }, true);
      return { keyId: userKey.id, privateString, detail: `user key rotated; ${counts.done} folder key(s) re-encrypted, ${counts.left} left` };
    },
  });
  return { keyId: userKey.id, code, rewrapped: counts.done, left: counts.left };
}

/**
 * A new active key for one folder (INBOX by default), encrypted to the active user key. No
 * password needed: only public keys are used. Old keys stay, so old mail stays readable.
 */
export async function rotateFolderKey(db: Db, address: string, folder = 'INBOX'): Promise<{ keyId: string; guid: string }> {
  const u = await loadUser(db, address);
  const inboxGuid = await inboxGuidOf(u.home);
  const dir = folderPath(path.join(u.home, 'Maildir'), folder);
  const guid = await readMailboxGuid(dir);
  if (!guid) throw new MailsealError('usage', `${address} has no folder ${JSON.stringify(folder)}`);
  let keyId = '';
  await updateDict(dictFile(u.home), async (dict) => {
    const userKey = activePublicKey(dict, 'user', inboxGuid);
    if (!userKey) throw new MailsealError('no-key', 'the user has no active user key');
    const key = await generateKey(userKey.curve);
    putKey(dict, 'folder', guid, { id: key.id, publicString: formatPublicKey(key), privateString: await formatPrivateKey(key, { to: userKey }) }, true);
    keyId = key.id;
    return true;
  });
  audit(db, address, 'rotate-folder', `folder ${folder} (${guid}): new key ${keyId}`);
  return { keyId, guid };
}

/** A new recovery code for the active user key (needs the password); the old code is void. */
export async function renewRecoveryCode(db: Db, address: string, password: string): Promise<string> {
  const u = await loadUser(db, address);
  const { dict } = await readDict(dictFile(u.home));
  const { active } = await openUserKeys(dict, await inboxGuidOf(u.home), password);
  const code = newRecoveryCode();
  const e = await sealEscrow(address, active, code);
  db.transaction(() => {
    const now = findUser(db, address)?.key_id;
    if (now !== e.keyId) throw new MailsealError('locked', 'the user key changed meanwhile; run the command again');
    storeEscrow(db, address, e);
    audit(db, address, 'recovery-code', `new recovery code for user key ${e.keyId}`);
  }).immediate();
  scrubWal(db);
  return code;
}
