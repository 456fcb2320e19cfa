// What the accounts tests look at: the login hash in SQLite (verified as Dovecot verifies it),
// the pending journal, the escrow row, and mail delivered through the real agent with a token
// per message, read back with our reader.

import Database from 'better-sqlite3';
import crypto from 'node:crypto';
import sodium from 'libsodium-wrappers-sumo';
import { lmtpSend } from './lmtp.ts';
import { homeOf, readMailbox } from './mailbox.ts';
import type { Sandbox } from './agent.ts';

export interface Row {
  password: string;
  key_id: string;
  enabled: number;
  pending: string | null;
  pendingKind: string | null;
  escrowKey: string | null;
}

/** The user's row, its pending change and escrow key id, read fresh. */
export function row(sb: Sandbox, address: string): Row {
  const db = new Database(sb.db, { readonly: true });
  try {
    return db.prepare(`SELECT u.password, u.key_id, u.enabled, p.password AS pending, p.kind AS pendingKind, r.key_id AS escrowKey
      FROM users u LEFT JOIN pending p ON p.address = u.address LEFT JOIN recovery r ON r.address = u.address
      WHERE u.address = ?`).get(address) as Row;
  } finally {
    db.close();
  }
}

/** Does `password` match a `{ARGON2ID}` hash (as Dovecot's passdb checks it)? */
export async function verifies(hash: string | null, password: string): Promise<boolean> {
  if (!hash) return false;
  await sodium.ready;
  return sodium.crypto_pwhash_str_verify(hash.replace(/^\{ARGON2ID\}/, ''), password);
}

/** Deliver `n` messages to `to` through the agent; returns their tokens. */
export async function deliver(port: number, to: string, n: number): Promise<string[]> {
  const tokens: string[] = [];
  for (let i = 0; i < n; i++) {
    const tok = `tok-${crypto.randomBytes(8).toString('hex')}`;
    const r = await lmtpSend(port, { from: 'sender@example.net', to: [to], body: Buffer.from(`Subject: ${tok}\r\n\r\nbody ${tok}\r\n`) });
    if (r.data[0]?.code !== 250) throw new Error(`delivery to ${to} failed: ${JSON.stringify(r)}`);
    tokens.push(tok);
  }
  return tokens;
}

/** The tokens of every message in the INBOX, decrypted with `password` (throws if any fails). */
export async function tokensRead(sb: Sandbox, address: string, password: string): Promise<string[]> {
  const msgs = await readMailbox(homeOf(sb.maildir, address), password);
  return msgs.map((m) => /tok-[0-9a-f]{16}/.exec(m.plain.toString())![0]).sort();
}

/** The recovery code printed by a command. */
export function codeIn(stdout: Buffer | string): string {
  const m = /recovery code \(shown once[^\n]*\n {2}(\S+)\n/.exec(stdout.toString());
  if (!m) throw new Error(`no recovery code in ${stdout.toString()}`);
  return m[1]!;
}
