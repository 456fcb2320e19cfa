// Password change, recovery, reset, rotation, disable and delete, as an operator runs them, with
// mail delivered by the real agent before and after each change and read back with our reader.
// (test/e2e/accounts-dovecot.test.ts proves the same against real Dovecot IMAP.)

import test from 'ava';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { addUser, cli, sandbox, startAgent } from '../helpers/agent.ts';
import { codeIn, deliver, row, tokensRead, verifies } from '../helpers/accounts.ts';
import { homeOf } from '../helpers/mailbox.ts';
import { lmtpSend } from '../helpers/lmtp.ts';
import { formatPrivateKey, openPrivateKey } from '../../src/mailcrypt/keystring.ts';
import { updateDict } from '../../src/store/dictfile.ts';

const P1 = 'first long password';
const P2 = 'second long password';
const P3 = 'third long password';

function dictBytes(sb: { maildir: string }, address: string): Buffer {
  return fs.readFileSync(path.join(homeOf(sb.maildir, address), 'Maildir', 'dovecot-attributes'));
}

async function setup(t: { teardown: (f: () => void | Promise<unknown>) => void }, address = 'alice@example.org') {
  const sb = sandbox('mscr-');
  t.teardown(() => sb.cleanup());
  const r = await cli(sb, ['user', 'add', address, '--curve', 'prime256v1', '--password-stdin'], `${P1}\n`);
  if (r.code !== 0) throw new Error(r.stderr);
  const agent = await startAgent(sb);
  t.teardown(() => agent.kill());
  return { sb, agent, code: codeIn(r.stdout) };
}

test('user passwd: wrong current password changes nothing; then all old and new mail opens with the new password only', async (t) => {
  const { sb, agent } = await setup(t);
  const before = await deliver(agent.port, 'alice@example.org', 2);
  const dict0 = dictBytes(sb, 'alice@example.org');

  const wrong = await cli(sb, ['user', 'passwd', 'alice@example.org', '--password-stdin'], `not the password\n${P2}\n`);
  t.is(wrong.code, 1);
  t.is(wrong.stderr, 'mailseal: error: wrong password\n');
  t.true(dictBytes(sb, 'alice@example.org').equals(dict0), 'dict untouched');
  t.true(await verifies(row(sb, 'alice@example.org').password, P1));

  const weak = await cli(sb, ['user', 'passwd', 'alice@example.org', '--password-stdin'], `${P1}\nshort\n`);
  t.is(weak.code, 2);
  t.regex(weak.stderr, /at least 10 characters/);

  const ok = await cli(sb, ['user', 'passwd', 'ALICE@example.org', '--password-stdin'], `${P1}\n${P2}\n`);
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stdout.toString(), 'password of alice@example.org changed; all mail stays readable\n');
  const after = await deliver(agent.port, 'alice@example.org', 1);
  t.deepEqual(await tokensRead(sb, 'alice@example.org', P2), [...before, ...after].sort());
  await t.throwsAsync(tokensRead(sb, 'alice@example.org', P1), { message: /wrong password/ });
  const r = row(sb, 'alice@example.org');
  t.true(await verifies(r.password, P2));
  t.false(await verifies(r.password, P1));
  t.is(r.pending, null, 'journal empty');
});

test('user recover: a wrong code changes nothing; the right code (typed loosely) sets the password, all mail opens, the old code is void, the new one works', async (t) => {
  const { sb, agent, code } = await setup(t);
  const mail = await deliver(agent.port, 'alice@example.org', 2);
  const dict0 = dictBytes(sb, 'alice@example.org');
  const hash0 = row(sb, 'alice@example.org').password;

  const bad = code.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
  const wrong = await cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `${bad}\n${P2}\n`);
  t.is(wrong.code, 1);
  t.regex(wrong.stderr, /^mailseal: error: wrong recovery code\nmailseal: hint: nothing was changed/);
  t.true(dictBytes(sb, 'alice@example.org').equals(dict0));
  t.is(row(sb, 'alice@example.org').password, hash0);
  const garbage = await cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `12345\n${P2}\n`);
  t.regex(garbage.stderr, /not a recovery code/);

  const typed = code.toLowerCase().replaceAll('-', ' ').replaceAll('0', 'o');
  const ok = await cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `${typed}\n${P2}\n`);
  t.is(ok.code, 0, ok.stderr);
  const code2 = codeIn(ok.stdout);
  t.not(code2, code);
  t.deepEqual(await tokensRead(sb, 'alice@example.org', P2), mail.sort());
  t.true(await verifies(row(sb, 'alice@example.org').password, P2));

  const old = await cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `${code}\n${P3}\n`);
  t.is(old.code, 1);
  t.regex(old.stderr, /wrong recovery code/);
  const again = await cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `${code2}\n${P3}\n`);
  t.is(again.code, 0, again.stderr);
  t.deepEqual(await tokensRead(sb, 'alice@example.org', P3), mail.sort());
});

test('key rotate: a folder key without a password, then the user key (new recovery code); mail from before and after opens', async (t) => {
  const { sb, agent, code } = await setup(t);
  const m1 = await deliver(agent.port, 'alice@example.org', 1);
  const f = await cli(sb, ['key', 'rotate', 'alice@example.org']);
  t.is(f.code, 0, f.stderr);
  t.regex(f.stdout.toString(), /^new key for INBOX: [0-9a-f]{64}; new mail is sealed to it, old mail keeps its key\n$/);
  const m2 = await deliver(agent.port, 'alice@example.org', 1);

  const wrong = await cli(sb, ['key', 'rotate', 'alice@example.org', '--user', '--password-stdin'], 'wrong password!\n');
  t.is(wrong.code, 1);
  const u = await cli(sb, ['key', 'rotate', 'alice@example.org', '--user', '--password-stdin'], `${P1}\n`);
  t.is(u.code, 0, u.stderr);
  t.regex(u.stdout.toString(), /new user key [0-9a-f]{64}; 2 folder key\(s\) re-encrypted to it\n/);
  const code2 = codeIn(u.stdout);
  const m3 = await deliver(agent.port, 'alice@example.org', 1);
  t.deepEqual(await tokensRead(sb, 'alice@example.org', P1), [...m1, ...m2, ...m3].sort());

  const list = JSON.parse((await cli(sb, ['key', 'list', 'alice@example.org', '--json'])).stdout.toString()) as
    { scope: string; folder: string; id: string; active: boolean; locked: string }[];
  const users = list.filter((k) => k.scope === 'user');
  const folders = list.filter((k) => k.scope === 'folder');
  t.is(users.length, 2);
  t.is(folders.length, 2);
  const activeUser = users.find((k) => k.active)!;
  t.is(activeUser.id, row(sb, 'alice@example.org').key_id);
  t.is(row(sb, 'alice@example.org').escrowKey, activeUser.id, 'escrow follows the user key');
  t.true(folders.every((k) => k.folder === 'INBOX' && k.locked === `key ${activeUser.id.slice(0, 16)}`));
  t.is(folders.filter((k) => k.active).length, 1);

  t.regex((await cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `${code}\n${P2}\n`)).stderr, /wrong recovery code/);
  const rec = await cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `${code2}\n${P2}\n`);
  t.is(rec.code, 0, rec.stderr);
  t.deepEqual(await tokensRead(sb, 'alice@example.org', P2), [...m1, ...m2, ...m3].sort());

  const nofolder = await cli(sb, ['key', 'rotate', 'alice@example.org', '--folder', 'Nope']);
  t.is(nofolder.stderr, 'mailseal: error: alice@example.org has no folder "Nope"\n');
});

test('user reset: refused without --discard-old-mail; with it, new mail opens with the new password, old mail only with the old one', async (t) => {
  const { sb, agent } = await setup(t);
  const old = await deliver(agent.port, 'alice@example.org', 2);
  const refused = await cli(sb, ['user', 'reset', 'alice@example.org', '--password-stdin'], `${P2}\n`);
  t.is(refused.code, 2);
  t.regex(refused.stderr, /stays sealed to the old password\nmailseal: hint: .*--discard-old-mail/);

  const r = await cli(sb, ['user', 'reset', 'alice@example.org', '--discard-old-mail', '--password-stdin'], `${P2}\n`);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout.toString(), /Mail received before now stays sealed to the old keys/);
  const fresh = await deliver(agent.port, 'alice@example.org', 1);
  const home = homeOf(sb.maildir, 'alice@example.org');
  const files = fs.readdirSync(path.join(home, 'Maildir', 'new')).map((f) => path.join(home, 'Maildir', 'new', f));
  const opened = { P1: [] as string[], P2: [] as string[] };
  for (const f of files) {
    for (const [label, pw] of [['P1', P1], ['P2', P2]] as const) {
      const c = await cli(sb, ['cat', '--password-stdin', f], `${pw}\n`);
      if (c.code === 0) opened[label].push(/tok-[0-9a-f]{16}/.exec(c.stdout.toString())![0]);
    }
  }
  t.deepEqual(opened.P2, fresh);
  t.deepEqual(opened.P1.sort(), old.sort());
  t.true(await verifies(row(sb, 'alice@example.org').password, P2));
});

test('user disable/enable: disabled users get 550 at RCPT; user del needs --keep-mail or --purge', async (t) => {
  const { sb, agent } = await setup(t);
  t.is((await cli(sb, ['user', 'disable', 'alice@example.org'])).code, 0);
  const r = await lmtpSend(agent.port, { from: 's@example.net', to: ['alice@example.org'], body: Buffer.from('Subject: x\r\n\r\nx\r\n') });
  t.is(r.rcpt[0]!.code, 550);
  t.is(row(sb, 'alice@example.org').enabled, 0);
  t.is((await cli(sb, ['user', 'enable', 'alice@example.org'])).code, 0);
  await deliver(agent.port, 'alice@example.org', 1);

  const vague = await cli(sb, ['user', 'del', 'alice@example.org']);
  t.is(vague.code, 2);
  t.is(vague.stderr, 'mailseal: error: say what happens to the mail: --keep-mail or --purge\n');
  const home = homeOf(sb.maildir, 'alice@example.org');
  const kept = await cli(sb, ['user', 'del', 'alice@example.org', '--keep-mail']);
  t.is(kept.code, 0, kept.stderr);
  t.true(fs.existsSync(path.join(home, 'Maildir', 'dovecot-attributes')));
  t.regex((await cli(sb, ['user', 'show', 'alice@example.org'])).stderr, /no such user/);

  await addUser(sb, 'bob@example.org', P1);
  const bobHome = homeOf(sb.maildir, 'bob@example.org');
  const purged = await cli(sb, ['user', 'del', 'bob@example.org', '--purge']);
  t.is(purged.code, 0, purged.stderr);
  t.false(fs.existsSync(bobHome));
  const elsewhere = await cli(sb, ['--maildir', path.join(sb.dir, 'other'), 'user', 'del', 'nobody@example.org', '--purge']);
  t.regex(elsewhere.stderr, /no such user/);
});

test('two concurrent password changes: one wins, the other is told the password is wrong; nothing corrupt', async (t) => {
  const { sb, agent } = await setup(t);
  const mail = await deliver(agent.port, 'alice@example.org', 2);
  const [a, b] = await Promise.all([
    cli(sb, ['user', 'passwd', 'alice@example.org', '--password-stdin'], `${P1}\n${P2}\n`),
    cli(sb, ['user', 'passwd', 'alice@example.org', '--password-stdin'], `${P1}\n${P3}\n`),
  ]);
  t.deepEqual([a.code, b.code].sort(), [0, 1], `${a.stderr} | ${b.stderr}`);
  const winner = a.code === 0 ? P2 : P3;
  const loser = a.code === 0 ? b : a;
  t.is(loser.stderr, 'mailseal: error: wrong password\n');
  t.deepEqual(await tokensRead(sb, 'alice@example.org', winner), mail.sort());
  const r = row(sb, 'alice@example.org');
  t.true(await verifies(r.password, winner));
  t.is(r.pending, null);
});

test('two recoveries at once with one code: one wins, the other is refused; the old escrow bytes are gone from the database files', async (t) => {
  const { sb, agent, code } = await setup(t);
  const mail = await deliver(agent.port, 'alice@example.org', 1);
  const db = new Database(sb.db, { readonly: true });
  const oldBox = (db.prepare('SELECT box FROM recovery').get() as { box: Buffer }).box;
  db.close();
  const [a, b] = await Promise.all([
    cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `${code}\n${P2}\n`),
    cli(sb, ['user', 'recover', 'alice@example.org', '--password-stdin'], `${code}\n${P3}\n`),
  ]);
  t.deepEqual([a.code, b.code].sort(), [0, 1], `${a.stderr} | ${b.stderr}`);
  const [winner, won, lost] = a.code === 0 ? [P2, a, b] : [P3, b, a];
  t.regex(lost.stderr, /recovery code was used or replaced meanwhile|wrong recovery code/);
  t.deepEqual(await tokensRead(sb, 'alice@example.org', winner), mail);
  const code2 = codeIn(won.stdout);
  t.false(lost.stdout.toString().includes('recovery code'), 'the loser printed no code');
  t.not(code2, code);
  const keys = path.dirname(sb.db);
  for (const f of fs.readdirSync(keys)) {
    t.is(fs.readFileSync(path.join(keys, f)).indexOf(oldBox), -1, `old escrow not in ${f}`);
  }
});

test('repair will not guess: a dict that holds neither the old nor the new key string is reported; --forget drops the record', async (t) => {
  const { sb } = await setup(t);
  const crashed = await cli({ ...sb, env: { ...sb.env, MAILSEAL_FAULT: 'journal' } }, ['user', 'passwd', 'alice@example.org', '--password-stdin'], `${P1}\n${P2}\n`);
  t.is(crashed.code, null);
  const file = path.join(homeOf(sb.maildir, 'alice@example.org'), 'Maildir', 'dovecot-attributes');
  fs.unlinkSync(`${file}.lock`); // left by the killed run (stale after 60 s)
  // Someone else re-wraps the user key meanwhile (e.g. a dict restored from another copy).
  await updateDict(file, async (dict) => {
    const [k, v] = [...dict].find(([name]) => name.startsWith('priv/') && name.includes('/pvt/server/'))!;
    dict.set(k, await formatPrivateKey(await openPrivateKey(v, { password: P1 }), { password: P1 }));
  });
  const r = await cli(sb, ['user', 'repair']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^mailseal: error: an interrupted passwd of alice@example\.org .* cannot be settled/);
  const again = await cli(sb, ['user', 'passwd', 'alice@example.org', '--password-stdin'], `${P1}\n${P3}\n`);
  t.is(again.code, 1, 'no change on top of an unsettled one');
  t.regex(again.stderr, /cannot be settled.*\nmailseal: hint: .*--forget/);
  const forget = await cli(sb, ['user', 'repair', 'alice@example.org', '--forget']);
  t.is(forget.stdout.toString(), 'alice@example.org: record of the interrupted change dropped; the dict is kept as it is\n');
  t.is(row(sb, 'alice@example.org').pending, null);
  t.true(await verifies(row(sb, 'alice@example.org').password, P1));
  t.is((await cli(sb, ['user', 'passwd', 'alice@example.org', '--password-stdin'], `${P1}\n${P3}\n`)).code, 0);
});
