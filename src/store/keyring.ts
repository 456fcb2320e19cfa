// Typed access to the mail_crypt keys inside a dovecot-attributes dict (spec §4.1, §4.2):
// the user key under the INBOX GUID's `pvt/server` prefix, folder keys under each mailbox GUID.
// Pure functions over the parsed Map; the file I/O and locking live in dictfile.ts.

import { badFormat } from '../errors.ts';
import type { EcPublicKey } from '../mailcrypt/keys.ts';
import { parsePublicKey } from '../mailcrypt/keystring.ts';

export const BOX_CRYPT_PREFIX = 'vendor/vendor.dovecot/pvt/crypt/';
export const USER_CRYPT_PREFIX = 'vendor/vendor.dovecot/pvt/server/' + BOX_CRYPT_PREFIX;

export type Scope = 'user' | 'folder';

const GUID = /^[0-9a-f]{32}$/;
const ID = /^[0-9a-f]{64}$/;

function prefix(scope: Scope): string {
  return scope === 'user' ? USER_CRYPT_PREFIX : BOX_CRYPT_PREFIX;
}

/** The dict keys of one scope: `user` keys live under the INBOX GUID, `folder` keys under theirs. */
export function keyPaths(scope: Scope, guid: string) {
  if (!GUID.test(guid)) throw badFormat(`invalid mailbox GUID ${JSON.stringify(guid.slice(0, 40))}`);
  const p = prefix(scope);
  return {
    active: `shared/${guid}/${p}active`,
    pub: (id: string) => `shared/${guid}/${p}pubkeys/${id}`,
    priv: (id: string) => `priv/${guid}/${p}privkeys/${id}`,
    pubPrefix: `shared/${guid}/${p}pubkeys/`,
    privPrefix: `priv/${guid}/${p}privkeys/`,
  };
}

/** The id marked active, or null if none. @throws MailsealError bad-format if it is not an id. */
export function activeId(dict: Map<string, string>, scope: Scope, guid: string): string | null {
  const v = dict.get(keyPaths(scope, guid).active);
  if (v === undefined || v === '') return null;
  if (!ID.test(v)) throw badFormat(`${scope} key: active id is not a key id`);
  return v;
}

/**
 * The public key with this id; null if absent.
 * @throws MailsealError bad-format if the stored string is damaged or names another id
 *   (Dovecot: "Incorrect key hash … stored").
 */
export function publicKey(dict: Map<string, string>, scope: Scope, guid: string, id: string): EcPublicKey | null {
  const s = dict.get(keyPaths(scope, guid).pub(id));
  if (s === undefined) return null;
  const key = parsePublicKey(s);
  if (key.id !== id) throw badFormat(`${scope} key ${id.slice(0, 12)}…: stored under another key's id`);
  return key;
}

/** The active public key of a scope, or null if there is none (→ 451, never plaintext). */
export function activePublicKey(dict: Map<string, string>, scope: Scope, guid: string): EcPublicKey | null {
  const id = activeId(dict, scope, guid);
  if (!id) return null;
  const key = publicKey(dict, scope, guid, id);
  if (!key) throw badFormat(`${scope} key ${id.slice(0, 12)}… is active but its public key is missing`);
  return key;
}

export interface KeyEntry {
  scope: Scope;
  guid: string;
  id: string;
  active: boolean;
  hasPublic: boolean;
  hasPrivate: boolean;
}

/** Every mail_crypt key in the dict, user keys first. */
export function listKeys(dict: Map<string, string>): KeyEntry[] {
  const found = new Map<string, KeyEntry>();
  const re = /^(priv|shared)\/([0-9a-f]{32})\/(vendor\/vendor\.dovecot\/pvt\/(?:server\/vendor\/vendor\.dovecot\/pvt\/)?crypt\/)(pubkeys|privkeys)\/([0-9a-f]{64})$/;
  for (const k of dict.keys()) {
    const m = re.exec(k);
    if (!m) continue;
    const [, , guid, p, kind, id] = m as unknown as [string, string, string, string, string, string];
    const scope: Scope = p === USER_CRYPT_PREFIX ? 'user' : 'folder';
    const key = `${scope}/${guid}/${id}`;
    const e = found.get(key) ?? { scope, guid, id, active: activeId(dict, scope, guid) === id, hasPublic: false, hasPrivate: false };
    if (kind === 'pubkeys') e.hasPublic = true;
    else e.hasPrivate = true;
    found.set(key, e);
  }
  return [...found.values()].sort((a, b) => (a.scope === b.scope ? a.guid.localeCompare(b.guid) : a.scope === 'user' ? -1 : 1));
}

/** Add a key pair's strings to the dict; `active` marks it as the one new mail goes to. */
export function putKey(
  dict: Map<string, string>, scope: Scope, guid: string,
  key: { id: string; publicString: string; privateString: string }, active: boolean,
): void {
  const p = keyPaths(scope, guid);
  dict.set(p.pub(key.id), key.publicString);
  dict.set(p.priv(key.id), key.privateString);
  if (active) dict.set(p.active, key.id);
}
