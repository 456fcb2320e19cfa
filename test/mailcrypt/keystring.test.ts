// Key strings (spec §3): Dovecot's load in ours, ours round-trip, ids are checked, MPI edge cases.

import test from 'ava';
import { MailsealError } from '../../src/errors.ts';
import { CURVES } from '../../src/mailcrypt/curves.ts';
import { generateKey, privateKeyFromScalar } from '../../src/mailcrypt/keys.ts';
import {
  formatPrivateKey, formatPublicKey, fromMpi, openPrivateKey, parsePrivateKey, parsePublicKey, toMpi,
} from '../../src/mailcrypt/keystring.ts';
import { BOX_PREFIX, USER_PREFIX, vectorDict, vectorUsers } from '../helpers/vectors.ts';

for (const u of vectorUsers()) {
  test(`${u.dir}: Dovecot's key strings load, ids verify, public strings re-encode byte-exact`, async (t) => {
    const d = vectorDict(u);
    const g = u.inbox_guid;
    const userPub = d.get(`shared/${g}/${USER_PREFIX}pubkeys/${u.user_key_id}`)!;
    t.is(formatPublicKey(parsePublicKey(userPub)), userPub);
    t.is(d.get(`shared/${g}/${USER_PREFIX}active`), u.user_key_id);
    const userPriv = d.get(`priv/${g}/${USER_PREFIX}privkeys/${u.user_key_id}`)!;
    const pp = parsePrivateKey(userPriv);
    t.is(pp.enctype, 2);
    t.is(pp.curve.name as string, u.curve);
    const user = await openPrivateKey(pp, { password: u.password });
    t.is(user.id, u.user_key_id);
    await t.throwsAsync(openPrivateKey(pp, { password: u.password + 'x' }), { instanceOf: MailsealError, message: 'wrong password' });
    for (const id of u.folder_key_ids) {
      const pub = d.get(`shared/${g}/${BOX_PREFIX}pubkeys/${id}`)!;
      t.is(formatPublicKey(parsePublicKey(pub)), pub);
      const fp = parsePrivateKey(d.get(`priv/${g}/${BOX_PREFIX}privkeys/${id}`)!);
      t.is(fp.enctype, 1);
      if (fp.enctype === 1) t.is(fp.encryptedTo, u.user_key_id);
      t.is((await openPrivateKey(fp, { key: user })).id, id);
      // A folder key cannot be opened with another key (here: itself).
      const folder = await openPrivateKey(fp, { key: user });
      await t.throwsAsync(openPrivateKey(fp, { key: folder }), { message: /not available/ });
    }
  });
}

test('the fixtures cover the MPI edge cases (65-byte P-521 magnitude, 00-padded P-384/P-256)', (t) => {
  const lens = new Map<string, number[]>();
  for (const u of vectorUsers()) {
    for (const [k, v] of vectorDict(u)) {
      if (!k.startsWith('priv/')) continue;
      const p = parsePrivateKey(v);
      if (p.enctype !== 0) lens.set(u.dir, [...(lens.get(u.dir) ?? []), p.data.length]);
    }
  }
  t.true(lens.get('p521')!.includes(69));
  t.true(lens.get('p384')!.includes(4 + 49));
  t.true(lens.get('p256')!.includes(4 + 33));
});

test('MPI encoding follows BN_bn2mpi', (t) => {
  t.deepEqual(toMpi(Buffer.from([0, 0, 0x12])), Buffer.from([0, 0, 0, 1, 0x12]));
  t.deepEqual(toMpi(Buffer.from([0x80, 1])), Buffer.from([0, 0, 0, 3, 0, 0x80, 1]));
  t.deepEqual(toMpi(Buffer.alloc(3)), Buffer.from([0, 0, 0, 0]));
  t.deepEqual(fromMpi(Buffer.from([0, 0, 0, 3, 0, 0x80, 1]), 2), Buffer.from([0, 0x80, 1]));
  t.is(fromMpi(Buffer.from([0, 0, 0, 2, 0x80, 1]), 2), undefined, 'negative');
  t.is(fromMpi(Buffer.from([0, 0, 0, 9, 1]), 2), undefined, 'length mismatch');
});

for (const c of CURVES) {
  test(`${c.name}: enctype 0, 1 and 2 round trip, with scalars whose top byte is 0 or has its top bit set`, async (t) => {
    const user = await generateKey(c.name);
    const scalars = [Buffer.concat([Buffer.from([0]), Buffer.alloc(c.size - 1, 0x55)])];
    if (c.size !== 66) scalars.push(Buffer.concat([Buffer.from([0x81]), Buffer.alloc(c.size - 1, 0x23)]));
    const keys = [await generateKey(c), ...scalars.map((s) => privateKeyFromScalar(c, s))];
    for (const key of keys) {
      const s0 = await formatPrivateKey(key, { none: true });
      const s1 = await formatPrivateKey(key, { to: user });
      const s2 = await formatPrivateKey(key, { password: 'pässword' });
      t.is(s0.split(':').length, 5);
      t.is(s1.split(':').length, 11);
      t.is(s2.split(':').length, 9);
      t.true(s1.split(':')[9] === user.id);
      t.is((await openPrivateKey(s0, { none: true })).id, key.id);
      t.is((await openPrivateKey(s1, { key: user })).id, key.id);
      t.is((await openPrivateKey(s2, { password: 'pässword' })).id, key.id);
      t.is(parsePublicKey(formatPublicKey(key)).id, key.id);
    }
  });
}

test('key strings with a wrong id or damaged fields are refused', async (t) => {
  const key = await generateKey('prime256v1');
  const pub = formatPublicKey(key);
  const wrongId = pub.slice(0, -1) + (pub.endsWith('0') ? '1' : '0');
  t.throws(() => parsePublicKey(wrongId), { message: /key id mismatch/ });
  const s0 = await formatPrivateKey(key, { none: true });
  const f = s0.split(':');
  f[4] = wrongId.split(':')[2]!;
  await t.throwsAsync(openPrivateKey(f.join(':'), { none: true }), { message: /does not match its id/ });
  const s2 = (await formatPrivateKey(key, { password: 'pw' })).split(':');
  t.throws(() => parsePrivateKey([...s2.slice(0, 6), '99999999', ...s2.slice(7)].join(':')), { message: /rounds/ });
  t.throws(() => parsePrivateKey(s2.join('\t')), { message: /version|colon/ });
  t.throws(() => parsePrivateKey(s2.slice(0, 8).join(':')), { message: /fields/ });
  t.throws(() => parsePrivateKey(['2', '1.3.101.110', ...s2.slice(2)].join(':')), { message: /curve OID/ });
});
