// mail_crypt v2 file header bytes (spec §2.2, §2.3): pure encode/decode, no crypto, no I/O.

import { badFormat } from '../errors.ts';

/** `CRYPTED\x03\x07` — files that do not start with it are plaintext (spec §2.1). */
export const MAGIC = Buffer.from('435259505445440307', 'hex');
export const VERSION = 2;
export const FLAG_AEAD = 0x2;
export const TAG_LENGTH = 16;
export const KEY_TYPE_EC = 2;
export const KD_LENGTH = 60; // key(32) ‖ iv(12) ‖ aad(16)
const CHECK_HASH_LENGTH = 32;
/** DER OID TLVs: id-aes256-GCM (2.16.840.1.101.3.4.1.46) and sha256 (2.16.840.1.101.3.4.2.1). */
export const OID_AES256_GCM = Buffer.from('060960864801650304012e', 'hex');
export const OID_SHA256 = Buffer.from('0609608648016503040201', 'hex');
/** Upper bounds on what a hostile file can make us do. */
export const MAX_HEADER = 64 * 1024;
const MAX_STANZAS = 16;
const MAX_ROUNDS = 100_000;
/** The smallest header worth reading: fixed fields plus the two OIDs. */
export const MIN_HEADER = 9 + 1 + 4 + 4 + 2 + 2 + 4 + 4;

export interface Stanza {
  /** Hex v2 id of the key the message key is encrypted to (a folder key). */
  keyId: string;
  /** Ephemeral public point, uncompressed. */
  ephemeral: Buffer;
  /** AES-256-CBC ciphertext of the 60-byte key material. */
  encryptedKey: Buffer;
  /** Iterated SHA-256 of the key material. */
  checkHash: Buffer;
}

export interface Header {
  flags: number;
  rounds: number;
  stanzas: Stanza[];
  /** Total header length: the ciphertext starts at this offset. */
  length: number;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function oidName(oid: Buffer): string {
  // Render the DER OID body in dotted form, for error messages only.
  const body = oid.subarray(2);
  if (body.length === 0) return '?';
  const parts = [Math.floor(body[0]! / 40), body[0]! % 40];
  let v = 0;
  for (const b of body.subarray(1)) {
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** Encode a v2 header with one EC stanza (Dovecot cannot skip stanzas: spec §2.3). */
export function encodeHeader(stanza: Stanza, rounds = 2048): Buffer {
  const keyData = Buffer.concat([
    Buffer.from([1, KEY_TYPE_EC]),
    Buffer.from(stanza.keyId, 'hex'),
    u32(stanza.ephemeral.length), stanza.ephemeral,
    u32(stanza.encryptedKey.length), stanza.encryptedKey,
    u32(stanza.checkHash.length), stanza.checkHash,
  ]);
  const fixed = 9 + 1 + 4 + 4 + OID_AES256_GCM.length + OID_SHA256.length + 4 + 4;
  return Buffer.concat([
    MAGIC, Buffer.from([VERSION]), u32(FLAG_AEAD), u32(fixed + keyData.length),
    OID_AES256_GCM, OID_SHA256, u32(rounds), u32(keyData.length), keyData,
  ]);
}

/** True if the bytes start with the mail_crypt magic. */
export function isEncrypted(prefix: Buffer): boolean {
  return prefix.length >= MAGIC.length && prefix.subarray(0, MAGIC.length).equals(MAGIC);
}

/**
 * The total header length, read from the first 18 bytes (magic, version, flags, length).
 * @throws MailsealError bad-format for an unsupported version or an absurd length.
 */
export function headerLength(prefix: Buffer): number {
  if (prefix.length < 18) throw badFormat('truncated header');
  const version = prefix[9]!;
  if (version === 1) throw badFormat('mail_crypt version 1 (legacy, unauthenticated) files are not supported');
  if (version !== VERSION) throw badFormat(`unsupported mail_crypt version 0x${version.toString(16).padStart(2, '0')}`);
  const len = prefix.readUInt32BE(14);
  if (len < MIN_HEADER || len > MAX_HEADER) throw badFormat(`header length ${len} out of range`);
  return len;
}

class Reader {
  pos: number;
  constructor(private readonly buf: Buffer, start: number) {
    this.pos = start;
  }
  take(n: number, what: string): Buffer {
    if (n > this.buf.length - this.pos) throw badFormat(`truncated header (${what})`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  u8(what: string): number {
    return this.take(1, what)[0]!;
  }
  u32(what: string): number {
    return this.take(4, what).readUInt32BE(0);
  }
  oid(what: string): Buffer {
    const start = this.pos;
    if (this.u8(what) !== 0x06) throw badFormat(`${what}: not a DER OID`);
    let len = this.u8(what);
    if (len === 0x81) len = this.u8(what);
    else if (len > 0x7f) throw badFormat(`${what}: bad DER length`);
    this.take(len, what);
    return this.buf.subarray(start, this.pos);
  }
  sized(what: string, max: number): Buffer {
    const n = this.u32(what);
    if (n > max) throw badFormat(`${what} too long (${n} bytes)`);
    return this.take(n, what);
  }
}

/**
 * Decode a complete v2 header (`buf` holds at least `headerLength(buf)` bytes).
 * @throws MailsealError bad-format with the precise reason.
 */
export function decodeHeader(buf: Buffer): Header {
  if (!isEncrypted(buf)) throw badFormat('not a mail_crypt file (bad magic)');
  const length = headerLength(buf);
  if (buf.length < length) throw badFormat('truncated header');
  const r = new Reader(buf.subarray(0, length), 10);
  const flags = r.u32('flags');
  if (flags !== FLAG_AEAD) throw badFormat(`unsupported flags 0x${flags.toString(16)} (only AEAD is written by mail_crypt v2)`);
  r.u32('length');
  const cipher = r.oid('cipher OID');
  if (!cipher.equals(OID_AES256_GCM)) throw badFormat(`unsupported cipher OID ${oidName(cipher)}`);
  const mac = r.oid('hash OID');
  if (!mac.equals(OID_SHA256)) throw badFormat(`unsupported hash OID ${oidName(mac)}`);
  const rounds = r.u32('rounds');
  if (rounds < 1 || rounds > MAX_ROUNDS) throw badFormat(`key derivation rounds ${rounds} out of range`);
  const kdLen = r.u32('key data length');
  if (kdLen !== length - r.pos) throw badFormat(`key data length ${kdLen} does not match header length ${length}`);
  const count = r.u8('stanza count');
  if (count < 1 || count > MAX_STANZAS) throw badFormat(`bad key stanza count ${count}`);
  const stanzas: Stanza[] = [];
  for (let i = 0; i < count; i++) {
    const type = r.u8('key type');
    if (type !== KEY_TYPE_EC) throw badFormat(type === 1 ? 'RSA key stanzas are not supported' : `unknown key type ${type}`);
    const keyId = r.take(32, 'key id').toString('hex');
    const ephemeral = r.sized('ephemeral key', 1 + 2 * 66);
    const encryptedKey = r.sized('encrypted key', 256);
    const checkHash = r.sized('key check hash', 64);
    if (checkHash.length !== CHECK_HASH_LENGTH) throw badFormat(`key check hash of ${checkHash.length} bytes`);
    stanzas.push({ keyId, ephemeral, encryptedKey, checkHash });
  }
  if (r.pos !== length) throw badFormat('trailing bytes in header');
  return { flags, rounds, stanzas, length };
}
