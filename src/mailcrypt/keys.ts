// EC keys as mail_crypt uses them: key ids (spec §3.3), points, raw scalars, ECDH.
// Keys are held as node:crypto KeyObjects; the raw scalar only exists briefly while a key
// string is read or written.

import crypto from 'node:crypto';
import { promisify } from 'node:util';
import { badFormat } from '../errors.ts';
import { type Curve, curveByName, curveByPointLength } from './curves.ts';

const generateKeyPair = promisify(crypto.generateKeyPair);

export interface EcPublicKey {
  readonly curve: Curve;
  /** X9.62 uncompressed point `04‖X‖Y`. */
  readonly point: Buffer;
  /** v2 key id: lowercase hex SHA-256 of the compressed-point SPKI. */
  readonly id: string;
  readonly publicKey: crypto.KeyObject;
}

export interface EcPrivateKey extends EcPublicKey {
  readonly privateKey: crypto.KeyObject;
}

/** X9.62 compressed form of an uncompressed point. */
export function compressPoint(curve: Curve, point: Buffer): Buffer {
  return crypto.ECDH.convertKey(point, curve.name, undefined, undefined, 'compressed') as Buffer;
}

/** DER SubjectPublicKeyInfo with the point compressed, as Dovecot encodes public keys. */
export function compressedSpki(curve: Curve, point: Buffer): Buffer {
  return Buffer.concat([curve.spkiCompressed, compressPoint(curve, point)]);
}

/** The v2 key id of a public point (spec §3.3). */
export function keyId(curve: Curve, point: Buffer): string {
  return crypto.createHash('sha256').update(compressedSpki(curve, point)).digest('hex');
}

function b64u(buf: Buffer): string {
  return buf.toString('base64url');
}

/**
 * A public key from an uncompressed point.
 * @throws MailsealError bad-format if the point is not on the curve.
 */
export function publicKeyFromPoint(curve: Curve, point: Buffer): EcPublicKey {
  const size = curve.size;
  if (point.length !== 1 + 2 * size || point[0] !== 4) {
    throw badFormat(`invalid ${curve.name} point (length ${point.length})`);
  }
  let publicKey: crypto.KeyObject;
  try {
    publicKey = crypto.createPublicKey({
      key: { kty: 'EC', crv: curve.jwk, x: b64u(point.subarray(1, 1 + size)), y: b64u(point.subarray(1 + size)) },
      format: 'jwk',
    });
  } catch (cause) {
    throw badFormat(`invalid ${curve.name} point: not on the curve`, cause);
  }
  return { curve, point, id: keyId(curve, point), publicKey };
}

/** A public key from an ephemeral point of unknown curve (the length tells). */
export function publicKeyFromAnyPoint(point: Buffer): EcPublicKey {
  const curve = curveByPointLength(point.length);
  if (!curve) throw badFormat(`invalid EC point of ${point.length} bytes`);
  return publicKeyFromPoint(curve, point);
}

function pointOf(curve: Curve, key: crypto.KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  const x = Buffer.from(jwk.x ?? '', 'base64url');
  const y = Buffer.from(jwk.y ?? '', 'base64url');
  return Buffer.concat([Buffer.from([4]), leftPad(x, curve.size), leftPad(y, curve.size)]);
}

/** Left-pad a big-endian number to `size` bytes (dropping leading zero bytes beyond it). */
export function leftPad(buf: Buffer, size: number): Buffer {
  let start = 0;
  while (buf.length - start > size && buf[start] === 0) start++;
  const trimmed = buf.subarray(start);
  if (trimmed.length > size) throw badFormat(`number of ${trimmed.length} bytes does not fit ${size}`);
  if (trimmed.length === size) return Buffer.from(trimmed);
  const out = Buffer.alloc(size);
  trimmed.copy(out, size - trimmed.length);
  return out;
}

/**
 * A private key from its raw big-endian scalar (any length up to the field size).
 * @throws MailsealError bad-format if the scalar is not a valid private key for the curve.
 */
export function privateKeyFromScalar(curve: Curve, scalar: Buffer): EcPrivateKey {
  const d = leftPad(scalar, curve.size);
  try {
    const ecdh = crypto.createECDH(curve.name);
    ecdh.setPrivateKey(d);
    const point = ecdh.getPublicKey();
    const size = curve.size;
    const privateKey = crypto.createPrivateKey({
      key: {
        kty: 'EC', crv: curve.jwk, d: b64u(d),
        x: b64u(point.subarray(1, 1 + size)), y: b64u(point.subarray(1 + size)),
      },
      format: 'jwk',
    });
    const pub = publicKeyFromPoint(curve, point);
    return { ...pub, privateKey };
  } catch (cause) {
    if ((cause as { code?: string }).code === 'bad-format') throw cause;
    throw badFormat(`invalid ${curve.name} private key`, cause);
  } finally {
    d.fill(0);
  }
}

/** The raw scalar, field-size big-endian. The caller must zero it after use. */
export function scalarOf(key: EcPrivateKey): Buffer {
  const jwk = key.privateKey.export({ format: 'jwk' });
  return leftPad(Buffer.from(jwk.d ?? '', 'base64url'), key.curve.size);
}

/** A fresh keypair, generated on libuv's threadpool. */
export async function generateKey(curveName: Curve | string): Promise<EcPrivateKey> {
  const curve = typeof curveName === 'string' ? curveByName(curveName) : curveName;
  const { privateKey, publicKey } = await generateKeyPair('ec', { namedCurve: curve.name });
  const point = pointOf(curve, publicKey);
  return { curve, point, id: keyId(curve, point), publicKey, privateKey };
}

/**
 * ECDH: the affine x-coordinate of priv × pub, field-size big-endian (what OpenSSL's
 * EVP_PKEY_derive gives and Dovecot uses).
 */
export function ecdh(priv: EcPrivateKey | { privateKey: crypto.KeyObject }, pub: EcPublicKey): Buffer {
  return crypto.diffieHellman({ privateKey: priv.privateKey, publicKey: pub.publicKey });
}

/** Only the public half of a key. */
export function publicOnly(key: EcPublicKey): EcPublicKey {
  return { curve: key.curve, point: key.point, id: key.id, publicKey: key.publicKey };
}
