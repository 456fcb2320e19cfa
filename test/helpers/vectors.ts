// The Dovecot-made test vectors in shared/fixtures (manifest.json drives the tests) and the
// keys that open them, loaded with our own key-string code.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPrivateKey } from '../../src/mailcrypt/keystring.ts';
import type { EcPrivateKey } from '../../src/mailcrypt/keys.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const VECTORS = path.resolve(REPO, '..', 'shared', 'fixtures', 'dovecot-2.3.19');

export interface VectorMessage {
  uid: number; maildir_file: string; plain_file: string; encrypted_bytes: number;
  S: number; W: number; header_bytes: number; stanza_key_id: string; plain_sha256: string;
}
export interface VectorUser {
  dir: string; login: string; password: string; curve: string; inbox_guid: string;
  user_key_id: string; folder_key_ids: string[]; active_folder_key_id: string; messages: VectorMessage[];
}

export const USER_PREFIX = 'vendor/vendor.dovecot/pvt/server/vendor/vendor.dovecot/pvt/crypt/';
export const BOX_PREFIX = 'vendor/vendor.dovecot/pvt/crypt/';

export function vectorUsers(): VectorUser[] {
  const man = JSON.parse(fs.readFileSync(path.join(VECTORS, 'manifest.json'), 'utf8'));
  return Object.entries<Omit<VectorUser, 'dir'>>(man.users).map(([dir, u]) => ({ dir, ...u }));
}

/** The fixture dict as key → value (alternating lines). */
export function vectorDict(u: VectorUser): Map<string, string> {
  const lines = fs.readFileSync(path.join(VECTORS, u.dir, 'Maildir', 'dovecot-attributes'), 'utf8').split('\n');
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) m.set(lines[i]!, lines[i + 1]!);
  return m;
}

/** The user key (opened with the password) and every INBOX folder key, by id. */
export async function vectorKeys(u: VectorUser): Promise<{ user: EcPrivateKey; folders: Map<string, EcPrivateKey> }> {
  const d = vectorDict(u);
  const g = u.inbox_guid;
  const user = await openPrivateKey(d.get(`priv/${g}/${USER_PREFIX}privkeys/${u.user_key_id}`)!, { password: u.password });
  const folders = new Map<string, EcPrivateKey>();
  for (const id of u.folder_key_ids) {
    folders.set(id, await openPrivateKey(d.get(`priv/${g}/${BOX_PREFIX}privkeys/${id}`)!, { key: user }));
  }
  return { user, folders };
}

export function vectorPath(rel: string): string {
  return path.join(VECTORS, rel);
}
