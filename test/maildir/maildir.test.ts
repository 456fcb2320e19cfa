// Maildir basics: the mailbox GUID from Dovecot's uidlists, creating a uidlist (racing
// creators agree on one GUID), containment of homes and folders, file names.

import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MailsealError } from '../../src/errors.ts';
import { escapeHost, makeMaildirName, parseMaildirName } from '../../src/maildir/filename.ts';
import { folderPath, userHome } from '../../src/maildir/paths.ts';
import { ensureMailbox, parseUidlistGuid, readMailboxGuid } from '../../src/maildir/uidlist.ts';
import { vectorUsers, VECTORS } from '../helpers/vectors.ts';

test("the GUID of every fixture mailbox, from Dovecot's dovecot-uidlist", async (t) => {
  for (const u of vectorUsers()) t.is(await readMailboxGuid(path.join(VECTORS, u.dir, 'Maildir')), u.inbox_guid);
  t.is(await readMailboxGuid('/nonexistent'), null);
  t.throws(() => parseUidlistGuid('1 V1 N1\n'), { message: /version/ });
  t.throws(() => parseUidlistGuid('3 V1 N1\n'), { message: /GUID/ });
});

test('ensureMailbox: 10 racing creators make one uidlist and agree on its GUID', async (t) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-box-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  const guids = await Promise.all(Array.from({ length: 10 }, () => ensureMailbox(d)));
  t.is(new Set(guids).size, 1);
  t.regex(fs.readFileSync(path.join(d, 'dovecot-uidlist'), 'utf8'), new RegExp(`^3 V\\d+ N1 G${guids[0]}\\n$`));
  for (const s of ['cur', 'new', 'tmp']) t.is(fs.statSync(path.join(d, s)).mode & 0o777, 0o700);
  t.false(fs.existsSync(path.join(d, 'dovecot-uidlist.lock')));
});

test('homes and folders cannot leave the mail root', (t) => {
  t.is(userHome('/m', 'alice@example.org'), '/m/example.org/alice');
  for (const bad of ['../x@example.org', 'a/b@example.org', 'a@..', 'a@x/../../etc', '.a@example.org', 'a@.example.org', 'a\0@x', 'a\n@x', 'A@x', '@x', 'a@']) {
    t.throws(() => userHome('/m', bad), { instanceOf: MailsealError }, JSON.stringify(bad));
  }
  t.is(folderPath('/m/Maildir', 'INBOX'), '/m/Maildir');
  t.is(folderPath('/m/Maildir', 'Lists/dev'), '/m/Maildir/.Lists.dev');
  for (const bad of ['..', 'a/../b', '', 'a//b', 'x\0', 'a\\b']) {
    t.throws(() => folderPath('/m/Maildir', bad), { instanceOf: MailsealError }, JSON.stringify(bad));
  }
});

test('Maildir file names as Dovecot writes them', (t) => {
  t.is(makeMaildirName({ sec: 1795420374, usec: 125947, pid: 8598, seq: 3, host: 'vm' }), '1795420374.M125947P8598Q3.vm');
  t.is(escapeHost('a/b:c'), 'a\\057b\\072c');
  t.deepEqual(parseMaildirName('1795420374.M125947P8598.vm,S=2572,W=2613:2,S'), { base: '1795420374.M125947P8598.vm', size: 2572, vsize: 2613, flags: 'S' });
  t.deepEqual(parseMaildirName('1.M1P1.h'), { base: '1.M1P1.h' });
});
