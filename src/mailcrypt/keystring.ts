// dcrypt "dovecot format" v2 key strings (spec §3): public keys, and private keys with
// enctype 0 (none), 1 (ECDH to another key) and 2 (password). Fields are `:`-separated;
// every id is re-checked on load, as Dovecot does ("Key id mismatch after load").

import crypto from 'node:crypto';
import { badFormat, MailsealError } from '../errors.ts';
import { type Curve, CURVES } from './curves.ts';
import { pbkdf2 } from './kdf.ts';
import {
  compressedSpki, type EcPrivateKey, type EcPublicKey, ecdh, generateKey,
  privateKeyFromScalar, publicKeyFromAnyPoint, publicKeyFromPoint, scalarOf,
} from './keys.ts';

/** Bounds on values an attacker could put into a dict (PBKDF2 work, salt size). */
const MAX_ROUNDS = 100_000;
const MAX_KEYSTRING = 4096;
const SALT_BYTES = 8;
const ROUNDS = 2048;
const HEX = /^(?:[0-9a-f]{2})*$/;
const ID = /^[0-9a-f]{64}$/;

export type ParsedPrivateKey =
  | { enctype: 0; curve: Curve; mpi: Buffer; id: string }
  | { enctype: 2; curve: Curve; salt: Buffer; rounds: number; data: Buffer; id: string }
  | {
      enctype: 1; curve: Curve; salt: Buffer; rounds: number; data: Buffer;
      /** Ephemeral public point (uncompressed) of the ECDH wrap. */
      ephemeral: Buffer;
      /** Id of the public key this private key is encrypted to (a user key). */
      encryptedTo: string;
      id: string;
    };

function hexField(s: string, what: string): Buffer {
  if (!HEX.test(s) || s.length === 0) throw badFormat(`key string: ${what} is not hex`);
  return Buffer.from(s, 'hex');
}

function idField(s: string): string {
  if (!ID.test(s)) throw badFormat('key string: key id is not 64 lowercase hex digits');
  return s;
}

function fields(s: string): string[] {
  if (typeof s !== 'string' || s.length > MAX_KEYSTRING) throw badFormat('key string: too long');
  if (/[\t\r\n]/.test(s)) throw badFormat('key string: not a v2 (colon-separated) key');
  const f = s.split(':');
  if (f[0] !== '2') throw badFormat(`key string: unsupported version ${JSON.stringify((f[0] ?? '').slice(0, 8))}`);
  return f;
}

/**
 * Parse `2:<hex SPKI>:<id>` and check the id.
 * @throws MailsealError bad-format
 */
export function parsePublicKey(s: string): EcPublicKey {
  const f = fields(s);
  if (f.length !== 3) throw badFormat(`public key string: ${f.length} fields, expected 3`);
  const der = hexField(f[1]!, 'SPKI');
  const id = idField(f[2]!);
  let point: Buffer;
  let curve: Curve | undefined;
  try {
    const key = crypto.createPublicKey({ key: der, format: 'der', type: 'spki' });
    curve = CURVES.find((c) => c.name === key.asymmetricKeyDetails?.namedCurve);
    const jwk = key.export({ format: 'jwk' });
    point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')]);
  } catch (cause) {
    throw badFormat('public key string: invalid SPKI', cause);
  }
  if (!curve) throw badFormat('public key string: not an EC key on a supported curve');
  const key = publicKeyFromPoint(curve, point);
  if (key.id !== id) throw badFormat(`public key string: key id mismatch (${id.slice(0, 12)}… stated, ${key.id.slice(0, 12)}… computed)`);
  return key;
}

/** `2:<hex compressed SPKI>:<id>`. */
export function formatPublicKey(key: EcPublicKey): string {
  return `2:${compressedSpki(key.curve, key.point).toString('hex')}:${key.id}`;
}

/**
 * Parse a private key string's fields without decrypting it.
 * @throws MailsealError bad-format
 */
export function parsePrivateKey(s: string): ParsedPrivateKey {
  const f = fields(s);
  const curve = curveOid(f[1] ?? '');
  const enctype = f[2];
  if (enctype === '0') {
    if (f.length !== 5) throw badFormat(`private key string: ${f.length} fields, expected 5 for enctype 0`);
    return { enctype: 0, curve, mpi: hexField(f[3]!, 'key'), id: idField(f[4]!) };
  }
  if (enctype !== '1' && enctype !== '2') throw badFormat(`private key string: unknown enctype ${JSON.stringify((enctype ?? '').slice(0, 8))}`);
  const want = enctype === '2' ? 9 : 11;
  if (f.length !== want) throw badFormat(`private key string: ${f.length} fields, expected ${want} for enctype ${enctype}`);
  if (f[3] !== 'aes-256-ctr') throw badFormat(`private key string: unsupported cipher ${JSON.stringify(f[3]!.slice(0, 20))}`);
  if (f[5] !== 'sha256') throw badFormat(`private key string: unsupported hash ${JSON.stringify(f[5]!.slice(0, 20))}`);
  const salt = hexField(f[4]!, 'salt');
  if (salt.length > 64) throw badFormat('private key string: salt too long');
  if (!/^[1-9][0-9]{0,8}$/.test(f[6]!)) throw badFormat('private key string: bad rounds');
  const rounds = Number(f[6]);
  if (rounds > MAX_ROUNDS) throw badFormat(`private key string: ${rounds} rounds is too many`);
  const data = hexField(f[7]!, 'encrypted key');
  if (data.length > 4 + curve.size + 1) throw badFormat('private key string: encrypted key too long');
  if (enctype === '2') return { enctype: 2, curve, salt, rounds, data, id: idField(f[8]!) };
  return {
    enctype: 1, curve, salt, rounds, data,
    ephemeral: hexField(f[8]!, 'ephemeral key'),
    encryptedTo: idField(f[9]!),
    id: idField(f[10]!),
  };
}

function curveOid(oid: string): Curve {
  const c = CURVES.find((x) => x.oid === oid);
  if (!c) throw badFormat(`private key string: unsupported curve OID ${JSON.stringify(oid.slice(0, 40))}`);
  return c;
}

/** OpenSSL BN_bn2mpi of a big-endian magnitude (spec §3.2). */
export function toMpi(scalar: Buffer): Buffer {
  let i = 0;
  while (i < scalar.length && scalar[i] === 0) i++;
  const mag = scalar.subarray(i);
  const pad = mag.length > 0 && (mag[0]! & 0x80) !== 0 ? 1 : 0;
  const out = Buffer.alloc(4 + pad + mag.length);
  out.writeUInt32BE(pad + mag.length, 0);
  mag.copy(out, 4 + pad);
  return out;
}

/** The magnitude inside an MPI; undefined if it is not a well-formed non-negative MPI. */
export function fromMpi(mpi: Buffer, maxBytes: number): Buffer | undefined {
  if (mpi.length < 4) return undefined;
  const len = mpi.readUInt32BE(0);
  if (len !== mpi.length - 4 || len > maxBytes + 1) return undefined;
  const mag = mpi.subarray(4);
  if (mag.length > 0 && (mag[0]! & 0x80) !== 0) return undefined; // negative
  return mag;
}

async function ctr(password: Buffer, salt: Buffer, rounds: number, data: Buffer): Promise<Buffer> {
  const t = await pbkdf2(password, salt, rounds, 48);
  try {
    const c = crypto.createCipheriv('aes-256-ctr', t.subarray(0, 32), t.subarray(32, 48));
    return Buffer.concat([c.update(data), c.final()]);
  } finally {
    t.fill(0);
  }
}

function keyFromMpi(p: ParsedPrivateKey, mpi: Buffer): EcPrivateKey | undefined {
  const mag = fromMpi(mpi, p.curve.size);
  if (!mag || mag.length === 0) return undefined;
  try {
    const key = privateKeyFromScalar(p.curve, mag);
    return key.id === p.id ? key : undefined;
  } catch {
    return undefined;
  }
}

export type Unlock = { password: string | Buffer } | { key: EcPrivateKey } | { none: true };

/**
 * Decrypt a private key string and check that it yields the stated key id.
 * @throws MailsealError bad-password (enctype 2, wrong password), no-key (enctype 1 with a key
 *   that is not the one it was encrypted to), bad-format (damaged string).
 */
export async function openPrivateKey(s: string | ParsedPrivateKey, unlock: Unlock): Promise<EcPrivateKey> {
  const p = typeof s === 'string' ? parsePrivateKey(s) : s;
  if (p.enctype === 0) {
    const key = keyFromMpi(p, p.mpi);
    if (!key) throw badFormat(`private key ${p.id.slice(0, 12)}…: key does not match its id`);
    return key;
  }
  let secret: Buffer;
  let wrong: MailsealError;
  if (p.enctype === 2) {
    if (!('password' in unlock)) throw new MailsealError('bad-password', `key ${p.id.slice(0, 12)}… needs a password`);
    secret = Buffer.from(unlock.password);
    wrong = new MailsealError('bad-password', 'wrong password');
  } else {
    if (!('key' in unlock) || unlock.key.id !== p.encryptedTo) {
      throw new MailsealError('no-key', `key ${p.id.slice(0, 12)}… is encrypted to key ${p.encryptedTo.slice(0, 12)}…, which is not available`);
    }
    secret = ecdh(unlock.key, publicKeyFromAnyPoint(p.ephemeral));
    wrong = badFormat(`private key ${p.id.slice(0, 12)}…: does not decrypt to its id (damaged)`);
  }
  // CTR has no integrity: a wrong secret shows only as a key whose id does not match.
  const mpi = await ctr(secret, p.salt, p.rounds, p.data).finally(() => secret.fill(0));
  const key = keyFromMpi(p, mpi);
  mpi.fill(0);
  if (!key) throw wrong;
  return key;
}

export type Lock = { password: string | Buffer } | { to: EcPublicKey } | { none: true };

/**
 * Write a private key string: enctype 2 (`password`), 1 (`to` another public key) or 0 (`none`).
 * The key is encrypted with a fresh 8-byte salt, PBKDF2-SHA256 2048, AES-256-CTR, as Dovecot does.
 */
export async function formatPrivateKey(key: EcPrivateKey, lock: Lock): Promise<string> {
  const scalar = scalarOf(key);
  const mpi = toMpi(scalar);
  scalar.fill(0);
  const oid = key.curve.oid;
  try {
    if ('none' in lock) return `2:${oid}:0:${mpi.toString('hex')}:${key.id}`;
    const salt = crypto.randomBytes(SALT_BYTES);
    if ('password' in lock) {
      const pw = Buffer.from(lock.password);
      const data = await ctr(pw, salt, ROUNDS, mpi).finally(() => pw.fill(0));
      return `2:${oid}:2:aes-256-ctr:${salt.toString('hex')}:sha256:${ROUNDS}:${data.toString('hex')}:${key.id}`;
    }
    const eph = await generateKey(lock.to.curve);
    const secret = ecdh(eph, lock.to);
    const data = await ctr(secret, salt, ROUNDS, mpi).finally(() => secret.fill(0));
    return `2:${oid}:1:aes-256-ctr:${salt.toString('hex')}:sha256:${ROUNDS}:${data.toString('hex')}:` +
      `${eph.point.toString('hex')}:${lock.to.id}:${key.id}`;
  } finally {
    mpi.fill(0);
  }
}

