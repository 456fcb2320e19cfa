// The native addon (src/native) agrees with node:crypto: PBKDF2-HMAC-SHA256 for every length
// class of password (HMAC hashes keys over 64 bytes), salt and output; the check-hash chain; and
// the whole wrap on every curve — the ephemeral point is on the curve, the encrypted key opens
// with PBKDF2 of the ECDH secret (secrets with leading zero bytes included), the check hash is
// the chain over SHA-256(kd).
// Both SHA-256 compressions (SHA-NI and portable C) are checked. The addon must be present on
// these machines: CI exercises it, not the fallback.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { MailsealError } from '../../src/errors.ts';
import { CURVES, curveByName } from '../../src/mailcrypt/curves.ts';
import { checkHash } from '../../src/mailcrypt/kdf.ts';
import { ecdh, generateKey, publicKeyFromPoint } from '../../src/mailcrypt/keys.ts';
import { nativeAddon, nativeSeal, nativeStatus } from '../../src/mailcrypt/native.ts';
import { sha256Chain } from '../../src/mailcrypt/sha256chain.ts';
import { REPO } from '../helpers/vectors.ts';

test('the addon is built and the system libcrypto is loaded', async (t) => {
  t.truthy(nativeAddon(), nativeStatus());
  t.truthy(nativeSeal(), nativeStatus());
  const fs = await import('node:fs');
  if (/\bsha_ni\b/.test(fs.readFileSync('/proc/cpuinfo', 'utf8'))) t.is(nativeAddon()!.sha256, 'sha-ni', 'the CPU has SHA-NI: it is used');
  t.true(nativeAddon()!.p521Tables, "Debian's libcrypto runs P-521 on its nistp521 code: the per-key tables are used");
  t.log(nativeStatus());
});

/** PBKDF2 and chain through the addon, compared with node:crypto, in this process's compression. */
function checkKdfs(addon: NonNullable<ReturnType<typeof nativeAddon>>): string[] {
  const bad: string[] = [];
  for (const pl of [0, 1, 32, 55, 63, 64, 65, 66, 133]) {
    for (const sl of [0, 1, 55, 56, 59, 60, 64, 119, 133, 700]) {
      for (const len of [1, 32, 33, 48, 64, 65]) {
        const pw = crypto.randomBytes(pl);
        const salt = crypto.randomBytes(sl);
        const rounds = 1 + (pl % 3);
        if (!addon.pbkdf2(pw, salt, rounds, len).equals(crypto.pbkdf2Sync(pw, salt, rounds, len, 'sha256'))) {
          bad.push(`pbkdf2 pw=${pl} salt=${sl} len=${len}`);
        }
      }
    }
  }
  const pw = crypto.randomBytes(66);
  const salt = crypto.randomBytes(133);
  if (!addon.pbkdf2(pw, salt, 2048, 48).equals(crypto.pbkdf2Sync(pw, salt, 2048, 48, 'sha256'))) bad.push('pbkdf2 2048');
  for (const rounds of [1, 2, 2048]) {
    const h0 = crypto.randomBytes(32);
    if (!addon.chain(h0, rounds).equals(sha256Chain(h0, rounds))) bad.push(`chain ${rounds}`);
  }
  return bad;
}

test('PBKDF2-HMAC-SHA256 and the chain equal node:crypto / the TypeScript chain', (t) => {
  const addon = nativeAddon()!;
  t.deepEqual(checkKdfs(addon), []);
  t.log(`compression: ${addon.sha256}`);
});

test('the same, and a whole wrap, with the portable C compression (MAILSEAL_SHA256=portable)', (t) => {
  const script = `
    const { nativeAddon } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/native.ts`)});
    const a = nativeAddon();
    const crypto = await import('node:crypto');
    const { sha256Chain } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/sha256chain.ts`)});
    const pw = crypto.randomBytes(66), salt = crypto.randomBytes(133), h0 = crypto.randomBytes(32);
    const peer = crypto.createECDH('prime256v1');
    peer.generateKeys();
    const [point, ekd, check, kd] = await a.seal('prime256v1', 32, peer.getPublicKey(), 2048);
    const t = crypto.pbkdf2Sync(peer.computeSecret(point), point, 2048, 48, 'sha256');
    const cbc = crypto.createDecipheriv('aes-256-cbc', t.subarray(0, 32), t.subarray(32, 48));
    const wrapOk = Buffer.concat([cbc.update(ekd), cbc.final()]).equals(kd) &&
      check.equals(sha256Chain(crypto.createHash('sha256').update(kd).digest(), 2048));
    console.log(a.sha256, a.pbkdf2(pw, salt, 2048, 48).equals(crypto.pbkdf2Sync(pw, salt, 2048, 48, 'sha256')),
      a.chain(h0, 2048).equals(sha256Chain(h0, 2048)), wrapOk);`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: REPO, env: { ...process.env, MAILSEAL_SHA256: 'portable' }, encoding: 'utf8',
  });
  t.is(out.trim(), 'portable true true true');
});

for (const curve of CURVES) {
  test(`${curve.name}: native wrap equals node:crypto's derivation (200 keys)`, async (t) => {
    const native = nativeSeal()!;
    const peer = await generateKey(curve);
    let leadingZero = 0;
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const { point, encryptedKey, check, kd } = await native.wrap(curve, peer.point, 2048);
      t.is(kd.length, 60);
      seen.add(kd.toString('hex'));
      const eph = publicKeyFromPoint(curve, point); // throws if not on the curve
      const secret = ecdh(peer, eph);
      if (secret[0] === 0) leadingZero++;
      // What a reader does (spec §2.3): t from the ECDH secret, then kd out of the CBC.
      const key = crypto.pbkdf2Sync(secret, point, 2048, 48, 'sha256');
      const cbc = crypto.createDecipheriv('aes-256-cbc', key.subarray(0, 32), key.subarray(32, 48));
      if (!Buffer.concat([cbc.update(encryptedKey), cbc.final()]).equals(kd)) t.fail(`encrypted key mismatch at ${i}`);
      if (!check.equals(checkHash(kd, 2048))) t.fail(`check hash mismatch at ${i}`);
    }
    t.is(seen.size, 200, 'a fresh message key every time');
    t.log(`${leadingZero} secrets with a leading zero byte`);
  });
}

test.serial('secp521r1 fixed-base tables: built on a key\'s second seal, shared by concurrent seals, evicted past 512 keys; every wrap opens', async (t) => {
  // Keys 0–299 three times (plain ECDH, then a table each, then through it), keys 300–549 the
  // same (550 tables > 512: the 38 least recently used, keys 0–37, are evicted), then keys 0–49
  // again three times (0–37: ECDH, rebuilt, used; 38–49 through their tables). 32 seals at a
  // time on the threadpool.
  const curve = CURVES.find((c) => c.name === 'secp521r1')!;
  const native = nativeSeal()!;
  const addon = nativeAddon()!;
  const peers = Array.from({ length: 550 }, () => {
    const e = crypto.createECDH('secp521r1');
    e.generateKeys();
    return e;
  });
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  const thrice = (keys: number[]) => [...keys, ...keys, ...keys];
  const order = [...thrice(range(0, 300)), ...thrice(range(300, 550)), ...thrice(range(0, 50))];
  const [built0, through0, evicted0] = addon.p521TableStats();
  const bad: number[] = [];
  for (let at = 0; at < order.length; at += 32) {
    await Promise.all(
      order.slice(at, at + 32).map(async (i) => {
        const peer = peers[i]!;
        const { point, encryptedKey, kd } = await native.wrap(curve, peer.getPublicKey(), 2048);
        const key = crypto.pbkdf2Sync(peer.computeSecret(point), point, 2048, 48, 'sha256');
        const cbc = crypto.createDecipheriv('aes-256-cbc', key.subarray(0, 32), key.subarray(32, 48));
        cbc.setAutoPadding(false);
        const out = Buffer.concat([cbc.update(encryptedKey), cbc.final()]);
        if (!out.subarray(0, 60).equals(kd)) bad.push(i);
      }),
    );
  }
  t.deepEqual(bad, [], 'every wrap opens with node:crypto\'s ECDH');
  const [built, through, evicted] = addon.p521TableStats();
  t.log(`tables built ${built - built0}, seals through a table ${through - through0}, evicted ${evicted - evicted0}`);
  t.true(built - built0 >= 550 + 30, 'a table for each key on its second seal, and again for the evicted ones');
  t.true(through - through0 >= 1200, 'the second and third seal of each key go through its table');
  t.true(evicted - evicted0 >= 38, 'past 512 tables the least recently used are evicted');
});

test('a point not on the curve is refused as bad-format', async (t) => {
  const curve = CURVES[2]!;
  const bad = Buffer.concat([Buffer.from([4]), crypto.randomBytes(64)]);
  const err = await t.throwsAsync(nativeSeal()!.wrap(curve, bad, 2048));
  t.true(err instanceof MailsealError && err.code === 'bad-format');
});

test('with MAILSEAL_NATIVE=0 the node:crypto fallback seals messages that open', (t) => {
  const script = `
    const { nativeSeal } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/native.ts`)});
    const { generateKey } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/keys.ts`)});
    const { createSealStream } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/seal.ts`)});
    const { OpenStream } = await import(${JSON.stringify(`${REPO}/src/mailcrypt/open.ts`)});
    const { through } = await import(${JSON.stringify(`${REPO}/test/helpers/streams.ts`)});
    const key = await generateKey('secp521r1');
    const sealed = await through(Buffer.from('fallback works'), await createSealStream(key));
    const opened = await through(sealed, new OpenStream(() => key));
    console.log(nativeSeal() === null, opened.toString());`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: REPO, env: { ...process.env, MAILSEAL_NATIVE: '0' }, encoding: 'utf8',
  });
  t.is(out.trim(), 'true fallback works');
});

test('readHead: the first bytes of a file in one job, null for a missing file, errors as node:fs codes', async (t) => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msh-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'dovecot-uidlist');
  const body = Buffer.concat([Buffer.from('3 V1 N1 G0123456789abcdef0123456789abcdef\n'), crypto.randomBytes(5000)]);
  fs.writeFileSync(file, body);
  const a = nativeAddon()!;
  t.deepEqual(await a.readHead(file, 512), body.subarray(0, 512));
  t.deepEqual(await a.readHead(file, 4096), body.subarray(0, 4096));
  t.is(await a.readHead(path.join(dir, 'none'), 512), null);
  const err = await t.throwsAsync(a.readHead(dir, 512)) as NodeJS.ErrnoException; // a directory: EISDIR on read
  t.is(err.syscall, 'read');
  t.throws(() => a.readHead(file, 5000), { instanceOf: TypeError });
});

test('a wrap with a probe reads the uidlist head and stats the dict in the same job, as node:fs sees them', async (t) => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const uidlist = path.join(dir, 'dovecot-uidlist');
  const dict = path.join(dir, 'dovecot-attributes');
  const head = Buffer.concat([Buffer.from('3 V1 N1 G0123456789abcdef0123456789abcdef\n'), crypto.randomBytes(900)]);
  fs.writeFileSync(uidlist, head);
  fs.writeFileSync(dict, 'priv/x\nvalue\n');
  const peer = crypto.createECDH('prime256v1');
  peer.generateKeys();
  const curve = curveByName('prime256v1');
  const native = nativeSeal()!;

  const w = await native.wrap(curve, peer.getPublicKey(), 2048, [uidlist, dict]);
  t.is(w.kd.length, 60, 'the seal itself is made as without a probe');
  t.deepEqual(w.probe!.head, head.subarray(0, 512));
  const st = fs.statSync(dict);
  t.deepEqual(w.probe!.dict, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs }, 'the stamp equals node:fs\'s, so the dict cache compares it');

  const none = await native.wrap(curve, peer.getPublicKey(), 2048, [path.join(dir, 'no-uidlist'), path.join(dir, 'no-dict')]);
  t.deepEqual(none.probe, { head: null, dict: null }, 'missing files');
  const bad = await native.wrap(curve, peer.getPublicKey(), 2048, [dir, dict]); // a directory: EISDIR on read
  t.is(bad.probe, null, 'a read that fails: null (the lookup reads for itself)');
  t.false('probe' in (await native.wrap(curve, peer.getPublicKey(), 2048)), 'no probe asked, none given');
  await t.throwsAsync(async () => native.wrap(curve, peer.getPublicKey(), 2048, [uidlist] as never), { message: /probe: \[uidlistPath, dictPath\]/ });
  t.is(nativeAddon()!.abi, 2, 'the interface native.ts asks for');
});

test('the KDF loop at its edges: a wrap with 1, 2, 3 and 4097 rounds equals node:crypto\'s derivation', async (t) => {
  const native = nativeSeal()!;
  const curve = curveByName('prime256v1');
  const peer = await generateKey(curve);
  for (const rounds of [1, 2, 3, 4097]) {
    const { point, encryptedKey, check, kd } = await native.wrap(curve, peer.point, rounds);
    const key = crypto.pbkdf2Sync(ecdh(peer, publicKeyFromPoint(curve, point)), point, rounds, 48, 'sha256');
    const cbc = crypto.createDecipheriv('aes-256-cbc', key.subarray(0, 32), key.subarray(32, 48));
    t.true(Buffer.concat([cbc.update(encryptedKey), cbc.final()]).equals(kd), `t at ${rounds} rounds`);
    t.true(check.equals(checkHash(kd, rounds)), `check hash at ${rounds} rounds`);
  }
});
