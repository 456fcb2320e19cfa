// The SQLite user database (better-sqlite3, WAL): open, migrate, and the few queries the
// delivery path needs. Postfix and Dovecot read the same file.

import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MailsealError } from '../errors.ts';

export type Db = Database.Database;

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

/**
 * Open (and create or migrate) the database. `readonly` opens an existing file without writing.
 * @throws MailsealError if the file is missing (readonly) or newer than this program.
 */
export function openDb(file: string, opts: { readonly?: boolean } = {}): Db {
  if (opts.readonly && !fs.existsSync(file)) {
    throw new MailsealError('usage', `no user database at ${file} (create users with "mailseal user add")`);
  }
  if (!opts.readonly) fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o750 });
  const created = !fs.existsSync(file);
  const db = new Database(file, { readonly: !!opts.readonly, fileMustExist: !!opts.readonly });
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  if (!opts.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    // A replaced recovery escrow or login hash must not linger in free pages.
    db.pragma('secure_delete = ON');
    migrate(db);
    if (created) fs.chmodSync(file, 0o640);
  }
  return db;
}

function migrate(db: Db): void {
  const files = fs.readdirSync(MIGRATIONS).filter((f) => /^\d{3}-.*\.sql$/.test(f)).sort();
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > files.length) {
    throw new MailsealError('usage', `the database has schema version ${current}; this mailseal knows ${files.length}: upgrade mailseal`);
  }
  for (const [i, f] of files.entries()) {
    if (i < current) continue;
    const sql = fs.readFileSync(path.join(MIGRATIONS, f), 'utf8');
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${i + 1}`);
    }).immediate();
  }
}

export interface UserRow {
  address: string;
  domain: string;
  home: string;
  curve: string;
  key_id: string | null;
  enabled: number;
}

/** The user with this (lowercase) address, enabled or not; undefined if unknown. */
const findUserStmt = new WeakMap<Db, Database.Statement>();

/** One user row by address (the statement is prepared once per connection: every RCPT asks). */
export function findUser(db: Db, address: string): UserRow | undefined {
  let stmt = findUserStmt.get(db);
  if (!stmt) {
    stmt = db.prepare('SELECT address, domain, home, curve, key_id, enabled FROM users WHERE address = ?');
    findUserStmt.set(db, stmt);
  }
  return stmt.get(address) as UserRow | undefined;
}

export function audit(db: Db, address: string | null, event: string, detail?: string): void {
  db.prepare('INSERT INTO audit (address, event, detail) VALUES (?, ?, ?)').run(address, event, detail ?? null);
}
