// The real-Postfix / swaks test harness, proved without mailseal: a throwaway LMTP sink
// (smtp-server in LMTP mode) stands in for the agent. swaks talks LMTP to the sink directly
// (per-recipient replies after DATA), and SMTP to a private Postfix whose virtual_transport is
// the sink: delivered, 451 → deferred then retried, 550 → bounced; static and sqlite: maps.

import test from 'ava';
import Database from 'better-sqlite3';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { dovecotTest, startDovecot } from './helpers/dovecot.ts';
import { startPostfix, type Postfix } from './helpers/postfix.ts';
import { frameData, swaks } from './helpers/swaks.ts';

// ---------------------------------------------------------------------------------------------
// LMTP sink

interface SinkAnswer {
  code: number;
  /** Without the enhanced code: smtp-server adds it from the reply code (550 → 5.1.1). */
  text: string;
}

interface Delivered {
  rcpt: string;
  from: string;
  data: Buffer;
}

interface Sink {
  /** TCP port on 127.0.0.1 (0 when listening on a unix socket). */
  port: number;
  delivered: Delivered[];
  /** Answer for a recipient after DATA (default 250); set or delete any time. */
  afterData: Map<string, SinkAnswer>;
  /** Refuse these at RCPT. */
  atRcpt: Map<string, SinkAnswer>;
  close(): Promise<void>;
}

function replyError(a: SinkAnswer): Error {
  return Object.assign(new Error(a.text), { responseCode: a.code });
}

async function startSink(socketPath?: string): Promise<Sink> {
  const delivered: Delivered[] = [];
  const afterData = new Map<string, SinkAnswer>();
  const atRcpt = new Map<string, SinkAnswer>();
  // smtp-server folds a repeated RCPT into one envelope entry, but RFC 2033 wants one reply per
  // accepted RCPT, and Postfix does repeat an address in one transaction (direct + via an alias,
  // different orig_to). So the sink keeps its own list of accepted RCPTs per transaction
  // (a fresh envelope object per transaction) and answers each of them.
  const accepted = new WeakMap<object, string[]>();
  const server = new SMTPServer({
    lmtp: true,
    name: 'sink.mailseal.test',
    banner: 'test sink',
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: false,
    logger: false,
    onRcptTo(addr, session, cb) {
      const a = atRcpt.get(addr.address.toLowerCase());
      if (a) return cb(replyError(a));
      const list = accepted.get(session.envelope) ?? [];
      accepted.set(session.envelope, [...list, addr.address]);
      cb();
    },
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const data = Buffer.concat(chunks);
        const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        // exactly one result per accepted RCPT, in RCPT order (smtp-server sends as many as given)
        const results = (accepted.get(session.envelope) ?? []).map((rcpt) => {
          const a = afterData.get(rcpt.toLowerCase());
          if (a && a.code >= 400) return replyError(a);
          delivered.push({ rcpt, from, data });
          return a?.text ?? `<${rcpt}> Saved`;
        });
        (cb as (err: Error | null, message: (string | Error)[]) => void)(null, results);
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (socketPath) server.listen(socketPath, () => resolve());
    else server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = socketPath ? 0 : (server.server.address() as { port: number }).port;
  return { port, delivered, afterData, atRcpt, close: () => new Promise<void>((r) => server.close(() => r())) };
}

// ---------------------------------------------------------------------------------------------
// Shared instance: one sink, one Postfix (static maps) for the Postfix tests

const DOMAIN = 'harness.test';
const at = (u: string) => `${u}@${DOMAIN}`;
const token = () => `TOK${crypto.randomBytes(6).toString('hex')}`;
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let sink: Sink;
let pf: Postfix;

test.before(async () => {
  sink = await startSink();
  pf = await startPostfix({
    lmtpPort: sink.port,
    domains: [DOMAIN],
    mailboxes: ['alice', 'bob', 'carol', 'dave'].map(at),
    aliases: { [at('team')]: [at('alice'), at('dave')] },
    // Long retry timers: the 451 test's message must stay deferred until it flushes the queue
    // (with 1 s timers a loaded machine may be retrying it when the queue is read; seen in CI).
    retry: { queueRunDelay: 300, minimalBackoff: 300, maximalBackoff: 600 },
  });
});

test.after.always(async () => {
  await pf?.stop();
  await sink?.close();
});

function message(tok: string, to: string): string {
  // a line with a leading dot (dot-stuffing both ways) and UTF-8 (SMTPUTF8 / 8BITMIME path)
  return `From: <sender@example.net>\nTo: <${to}>\nSubject: ${tok} Grüße\nMessage-ID: <${tok}@example.net>\n\nbody ${tok}\n.leading dot\n..two dots\n`;
}

// ---------------------------------------------------------------------------------------------

test('swaks LMTP straight to the sink: one reply per accepted RCPT after DATA, parsed per recipient', async (t) => {
  sink.afterData.set('bob@lmtp.test', { code: 550, text: '<bob@lmtp.test> User unknown' });
  sink.afterData.set('carol@lmtp.test', { code: 451, text: '<carol@lmtp.test> Try again later' });
  sink.atRcpt.set('nobody@lmtp.test', { code: 550, text: 'No such user here' });
  const tok = token();
  const r = await swaks({
    server: '127.0.0.1',
    port: sink.port,
    protocol: 'LMTP',
    from: 'sender@example.net',
    to: ['alice@lmtp.test', 'nobody@lmtp.test', 'bob@lmtp.test', 'carol@lmtp.test'],
    data: message(tok, 'alice@lmtp.test'),
  });
  t.log(r.stdout);
  t.is(r.code, 0, 'swaks: exit 0 as long as one recipient is accepted');
  t.deepEqual(
    r.rcpt.map((x) => [x.address, x.code]),
    [
      ['alice@lmtp.test', 250],
      ['nobody@lmtp.test', 550],
      ['bob@lmtp.test', 250],
      ['carol@lmtp.test', 250],
    ],
  );
  t.is(r.final.length, 3, 'one reply per accepted recipient');
  t.like(r.reply('alice@lmtp.test'), { code: 250, enhanced: '2.6.0', command: 'DOT' });
  t.regex(r.reply('alice@lmtp.test')!.text, /<alice@lmtp\.test> Saved/);
  t.like(r.reply('nobody@lmtp.test'), { code: 550, enhanced: '5.1.1', command: 'RCPT', text: '5.1.1 No such user here' });
  t.like(r.reply('bob@lmtp.test'), { code: 550, enhanced: '5.1.1', command: 'DOT', text: '5.1.1 <bob@lmtp.test> User unknown' });
  t.like(r.reply('CAROL@lmtp.test'), { code: 451, enhanced: '4.3.0', command: 'DOT' });
  t.is(r.queueId, null);
  t.deepEqual(r.errors, []);

  const got = sink.delivered.filter((d) => d.data.includes(tok));
  t.deepEqual(
    got.map((d) => d.rcpt),
    ['alice@lmtp.test'],
  );
  // exact bytes: CRLF, dot-stuffing undone by the server, UTF-8 intact
  t.deepEqual(got[0]!.data, Buffer.from(message(tok, 'alice@lmtp.test').replace(/\n/g, '\r\n'), 'utf8'));

  // every recipient refused at RCPT: swaks exits 24 and never sends DATA
  const none = await swaks({ server: '127.0.0.1', port: sink.port, protocol: 'LMTP', from: '', to: ['nobody@lmtp.test'], body: 'x' });
  t.is(none.code, 24);
  t.like(none.reply('nobody@lmtp.test'), { code: 550 });
  t.deepEqual(none.final, []);
  t.is(none.mailFrom?.code, 250);
});

test('frameData: dot-stuffing, CRLF, terminator', (t) => {
  t.is(frameData('a\n.b\n..c').toString(), 'a\r\n..b\r\n...c\r\n.');
  t.is(frameData('.x\r\n').toString(), '..x\r\n.');
  t.is(frameData('a\nb', true).toString(), 'a\nb\r\n.');
  t.is(frameData('').toString(), '.');
});

test('swaks SMTP → Postfix → virtual_transport → sink', async (t) => {
  const tok = token();
  const r = await swaks({ server: '127.0.0.1', port: pf.smtpPort, from: 'sender@example.net', to: [at('alice')], data: message(tok, at('alice')) });
  t.is(r.code, 0, r.stdout);
  t.like(r.reply(at('alice')), { code: 250, enhanced: '2.0.0' });
  t.truthy(r.queueId, 'Ok: queued as …');
  const m = await pf.waitFor(new RegExp(`${r.queueId}: to=<${esc(at('alice'))}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${sink.port}, .*status=sent \\(250 2\\.6\\.0 <${esc(at('alice'))}> Saved\\)`));
  t.log(m[0]);
  const got = sink.delivered.filter((d) => d.data.includes(tok));
  t.is(got.length, 1);
  t.is(got[0]!.rcpt, at('alice'));
  t.is(got[0]!.from, 'sender@example.net');
  const text = got[0]!.data.toString('utf8');
  t.regex(text, /^Received: from /m, 'Postfix added its Received: header');
  t.true(text.includes(`Subject: ${tok} Grüße\r\n`), '8-bit header intact');
  t.true(text.includes('\r\n.leading dot\r\n..two dots\r\n'), 'dot-stuffing undone end to end');

  // an alias fans out to two mailboxes; an unknown address is refused at RCPT by Postfix itself
  const tok2 = token();
  const r2 = await swaks({ server: '127.0.0.1', port: pf.smtpPort, from: 'sender@example.net', to: [at('team'), at('nosuch')], body: tok2 });
  t.like(r2.reply(at('nosuch')), { code: 550, enhanced: '5.1.1' });
  t.regex(r2.reply(at('nosuch'))!.text, /User unknown in virtual mailbox table/);
  t.like(r2.reply(at('team')), { code: 250 });
  await pf.waitFor(new RegExp(`${r2.queueId}: to=<${esc(at('dave'))}>, orig_to=<${esc(at('team'))}>.*status=sent`));
  await pf.waitFor(new RegExp(`${r2.queueId}: to=<${esc(at('alice'))}>, orig_to=<${esc(at('team'))}>.*status=sent`));
  t.deepEqual(sink.delivered.filter((d) => d.data.includes(tok2)).map((d) => d.rcpt).sort(), [at('alice'), at('dave')]);
});

test('sink 451 → Postfix keeps the message deferred; accepted on flush', async (t) => {
  sink.afterData.set(at('carol'), { code: 451, text: `<${at('carol')}> Temporary failure` });
  const tok = token();
  const r = await swaks({ server: '127.0.0.1', port: pf.smtpPort, from: 'sender@example.net', to: [at('carol')], data: message(tok, at('carol')) });
  const id = r.queueId!;
  t.truthy(id, r.stdout);
  await pf.waitFor(new RegExp(`${id}: to=<${esc(at('carol'))}>, .*status=deferred \\(host 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\] said: 451 4\\.3\\.0 <${esc(at('carol'))}> Temporary failure`));
  const entry = await pf.waitFor(({ queue }) => queue.find((e) => e.queue_id === id && e.queue_name === 'deferred'));
  t.is(entry.sender, 'sender@example.net');
  t.is(entry.recipients.length, 1);
  t.is(entry.recipients[0]!.address, at('carol'));
  t.regex(entry.recipients[0]!.delay_reason ?? '', /said: 451 4\.3\.0 .*Temporary failure \(in reply to end of DATA command\)/);
  t.is(sink.delivered.filter((d) => d.data.includes(tok)).length, 0);

  sink.afterData.delete(at('carol'));
  await pf.flush();
  await pf.waitFor(new RegExp(`${id}: to=<${esc(at('carol'))}>, .*status=sent \\(250 `));
  await pf.waitFor(({ queue }) => !queue.some((e) => e.queue_id === id));
  t.is(sink.delivered.filter((d) => d.data.includes(tok)).length, 1);
});

test('sink 550 → Postfix bounces (and its DSN to the outside sender is discarded, not queued)', async (t) => {
  sink.afterData.set(at('bob'), { code: 550, text: `<${at('bob')}> User doesn't exist` });
  const r = await swaks({ server: '127.0.0.1', port: pf.smtpPort, from: 'sender@example.net', to: [at('bob')], body: token() });
  const id = r.queueId!;
  t.truthy(id, r.stdout);
  const m = await pf.waitFor(new RegExp(`${id}: to=<${esc(at('bob'))}>, .*status=bounced \\(host 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\] said: 550 5\\.1\\.1 <${esc(at('bob'))}> User doesn't exist`));
  t.log(m[0]);
  const dsn = await pf.waitFor(new RegExp(`${id}: sender non-delivery notification: (\\w+)`));
  await pf.waitFor(new RegExp(`${dsn[1]}: to=<sender@example\\.net>, .*status=sent \\(mailseal test instance, outbound mail discarded\\)`));
  await pf.waitFor(({ queue }) => !queue.some((e) => e.queue_id === id || e.queue_id === dsn[1]));
  t.pass();
});

test('sqlite: maps (WAL database), and two instances side by side', async (t) => {
  const dir = fs.mkdtempSync('/tmp/mspf-db-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const dbPath = path.join(dir, 'accounts.db');
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE domains (name TEXT PRIMARY KEY);
    CREATE TABLE users (address TEXT PRIMARY KEY, enabled INTEGER NOT NULL);
    CREATE TABLE aliases (source TEXT, destination TEXT);
    INSERT INTO domains VALUES ('sql.test');
    INSERT INTO users VALUES ('erin@sql.test', 1), ('off@sql.test', 0);
    INSERT INTO aliases VALUES ('list@sql.test', 'erin@sql.test'), ('list@sql.test', 'alice@${DOMAIN}');`);
  t.teardown(() => db.close()); // kept open, as the agent would: -wal / -shm files exist
  fs.chmodSync(dbPath, 0o644);

  const pf2 = await startPostfix({
    lmtpPort: sink.port,
    sqlite: {
      db: dbPath,
      domainsQuery: "SELECT name FROM domains WHERE name = '%s'",
      mailboxesQuery: "SELECT address FROM users WHERE address = '%s' AND enabled = 1",
      aliasesQuery: "SELECT destination FROM aliases WHERE source = '%s'",
    },
    // alice@harness.test is not in this instance's tables: send it on to the sink as well
    mainCf: { relay_domains: DOMAIN, relay_transport: `lmtp:inet:127.0.0.1:${sink.port}` },
  });
  t.teardown(() => pf2.stop());
  t.not(pf2.smtpPort, pf.smtpPort);
  t.not(pf2.queueDir, pf.queueDir);
  t.is((await pf2.postconf(['-h', 'queue_directory'])).trim(), pf2.queueDir);
  t.is((await pf2.postconf(['-h', 'data_directory'])).trim(), pf2.dataDir);
  t.false(pf2.queueDir.startsWith('/var/') || pf2.dataDir.startsWith('/var/'));

  const tok = token();
  const r = await swaks({ server: '127.0.0.1', port: pf2.smtpPort, from: 'sender@example.net', to: ['erin@sql.test', 'off@sql.test', 'list@sql.test'], body: tok });
  t.like(r.reply('erin@sql.test'), { code: 250 });
  t.like(r.reply('off@sql.test'), { code: 550 }, 'disabled user: not in virtual_mailbox_maps');
  t.like(r.reply('list@sql.test'), { code: 250 });
  await pf2.waitFor(new RegExp(`${r.queueId}: to=<alice@${esc(DOMAIN)}>, orig_to=<list@sql\\.test>.*status=sent`));
  // erin twice: directly and via the alias (Postfix keeps both, they differ in orig_to) -- and
  // it sends both RCPTs in one LMTP transaction, expecting two replies after DATA
  const sent = await pf2.waitFor(({ log }) => {
    const lines = log.split('\n').filter((l) => l.includes(`${r.queueId}: to=<erin@sql.test>`) && l.includes('status=sent'));
    return lines.length === 2 && lines;
  });
  t.true(sent.every((l) => l.includes('status=sent (250 2.6.0 <erin@sql.test> Saved)')), sent.join('\n'));
  t.deepEqual(sink.delivered.filter((d) => d.data.includes(tok)).map((d) => d.rcpt).sort(), [`alice@${DOMAIN}`, 'erin@sql.test', 'erin@sql.test']);
  t.notRegex(await pf2.log(), /warning|fatal|error/i);
});

test('virtual_transport over a unix socket (lmtp:unix:)', async (t) => {
  const tmp = fs.mkdtempSync('/tmp/mspf-sock-');
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  fs.chmodSync(tmp, 0o755);
  const socket = path.join(tmp, 'lmtp');
  const unixSink = await startSink(socket);
  t.teardown(() => unixSink.close());
  fs.chmodSync(socket, 0o666); // Postfix's lmtp client runs as postfix and needs write permission
  const pf4 = await startPostfix({ lmtpSocket: socket, domains: [DOMAIN], mailboxes: [at('alice')] });
  t.teardown(() => pf4.stop());
  t.is((await pf4.postconf(['-h', 'virtual_transport'])).trim(), `lmtp:unix:${socket}`);
  const tok = token();
  const r = await swaks({ server: '127.0.0.1', port: pf4.smtpPort, from: 'sender@example.net', to: [at('alice')], body: tok });
  await pf4.waitFor(new RegExp(`${r.queueId}: to=<${esc(at('alice'))}>, relay=[^\\s\\[]+\\[${esc(socket)}\\], .*status=sent \\(250 `));
  t.is(unixSink.delivered.filter((d) => d.data.includes(tok)).length, 1);
});

dovecotTest(test)('submission with SASL through a real Dovecot auth socket', async (t) => {
  const tmp = fs.mkdtempSync('/tmp/mspf-auth-');
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  fs.chmodSync(tmp, 0o755);
  const socket = path.join(tmp, 'auth'); // smtpd runs as postfix: the listener is 0666
  const dv = await startDovecot({
    users: [{ login: at('erin'), password: 'erin-secret', home: path.join(tmp, 'erin') }],
    mailCrypt: false,
    extraConfig: `auth_failure_delay = 0\nservice auth {\n  unix_listener ${socket} {\n    mode = 0666\n  }\n}`,
  });
  t.teardown(() => dv.stop());
  const pf3 = await startPostfix({ lmtpPort: sink.port, domains: [DOMAIN], mailboxes: [at('erin'), at('frank')], senderLogins: { [at('erin')]: at('erin') }, sasl: { path: socket } });
  t.teardown(() => pf3.stop());
  t.true(pf3.submissionPort > 0 && pf3.submissionPort !== pf3.smtpPort);
  const submit = (from: string, auth?: { user: string; password: string; mech?: 'PLAIN' | 'LOGIN' }) =>
    swaks({ server: '127.0.0.1', port: pf3.submissionPort, from, to: [at('frank'), 'someone@outside.test'], body: token(), auth });

  const ok = await submit(at('erin'), { user: at('erin'), password: 'erin-secret' });
  t.is(ok.code, 0, ok.stdout);
  t.like(ok.replies.find((r) => r.command === 'AUTH'), { code: 235 });
  t.like(ok.reply('someone@outside.test'), { code: 250 }, 'authenticated: may relay');
  await pf3.waitFor(new RegExp(`${ok.queueId}: client=\\S+, sasl_method=PLAIN, sasl_username=${esc(at('erin'))}`));
  await pf3.waitFor(new RegExp(`${ok.queueId}: to=<${esc(at('frank'))}>.*status=sent`));

  const other = await submit(at('frank'), { user: at('erin'), password: 'erin-secret', mech: 'LOGIN' });
  t.like(other.replies.filter((r) => r.command === 'AUTH').at(-1), { code: 235 });
  t.like(other.reply(at('frank')), { code: 553, enhanced: '5.7.1' });
  t.regex(other.reply(at('frank'))!.text, /Sender address rejected: not owned by user/);

  const anon = await submit(at('erin'));
  t.is(anon.code, 24);
  t.like(anon.reply(at('frank')), { code: 553 });
  t.regex(anon.reply(at('frank'))!.text, /not logged in/);

  const bad = await submit(at('erin'), { user: at('erin'), password: 'wrong' });
  t.is(bad.code, 28, 'swaks: AUTH failed');
  t.like(bad.replies.find((r) => r.command === 'AUTH'), { code: 535, enhanced: '5.7.8' });
});
