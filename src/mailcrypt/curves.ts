// The EC curves mail_crypt can use with Dovecot 2.3 (spec §3.1, §3.2): names, OIDs, sizes and
// the DER SubjectPublicKeyInfo prefixes that key ids are computed over. X25519 is absent on
// purpose: Dovecot 2.3 cannot use it (spec §6.5).

import { badFormat } from '../errors.ts';

export type CurveName = 'secp521r1' | 'secp384r1' | 'prime256v1';

export interface Curve {
  /** OpenSSL / Node name (`crypto.createECDH`, `namedCurve`). */
  readonly name: CurveName;
  /** JWK `crv`. */
  readonly jwk: 'P-521' | 'P-384' | 'P-256';
  /** Dotted curve OID, as written in private key strings. */
  readonly oid: string;
  /** Field size in bytes: the length of a coordinate and of the ECDH secret. */
  readonly size: number;
  /** SPKI DER up to (not including) the compressed point. */
  readonly spkiCompressed: Buffer;
  /** SPKI DER up to (not including) the uncompressed point. */
  readonly spkiUncompressed: Buffer;
}

function curve(
  name: CurveName,
  jwk: Curve['jwk'],
  oid: string,
  size: number,
  compressed: string,
  uncompressed: string,
): Curve {
  return Object.freeze({
    name,
    jwk,
    oid,
    size,
    spkiCompressed: Buffer.from(compressed, 'hex'),
    spkiUncompressed: Buffer.from(uncompressed, 'hex'),
  });
}

export const CURVES: readonly Curve[] = Object.freeze([
  curve('secp521r1', 'P-521', '1.3.132.0.35', 66,
    '3058301006072a8648ce3d020106052b81040023034400',
    '30819b301006072a8648ce3d020106052b8104002303818600'),
  curve('secp384r1', 'P-384', '1.3.132.0.34', 48,
    '3046301006072a8648ce3d020106052b81040022033200',
    '3076301006072a8648ce3d020106052b81040022036200'),
  curve('prime256v1', 'P-256', '1.2.840.10045.3.1.7', 32,
    '3039301306072a8648ce3d020106082a8648ce3d030107032200',
    '3059301306072a8648ce3d020106082a8648ce3d030107034200'),
]);

/**
 * Look a curve up by OpenSSL name, common alias or dotted OID.
 * @throws MailsealError bad-format for a curve Dovecot 2.3 cannot use.
 */
export function curveByName(name: string): Curve {
  const aliases: Record<string, CurveName> = {
    'p-521': 'secp521r1', p521: 'secp521r1', secp521r1: 'secp521r1',
    'p-384': 'secp384r1', p384: 'secp384r1', secp384r1: 'secp384r1',
    'p-256': 'prime256v1', p256: 'prime256v1', prime256v1: 'prime256v1', secp256r1: 'prime256v1',
  };
  const n = aliases[name.toLowerCase()];
  const c = CURVES.find((x) => x.name === n || x.oid === name);
  if (!c) throw badFormat(`unsupported curve ${JSON.stringify(name.slice(0, 40))} (use secp521r1, secp384r1 or prime256v1)`);
  return c;
}

/** The curve whose uncompressed point has this length (1 + 2 × field size), or undefined. */
export function curveByPointLength(len: number): Curve | undefined {
  return CURVES.find((c) => 1 + 2 * c.size === len);
}
