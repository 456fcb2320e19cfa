// Opening keys from a dict for reading mail: a KeyLookup that finds a folder private key by id,
// opens the user key it is encrypted to (asking for the password once, only if needed), and
// caches what it opened. This is what Dovecot does at FETCH time (spec §2.6), for our CLI.

import { MailsealError } from '../errors.ts';
import type { EcPrivateKey } from '../mailcrypt/keys.ts';
import { openPrivateKey, parsePrivateKey } from '../mailcrypt/keystring.ts';
import type { KeyLookup } from '../mailcrypt/open.ts';

/** Where the user's password (or another secret that opens the user key) comes from. */
export type PasswordSource = () => Promise<string>;

function findPrivate(dict: Map<string, string>, scopeInfix: string, id: string): string | undefined {
  const suffix = `/${scopeInfix}privkeys/${id}`;
  for (const [k, v] of dict) if (k.startsWith('priv/') && k.endsWith(suffix)) return v;
  return undefined;
}

/**
 * A KeyLookup over every folder key in the dict. Folder keys are enctype 1 to a user key;
 * the user key is enctype 2 and needs `password()`, called at most once.
 */
export function dictKeyLookup(dict: Map<string, string>, password: PasswordSource): KeyLookup {
  const cache = new Map<string, Promise<EcPrivateKey | null>>();
  let pw: Promise<string> | null = null;

  const open = (id: string, depth: number): Promise<EcPrivateKey | null> => {
    let p = cache.get(id);
    if (!p) {
      p = (async () => {
        const s = findPrivate(dict, 'vendor/vendor.dovecot/pvt/crypt/', id) ??
          findPrivate(dict, 'vendor/vendor.dovecot/pvt/server/vendor/vendor.dovecot/pvt/crypt/', id);
        if (s === undefined) return null;
        const parsed = parsePrivateKey(s);
        if (parsed.enctype === 0) return openPrivateKey(parsed, { none: true });
        if (parsed.enctype === 2) {
          pw ??= password();
          return openPrivateKey(parsed, { password: await pw });
        }
        if (depth > 2) throw new MailsealError('no-key', `key ${id.slice(0, 12)}…: key chain too deep`);
        const parent = await open(parsed.encryptedTo, depth + 1);
        if (!parent) throw new MailsealError('no-key', `key ${id.slice(0, 12)}… is encrypted to key ${parsed.encryptedTo.slice(0, 12)}…, which is not in the dict`);
        return openPrivateKey(parsed, { key: parent });
      })();
      cache.set(id, p);
      p.catch(() => cache.delete(id));
    }
    return p;
  };
  return (id) => open(id, 0);
}
