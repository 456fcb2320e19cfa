// The decrypting side of mail_crypt v2 (spec §2.1–§2.4). A Transform that sniffs the magic
// (plaintext passes through unchanged, as in Dovecot), reads the header, asks for the private
// key named by a stanza, unwraps the message key, deciphers the body and checks the GCM tag at
// the end. Every failure is a MailsealError with a precise message; memory stays constant.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { badFormat, MailsealError } from '../errors.ts';
import { decodeHeader, type Header, headerLength, KD_LENGTH, MAGIC, TAG_LENGTH } from './format.ts';
import { checkHash, pbkdf2 } from './kdf.ts';
import { type EcPrivateKey, ecdh, publicKeyFromPoint } from './keys.ts';

/** Finds the private key with this hex id; null/undefined if it is not available. */
export type KeyLookup = (keyId: string) => Promise<EcPrivateKey | null | undefined> | EcPrivateKey | null | undefined;

/**
 * Unwrap the 60-byte message key material from a decoded header.
 * @throws MailsealError no-key (no stanza's key is available), bad-format (damaged stanza or
 *   a key that does not open it).
 */
export async function unwrapKey(header: Header, lookup: KeyLookup): Promise<{ kd: Buffer; keyId: string }> {
  let key: EcPrivateKey | null | undefined;
  let stanza = header.stanzas[0]!;
  for (const s of header.stanzas) {
    key = await lookup(s.keyId);
    if (key) {
      stanza = s;
      break;
    }
  }
  if (!key) {
    throw new MailsealError('no-key', `no private key available for key id ${header.stanzas.map((s) => s.keyId).join(', ')}`);
  }
  const eph = publicKeyFromPoint(key.curve, stanza.ephemeral);
  const secret = ecdh(key, eph);
  const t = await pbkdf2(secret, stanza.ephemeral, header.rounds, 48).finally(() => secret.fill(0));
  let kd: Buffer;
  try {
    const cbc = crypto.createDecipheriv('aes-256-cbc', t.subarray(0, 32), t.subarray(32, 48));
    kd = Buffer.concat([cbc.update(stanza.encryptedKey), cbc.final()]);
  } catch (cause) {
    throw badFormat('cannot decrypt the message key (wrong key or damaged key stanza)', cause);
  } finally {
    t.fill(0);
  }
  if (kd.length !== KD_LENGTH) throw badFormat(`message key has ${kd.length} bytes, expected ${KD_LENGTH}`);
  if (!crypto.timingSafeEqual(checkHash(kd, header.rounds), stanza.checkHash)) {
    kd.fill(0);
    throw badFormat('message key check hash mismatch (wrong key or damaged key stanza)');
  }
  return { kd, keyId: stanza.keyId };
}

type State = 'sniff' | 'header' | 'body' | 'plain';

/** A Transform: a stored mail file in, the plaintext out. */
export class OpenStream extends Transform {
  private state: State = 'sniff';
  private pending: Buffer = Buffer.alloc(0);
  private decipher: crypto.DecipherGCM | null = null;
  /** The id of the key the file was opened with, once known. */
  keyId: string | null = null;
  /** True once the file turned out to be mail_crypt encrypted. */
  encrypted = false;

  constructor(private readonly lookup: KeyLookup) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.feed(chunk).then(() => cb(), cb);
  }

  private async feed(chunk: Buffer): Promise<void> {
    if (this.state === 'plain') {
      this.push(chunk);
      return;
    }
    if (this.state === 'body') {
      this.body(chunk);
      return;
    }
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    if (this.state === 'sniff') {
      const n = Math.min(this.pending.length, MAGIC.length);
      if (!this.pending.subarray(0, n).equals(MAGIC.subarray(0, n))) {
        this.state = 'plain';
        this.push(this.pending);
        this.pending = Buffer.alloc(0);
        return;
      }
      if (this.pending.length < MAGIC.length) return;
      this.state = 'header';
      this.encrypted = true;
    }
    if (this.pending.length < 18) return;
    const length = headerLength(this.pending);
    if (this.pending.length < length) return;
    const header = decodeHeader(this.pending);
    const rest = this.pending.subarray(length);
    this.pending = Buffer.alloc(0);
    const { kd, keyId } = await unwrapKey(header, this.lookup);
    this.keyId = keyId;
    this.decipher = crypto.createDecipheriv('aes-256-gcm', kd.subarray(0, 32), kd.subarray(32, 44), { authTagLength: TAG_LENGTH });
    this.decipher.setAAD(kd.subarray(44, 60));
    kd.fill(0);
    this.state = 'body';
    this.body(rest);
  }

  /** Decipher all but the last 16 bytes seen so far (they may be the tag). */
  private body(chunk: Buffer): void {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const cut = Math.max(0, buf.length - TAG_LENGTH);
    if (cut > 0) this.push(this.decipher!.update(buf.subarray(0, cut)));
    this.pending = Buffer.from(buf.subarray(cut));
  }

  override _flush(cb: TransformCallback): void {
    if (this.state === 'sniff' || this.state === 'plain') {
      if (this.pending.length) this.push(this.pending);
      return cb();
    }
    if (this.state === 'header') return cb(badFormat('truncated file (inside the header)'));
    if (this.pending.length < TAG_LENGTH) return cb(badFormat('truncated file (no authentication tag)'));
    try {
      this.decipher!.setAuthTag(this.pending);
      const rest = this.decipher!.final();
      if (rest.length) this.push(rest);
      cb();
    } catch (cause) {
      cb(badFormat('authentication failed: the file is truncated or was modified', cause));
    }
  }
}

/**
 * Decrypt a stored mail file into `out`, authenticated: the file is verified in a first pass
 * (plaintext discarded) and only then streamed to `out`, so a tampered or truncated file yields
 * an error and not a single byte of unauthenticated plaintext. Plaintext files pass through.
 * @returns whether the file was encrypted.
 */
export async function openFile(path: string, lookup: KeyLookup, out: NodeJS.WritableStream): Promise<{ encrypted: boolean }> {
  // One descriptor for both passes, so what was verified is what is output.
  const fh = await fs.promises.open(path, 'r');
  try {
    const read = () => fh.createReadStream({ start: 0, autoClose: false });
    const verify = new OpenStream(lookup);
    await pipeline(read(), verify, new Writable({ write: (_c, _e, cb) => cb() }));
    await pipeline(read(), new OpenStream(lookup), out, { end: false });
    return { encrypted: verify.encrypted };
  } finally {
    await fh.close();
  }
}
