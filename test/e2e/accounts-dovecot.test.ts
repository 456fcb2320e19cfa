// Accounts against real Dovecot IMAP running on the configuration `mailseal config dovecot`
// generates, over mail the agent delivered (as vmail). Nothing is restarted between steps:
// after `user passwd` the new password reads all old and new mail and the old one is refused,
// for every user, and the others are unaffected; `user recover` with the code does the same and
// voids the code; `key rotate` keeps old and new mail readable; a password change killed
// half-way still lets the user in (second passdb) and `user repair` settles it.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { type Agent, cli, type Sandbox, sandbox, startAgent } from '../helpers/agent.ts';
import { codeIn, deliver } from '../helpers/accounts.ts';
import { cryptokeyList, type Dovecot, dovecotTest, haveDovecot, startDovecot } from '../helpers/dovecot.ts';
import { imapFetchAll, imapLogin } from '../helpers/imap.ts';
import { homeOf } from '../helpers/mailbox.ts';

const USERS = [
  { address: 'alice@example.org', curve: 'secp521r1' },
  { address: 'bob@example.org', curve: 'prime256v1' },
  { address: 'carol@example.org', curve: 'secp384r1' },
] as const;
type Address = (typeof USERS)[number]['address'];

let sb: Sandbox;
let agent: Agent;
let dv: Dovecot;
const pw = new Map<Address, string>();
const code = new Map<Address, string>();
const mail = new Map<Address, string[]>();

async function run(args: string[], input = ''): Promise<string> {
  const r = await cli(sb, args, input);
  if (r.code !== 0) throw new Error(`mailseal ${args.join(' ')}: ${r.code} ${r.stderr}`);
  return r.stdout.toString();
}

async function more(a: Address, n = 1): Promise<void> {
  mail.get(a)!.push(...(await deliver(agent.port, a, n)));
}

/** The tokens Dovecot serves over IMAP for this login (throws if a message cannot be opened). */
async function imapTokens(a: Address, password: string): Promise<string[]> {
  const msgs = await imapFetchAll(dv.imapPort, a, password);
  return msgs.map((m) => /tok-[0-9a-f]{16}/.exec(m.body.toString())?.[0] ?? '?').sort();
}

test.before(async () => {
  if (!haveDovecot() || process.getuid?.() !== 0) return; // dovecotTest skips (or fails under CI)
  sb = sandbox('msad-');
  for (const [i, u] of USERS.entries()) {
    const p = `password number ${i} for ${u.curve}`;
    const out = await run(['user', 'add', u.address, '--curve', u.curve, '--owner', 'vmail', '--password-stdin'], `${p}\n`);
    pw.set(u.address, p);
    code.set(u.address, codeIn(out));
    mail.set(u.address, []);
  }
  agent = await startAgent(sb, ['--user', 'vmail']);
  for (const u of USERS) await more(u.address, 2);
  const out = path.join(sb.dir, 'dovecot');
  await run(['config', 'dovecot', '--mail-user', 'vmail', '--sasl-socket', path.join(sb.dir, 'auth-sock'), '--out', out]);
  dv = await startDovecot({ include: path.join(out, 'mailseal.conf'), extraConfig: 'auth_failure_delay = 0' });
});

test.after.always(async () => {
  await dv?.stop();
  await agent?.stop();
  sb?.cleanup();
});

// The steps build on each other: serial. (dovecotTest registers a failing test under CI if Dovecot is missing.)
const dtest = dovecotTest(test) === test ? test.serial : test.serial.skip;

async function everyoneReads(t: ExecutionContext): Promise<void> {
  for (const u of USERS) t.deepEqual(await imapTokens(u.address, pw.get(u.address)!), [...mail.get(u.address)!].sort(), u.address);
}

dtest('user passwd, for every user in turn, with nothing restarted: new password reads old and new mail, old refused, others unaffected', async (t) => {
  await everyoneReads(t);
  for (const [i, u] of USERS.entries()) {
    const old = pw.get(u.address)!;
    const next = `changed password number ${i} here`;
    await run(['user', 'passwd', u.address, '--password-stdin'], `${old}\n${next}\n`);
    pw.set(u.address, next);
    await more(u.address);
    t.false(await imapLogin(dv.imapPort, u.address, old), `${u.address}: old password refused`);
    await everyoneReads(t);
  }
});

dtest('user recover: a wrong code changes nothing; the code sets a new password that reads all mail; the old code is then void', async (t) => {
  const a: Address = 'bob@example.org';
  const wrong = await cli(sb, ['user', 'recover', a, '--password-stdin'], `${'Z'.repeat(32)}\nnew password from the code\n`);
  t.is(wrong.code, 1);
  t.deepEqual(await imapTokens(a, pw.get(a)!), [...mail.get(a)!].sort(), 'nothing changed');

  const old = pw.get(a)!;
  const out = await run(['user', 'recover', a, '--password-stdin'], `${code.get(a)!}\nnew password from the code\n`);
  pw.set(a, 'new password from the code');
  await more(a);
  await everyoneReads(t);
  t.false(await imapLogin(dv.imapPort, a, old));
  const again = await cli(sb, ['user', 'recover', a, '--password-stdin'], `${code.get(a)!}\nyet another password\n`);
  t.regex(again.stderr, /wrong recovery code/);
  code.set(a, codeIn(out));
});

dtest('key rotate (folder, then user key): mail from before and after reads over IMAP; Dovecot sees the keys', async (t) => {
  const a: Address = 'carol@example.org';
  await run(['key', 'rotate', a]);
  await more(a);
  await run(['key', 'rotate', a, '--user', '--password-stdin'], `${pw.get(a)!}\n`);
  await more(a);
  await everyoneReads(t);
  const ours = JSON.parse(await run(['key', 'list', a, '--json'])) as { scope: string; id: string; active: boolean }[];
  const theirs = await cryptokeyList(dv, a, pw.get(a)!, 'INBOX');
  const folderKeys = ours.filter((x) => x.scope === 'folder');
  t.is(folderKeys.length, 2);
  t.deepEqual(theirs.map((k) => [k.id, k.active]).sort(), folderKeys.map((k) => [k.id, k.active]).sort(), 'doveadm sees our INBOX keys, the same one active');
});

dtest('passwd killed after the dict write: the new password logs in and reads everything at once; repair settles it', async (t) => {
  const a: Address = 'alice@example.org';
  const old = pw.get(a)!;
  const next = 'password set by a killed run';
  const crashed = await cli({ ...sb, env: { ...sb.env, MAILSEAL_FAULT: 'dict' } }, ['user', 'passwd', a, '--password-stdin'], `${old}\n${next}\n`);
  t.is(crashed.code, null, crashed.stderr);
  pw.set(a, next);
  await more(a);
  await everyoneReads(t); // alice with the new password, through the pending passdb
  t.regex(await run(['user', 'repair']), /alice@example\.org: interrupted change completed/);
  await everyoneReads(t);
  t.false(await imapLogin(dv.imapPort, a, old));
});

dtest('passwd killed before the dict write: the old password goes on working; repair rolls back', async (t) => {
  const a: Address = 'bob@example.org';
  const next = 'password of a run killed early';
  const crashed = await cli({ ...sb, env: { ...sb.env, MAILSEAL_FAULT: 'journal' } }, ['user', 'passwd', a, '--password-stdin'], `${pw.get(a)!}\n${next}\n`);
  t.is(crashed.code, null, crashed.stderr);
  await everyoneReads(t);
  // The killed run held the dict's dotlock; Dovecot would take it as stale after 60 s.
  fs.unlinkSync(path.join(homeOf(sb.maildir, a), 'Maildir', 'dovecot-attributes.lock'));
  t.regex(await run(['user', 'repair', a]), /interrupted change rolled back/);
  t.false(await imapLogin(dv.imapPort, a, next));
  await more(a);
  await everyoneReads(t);
});
