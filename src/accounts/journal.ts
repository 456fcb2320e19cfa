// Crash-safe credential changes across two stores that cannot commit together: the SQLite row
// (login hash, active key id, recovery escrow) and the user's dovecot-attributes dict (the keys).
//
//   1. under the dict's dotlock: settle any earlier change cut off half-way, compute the new
//      dict, and record the change in `pending` (new hash, new escrow, and a marker: the SHA-256
//      of the new private string of the active user key);
//   2. the dict is written whole and renamed over (atomic);
//   3. the change is applied to `users`/`recovery` and the `pending` row removed.
//
// A kill between 1 and 2 leaves the old dict: the next command on that user (or `user repair`)
// finds the marker absent and drops the row. A kill between 2 and 3 leaves the new dict: the
// marker is there and the change is applied. Meanwhile Dovecot's second passdb accepts the
// pending hash, so the user logs in with the old or the new password at every step
// (`mailseal config dovecot`). Every writer of `pending` holds the dict lock, so two changes to
// one user are serialised: the second one sees the first one's result.

import crypto from 'node:crypto';
import path from 'node:path';
import { MailsealError, toMailsealError } from '../errors.ts';
import { readMailboxGuid } from '../maildir/uidlist.ts';
import { readDict, updateDict } from '../store/dictfile.ts';
import { DICT_NAME } from '../store/folderkeys.ts';
import { activeId, keyPaths } from '../store/keyring.ts';
import { audit, type Db } from './db.ts';
import { type Escrow, storeEscrow } from './recovery.ts';

export type ChangeKind = 'passwd' | 'recover' | 'reset' | 'rotate';

/** What a change leaves in the dict: the active user key and its (new) private string. */
export interface DictResult {
  keyId: string;
  privateString: string;
  /** Shown in the audit log (no secrets). */
  detail?: string;
}

export interface Change {
  kind: ChangeKind;
  /** New `{ARGON2ID}` login hash, or undefined to keep the password. */
  password?: string;
  /** New recovery escrow, or undefined to keep it. */
  escrow?: Escrow;
  /**
   * Edit the freshly read dict (under its lock). Throw to abort with nothing changed.
   * `inboxGuid` is the GUID the user keys live under.
   */
  mutate(dict: Map<string, string>, inboxGuid: string): Promise<DictResult>;
  /**
   * Called once the change is recorded, before the dict is written: the moment to show a new
   * recovery code, which is valid from here on if the change completes (also by `user repair`)
   * and never if it is rolled back.
   */
  recorded?(): void;
}

interface PendingRow {
  address: string;
  token: string;
  kind: ChangeKind;
  password: string | null;
  key_id: string;
  marker: string;
  old_key_id: string;
  old_marker: string;
  escrow_kdf: string | null;
  escrow_salt: Buffer | null;
  escrow_nonce: Buffer | null;
  escrow_box: Buffer | null;
  started_at: string;
}

/**
 * Fault injection for the crash tests: `MAILSEAL_FAULT=<point>` kills this process with SIGKILL
 * when it reaches that point (`journal`: change recorded, dict not yet written; `dict`: dict
 * written, change not yet applied in SQLite).
 */
export function faultPoint(point: string): void {
  if (process.env.MAILSEAL_FAULT === point) process.kill(process.pid, 'SIGKILL');
}

const sha256 = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

export function dictFile(home: string): string {
  return path.join(home, 'Maildir', DICT_NAME);
}

/** The GUID of the user's INBOX, under which the user keys live. @throws no-key if unprovisioned */
export async function inboxGuidOf(home: string): Promise<string> {
  const guid = await readMailboxGuid(path.join(home, 'Maildir'));
  if (!guid) throw new MailsealError('no-key', `${path.join(home, 'Maildir')} has no dovecot-uidlist: the user was never provisioned`);
  return guid;
}

/** The interrupted change of a user, if any (for `user show`). */
export function pendingOf(db: Db, address: string): { kind: ChangeKind; started_at: string } | undefined {
  return db.prepare('SELECT kind, started_at FROM pending WHERE address = ?').get(address) as
    { kind: ChangeKind; started_at: string } | undefined;
}

/** Apply a recorded change to `users`/`recovery` and drop it. Idempotent. */
function apply(db: Db, row: PendingRow): void {
  db.transaction(() => {
    const still = db.prepare('SELECT token FROM pending WHERE address = ? AND token = ?').get(row.address, row.token);
    if (!still) return; // applied by another process meanwhile
    if (row.password !== null) db.prepare("UPDATE users SET password = ? WHERE address = ?").run(row.password, row.address);
    db.prepare("UPDATE users SET key_id = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE address = ?")
      .run(row.key_id, row.address);
    if (row.escrow_box !== null) {
      storeEscrow(db, row.address, { keyId: row.key_id, kdf: row.escrow_kdf!, salt: row.escrow_salt!, nonce: row.escrow_nonce!, box: row.escrow_box });
    }
    db.prepare('DELETE FROM pending WHERE address = ? AND token = ?').run(row.address, row.token);
  }).immediate();
  if (row.escrow_box !== null) scrubWal(db);
}

/**
 * After a recovery escrow is replaced: copy the WAL into the database (secure_delete zeroes the
 * old pages there) and truncate it, so the old box does not linger (best effort while readers
 * such as the agent hold old snapshots).
 */
export function scrubWal(db: Db): void {
  db.pragma('wal_checkpoint(TRUNCATE)');
}

/** What the dict says about a recorded change: written, not written, or something else. */
function judge(row: PendingRow, dict: Map<string, string>, inboxGuid: string): 'new' | 'old' | 'neither' {
  const active = activeId(dict, 'user', inboxGuid);
  const fingerprint = (id: string) => {
    const s = dict.get(keyPaths('user', inboxGuid).priv(id));
    return s === undefined ? null : sha256(s);
  };
  if (active === row.key_id && fingerprint(row.key_id) === row.marker) return 'new';
  if (active === row.old_key_id && fingerprint(row.old_key_id) === row.old_marker) return 'old';
  return 'neither';
}

function undecidable(row: PendingRow): MailsealError {
  return Object.assign(
    new MailsealError('locked', `an interrupted ${row.kind} of ${row.address} (${row.started_at}) cannot be settled: ` +
      "the user's dovecot-attributes holds neither the key string it wrote nor the one it replaced"),
    { hint: `look at "mailseal key list ${row.address}"; if the dict is right as it is, "mailseal user repair ${row.address} --forget" drops the record` },
  );
}

/**
 * Finish or undo an earlier change of `address` that was cut off, judging by the dict (which
 * the caller has locked). @returns what happened, or null if nothing was pending.
 * @throws MailsealError locked if the dict holds neither the old nor the new key string.
 */
function settleWith(db: Db, address: string, dict: Map<string, string>, inboxGuid: string): 'applied' | 'undone' | null {
  const row = db.prepare('SELECT * FROM pending WHERE address = ?').get(address) as PendingRow | undefined;
  if (!row) return null;
  const state = judge(row, dict, inboxGuid);
  if (state === 'new') {
    apply(db, row);
    audit(db, address, `${row.kind}-finished`, `interrupted ${row.kind} of ${row.started_at} completed; user key ${row.key_id}`);
    return 'applied';
  }
  if (state === 'neither') throw undecidable(row);
  db.prepare('DELETE FROM pending WHERE address = ? AND token = ?').run(address, row.token);
  audit(db, address, `${row.kind}-undone`, `interrupted ${row.kind} of ${row.started_at} rolled back before the dict was written`);
  return 'undone';
}

/** Drop the record of an interrupted change without applying it (the dict is taken as right). */
export function forgetPending(db: Db, address: string): boolean {
  const r = db.prepare('DELETE FROM pending WHERE address = ?').run(address);
  if (r.changes) audit(db, address, 'pending-forgotten', 'interrupted change dropped by the operator; the dict is kept as it is');
  return r.changes > 0;
}

/**
 * Settle an interrupted change of this user, taking the dict lock to judge it.
 * @returns what happened, or null if nothing was pending.
 */
export async function settle(db: Db, address: string, home: string): Promise<'applied' | 'undone' | null> {
  if (!db.prepare('SELECT 1 FROM pending WHERE address = ?').get(address)) return null;
  const inboxGuid = await inboxGuidOf(home);
  let result: 'applied' | 'undone' | null = null;
  await updateDict(dictFile(home), (dict) => {
    result = settleWith(db, address, dict, inboxGuid);
    return false;
  });
  return result;
}

/**
 * Run one credential change crash-safely (see the top of this file).
 * @throws whatever `mutate` throws (nothing changed), MailsealError locked.
 */
export async function runChange(db: Db, address: string, home: string, change: Change): Promise<DictResult> {
  const inboxGuid = await inboxGuidOf(home);
  const token = crypto.randomBytes(12).toString('hex');
  let result: DictResult | null = null;
  let recorded = false;
  try {
    await updateDict(dictFile(home), async (dict) => {
      settleWith(db, address, dict, inboxGuid);
      const oldId = activeId(dict, 'user', inboxGuid) ?? '';
      const oldString = dict.get(keyPaths('user', inboxGuid).priv(oldId)) ?? '';
      result = await change.mutate(dict, inboxGuid);
      const e = change.escrow;
      db.prepare(`INSERT INTO pending (address, token, kind, password, key_id, marker, old_key_id, old_marker,
                    escrow_kdf, escrow_salt, escrow_nonce, escrow_box)
                  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(address, token, change.kind, change.password ?? null, result.keyId, sha256(result.privateString),
          oldId, sha256(oldString), e?.kdf ?? null, e?.salt ?? null, e?.nonce ?? null, e?.box ?? null);
      recorded = true;
      change.recorded?.();
      faultPoint('journal');
      return true;
    });
  } catch (err) {
    // The write may or may not have reached the dict (ENOSPC before the rename, EIO after it):
    // let the dict decide, as a later run would.
    if (recorded) await settle(db, address, home).catch(() => undefined);
    throw toMailsealError(err);
  }
  faultPoint('dict');
  const row = db.prepare('SELECT * FROM pending WHERE address = ? AND token = ?').get(address, token) as PendingRow | undefined;
  if (row) {
    // Apply only what the dict really holds (a lock can be broken as stale under a slow writer).
    const { dict } = await readDict(dictFile(home));
    const settledByOther = () => !db.prepare('SELECT 1 FROM pending WHERE address = ? AND token = ?').get(address, token);
    if (judge(row, dict, inboxGuid) !== 'new' && !settledByOther()) {
      throw Object.assign(new MailsealError('locked', `the ${change.kind} of ${address} did not reach the dict; nothing was applied`), {
        hint: `"mailseal user repair ${address}" settles it`,
      });
    }
    apply(db, row);
  }
  const r = result as DictResult | null;
  if (!r) throw new MailsealError('internal', 'credential change: no result');
  audit(db, address, change.kind, r.detail ?? `user key ${r.keyId}`);
  return r;
}
