// The agent as it runs in production: started as root, it binds, drops to the mail user, listens
// on TCP and on a unix socket; swaks delivers; a real Dovecot on the same Maildirs and the same
// user database (SQLite passdb/userdb, {ARGON2ID}) serves every message over IMAP byte-identical
// to what was submitted plus our trace headers. SIGTERM lets a transaction in flight finish.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { addUser, sandbox, startAgent, swaksLmtp } from '../helpers/agent.ts';
import { dovecotTest, startDovecot, vmailIds } from '../helpers/dovecot.ts';
import { imapFetchAll } from '../helpers/imap.ts';
import { LmtpClient } from '../helpers/lmtp.ts';
import { afterTrace, homeOf, lf, readMailbox } from '../helpers/mailbox.ts';

const dtest = dovecotTest(test);

dtest('delivered by the agent (as vmail, TCP and unix socket), read by Dovecot IMAP byte-identical', async (t) => {
  const sb = sandbox('msa-');
  t.teardown(() => sb.cleanup());
  vmailIds();
  const users = [
    { address: 'ann@example.org', password: 'first-imap-password', curve: 'secp521r1' },
    { address: 'ben@example.org', password: 'second-imap-password', curve: 'prime256v1' },
  ];
  for (const u of users) await addUser(sb, u.address, u.password, u.curve, ['--owner', 'vmail']);
  const socket = path.join(sb.dir, 'lmtp.sock');
  const agent = await startAgent(sb, ['--user', 'vmail', '--socket', socket, '--socket-mode', '0666']);
  t.teardown(() => agent.kill());
  const started = agent.events().find((e) => e.msg === 'mailseal serving LMTP')!;
  t.is(started.uid, vmailIds().uid, 'dropped to vmail');
  t.regex(String(started.sealing), /^native \(libcrypto\.so\.3 \(system\), /, 'sealing on the native path');
  t.is(fs.statSync(socket).mode & 0o777, 0o666, 'socket mode as asked');

  const sentAll: Buffer[] = [];
  // The fourth is 1.2 MiB: streamed into tmp/ through the addon's O_DIRECT file, not one write.
  const N = 4;
  for (let i = 0; i < N; i++) {
    const tok = crypto.randomBytes(6).toString('hex');
    const bulk = i === 3 ? crypto.randomBytes(900 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n..$&\r\n').slice(0, 1200 * 1024 + 7) + '\r\n' : '';
    const body = Buffer.from(`From: <s@example.net>\r\nTo: <ann@example.org>, <ben@example.org>\r\nSubject: m${i} ${tok}\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\n\r\nbody ${i} ${tok}\r\nümlaut\r\n..dot\r\n${bulk}`);
    sentAll.push(body);
    const out = await swaksLmtp(i === 1 ? socket : `127.0.0.1:${agent.port}`, ['--from', 's@example.net', '--to', 'ann@example.org,ben@example.org', '--suppress-data'], body);
    t.regex(out, /250 2\.0\.0 <ben@example\.org> \S+ Saved/);
  }
  for (const u of users) {
    const home = homeOf(sb.maildir, u.address);
    const newDir = path.join(home, 'Maildir', 'new');
    for (const f of fs.readdirSync(newDir)) {
      const st = fs.statSync(path.join(newDir, f));
      t.is(st.uid, vmailIds().uid, 'file owned by the mail user');
      t.is(st.mode & 0o777, 0o600);
    }
  }
  const ours = new Map(await Promise.all(users.map(async (u) => [u.address, await readMailbox(homeOf(sb.maildir, u.address), u.password)] as const)));

  const dv = await startDovecot({ sqlite: { db: sb.db, mailRoot: sb.maildir } });
  t.teardown(() => dv.stop());
  for (const u of users) {
    const got = await imapFetchAll(dv.imapPort, u.address, u.password);
    t.is(got.length, N);
    t.true(got.some((m) => m.body.length > 1024 * 1024), 'the large one too');
    const mine = ours.get(u.address)!;
    for (const m of got) {
      const stored = mine.find((s) => Buffer.from(s.plain.toString('latin1').replace(/\n/g, '\r\n'), 'latin1').equals(m.body));
      t.truthy(stored, `${u.address}: IMAP body equals our decryption of the stored file`);
      t.is(m.size, stored!.vsize!, 'RFC822.SIZE = W=');
      // After our 7 trace lines comes exactly what was submitted (swaks appends one CRLF of its own).
      const rest = afterTrace(m.body);
      t.truthy(sentAll.find((b) => rest.equals(Buffer.concat([b, Buffer.from('\r\n')]))), 'IMAP body = trace headers + what was submitted');
      t.regex(m.body.toString(), new RegExp(`^Return-Path: <s@example.net>\\r\\nDelivered-To: ${u.address}\\r\\nReceived: from `));
      t.true(lf(m.body).length === stored!.plain.length);
    }
  }
  t.false(/Error|Panic|Fatal/.test(await dv.log()), 'Dovecot logged no error');
});

test('SIGTERM: a transaction in flight is finished and answered, then the agent exits 0', async (t) => {
  const sb = sandbox('mst-');
  t.teardown(() => sb.cleanup());
  await addUser(sb, 'tim@example.org', 'sigterm-password', 'prime256v1');
  const agent = await startAgent(sb);
  t.teardown(() => agent.kill());
  const c = await LmtpClient.connect(agent.port);
  t.teardown(() => c.close());
  await c.reply();
  await c.cmd('LHLO x');
  await c.cmd('MAIL FROM:<s@example.net>');
  await c.cmd('RCPT TO:<tim@example.org>');
  await c.cmd('DATA');
  c.sock.write('Subject: in flight\r\n\r\nfirst half\r\n');
  await new Promise((r) => setTimeout(r, 200));
  agent.proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  t.is(agent.proc.exitCode, null, 'still running while the transaction is open');
  c.sock.write('second half\r\n.\r\n');
  const reply = await c.reply();
  t.is(reply.code, 250, reply.text);
  const code = await new Promise<number | null>((r) => (agent.proc.exitCode !== null ? r(agent.proc.exitCode) : agent.proc.on('exit', (x) => r(x))));
  t.is(code, 0);
  const box = await readMailbox(homeOf(sb.maildir, 'tim@example.org'), 'sigterm-password');
  t.is(box.length, 1);
  t.true(box[0]!.plain.toString().endsWith('first half\nsecond half\n'));
  await t.throwsAsync(LmtpClient.connect(agent.port), undefined, 'no longer listening');
});
