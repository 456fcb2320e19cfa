// What we write, Dovecot reads: users, Maildirs, uidlists, dicts, keys and mail made entirely by
// our code, served by a real Dovecot 2.3 (mail_crypt, SQLite passdb/userdb on our own database,
// {ARGON2ID} hashes) over IMAP, byte for byte — on every curve, in a second folder, and across a
// folder-key rotation. doveadm lists our keys. And the other way: what Dovecot's own LMTP writes
// into our users' Maildirs, our reader opens.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { openDb } from '../../src/accounts/db.ts';
import { addUser } from '../../src/accounts/users.ts';
import { deliver } from '../../src/deliver/deliver.ts';
import { generateKey } from '../../src/mailcrypt/keys.ts';
import { formatPrivateKey, formatPublicKey } from '../../src/mailcrypt/keystring.ts';
import { openFile } from '../../src/mailcrypt/open.ts';
import { ensureMailbox, readMailboxGuid } from '../../src/maildir/uidlist.ts';
import { folderPath } from '../../src/maildir/paths.ts';
import { updateDict, readDict } from '../../src/store/dictfile.ts';
import { DICT_NAME, FolderKeys } from '../../src/store/folderkeys.ts';
import { activePublicKey, putKey } from '../../src/store/keyring.ts';
import { dictKeyLookup } from '../../src/store/unlock.ts';
import { sandbox } from '../helpers/agent.ts';
import { chownTree, cryptokeyList, dovecotTest, startDovecot, vmailIds } from '../helpers/dovecot.ts';
import { imapFetchAll, imapLogin } from '../helpers/imap.ts';
import { lmtpSend } from '../helpers/lmtp.ts';
import { Collect } from '../helpers/streams.ts';

const dtest = dovecotTest(test);
const CURVES = ['secp521r1', 'secp384r1', 'prime256v1'];

/** A message with CRLF endings as LMTP would hand it over; unique token in the body. */
function message(n: number, extra = ''): { crlf: Buffer; token: string } {
  const token = `tok-${crypto.randomBytes(6).toString('hex')}`;
  const body = [
    `From: Sender <sender@example.net>`, `To: <rcpt@example.org>`, `Subject: message ${n} ünïcödé`,
    `Message-ID: <${token}@example.net>`, `MIME-Version: 1.0`, `Content-Type: text/plain; charset=utf-8`,
    `Content-Transfer-Encoding: 8bit`, ``, `body of ${n}: ${token}`, `8-bit: grüße, 日本語`, extra, `.leading dot`, ``,
  ].join('\r\n');
  return { crlf: Buffer.from(body), token };
}

async function store(folder: string, key: () => Promise<import('../../src/mailcrypt/keys.ts').EcPublicKey>, msg: Buffer, rcpt: string) {
  const [r] = await deliver({
    source: Readable.from([msg.subarray(0, 7), msg.subarray(7)]),
    targets: [{ rcpt, folder, key }],
    trace: { from: 'sender@example.net', helo: 'client.example.net', remoteAddress: '127.0.0.1', host: 'test', id: 'T' },
  });
  if (!r?.ok) throw r?.error ?? new Error('no result');
  return r;
}

/** What IMAP must serve for a stored file: the decrypted content with CRLF. */
async function expected(file: string, password: string, maildir: string): Promise<Buffer> {
  const { dict } = await readDict(path.join(maildir, DICT_NAME));
  const out = new Collect();
  await openFile(file, dictKeyLookup(dict, async () => password), out);
  return Buffer.from(out.data.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
}

dtest('Dovecot IMAP reads users, keys and mail written by our code (all curves, folders, rotation)', async (t) => {
  const sb = sandbox('msr-');
  t.teardown(() => sb.cleanup());
  const { uid, gid } = vmailIds();
  const db = openDb(sb.db);
  t.teardown(() => db.close());
  const keys = new FolderKeys();
  const users = CURVES.map((curve) => ({ address: `u-${curve}@example.org`, password: `pw for ${curve}!`, curve }));
  const stored = new Map<string, { file: string; token: string; folder: string; want?: Buffer }[]>();

  for (const u of users) {
    const added = await addUser(db, sb.maildir, { ...u, owner: { uid, gid } });
    const maildir = path.join(added.home, 'Maildir');
    const list: { file: string; token: string; folder: string }[] = [];
    // INBOX: two messages to the key made at `user add`.
    for (const n of [1, 2]) {
      const m = message(n);
      const r = await store(maildir, () => keys.activeKey(maildir, maildir), m.crlf, u.address);
      list.push({ file: r.path, token: m.token, folder: 'INBOX' });
    }
    // Rotate the INBOX folder key (a new active key, the old one kept), then one more message.
    const guid = (await readMailboxGuid(maildir))!;
    await updateDict(path.join(maildir, DICT_NAME), async (dict) => {
      const userKey = activePublicKey(dict, 'user', guid)!;
      const k = await generateKey(userKey.curve);
      putKey(dict, 'folder', guid, { id: k.id, publicString: formatPublicKey(k), privateString: await formatPrivateKey(k, { to: userKey }) }, true);
    });
    const m3 = message(3, 'x'.repeat(100_000));
    list.push({ file: (await store(maildir, () => keys.activeKey(maildir, maildir), m3.crlf, u.address)).path, token: m3.token, folder: 'INBOX' });
    // A second folder: created by us, its key created on first delivery.
    const archive = folderPath(maildir, 'Archive');
    await ensureMailbox(archive);
    const m4 = message(4);
    list.push({ file: (await store(archive, () => keys.activeKey(maildir, archive), m4.crlf, u.address)).path, token: m4.token, folder: 'Archive' });
    await chownTree(added.home, uid, gid);
    stored.set(u.address, list);
  }

  // No plaintext anywhere under the mail root; what IMAP must serve, computed before Dovecot
  // moves the files from new/ to cur/.
  for (const [address, list] of stored) {
    const u = users.find((x) => x.address === address)!;
    for (const s of list) {
      s.want = await expected(s.file, u.password, path.join(sb.maildir, 'example.org', `u-${u.curve}`, 'Maildir'));
      const raw = fs.readFileSync(s.file);
      t.is(raw.subarray(0, 9).toString('latin1'), 'CRYPTED\x03\x07');
      t.false(raw.includes(s.token), 'token not in the file');
    }
  }

  const dv = await startDovecot({ sqlite: { db: sb.db, mailRoot: sb.maildir } });
  t.teardown(() => dv.stop());

  for (const u of users) {
    const list = stored.get(u.address)!;
    for (const folder of ['INBOX', 'Archive']) {
      const want = list.filter((s) => s.folder === folder);
      const got = await imapFetchAll(dv.imapPort, u.address, u.password, folder);
      t.is(got.length, want.length, `${u.address} ${folder}: message count`);
      for (const [i, s] of want.entries()) {
        const body = got[i]!.body;
        t.true(body.includes(Buffer.from(s.token)), `${u.address} ${folder} #${i}: token served`);
        t.true(body.equals(s.want!), `${u.address} ${folder} #${i}: byte-identical`);
        t.is(got[i]!.size, body.length, 'RFC822.SIZE = W= = CRLF size');
        t.true(body.subarray(0, 80).toString().startsWith('Return-Path: <sender@example.net>\r\nDelivered-To:'), 'our trace headers');
      }
    }
    t.false(await imapLogin(dv.imapPort, u.address, u.password + 'x'), 'wrong password refused');

    const userRows = await cryptokeyList(dv, u.address, u.password, '-U');
    t.is(userRows.filter((r) => r.active).length, 1, 'doveadm sees our active user key');
    const inboxRows = await cryptokeyList(dv, u.address, u.password, 'INBOX');
    t.is(inboxRows.length, 2, 'doveadm lists both INBOX keys (old and rotated)');
    t.is(inboxRows.filter((r) => r.active).length, 1);
  }
  t.false((await dv.log()).includes('Error'), 'no errors in the Dovecot log');
});

dtest("Dovecot's own LMTP delivers into a user we made; our reader opens what it wrote", async (t) => {
  const sb = sandbox('msl-');
  t.teardown(() => sb.cleanup());
  const { uid, gid } = vmailIds();
  const db = openDb(sb.db);
  t.teardown(() => db.close());
  const u = { address: 'dove@example.org', password: 'lmtp-writes-this-one', curve: 'secp384r1' };
  const added = await addUser(db, sb.maildir, { ...u, owner: { uid, gid } });
  const dv = await startDovecot({ sqlite: { db: sb.db, mailRoot: sb.maildir }, lmtp: true });
  t.teardown(() => dv.stop());
  const m = message(9);
  const { data } = await lmtpSend(dv.lmtpPort, { from: 'sender@example.net', to: [u.address], body: m.crlf });
  t.is(data[0]?.code, 250, data[0]?.text);
  const newDir = path.join(added.home, 'Maildir', 'new');
  const files = fs.readdirSync(newDir);
  t.is(files.length, 1);
  const file = path.join(newDir, files[0]!);
  t.false(fs.readFileSync(file).includes(Buffer.from(m.token)), 'Dovecot sealed it');
  const got = await expected(file, u.password, path.join(added.home, 'Maildir'));
  t.true(got.includes(Buffer.from(m.token)));
  t.true(got.toString().endsWith(m.crlf.toString()), 'the whole message, after the trace headers Dovecot added');
});
