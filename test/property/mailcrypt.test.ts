// Fuzz: random and mutated inputs to every mail_crypt parser (file header, decrypting stream,
// key strings) give a valid result or a MailsealError — never another exception, never a hang,
// never wrong plaintext.

import test from 'ava';
import fc from 'fast-check';
import fs from 'node:fs';
import { MailsealError } from '../../src/errors.ts';
import { typed } from '../helpers/typed.ts';
import { decodeHeader } from '../../src/mailcrypt/format.ts';
import { parsePrivateKey, parsePublicKey } from '../../src/mailcrypt/keystring.ts';
import { OpenStream } from '../../src/mailcrypt/open.ts';
import { through } from '../helpers/streams.ts';
import { vectorDict, vectorKeys, vectorPath, vectorUsers } from '../helpers/vectors.ts';

const numRuns = process.env.SLOW ? 2000 : 200;


/** A byte array with a few bytes changed, cut, or inserted. */
function mutated(orig: Buffer) {
  return fc.record({
    flips: fc.array(fc.tuple(fc.nat(orig.length - 1), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
    cut: fc.option(fc.nat(orig.length), { nil: undefined }),
    insert: fc.option(fc.tuple(fc.nat(orig.length), fc.uint8Array({ minLength: 1, maxLength: 8 })), { nil: undefined }),
  }).map(({ flips, cut, insert }) => {
    let b = Buffer.from(orig);
    for (const [at, x] of flips) b[at]! ^= x;
    if (insert) b = Buffer.concat([b.subarray(0, insert[0]), Buffer.from(insert[1]), b.subarray(insert[0])]);
    if (cut !== undefined) b = b.subarray(0, cut);
    return b;
  });
}

const user = vectorUsers().find((u) => u.dir === 'p256')!;
const file = fs.readFileSync(vectorPath(user.messages[1]!.maildir_file));

test('decodeHeader: random bytes and mutated Dovecot headers → header or bad-format', (t) => {
  const header = file.subarray(0, user.messages[1]!.header_bytes);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => typed(() => decodeHeader(Buffer.from(b)))), { numRuns });
  fc.assert(fc.property(mutated(header), (b) => typed(() => decodeHeader(b))), { numRuns });
  t.pass();
});

test('key strings: random and mutated strings → key or bad-format', (t) => {
  const d = vectorDict(user);
  const strings = [...d.values()].filter((v) => v.startsWith('2:'));
  const mutate = fc.tuple(fc.constantFrom(...strings), fc.nat(200), fc.constantFrom(...'0123456789abcdef:xG\t')).map(
    ([s, at, ch]) => s.slice(0, at % s.length) + ch + s.slice((at % s.length) + 1),
  );
  for (const arb of [fc.string({ maxLength: 300 }), mutate, fc.constantFrom(...strings).map((s) => s.slice(0, s.length >> 1))]) {
    fc.assert(fc.property(arb, (s) => typed(() => parsePublicKey(s)) && typed(() => parsePrivateKey(s))), { numRuns });
  }
  t.pass();
});

test('OpenStream: mutated Dovecot files → the original plaintext, a passthrough, or a MailsealError', async (t) => {
  const { folders } = await vectorKeys(user);
  const plain = await through(file, new OpenStream((id) => folders.get(id)));
  let errors = 0;
  await fc.assert(
    fc.asyncProperty(mutated(file), fc.nat(64), async (b, chunk) => {
      const size = chunk + 1;
      const chunks: Buffer[] = [];
      for (let i = 0; i < b.length; i += size * 37) chunks.push(b.subarray(i, i + size * 37));
      try {
        const out = await through(chunks, new OpenStream((id) => folders.get(id)));
        // Success is allowed only for an untouched file or one whose magic was broken (plaintext).
        return out.equals(plain) || (out.equals(b) && !b.subarray(0, 9).equals(file.subarray(0, 9)));
      } catch (err) {
        errors++;
        return err instanceof MailsealError && (err.code === 'bad-format' || err.code === 'no-key');
      }
    }),
    { numRuns },
  );
  t.true(errors > numRuns / 2, 'most mutations are caught');
});

test('OpenStream: random bytes → passthrough or a MailsealError', async (t) => {
  const magic = file.subarray(0, 9);
  await fc.assert(
    fc.asyncProperty(fc.boolean(), fc.uint8Array({ maxLength: 600 }), async (withMagic, b) => {
      const input = withMagic ? Buffer.concat([magic, Buffer.from(b)]) : Buffer.from(b);
      try {
        const out = await through(input, new OpenStream(() => undefined));
        return !withMagic && out.equals(input);
      } catch (err) {
        return err instanceof MailsealError;
      }
    }),
    { numRuns },
  );
  t.pass();
});
