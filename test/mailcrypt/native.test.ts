// The system-libcrypto path agrees with node:crypto on every curve (points on the curve, the same
// ECDH x-coordinate, including secrets with leading zero bytes), refuses bad points, and is
// present on these machines (CI must exercise it, not the fallback).

import test from 'ava';
import crypto from 'node:crypto';
import { MailsealError } from '../../src/errors.ts';
import { CURVES } from '../../src/mailcrypt/curves.ts';
import { ecdh, generateKey, publicKeyFromPoint } from '../../src/mailcrypt/keys.ts';
import { nativeEcdh } from '../../src/mailcrypt/native.ts';

test('libcrypto.so.3 is loaded', (t) => {
  t.truthy(nativeEcdh(), 'koffi + libcrypto.so.3 available');
});

for (const curve of CURVES) {
  test(`${curve.name}: native ephemeral ECDH equals node:crypto's (300 keys)`, async (t) => {
    const native = nativeEcdh()!;
    const peer = await generateKey(curve);
    let leadingZero = 0;
    for (let i = 0; i < 300; i++) {
      const { point, secret } = native.ephemeral(curve, peer.point);
      t.is(secret.length, curve.size);
      if (secret[0] === 0) leadingZero++;
      const eph = publicKeyFromPoint(curve, point); // throws if not on the curve
      if (!ecdh(peer, eph).equals(secret)) t.fail(`mismatch at ${i}`);
    }
    t.log(`${leadingZero} secrets with a leading zero byte`);
  });
}

test('a point not on the curve is refused', (t) => {
  const curve = CURVES[2]!;
  const bad = Buffer.concat([Buffer.from([4]), crypto.randomBytes(64)]);
  const err = t.throws(() => nativeEcdh()!.ephemeral(curve, bad));
  t.true(err instanceof MailsealError && err.code === 'bad-format');
});

test('with MAILSEAL_NATIVE=0 the node:crypto fallback seals messages that open', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const { REPO } = await import('../helpers/vectors.ts');
  const script = `
    const { nativeEcdh } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/native.ts`)});
    const { generateKey } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/keys.ts`)});
    const { createSealStream } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/seal.ts`)});
    const { OpenStream } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/open.ts`)});
    const { through } = await import(${JSON.stringify(`${REPO}/test/helpers/streams.ts`)});
    const key = await generateKey('secp521r1');
    const sealed = await through(Buffer.from('fallback works'), await createSealStream(key));
    const opened = await through(sealed, new OpenStream(() => key));
    console.log(nativeEcdh() === null, opened.toString());`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: REPO, env: { ...process.env, MAILSEAL_NATIVE: '0' }, encoding: 'utf8',
  });
  t.is(out.trim(), 'true fallback works');
});
