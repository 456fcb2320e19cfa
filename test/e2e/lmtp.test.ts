// The agent as Postfix sees it: real `mailseal serve`, real swaks (and a raw LMTP client where
// swaks cannot say it). Every accepted message must decrypt byte-exact (our trace headers + the
// bytes sent, CRLF → LF) and no token of any message may be found in clear under the mail root.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { decodeHeader } from '../../src/mailcrypt/format.ts';
import { generateKey } from '../../src/mailcrypt/keys.ts';
import { formatPrivateKey, formatPublicKey } from '../../src/mailcrypt/keystring.ts';
import { readMailboxGuid } from '../../src/maildir/uidlist.ts';
import { updateDict } from '../../src/store/dictfile.ts';
import { activePublicKey, putKey } from '../../src/store/keyring.ts';
import { DICT_NAME } from '../../src/store/folderkeys.ts';
import { addUser, type Agent, type Sandbox, sandbox, startAgent, swaksLmtp } from '../helpers/agent.ts';
import { LmtpClient, lmtpSend } from '../helpers/lmtp.ts';
import { swaks as swaksRun } from '../helpers/swaks.ts';
import { afterTrace, files, grepTree, homeOf, lf, readMailbox } from '../helpers/mailbox.ts';

const PW = { alice: 'first-secret-pw-1', bob: 'second-secret-pw-22', carol: 'third-secret-pw-333' };

let sb: Sandbox;
let agent: Agent;
const tokens: string[] = [];

function token(): string {
  const t = `TOKEN${crypto.randomBytes(8).toString('hex')}`;
  tokens.push(t);
  return t;
}

function msg(subject: string, body: string): Buffer {
  return Buffer.from(`From: <sender@example.net>\r\nTo: <alice@example.org>\r\nSubject: ${subject}\r\nMessage-ID: <${crypto.randomUUID()}@x>\r\n\r\n${body}\r\n`);
}

/** swaks --protocol LMTP to the agent; returns its transcript. */
function swaks(args: string[]): Promise<string> {
  return swaksLmtp(`127.0.0.1:${agent.port}`, ['--from', 'sender@example.net', ...args]);
}

/** The final per-recipient replies after DATA, from a swaks transcript. */
function dataReplies(transcript: string): string[] {
  const lines = transcript.split('\n');
  const go = lines.findIndex((l) => /^<- +354 /.test(l));
  if (go < 0) return [];
  return lines.slice(go + 1).filter((l) => /^<(-|\*\*) +\d{3} /.test(l) && !/ 221 /.test(l)).map((l) => l.replace(/^<(-|\*\*) +/, ''));
}

test.before(async () => {
  sb = sandbox('mse-');
  await addUser(sb, 'alice@example.org', PW.alice);
  await addUser(sb, 'bob@example.org', PW.bob, 'secp521r1');
  await addUser(sb, 'carol@example.org', PW.carol, 'secp384r1');
  agent = await startAgent(sb, ['--max-size', String(48 * 1024 * 1024)]);
});

test.after.always(async () => {
  await agent?.stop();
  sb?.cleanup();
});

test.serial('one reply per recipient: 250 for users, 550 5.1.1 for unknown, fan-out decrypts for each', async (t) => {
  const tok = token();
  const out = await swaks(['--to', 'alice@example.org,nobody@example.org,bob@example.org,Carol@Example.ORG', '--body', `fan-out ${tok}`]);
  t.regex(out, /<\*\* +550 5\.1\.1 <nobody@example\.org> User doesn't exist/);
  const replies = dataReplies(out);
  t.is(replies.length, 3, 'one DATA reply per accepted RCPT');
  for (const [i, who] of ['alice@example.org', 'bob@example.org', 'Carol@Example.ORG'].entries()) {
    t.regex(replies[i]!, new RegExp(`^250 2\\.0\\.0 <${who}> \\S+ Saved$`));
  }
  for (const [who, pw] of Object.entries(PW)) {
    const box = await readMailbox(homeOf(sb.maildir, `${who}@example.org`), pw);
    const m = box.find((s) => s.plain.includes(tok));
    t.truthy(m, `${who} got it`);
    t.is(m!.size, m!.plain.length, 'S= is the stored size');
    t.is(m!.vsize, m!.plain.length + m!.plain.toString('latin1').split('\n').length - 1, 'W= is the CRLF size');
    t.regex(m!.plain.toString(), new RegExp(`^Return-Path: <sender@example.net>\\nDelivered-To: ${who === 'carol' ? 'Carol@Example.ORG' : `${who}@example.org`}\\nReceived: from `, 'i'));
  }
});

test.serial('a recipient named twice (as Postfix does for an address and an alias to it): a reply for each RCPT, one copy stored', async (t) => {
  const newDir = path.join(homeOf(sb.maildir, 'alice@example.org'), 'Maildir', 'new');
  const before = files(newDir).length;
  const tok = token();
  const { rcpt, data } = await lmtpSend(agent.port, { from: 'sender@example.net', to: ['alice@example.org', 'bob@example.org', 'ALICE@example.org'], body: msg('twice', tok) });
  t.deepEqual(rcpt.map((r) => r.code), [250, 250, 250]);
  t.deepEqual(data.map((r) => r.code), [250, 250, 250], 'one DATA reply per RCPT, none missing');
  t.is(files(newDir).length, before + 1, 'stored once');
  const box = await readMailbox(homeOf(sb.maildir, 'alice@example.org'), PW.alice);
  t.is(box.filter((m) => m.plain.includes(tok)).length, 1);
  // Over the size limit the count must hold too (smtp-server answers that one itself).
  const big = Buffer.alloc(49 * 1024 * 1024, 'a\r\n'.repeat(10));
  const over = await lmtpSend(agent.port, { from: 'sender@example.net', to: ['bob@example.org', 'bob@example.org'], body: Buffer.concat([msg('big', ''), big]) });
  t.deepEqual(over.data.map((r) => r.code), [552, 552]);
});

test.serial('8-bit, dot-stuffed lines and bare LF arrive byte-exact', async (t) => {
  const tok = token();
  const original = Buffer.concat([
    Buffer.from(`From: <sender@example.net>\r\nSubject: 8bit ${tok}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`),
    Buffer.from('grüße — 日本語 — \xff\xfe raw bytes\r\n', 'latin1'),
    Buffer.from('.single dot line\r\n..two dots\r\n.\r\nbare\nLF line\r\nlast\r\n'),
  ]);
  const { data } = await lmtpSend(agent.port, { from: 'sender@example.net', to: ['alice@example.org'], body: original });
  t.is(data.length, 1);
  t.is(data[0]!.code, 250, data[0]!.text);
  const m = (await readMailbox(homeOf(sb.maildir, 'alice@example.org'), PW.alice)).find((s) => s.plain.includes(tok))!;
  t.true(afterTrace(m.plain).equals(lf(original)));

  // The same bytes from swaks (sent as given with --no-data-fixup, bare LF kept), to two users.
  const tok2 = token();
  const viaSwaks = Buffer.concat([Buffer.from(`From: <sender@example.net>\r\nSubject: 8bit swaks ${tok2}\r\n`), original.subarray(original.indexOf('Content-Type'))]);
  const r = await swaksRun({ server: '127.0.0.1', port: agent.port, protocol: 'LMTP', from: 'sender@example.net', to: ['alice@example.org', 'bob@example.org'], data: viaSwaks, bareLf: true });
  t.deepEqual(r.final.map((x) => x.code), [250, 250], r.stdout);
  for (const [who, pw] of [['alice', PW.alice], ['bob', PW.bob]] as const) {
    const got = (await readMailbox(homeOf(sb.maildir, `${who}@example.org`), pw)).find((s) => s.plain.includes(tok2));
    t.truthy(got, `${who} got the swaks copy`);
    t.true(afterTrace(got!.plain).equals(lf(viaSwaks)), `${who}: byte-exact`);
  }
});

test.serial('SMTPUTF8: internationalised addresses in the envelope', async (t) => {
  const tok = token();
  const body = Buffer.from(`From: <üser@exämple.net>\r\nSubject: utf8 ${tok}\r\n\r\nhello\r\n`);
  const { rcpt, data } = await lmtpSend(agent.port, { from: 'üser@exämple.net', to: ['alice@example.org'], body, mailParams: 'SMTPUTF8 BODY=8BITMIME' });
  t.is(rcpt[0]!.code, 250);
  t.is(data[0]!.code, 250, data[0]!.text);
  const m = (await readMailbox(homeOf(sb.maildir, 'alice@example.org'), PW.alice)).find((s) => s.plain.includes(tok))!;
  t.true(m.plain.toString('utf8').startsWith('Return-Path: <üser@exämple.net>\n'));
  t.true(afterTrace(m.plain).equals(lf(body)));
});

test.serial('a 30 MiB attachment (swaks) decrypts byte-exact', async (t) => {
  const tok = token();
  const dir = fs.mkdtempSync(path.join(sb.dir, 'att-'));
  const att = path.join(dir, 'big.bin');
  fs.writeFileSync(att, Buffer.concat([crypto.randomBytes(30 * 1024 * 1024), Buffer.from(tok)]));
  const out = await swaks(['--to', 'bob@example.org', '--body', `see attachment ${tok}`, '--attach', `@${att}`, '--attach-type', 'application/octet-stream', '--suppress-data']);
  t.regex(dataReplies(out)[0] ?? out, /^250 2\.0\.0 <bob@example\.org>/);
  const m = (await readMailbox(homeOf(sb.maildir, 'bob@example.org'), PW.bob)).find((s) => s.plain.includes(`see attachment ${tok}`))!;
  t.truthy(m);
  const b64 = m.plain.toString('latin1').split('\n\n').slice(1).join('\n\n');
  const blocks = b64.split(/\n--/).find((p) => p.includes('application/octet-stream'))!;
  const data = Buffer.from(blocks.split('\n\n').slice(1).join('').replace(/\s+/g, ''), 'base64');
  t.true(data.equals(fs.readFileSync(att)), 'attachment bytes survive');
  t.true(m.size! > 40_000_000);
});

test.serial('over the size limit: 552 5.3.4 for every recipient, nothing stored', async (t) => {
  const before = files(path.join(homeOf(sb.maildir, 'alice@example.org'), 'Maildir', 'new')).length;
  const big = Buffer.alloc(49 * 1024 * 1024, 'a\r\n'.repeat(10));
  const { data } = await lmtpSend(agent.port, { from: 'sender@example.net', to: ['alice@example.org', 'bob@example.org'], body: Buffer.concat([msg('big', ''), big]) });
  t.deepEqual(data.map((r) => r.code), [552, 552]);
  t.regex(data[0]!.text, /^5\.3\.4 /);
  t.is(files(path.join(homeOf(sb.maildir, 'alice@example.org'), 'Maildir', 'new')).length, before);
  t.deepEqual(files(path.join(homeOf(sb.maildir, 'alice@example.org'), 'Maildir', 'tmp')), []);
});

test.serial('hostile addresses: 550 5.1.3 at RCPT, nothing created outside the root', async (t) => {
  const bad = ['../../etc/passwd@example.org', 'alice/../bob@example.org', 'alice@../example.org', 'a\\b@example.org', 'alice+../../x@example.org', '.alice@example.org'];
  const c = await LmtpClient.connect(agent.port);
  t.teardown(() => c.close());
  await c.reply();
  await c.cmd('LHLO x');
  await c.cmd('MAIL FROM:<s@example.net>');
  for (const a of bad) {
    const r = await c.cmd(`RCPT TO:<${a}>`);
    t.true(r.code === 550 || r.code === 501 || r.code === 553, `${a}: ${r.code} ${r.text}`);
    if (r.code === 550) t.regex(r.text, /^5\.1\.3 /, a);
  }
  t.false(fs.existsSync(path.join(sb.dir, 'etc')));
});

test.serial('recipient delimiter: alice+news goes to folder news if it exists, else INBOX', async (t) => {
  const home = homeOf(sb.maildir, 'alice@example.org');
  const tok1 = token();
  await swaks(['--to', 'alice+news@example.org', '--body', `to inbox ${tok1}`]);
  t.truthy((await readMailbox(home, PW.alice)).find((s) => s.plain.includes(tok1)), 'no folder news yet: INBOX');
  for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(home, 'Maildir', '.news', d), { recursive: true });
  const tok2 = token();
  await swaks(['--to', 'alice+news@example.org', '--body', `to news ${tok2}`]);
  const news = await readMailbox(home, PW.alice, 'news');
  t.is(news.length, 1);
  t.true(news[0]!.plain.includes(tok2));
  t.true(news[0]!.plain.toString().includes('Delivered-To: alice+news@example.org\n'));
});

test.serial('a user without a key gets 451 4.3.0 and nothing is written in clear', async (t) => {
  const home = homeOf(sb.maildir, 'carol@example.org');
  const dictFile = path.join(home, 'Maildir', DICT_NAME);
  const saved = fs.readFileSync(dictFile);
  // Drop every key (as if the dict were lost), and make the folder need a new key.
  await updateDict(dictFile, (d) => {
    for (const k of [...d.keys()]) d.delete(k);
  });
  const before = files(path.join(home, 'Maildir', 'new')).length;
  const tok = token();
  const out = await swaks(['--to', 'carol@example.org', '--body', `no key ${tok}`]);
  t.regex(dataReplies(out)[0] ?? out, /^451 4\.3\.0 <carol@example\.org> /);
  t.is(files(path.join(home, 'Maildir', 'new')).length, before);
  t.deepEqual(grepTree(sb.dir, tok), []);
  // Restore: the next delivery works again without a restart (the agent re-reads the dict).
  fs.writeFileSync(dictFile + '.tmp', saved);
  fs.renameSync(dictFile + '.tmp', dictFile);
  const tok2 = token();
  const out2 = await swaks(['--to', 'carol@example.org', '--body', `key back ${tok2}`]);
  t.regex(dataReplies(out2)[0] ?? out2, /^250 /);
  t.truthy((await readMailbox(home, PW.carol)).find((s) => s.plain.includes(tok2)));
});

test.serial('a client that disconnects mid-DATA leaves no file in new/ or tmp/', async (t) => {
  const home = homeOf(sb.maildir, 'alice@example.org');
  const before = files(path.join(home, 'Maildir', 'new')).length;
  const tok = token();
  const c = await LmtpClient.connect(agent.port);
  await c.reply();
  await c.cmd('LHLO x');
  await c.cmd('MAIL FROM:<s@example.net>');
  await c.cmd('RCPT TO:<alice@example.org>');
  await c.cmd('DATA');
  c.sock.write(`Subject: aborted ${tok}\r\n\r\n` + `${tok} `.repeat(200_000));
  await new Promise((r) => setTimeout(r, 300));
  c.close();
  await new Promise((r) => setTimeout(r, 500));
  t.is(files(path.join(home, 'Maildir', 'new')).length, before);
  t.deepEqual(files(path.join(home, 'Maildir', 'tmp')), []);
  t.deepEqual(grepTree(sb.dir, tok), []);
});

test.serial('a folder key rotated by another process is used by the next delivery, no restart; SIGHUP keeps serving', async (t) => {
  const home = homeOf(sb.maildir, 'bob@example.org');
  const maildir = path.join(home, 'Maildir');
  const guid = (await readMailboxGuid(maildir))!;
  let newId = '';
  await updateDict(path.join(maildir, DICT_NAME), async (d) => {
    const userKey = activePublicKey(d, 'user', guid)!;
    const k = await generateKey(userKey.curve);
    putKey(d, 'folder', guid, { id: k.id, publicString: formatPublicKey(k), privateString: await formatPrivateKey(k, { to: userKey }) }, true);
    newId = k.id;
  });
  const tok = token();
  t.regex(dataReplies(await swaks(['--to', 'bob@example.org', '--body', `rotated ${tok}`]))[0] ?? '', /^250 /);
  const m = (await readMailbox(home, PW.bob)).find((s) => s.plain.includes(tok))!;
  t.is(decodeHeader(fs.readFileSync(m.file)).stanzas[0]!.keyId, newId, 'sealed to the new active key');

  agent.proc.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 300));
  t.truthy(agent.events().find((e) => e.msg === 'SIGHUP: reopened the user database and cleared caches'));
  const tok2 = token();
  t.regex(dataReplies(await swaks(['--to', 'bob@example.org', '--body', `after hup ${tok2}`]))[0] ?? '', /^250 /);
});

test.serial('no plaintext at rest: no token of any test message anywhere under the mail root', (t) => {
  t.true(tokens.length >= 8);
  for (const tok of tokens) t.deepEqual(grepTree(sb.maildir, tok), [], tok);
});

test.serial('the log has one line per delivery and no message content', (t) => {
  const log = agent.log();
  const delivered = agent.events().filter((e) => e.msg === 'delivered');
  t.true(delivered.length >= 8);
  for (const e of delivered) for (const k of ['id', 'from', 'rcpt', 'size', 'result', 'ms']) t.true(k in e, k);
  for (const tok of tokens) t.false(log.includes(tok));
  for (const pw of Object.values(PW)) t.false(log.includes(pw));
});
