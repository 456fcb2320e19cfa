// Ephemeral EC keygen + ECDH through the system's libcrypto (design.md, "Where the CPU goes"):
// Node's bundled OpenSSL has no optimised P-521 code (≈5.8 ms per keygen + derive here), Debian's
// libcrypto.so.3 does it in ≈0.5 ms. Loaded with RTLD_DEEPBIND (koffi `deep: true`) so that the
// OpenSSL symbols the node binary exports do not interpose. If the library or koffi is missing,
// or MAILSEAL_NATIVE=0, callers fall back to node:crypto. Results are checked against
// node:crypto in test/mailcrypt/native.test.ts and, end to end, by real Dovecot.

import { createRequire } from 'node:module';
import { badFormat } from '../errors.ts';
import type { Curve } from './curves.ts';

export interface NativeEcdh {
  /** Which library answered (for `doctor`/`bench` reports). */
  readonly library: string;
  /** A fresh key pair on `curve`; returns its uncompressed point and ECDH(it, peer) x-coordinate. */
  ephemeral(curve: Curve, peerPoint: Buffer): { point: Buffer; secret: Buffer };
}

type Fn = (...args: unknown[]) => unknown;

function load(): NativeEcdh | null {
  if (process.env.MAILSEAL_NATIVE === '0') return null;
  let koffi: typeof import('koffi');
  try {
    koffi = createRequire(import.meta.url)('koffi');
  } catch {
    return null;
  }
  let lib: ReturnType<typeof koffi.load>;
  try {
    // `deep` exists since koffi 2.6 but is missing from its type declarations.
    const loadLib = koffi.load as unknown as (path: string, o: { deep: boolean }) => ReturnType<typeof koffi.load>;
    lib = loadLib('libcrypto.so.3', { deep: true });
  } catch {
    return null;
  }
  const f = (sig: string) => lib.func(sig) as unknown as Fn;
  const OBJ_sn2nid = f('int OBJ_sn2nid(const char *)');
  const EC_KEY_new_by_curve_name = f('void *EC_KEY_new_by_curve_name(int)');
  const EC_KEY_generate_key = f('int EC_KEY_generate_key(void *)');
  const EC_KEY_get0_group = f('void *EC_KEY_get0_group(void *)');
  const EC_KEY_get0_public_key = f('void *EC_KEY_get0_public_key(void *)');
  const EC_KEY_free = f('void EC_KEY_free(void *)');
  const EC_POINT_new = f('void *EC_POINT_new(void *)');
  const EC_POINT_free = f('void EC_POINT_free(void *)');
  const EC_POINT_point2oct = f('size_t EC_POINT_point2oct(void *, void *, int, _Out_ uint8_t *, size_t, void *)');
  const EC_POINT_oct2point = f('int EC_POINT_oct2point(void *, void *, uint8_t *, size_t, void *)');
  const ECDH_compute_key = f('int ECDH_compute_key(_Out_ uint8_t *, size_t, void *, void *, void *)');
  const nids = new Map<string, number>();
  const UNCOMPRESSED = 4;

  return {
    library: 'libcrypto.so.3 (system)',
    ephemeral(curve, peerPoint) {
      let nid = nids.get(curve.name);
      if (nid === undefined) {
        nid = OBJ_sn2nid(curve.name) as number;
        nids.set(curve.name, nid);
      }
      const key = EC_KEY_new_by_curve_name(nid);
      if (!key) throw new Error(`libcrypto: no curve ${curve.name}`);
      let peer: unknown = null;
      try {
        if (EC_KEY_generate_key(key) !== 1) throw new Error('libcrypto: EC key generation failed');
        const group = EC_KEY_get0_group(key);
        const point = Buffer.alloc(1 + 2 * curve.size);
        if (EC_POINT_point2oct(group, EC_KEY_get0_public_key(key), UNCOMPRESSED, point, point.length, null) !== point.length) {
          throw new Error('libcrypto: cannot encode the ephemeral point');
        }
        peer = EC_POINT_new(group);
        if (EC_POINT_oct2point(group, peer, peerPoint, peerPoint.length, null) !== 1) throw badFormat(`invalid ${curve.name} point`);
        const secret = Buffer.alloc(curve.size);
        if (ECDH_compute_key(secret, secret.length, peer, key, null) !== curve.size) throw new Error('libcrypto: ECDH failed');
        return { point, secret };
      } finally {
        if (peer) EC_POINT_free(peer);
        EC_KEY_free(key);
      }
    },
  };
}

let cached: NativeEcdh | null | undefined;

/** The system-libcrypto path, or null where it is not available. */
export function nativeEcdh(): NativeEcdh | null {
  if (cached === undefined) cached = load();
  return cached;
}
