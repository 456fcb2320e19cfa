// The encrypting side of mail_crypt v2 (spec §2.3, §2.4, §7 step 4): wrap a fresh message key
// to a folder public key, then stream AES-256-GCM over the body. Constant memory: each chunk is
// enciphered and passed on as it arrives.

import crypto from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { encodeHeader, KD_LENGTH } from './format.ts';
import { checkHash, pbkdf2 } from './kdf.ts';
import { type EcPublicKey, ecdh, generateKey } from './keys.ts';
import { nativeSeal, type Probe, type ProbePaths, type Wrapped } from './native.ts';

const ROUNDS = 2048;

export interface SealParams {
  /** The complete file header (magic … key data). */
  header: Buffer;
  /** 60 bytes of key material: key(32) ‖ iv(12) ‖ aad(16). Zeroed by the stream when done. */
  kd: Buffer;
  /** The key lookup's reads, if asked for and the native path made them (see native.ts Probe). */
  probe?: Probe | null;
}

/** The node:crypto path: EC in node's OpenSSL, PBKDF2 on the threadpool, the chain in TypeScript. */
async function wrapPortable(to: EcPublicKey): Promise<Wrapped> {
  const kd = crypto.randomBytes(KD_LENGTH);
  const eph = await generateKey(to.curve);
  const secret = ecdh(eph, to);
  const t = await pbkdf2(secret, eph.point, ROUNDS, 48).finally(() => secret.fill(0));
  try {
    const cbc = crypto.createCipheriv('aes-256-cbc', t.subarray(0, 32), t.subarray(32, 48));
    const encryptedKey = Buffer.concat([cbc.update(kd), cbc.final()]);
    return { point: eph.point, encryptedKey, check: checkHash(kd, ROUNDS), kd };
  } finally {
    t.fill(0);
  }
}

/**
 * Make a message key and its header, encrypted to `to` (the folder's active public key). The
 * native addon does all of it in one call on libuv's threadpool; without it (`portable`, or
 * MAILSEAL_NATIVE=0), node:crypto does. With `probe`, the native call also reads what the key
 * lookup needs (`probe` in the result); the portable path ignores it.
 */
export async function makeSealParams(to: EcPublicKey, opts: { probe?: ProbePaths; portable?: boolean } = {}): Promise<SealParams> {
  const native = opts.portable ? null : nativeSeal();
  const w = native ? await native.wrap(to.curve, to.point, ROUNDS, opts.probe) : await wrapPortable(to);
  const header = encodeHeader({ keyId: to.id, ephemeral: w.point, encryptedKey: w.encryptedKey, checkHash: w.check }, ROUNDS);
  return w.probe === undefined ? { header, kd: w.kd } : { header, kd: w.kd, probe: w.probe };
}

/**
 * The body cipher of one message: `header` first, then `update()` for each plaintext chunk,
 * then `final()` for the last bytes and the 16-byte tag. The key material is zeroed at once.
 */
export class Sealer {
  readonly header: Buffer;
  private readonly cipher: crypto.CipherGCM;

  constructor(params: SealParams) {
    const { kd } = params;
    this.cipher = crypto.createCipheriv('aes-256-gcm', kd.subarray(0, 32), kd.subarray(32, 44));
    this.cipher.setAAD(kd.subarray(44, 60));
    kd.fill(0);
    this.header = params.header;
  }

  update(plain: Buffer): Buffer {
    return this.cipher.update(plain);
  }

  final(): Buffer {
    const rest = this.cipher.final();
    return rest.length ? Buffer.concat([rest, this.cipher.getAuthTag()]) : this.cipher.getAuthTag();
  }
}

/** A Transform: plaintext in, a complete mail_crypt v2 file out (header, ciphertext, tag). */
export class SealStream extends Transform {
  private readonly sealer: Sealer;
  private started = false;

  constructor(params: SealParams) {
    super();
    this.sealer = new Sealer(params);
  }

  private start(): void {
    if (!this.started) {
      this.push(this.sealer.header);
      this.started = true;
    }
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.start();
    cb(null, this.sealer.update(chunk));
  }

  override _flush(cb: TransformCallback): void {
    this.start();
    cb(null, this.sealer.final());
  }
}

/** Convenience: a ready SealStream encrypting to `to`. */
export async function createSealStream(to: EcPublicKey): Promise<SealStream> {
  return new SealStream(await makeSealParams(to));
}
