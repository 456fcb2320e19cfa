// Login password hashes: `{ARGON2ID}` + libsodium crypto_pwhash_str, which Dovecot's passdb
// verifies (spec §8). "Interactive" limits (64 MiB, 2 passes): every IMAP login pays them, and
// they fit Dovecot's default auth-worker vsz_limit.

import sodium from 'libsodium-wrappers-sumo';

export const SCHEME = '{ARGON2ID}';

let ready: Promise<void> | null = null;
async function lib(): Promise<typeof sodium> {
  ready ??= sodium.ready;
  await ready;
  return sodium;
}

/** `{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$…` for this password. Synchronous WASM: CLI only. */
export async function hashPassword(password: string): Promise<string> {
  const s = await lib();
  return SCHEME + s.crypto_pwhash_str(password, s.crypto_pwhash_OPSLIMIT_INTERACTIVE, s.crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

/**
 * A clear reason why a password is too weak, or null. Length is what matters for a password
 * that also guards the key: at least 10 characters, not all one class of trivial pattern.
 */
export function weakPassword(password: string, address = ''): string | null {
  if ([...password].length < 10) return 'the password must be at least 10 characters long';
  if (/^(.)\1*$/u.test(password)) return 'the password must not be one repeated character';
  if (/^\d+$/.test(password)) return 'the password must not be only digits';
  const local = address.split('@')[0] ?? '';
  if (local.length >= 3 && password.toLowerCase().includes(local.toLowerCase())) return 'the password must not contain the user name';
  if (new Set(password).size < 5) return 'the password must use at least 5 different characters';
  return null;
}
