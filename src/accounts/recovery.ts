// Recovery codes and the escrow copy of the user private key (design.md "Key hierarchy").
//
// A recovery code is 160 random bits written as 32 Crockford base32 characters in groups of
// four (`7K3M-…`): typable, case-insensitive, O/I/L read as 0/1/1. It is shown once and never
// stored. What is stored (SQLite `recovery`) is the user private key as an enctype-0 key string,
// sealed with XSalsa20-Poly1305 (libsodium secretbox) under Argon2id(code, salt). The escrow
// uses libsodium's MODERATE limits (3 passes, 256 MiB, ≈2.4 s in WASM here): it is opened
// once in a long while, so it can afford ten times the work of a login hash.
//
// Argon2id is synchronous WASM: CLI only, never on the LMTP path.

import crypto from 'node:crypto';
import sodium from 'libsodium-wrappers-sumo';
import { MailsealError } from '../errors.ts';
import type { Db } from './db.ts';
import type { EcPrivateKey } from '../mailcrypt/keys.ts';
import { formatPrivateKey, openPrivateKey } from '../mailcrypt/keystring.ts';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const CODE_CHARS = 32; // 32 × 5 bits = 160 bits
/** Refuse stored parameters beyond these (a tampered DB must not make us allocate 40 GiB). */
const MAX_OPS = 10;
const MAX_MEM = 1024 * 1024 * 1024;

export interface Escrow {
  keyId: string;
  kdf: string;
  salt: Buffer;
  nonce: Buffer;
  box: Buffer;
}

let ready: Promise<void> | null = null;
async function lib(): Promise<typeof sodium> {
  ready ??= sodium.ready;
  await ready;
  return sodium;
}

/** A fresh recovery code, `XXXX-XXXX-…` (8 groups of 4). */
export function newRecoveryCode(): string {
  const bytes = crypto.randomBytes(CODE_CHARS * 5 / 8);
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return out.match(/.{4}/g)!.join('-');
}

/**
 * The canonical form of a typed code: upper case, no separators, O→0, I/L→1.
 * @throws MailsealError bad-password if it cannot be a code (wrong length or characters).
 */
export function normalizeRecoveryCode(typed: string): string {
  const s = typed.toUpperCase().replace(/[\s-]/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');
  if (s.length !== CODE_CHARS || [...s].some((c) => !ALPHABET.includes(c))) {
    throw new MailsealError('bad-password', `not a recovery code: expected ${CODE_CHARS} characters from 0-9 and A-Z (groups of 4)`);
  }
  return s;
}

function parseKdf(kdf: string): { ops: number; mem: number } {
  const m = /^argon2id13:ops=(\d{1,2}):mem=(\d{1,10})$/.exec(kdf);
  const ops = Number(m?.[1]);
  const mem = Number(m?.[2]);
  if (!m || ops < 1 || ops > MAX_OPS || mem < 8192 || mem > MAX_MEM) {
    throw new MailsealError('bad-format', `recovery escrow: unsupported key derivation ${JSON.stringify(kdf.slice(0, 60))}`);
  }
  return { ops, mem };
}

async function deriveKey(s: typeof sodium, code: string, salt: Buffer, kdf: string): Promise<Uint8Array> {
  const { ops, mem } = parseKdf(kdf);
  return s.crypto_pwhash(s.crypto_secretbox_KEYBYTES, normalizeRecoveryCode(code), salt, ops, mem, s.crypto_pwhash_ALG_ARGON2ID13);
}

/** What the box holds: the address it belongs to, then the key string, so rows cannot be swapped. */
function payload(address: string, keyString: string): Buffer {
  return Buffer.from(`${address}\n${keyString}`, 'utf8');
}

/** Seal `key` (the user private key of `address`) under `code`. */
export async function sealEscrow(address: string, key: EcPrivateKey, code: string): Promise<Escrow> {
  const s = await lib();
  const kdf = `argon2id13:ops=${s.crypto_pwhash_OPSLIMIT_MODERATE}:mem=${s.crypto_pwhash_MEMLIMIT_MODERATE}`;
  const salt = Buffer.from(s.randombytes_buf(s.crypto_pwhash_SALTBYTES));
  const nonce = Buffer.from(s.randombytes_buf(s.crypto_secretbox_NONCEBYTES));
  const k = await deriveKey(s, code, salt, kdf);
  const plain = payload(address, await formatPrivateKey(key, { none: true }));
  try {
    const box = Buffer.from(s.crypto_secretbox_easy(plain, nonce, k));
    return { keyId: key.id, kdf, salt, nonce, box };
  } finally {
    s.memzero(k);
    plain.fill(0);
  }
}

/**
 * The user private key in the escrow, opened with `code`.
 * @throws MailsealError bad-password (wrong code), bad-format (damaged escrow).
 */
export async function openEscrow(address: string, escrow: Escrow, code: string): Promise<EcPrivateKey> {
  const s = await lib();
  const k = await deriveKey(s, code, escrow.salt, escrow.kdf);
  let plain: Uint8Array;
  try {
    plain = s.crypto_secretbox_open_easy(escrow.box, escrow.nonce, k);
  } catch {
    throw new MailsealError('bad-password', 'wrong recovery code');
  } finally {
    s.memzero(k);
  }
  const text = Buffer.from(plain).toString('utf8');
  s.memzero(plain);
  const nl = text.indexOf('\n');
  if (nl < 0 || text.slice(0, nl) !== address) throw new MailsealError('bad-format', 'recovery escrow: belongs to another user');
  const key = await openPrivateKey(text.slice(nl + 1), { none: true });
  if (key.id !== escrow.keyId) throw new MailsealError('bad-format', 'recovery escrow: holds another key than recorded');
  return key;
}

/** Store (or replace) the escrow row of `address`; the caller holds the transaction. */
export function storeEscrow(db: Db, address: string, e: Escrow): void {
  db.prepare('INSERT OR REPLACE INTO recovery (address, key_id, kdf, salt, nonce, box) VALUES (?, ?, ?, ?, ?, ?)')
    .run(address, e.keyId, e.kdf, e.salt, e.nonce, e.box);
}

/** The escrow row of `address`. @throws MailsealError no-key if there is none */
export function readEscrow(db: Db, address: string): Escrow {
  const r = db.prepare('SELECT key_id, kdf, salt, nonce, box FROM recovery WHERE address = ?').get(address) as
    { key_id: string; kdf: string; salt: Buffer; nonce: Buffer; box: Buffer } | undefined;
  if (!r) throw new MailsealError('no-key', `${address} has no recovery escrow`);
  return { keyId: r.key_id, kdf: r.kdf, salt: r.salt, nonce: r.nonce, box: r.box };
}
