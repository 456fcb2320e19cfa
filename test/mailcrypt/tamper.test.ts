// A damaged or tampered file gives a precise error and never plaintext: every byte class of a
// Dovecot-made file (header, stanza, ciphertext, tag) flipped, and truncation at every region.

import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MailsealError } from '../../src/errors.ts';
import { decodeHeader } from '../../src/mailcrypt/format.ts';
import { openFile } from '../../src/mailcrypt/open.ts';
import { Collect } from '../helpers/streams.ts';
import { vectorKeys, vectorPath, vectorUsers } from '../helpers/vectors.ts';

const users = vectorUsers().filter((u) => u.dir === 'p521' || u.dir === 'p256');

async function attempt(t: { teardown: (f: () => void) => void }, bytes: Buffer, lookup: (id: string) => unknown) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-tamper-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'mail');
  fs.writeFileSync(file, bytes);
  const out = new Collect();
  try {
    await openFile(file, lookup as never, out);
    return { out: out.data, err: undefined };
  } catch (err) {
    return { out: out.data, err: err as MailsealError };
  }
}

for (const u of users) {
  const m = u.messages[1]!; // the 2 KiB message
  const orig = fs.readFileSync(vectorPath(m.maildir_file));
  const h = decodeHeader(orig);
  const s = h.stanzas[0]!;
  const stanzaStart = 0x30 + 2; // count byte, key type
  const ephAt = stanzaStart + 32 + 4;
  const ekAt = ephAt + s.ephemeral.length + 4;
  const chkAt = ekAt + s.encryptedKey.length + 4;
  // [what, offset, expected code, message fragment]
  const cases: [string, number, string, RegExp][] = [
    ['version', 9, 'bad-format', /unsupported mail_crypt version/],
    ['flags', 13, 'bad-format', /unsupported flags/],
    ['header length', 17, 'bad-format', /header length|key data length|truncated/],
    ['cipher OID', 0x1c, 'bad-format', /unsupported cipher OID/],
    ['hash OID', 0x27, 'bad-format', /unsupported hash OID/],
    ['rounds', 0x2a, 'bad-format', /rounds|check hash|message key/],
    ['key data length', 0x2f, 'bad-format', /key data length/],
    ['stanza count', 0x30, 'bad-format', /stanza count|truncated|trailing/],
    ['key type', 0x31, 'bad-format', /RSA|key type/],
    ['stanza key id', stanzaStart + 5, 'no-key', /no private key available/],
    ['ephemeral point', ephAt + 10, 'bad-format', /point|message key/],
    ['encrypted key', ekAt + 3, 'bad-format', /message key/],
    ['encrypted key (last block)', ekAt + s.encryptedKey.length - 1, 'bad-format', /message key/],
    ['check hash', chkAt + 7, 'bad-format', /check hash/],
    ['ciphertext (first byte)', h.length, 'bad-format', /authentication failed/],
    ['ciphertext (middle)', h.length + 1000, 'bad-format', /authentication failed/],
    ['tag', orig.length - 3, 'bad-format', /authentication failed/],
  ];
  for (const [what, at, code, msg] of cases) {
    test(`${u.dir}: flipped ${what} byte → ${code}, no output`, async (t) => {
      const { folders } = await vectorKeys(u);
      const bad = Buffer.from(orig);
      bad[at]! ^= 0x01;
      const { out, err } = await attempt(t, bad, (id) => folders.get(id));
      t.true(err instanceof MailsealError, `got ${String(err)}`);
      t.is(err!.code as string, code);
      t.regex(err!.message, msg);
      t.is(out.length, 0, 'not one byte of plaintext');
    });
  }

  const cuts: [string, number][] = [
    ['inside the magic', 5], ['after the magic', 9], ['inside the fixed header', 20],
    ['inside the stanza', ekAt], ['at the end of the header', h.length],
    ['inside the body', h.length + 100], ['inside the tag', orig.length - 8], ['one byte short', orig.length - 1],
  ];
  for (const [what, len] of cuts) {
    test(`${u.dir}: truncated ${what} → error, no output`, async (t) => {
      const { folders } = await vectorKeys(u);
      const { out, err } = await attempt(t, orig.subarray(0, len), (id) => folders.get(id));
      if (len < 9) {
        // A file shorter than the magic is not a mail_crypt file: it passes through as-is.
        t.is(err, undefined);
        t.true(out.equals(orig.subarray(0, len)));
        return;
      }
      t.true(err instanceof MailsealError, `got ${String(err)}`);
      t.is(err!.code, 'bad-format');
      t.regex(err!.message, /truncated|authentication failed/);
      t.is(out.length, 0);
    });
  }

  test(`${u.dir}: the right id but a different key → error, no output`, async (t) => {
    // The user key: a valid key on the same curve, but not the folder key the stanza names.
    const { user } = await vectorKeys(u);
    const { out, err } = await attempt(t, orig, () => user);
    t.true(err instanceof MailsealError);
    t.is(err!.code, 'bad-format');
    t.regex(err!.message, /message key|point/);
    t.is(out.length, 0);
  });

  test(`${u.dir}: no key for the stanza → no-key`, async (t) => {
    const { out, err } = await attempt(t, orig, () => undefined);
    t.is(err?.code, 'no-key');
    t.true(err!.message.includes(m.stanza_key_id));
    t.is(out.length, 0);
  });
}

test('a file without the magic passes through unchanged (plaintext, as in Dovecot)', async (t) => {
  const plain = fs.readFileSync(vectorPath(vectorUsers()[0]!.messages[1]!.plain_file));
  const { out, err } = await attempt(t, plain, () => {
    throw new Error('no key lookup for plaintext');
  });
  t.is(err, undefined);
  t.true(out.equals(plain));
});
