// Every message Dovecot 2.3.19 wrote (shared/fixtures) decrypts byte-for-byte; our header
// encoder reproduces Dovecot's header bytes; what we seal to a Dovecot-made key opens again.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { decodeHeader, encodeHeader } from '../../src/mailcrypt/format.ts';
import { openFile } from '../../src/mailcrypt/open.ts';
import { createSealStream } from '../../src/mailcrypt/seal.ts';
import { OpenStream } from '../../src/mailcrypt/open.ts';
import { Collect, through } from '../helpers/streams.ts';
import { vectorKeys, vectorPath, vectorUsers } from '../helpers/vectors.ts';

for (const u of vectorUsers()) {
  for (const m of u.messages) {
    test(`${u.dir} uid ${m.uid}: Dovecot's file decrypts to the recorded plaintext`, async (t) => {
      const { folders } = await vectorKeys(u);
      const out = new Collect();
      const used: string[] = [];
      const res = await openFile(vectorPath(m.maildir_file), (id) => {
        used.push(id);
        return folders.get(id);
      }, out);
      t.true(res.encrypted);
      t.deepEqual([...new Set(used)], [m.stanza_key_id], 'the stanza names its key; we pick by id, not by active');
      t.is(out.data.length, m.S, 'stored (LF) size is S=');
      const imap = Buffer.from(out.data.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
      t.is(imap.length, m.W, 'CRLF size is W=');
      t.true(imap.equals(fs.readFileSync(vectorPath(m.plain_file))), 'CRLF form equals what Dovecot IMAP served');
      t.is(crypto.createHash('sha256').update(imap).digest('hex'), m.plain_sha256);
    });

    test(`${u.dir} uid ${m.uid}: header re-encodes to Dovecot's bytes`, (t) => {
      const file = fs.readFileSync(vectorPath(m.maildir_file));
      const h = decodeHeader(file);
      t.is(h.length, m.header_bytes);
      t.is(h.stanzas.length, 1);
      t.is(h.stanzas[0]!.keyId, m.stanza_key_id);
      t.true(encodeHeader(h.stanzas[0]!, h.rounds).equals(file.subarray(0, h.length)));
      t.is(file.length, m.header_bytes + m.S + 16);
    });
  }

  test(`${u.dir}: sealed to Dovecot's active folder key, opened with it`, async (t) => {
    const { folders } = await vectorKeys(u);
    const key = folders.get(u.active_folder_key_id)!;
    const plain = crypto.randomBytes(200_000);
    const chunks = [plain.subarray(0, 1), plain.subarray(1, 70_000), plain.subarray(70_000)];
    const sealed = await through(chunks, await createSealStream(key));
    t.is(sealed.length, u.messages[0]!.header_bytes + plain.length + 16, 'same header size as Dovecot');
    t.is(decodeHeader(sealed).stanzas[0]!.keyId, key.id);
    const opened = await through(sealed, new OpenStream((id) => folders.get(id)));
    t.true(opened.equals(plain));
  });
}
