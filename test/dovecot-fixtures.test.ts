// Proves the real-Dovecot harness (helpers/dovecot.ts, helpers/imap.ts) on the Dovecot-made
// fixtures: stock Dovecot 2.3 must serve every fixture message byte for byte over IMAP, refuse a
// wrong password, and list the fixture key ids with doveadm.

import test from 'ava';
import Database from 'better-sqlite3';
import sodium from 'libsodium-wrappers-sumo';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chownTree, cryptokeyList, dovecotTest, parseCryptokeyList, startDovecot, vmailIds } from './helpers/dovecot.ts';
import { ImapError, ImapParser, encodeMailboxName, imapFetchAll, imapLogin, splitResponse } from './helpers/imap.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = path.resolve(REPO, '..', 'shared', 'fixtures', 'dovecot-2.3.19');

interface FixtureMessage { uid: number; W: number; S: number; plain_file: string }
interface FixtureUser {
  login: string; password: string; curve: string; user_key_id: string;
  folder_key_ids: string[]; active_folder_key_id: string; messages: FixtureMessage[];
}
const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as { users: Record<string, FixtureUser> };
const USERS = Object.entries(manifest.users);

const dtest = dovecotTest(test);

/** A vmail-owned home holding a copy of the fixture user's Maildir (+ empty cur/ and tmp/). */
async function fixtureHome(t: { teardown(fn: () => Promise<void>): void }, dir: string, into?: string): Promise<string> {
  const root = into ?? (await fsp.mkdtemp('/tmp/msh-'));
  if (!into) t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  await fsp.mkdir(root, { recursive: true });
  await fsp.chmod(root, 0o755);
  const home = path.join(root, dir);
  await fsp.mkdir(home, { recursive: true });
  await fsp.cp(path.join(FIXTURES, dir, 'Maildir'), path.join(home, 'Maildir'), { recursive: true });
  await fsp.mkdir(path.join(home, 'Maildir', 'cur'), { recursive: true });
  await fsp.mkdir(path.join(home, 'Maildir', 'tmp'), { recursive: true });
  await chmodTree(home); // the fixture files are read-only; Dovecot moves new/ → cur/, writes indexes
  const { uid, gid } = vmailIds();
  await chownTree(home, uid, gid);
  return home;
}

async function chmodTree(p: string): Promise<void> {
  const st = await fsp.lstat(p);
  if (st.isDirectory()) {
    await fsp.chmod(p, 0o700);
    for (const e of await fsp.readdir(p)) await chmodTree(path.join(p, e));
  } else if (st.isFile()) await fsp.chmod(p, 0o600);
}

// ---------------------------------------------------------------------------------------------
// Pure: parsers

test('parseCryptokeyList reads the recorded doveadm tables', (t) => {
  for (const [dir, u] of USERS) {
    const user = parseCryptokeyList(fs.readFileSync(path.join(FIXTURES, dir, 'cryptokey-list-user.txt'), 'utf8'));
    t.deepEqual(user, [{ folder: '', active: true, id: u.user_key_id }], dir);
    const inbox = parseCryptokeyList(fs.readFileSync(path.join(FIXTURES, dir, 'cryptokey-list-inbox.txt'), 'utf8'));
    t.deepEqual(
      inbox.map((r) => r.id).sort(),
      [...u.folder_key_ids].sort(),
      dir,
    );
    for (const r of inbox) {
      t.is(r.folder, 'INBOX');
      t.is(r.active, r.id === u.active_folder_key_id);
    }
  }
  t.deepEqual(parseCryptokeyList('Folder\tActive\tPublic ID\nINBOX\tno\tab12\n'), [{ folder: 'INBOX', active: false, id: 'ab12' }]);
  t.deepEqual(parseCryptokeyList(''), []);
  t.throws(() => parseCryptokeyList('Mailbox Foo\n'));
});

test('imap: responses split by literal byte counts, not by CRLF inside literals', (t) => {
  const body = Buffer.from('a\r\n)\r\n{3}\r\n\u00e9\r\n');
  const raw = Buffer.concat([
    Buffer.from(`* 1 FETCH (UID 7 BODY[] {${body.length}}\r\n`),
    body,
    Buffer.from(' RFC822.SIZE 12)\r\nt1 OK done\r\n'),
  ]);
  t.is(splitResponse(raw.subarray(0, raw.length - 20)), null);
  const r = splitResponse(raw)!;
  t.is(r.rest.toString(), 't1 OK done\r\n');
  const p = new ImapParser(r.response);
  t.is(p.atom(), '*');
  t.is(p.atom(), '1');
  t.is(p.atom(), 'FETCH');
  const v = p.value() as unknown[];
  t.is(v[0], 'UID');
  t.is(v[2], 'BODY[]');
  t.true(Buffer.isBuffer(v[3]) && body.equals(v[3] as Buffer));
  t.is(v[5], '12');
  const q = new ImapParser(Buffer.from('BODY[HEADER.FIELDS (FROM TO)]<0> "a\\"b\\\\c" NIL'));
  t.is(q.atom(), 'BODY[HEADER.FIELDS (FROM TO)]<0>');
  t.is((q.value() as Buffer).toString(), 'a"b\\c');
  t.is(q.value(), null);
});

test('imap: modified UTF-7 mailbox names', (t) => {
  t.is(encodeMailboxName('INBOX'), 'INBOX');
  t.is(encodeMailboxName('A&B'), 'A&-B');
  t.is(encodeMailboxName('Entwürfe'), 'Entw&APw-rfe'); // RFC 3501 style
  t.is(encodeMailboxName('~peter/mail/台北/日本語'), '~peter/mail/&U,BTFw-/&ZeVnLIqe-'); // RFC 3501 §5.1.3 example
});

// ---------------------------------------------------------------------------------------------
// Real Dovecot, passwd-file

for (const [dir, u] of USERS) {
  dtest(`Dovecot serves fixture ${dir} byte for byte; wrong password refused; doveadm lists its keys`, async (t) => {
    const home = await fixtureHome(t, dir);
    const t0 = Date.now();
    const dv = await startDovecot({ users: [{ login: u.login, password: u.password, home, curve: u.curve }], curve: u.curve });
    t.teardown(() => dv.stop());
    t.log(`${dir}: dovecot up in ${Date.now() - t0} ms (imap ${dv.imapPort}, ${dv.dir})`);

    const msgs = await imapFetchAll(dv.imapPort, u.login, u.password);
    t.deepEqual(msgs.map((m) => m.uid), u.messages.map((m) => m.uid));
    for (const m of u.messages) {
      const got = msgs.find((x) => x.uid === m.uid)!;
      const want = fs.readFileSync(path.join(FIXTURES, m.plain_file));
      t.is(got.size, m.W, `${dir} uid ${m.uid} RFC822.SIZE`);
      t.is(got.body.length, want.length, `${dir} uid ${m.uid} length`);
      t.true(got.body.equals(want), `${dir} uid ${m.uid} bytes`);
    }

    // wrong password: a tagged NO (after auth_failure_delay), not a BYE
    t.false(await imapLogin(dv.imapPort, u.login, `${u.password}-wrong`));
    t.true(await imapLogin(dv.imapPort, u.login, u.password));
    const e = await t.throwsAsync(imapFetchAll(dv.imapPort, u.login, 'nope'), { instanceOf: ImapError });
    t.regex(e!.message, /AUTHENTICATIONFAILED/);

    const userKeys = await cryptokeyList(dv, u.login, u.password, '-U');
    t.deepEqual(userKeys, [{ folder: '', active: true, id: u.user_key_id }]);
    const inbox = await cryptokeyList(dv, u.login, u.password, 'INBOX');
    t.deepEqual(inbox.map((r) => r.id).sort(), [...u.folder_key_ids].sort());
    t.deepEqual(inbox.filter((r) => r.active).map((r) => r.id), [u.active_folder_key_id]);

    const log = await dv.log();
    t.notRegex(log, /Panic|Fatal|Decryption error/);
  });
}

// ---------------------------------------------------------------------------------------------
// Real Dovecot, SQLite passdb/userdb ({ARGON2ID} and {PLAIN} passwords, home column)

dtest('Dovecot with a SQLite passdb/userdb serves fixtures (ARGON2ID and PLAIN)', async (t) => {
  const root = await fsp.mkdtemp('/tmp/msh-');
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  await fsp.chmod(root, 0o755);
  const mailRoot = path.join(root, 'mail');
  const p256 = manifest.users.p256!;
  const rotate = manifest.users.rotate!;
  const h256 = await fixtureHome(t, 'p256', mailRoot);
  const hrot = await fixtureHome(t, 'rotate', mailRoot);

  await sodium.ready;
  const argon = '{ARGON2ID}' + sodium.crypto_pwhash_str(p256.password, sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE, sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE);
  const dbPath = path.join(root, 'users.db');
  const db = new Database(dbPath);
  db.exec(`CREATE TABLE users (address TEXT PRIMARY KEY, password TEXT NOT NULL, home TEXT NOT NULL,
           curve TEXT, enabled INTEGER NOT NULL DEFAULT 1)`);
  const ins = db.prepare('INSERT INTO users(address, password, home, curve, enabled) VALUES (?, ?, ?, ?, ?)');
  ins.run(p256.login, argon, h256, p256.curve, 1);
  ins.run(rotate.login, `{PLAIN}${rotate.password}`, hrot, null, 1);
  ins.run('off@example.test', '{PLAIN}off-pw', path.join(mailRoot, 'off'), null, 0);
  db.close();

  const dv = await startDovecot({ sqlite: { db: dbPath, mailRoot } });
  t.teardown(() => dv.stop());

  for (const u of [p256, rotate]) {
    const msgs = await imapFetchAll(dv.imapPort, u.login, u.password);
    t.deepEqual(msgs.map((m) => m.uid), u.messages.map((m) => m.uid));
    for (const m of u.messages) {
      const got = msgs.find((x) => x.uid === m.uid)!;
      t.is(got.size, m.W);
      t.true(got.body.equals(fs.readFileSync(path.join(FIXTURES, m.plain_file))), `${u.login} uid ${m.uid}`);
    }
    t.false(await imapLogin(dv.imapPort, u.login, 'wrong'));
    const keys = await cryptokeyList(dv, u.login, u.password, '-U');
    t.deepEqual(keys.map((r) => r.id), [u.user_key_id]);
  }
  t.false(await imapLogin(dv.imapPort, 'off@example.test', 'off-pw'), 'enabled = 0');

  // iterate_query
  const users = await dv.doveadm(['user', '-m', '*']).then((r) => (r.code === 0 ? r.stdout : ''));
  const list = await dv.doveadm(['user', '*']);
  t.is(list.code, 0, list.stderr);
  t.deepEqual(list.stdout.split('\n').filter(Boolean).sort(), [p256.login, rotate.login].sort(), users);
  // userdb: home and curve from the row (NULL curve → instance default)
  const info = await dv.doveadm(['user', p256.login]);
  t.regex(info.stdout, new RegExp(`home\\s+${h256}`));
  t.regex(info.stdout, /mail_crypt_curve\s+prime256v1/);
});
