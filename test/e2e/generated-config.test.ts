// Real Postfix and Dovecot running on the configuration `mailseal config postfix|dovecot`
// generates, not hand-written files: every lookup table answers right under `postmap -q`;
// IMAP logins check the {ARGON2ID} hashes in our database (lowercased, disabled users refused, a
// pending password change lets the new password in); submission authenticates through Dovecot's
// SASL socket, lets a user send only as their own address or an alias pointing to them, and
// delivers through the agent, sealed, readable over IMAP with the password.

import test from 'ava';
import Database from 'better-sqlite3';
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import sodium from 'libsodium-wrappers-sumo';
import { hashPassword } from '../../src/accounts/password.ts';
import { type Agent, addUser, cli, type Sandbox, sandbox, startAgent } from '../helpers/agent.ts';
import { type Dovecot, dovecotTest, haveDovecot, startDovecot } from '../helpers/dovecot.ts';
import { imapFetchAll, imapLogin } from '../helpers/imap.ts';
import { grepTree } from '../helpers/mailbox.ts';
import { parseMainCf, type Postfix, startPostfix } from '../helpers/postfix.ts';
import { swaks } from '../helpers/swaks.ts';

const run = promisify(execFile);
const PW: Record<string, string> = {
  alice: 'first user: a long password',
  bob: 'second user: a long password',
  carol: 'third user: a long password',
  dora: 'fourth user: a long password',
  erin: 'fifth user: a long password',
};
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const token = () => `GC${crypto.randomBytes(6).toString('hex')}`;

let sb: Sandbox;
let agent: Agent;
let pf: Postfix;
let dv: Dovecot;
let pfOut: string;
let dvOut: string;

/** What proxymap needs: the postfix group may read the database and search its directory. */
function shareWithPostfix(db: string): void {
  const gid = Number(execFileSync('getent', ['group', 'postfix'], { encoding: 'utf8' }).split(':')[2]);
  fs.chownSync(path.dirname(db), 0, gid);
  fs.chmodSync(path.dirname(db), 0o750);
  fs.chownSync(db, 0, gid);
  fs.chmodSync(db, 0o640);
}

function sql<T>(fn: (db: Database.Database) => T): T {
  const db = new Database(sb.db);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

async function mailseal(args: string[]): Promise<string> {
  const r = await cli(sb, args);
  if (r.code !== 0) throw new Error(`mailseal ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.toString();
}

const read = (dir: string, name: string) => fs.readFileSync(path.join(dir, name), 'utf8');

test.before(async () => {
  if (!haveDovecot() || process.getuid?.() !== 0) return; // dovecotTest below skips (or fails under CI)
  sb = sandbox('msgc-');
  for (const u of ['alice', 'bob', 'carol', 'dora', 'erin']) await addUser(sb, `${u}@example.org`, PW[u]!, 'prime256v1', ['--owner', 'vmail']);
  await mailseal(['domain', 'add', 'other.test']);
  await mailseal(['alias', 'add', 'team@example.org', 'alice@example.org', 'bob@example.org']);
  await mailseal(['alias', 'add', 'sales@example.org', 'alice@example.org', 'buyer@example.net']);
  await mailseal(['alias', 'add', 'fwd@example.org', 'someone@example.net']);
  await mailseal(['alias', 'add', 'old@example.org', 'dora@example.org']);
  sql((db) => db.prepare("UPDATE users SET enabled = 0 WHERE address = 'dora@example.org'").run());
  // The password change journal (migration 002); created here as specified if it is not there yet.
  sql((db) =>
    db.exec(`CREATE TABLE IF NOT EXISTS pending (address TEXT PRIMARY KEY REFERENCES users(address) ON DELETE CASCADE,
      kind TEXT NOT NULL, password TEXT)`),
  );
  shareWithPostfix(sb.db);
  // binds, opens the database as root (its -wal/-shm then exist for readers), then runs as vmail
  agent = await startAgent(sb, ['--user', 'vmail']);

  pfOut = path.join(sb.dir, 'postfix');
  const cert = path.join(sb.dir, 'tls');
  fs.mkdirSync(cert);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=mx.mailseal.test',
    '-keyout', path.join(cert, 'key.pem'), '-out', path.join(cert, 'cert.pem')]);
  await mailseal(['config', 'postfix', '--lmtp', `127.0.0.1:${agent.port}`, '--out', pfOut]);
  pf = await startPostfix({
    // the generated main.cf lines, plus the certificate an operator's main.cf already has
    mainCf: { ...parseMainCf(read(pfOut, 'mailseal-main.cf')), smtpd_tls_cert_file: path.join(cert, 'cert.pem'), smtpd_tls_key_file: path.join(cert, 'key.pem') },
    masterCf: read(pfOut, 'mailseal-master.cf'),
  });

  dvOut = path.join(sb.dir, 'dovecot');
  // Postfix's smtpd_sasl_path = private/auth is relative to its queue directory.
  await mailseal(['config', 'dovecot', '--mail-user', 'vmail', '--sasl-socket', path.join(pf.queueDir, 'private', 'auth'), '--out', dvOut]);
  // Test speed only: no failure delay, and no per-IP auth penalty (every client here is
  // 127.0.0.1, and the tests fail logins on purpose); Dovecot documents mode 0 as the way off.
  dv = await startDovecot({
    include: path.join(dvOut, 'mailseal.conf'),
    extraConfig: 'auth_failure_delay = 0\nservice anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}',
  });
});

test.after.always(async () => {
  await dv?.stop();
  await pf?.stop();
  await agent?.stop();
  sb?.cleanup();
});

const dtest = dovecotTest(test.serial as unknown as typeof test); // one shared database: no test sees another one's changes half-way

// ---------------------------------------------------------------------------------------------

async function postmap(key: string, map: string): Promise<string | null> {
  try {
    const { stdout } = await run('postmap', ['-c', pf.configDir, '-q', key, map]);
    return stdout.trim();
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    if (e.code === 1 && !e.stderr) return null; // not found
    throw new Error(`postmap -q ${key} ${map}: ${e.stderr}`);
  }
}

const sorted = (v: string | null) => (v === null ? null : v.split(',').map((s) => s.trim()).sort().join(','));

dtest('postmap -q: every generated map answers right, read directly and through proxymap as main.cf uses it', async (t) => {
  const main = parseMainCf(read(pfOut, 'mailseal-main.cf'));
  const expect: [string, [string, string | null][]][] = [
    ['virtual_mailbox_domains', [['example.org', 'example.org'], ['other.test', 'other.test'], ['example.net', null], ['org', null]]],
    ['virtual_mailbox_maps', [
      ['alice@example.org', 'alice@example.org'],
      ['ALICE@Example.ORG', 'alice@example.org'], // Postfix folds the key to lower case
      ['dora@example.org', null], // disabled
      ['team@example.org', null], // an alias, not a mailbox
      ['nobody@example.org', null],
    ]],
    ['virtual_alias_maps', [
      ['team@example.org', 'alice@example.org,bob@example.org'],
      ['sales@example.org', 'alice@example.org,buyer@example.net'],
      ['fwd@example.org', 'someone@example.net'],
      ['alice@example.org', null],
      ['nobody@example.org', null],
    ]],
    ['smtpd_sender_login_maps', [
      ['alice@example.org', 'alice@example.org'],
      ['team@example.org', 'alice@example.org,bob@example.org'],
      ['sales@example.org', 'alice@example.org'], // the outside destination owns nothing
      ['fwd@example.org', null],
      ['dora@example.org', null], // disabled
      ['old@example.org', null], // alias to a disabled user
      ['nobody@example.org', null],
    ]],
  ];
  for (const [param, cases] of expect) {
    const map = main[param]!;
    t.regex(map, new RegExp(`^proxy:sqlite:${esc(pfOut)}/mailseal-[a-z-]+\\.cf$`), param);
    t.is((await pf.postconf(['-h', param])).trim(), map, `${param} is what the instance runs with`);
    for (const [key, want] of cases) {
      t.is(sorted(await postmap(key, map.replace(/^proxy:/, ''))), want, `${param} ${key} (sqlite:)`);
      t.is(sorted(await postmap(key, map)), want, `${param} ${key} (proxy:sqlite:)`);
    }
  }
  t.is((await pf.postconf(['-h', 'virtual_transport'])).trim(), `lmtp:inet:127.0.0.1:${agent.port}`);
});

dtest('IMAP LOGIN against the generated passdb: right password, wrong one, upper case, disabled user; userdb home and curve', async (t) => {
  t.true(await imapLogin(dv.imapPort, 'alice@example.org', PW.alice!));
  t.false(await imapLogin(dv.imapPort, 'alice@example.org', PW.bob!));
  t.false(await imapLogin(dv.imapPort, 'alice@example.org', ''));
  t.true(await imapLogin(dv.imapPort, 'ALICE@Example.Org', PW.alice!), 'auth_username_format = %Lu');
  t.false(await imapLogin(dv.imapPort, 'dora@example.org', PW.dora!), 'disabled');
  t.false(await imapLogin(dv.imapPort, 'nobody@example.org', PW.alice!));
  t.false(await imapLogin(dv.imapPort, 'team@example.org', PW.alice!), 'an alias is no login');

  const user = await dv.doveadm(['user', 'alice@example.org']);
  t.is(user.code, 0, user.stderr);
  t.regex(user.stdout, new RegExp(`^home\\s+${esc(path.join(sb.maildir, 'example.org', 'alice'))}$`, 'm'));
  t.regex(user.stdout, /^mail_crypt_curve\s+prime256v1$/m);
  const list = await dv.doveadm(['user', '*']);
  t.deepEqual(list.stdout.trim().split('\n').sort(), ['alice@example.org', 'bob@example.org', 'carol@example.org', 'erin@example.org'], 'iterate_query: enabled users');
  const log = await dv.log();
  t.notRegex(log, /Error|Fatal|Panic/, 'nothing went wrong in Dovecot');
  for (const pw of Object.values(PW)) t.false(log.includes(pw), 'no password in the log');
});

dtest('a pending password change (second passdb): the new hash logs in too, until the row goes', async (t) => {
  const next = 'the new one after a change';
  const hash = await hashPassword(next);
  t.false(await imapLogin(dv.imapPort, 'carol@example.org', next));
  sql((db) => {
    // Fill whatever else the journal's NOT NULL columns need (migration 002 may have more).
    const cols = (db.pragma('table_info(pending)') as { name: string; notnull: number; dflt_value: unknown }[])
      .filter((c) => c.notnull && c.dflt_value === null && !['address', 'kind', 'password'].includes(c.name))
      .map((c) => c.name);
    db.prepare(`INSERT INTO pending (address, kind, password${cols.map((c) => `, ${c}`).join('')}) VALUES (?, 'passwd', ?${cols.map(() => ", 'test'").join('')})`)
      .run('carol@example.org', hash);
  });
  t.true(await imapLogin(dv.imapPort, 'carol@example.org', next), 'the pending password');
  t.true(await imapLogin(dv.imapPort, 'Carol@example.org', PW.carol!), 'the current password still');
  t.false(await imapLogin(dv.imapPort, 'carol@example.org', 'neither of the two passwords'));
  t.false(await imapLogin(dv.imapPort, 'alice@example.org', next), 'only for its own user');
  sql((db) => db.prepare("UPDATE users SET enabled = 0 WHERE address = 'carol@example.org'").run());
  t.false(await imapLogin(dv.imapPort, 'carol@example.org', next), 'not for a disabled user');
  sql((db) => db.prepare("UPDATE users SET enabled = 1 WHERE address = 'carol@example.org'").run());
  sql((db) => db.prepare("UPDATE pending SET password = NULL WHERE address = 'carol@example.org'").run());
  t.false(await imapLogin(dv.imapPort, 'carol@example.org', next), 'a change that keeps the password (NULL)');
  sql((db) => db.prepare("DELETE FROM pending WHERE address = 'carol@example.org'").run());
  t.false(await imapLogin(dv.imapPort, 'carol@example.org', next));
  t.true(await imapLogin(dv.imapPort, 'carol@example.org', PW.carol!));
});

dtest('the auth-worker vsz_limit leaves room for stronger hashes: libsodium "moderate" (256 MiB) verifies', async (t) => {
  await sodium.ready;
  const strong = `{ARGON2ID}${sodium.crypto_pwhash_str(PW.erin!, sodium.crypto_pwhash_OPSLIMIT_MODERATE, sodium.crypto_pwhash_MEMLIMIT_MODERATE)}`;
  t.regex(strong, /\$m=262144,/);
  sql((db) => db.prepare("UPDATE users SET password = ? WHERE address = 'erin@example.org'").run(strong));
  t.true(await imapLogin(dv.imapPort, 'erin@example.org', PW.erin!));
  t.false(await imapLogin(dv.imapPort, 'erin@example.org', PW.alice!));
  t.regex(read(dvOut, 'mailseal.conf'), /^  vsz_limit = 512M$/m);
});

dtest('submission: AUTH PLAIN through Dovecot SASL, own address and alias accepted and delivered sealed; another address, wrong password refused', async (t) => {
  const submit = (from: string, to: string[], auth?: { user: string; password: string; mech?: 'PLAIN' | 'LOGIN' }, tls = true) => {
    const tok = token();
    return swaks({ server: '127.0.0.1', port: pf.submissionPort, tls, from, to, auth, headers: { Subject: tok }, body: tok }).then((r) => ({ ...r, tok }));
  };
  const alice = { user: 'alice@example.org', password: PW.alice! };

  // 1. As herself, to a local user and an outside address.
  const own = await submit('alice@example.org', ['bob@example.org', 'friend@example.net'], alice);
  t.is(own.code, 0, own.stdout);
  t.like(own.replies.find((r) => r.command === 'AUTH'), { code: 235 });
  t.like(own.reply('friend@example.net'), { code: 250 }, 'authenticated: may relay');
  await pf.waitFor(new RegExp(`${own.queueId}: client=\\S+, sasl_method=PLAIN, sasl_username=alice@example\\.org`));
  await pf.waitFor(new RegExp(`${own.queueId}: to=<bob@example\\.org>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${agent.port}, .*status=sent \\(250 2\\.0\\.0 <bob@example\\.org> \\S+ Saved\\)`));

  // 2. As an alias that points to her (and to bob), upper-case login (Dovecot lowercases it).
  const viaAlias = await submit('team@example.org', ['bob@example.org'], { user: 'ALICE@example.org', password: PW.alice!, mech: 'LOGIN' });
  t.is(viaAlias.code, 0, viaAlias.stdout);
  await pf.waitFor(new RegExp(`${viaAlias.queueId}: client=\\S+, sasl_method=LOGIN, sasl_username=alice@example\\.org`));
  await pf.waitFor(new RegExp(`${viaAlias.queueId}: to=<bob@example\\.org>, .*status=sent \\(250 2\\.0\\.0 `));

  // bob reads both over IMAP with his password (Dovecot opens his key with it); at rest they are sealed.
  const box = await imapFetchAll(dv.imapPort, 'bob@example.org', PW.bob!);
  for (const m of [own, viaAlias]) {
    const got = box.find((x) => x.body.includes(m.tok));
    t.truthy(got, `${m.tok} delivered and readable`);
    t.regex(got!.body.toString(), new RegExp(`^Return-Path: <${m === own ? 'alice' : 'team'}@example\\.org>\\r\\n`));
    t.deepEqual(grepTree(sb.maildir, m.tok), [], 'no plaintext at rest');
  }

  // 3. Somebody else's address, an alias that is not hers, an outside address: 553 5.7.1.
  for (const from of ['bob@example.org', 'fwd@example.org', 'alice@example.net']) {
    const r = await submit(from, ['bob@example.org'], alice);
    t.like(r.replies.find((x) => x.command === 'AUTH'), { code: 235 }, from);
    t.like(r.reply('bob@example.org'), { code: 553, enhanced: '5.7.1' }, from);
    t.regex(r.reply('bob@example.org')!.text, new RegExp(`<${esc(from)}>: Sender address rejected: not owned by user alice@example\\.org`));
    t.is(r.queueId, null);
  }

  // 4. Wrong password, disabled user, no TLS: no way in.
  const wrong = await submit('alice@example.org', ['bob@example.org'], { user: 'alice@example.org', password: 'not her password' });
  t.is(wrong.code, 28, 'swaks: AUTH failed');
  t.like(wrong.replies.find((r) => r.command === 'AUTH'), { code: 535, enhanced: '5.7.8' });
  const disabled = await submit('dora@example.org', ['bob@example.org'], { user: 'dora@example.org', password: PW.dora! });
  t.like(disabled.replies.find((r) => r.command === 'AUTH'), { code: 535 });
  const clear = await submit('alice@example.org', ['bob@example.org'], alice, false);
  t.not(clear.code, 0);
  t.false(clear.replies.some((r) => r.command === 'AUTH' && r.code === 235), 'no AUTH without TLS');
  const anon = await submit('alice@example.org', ['friend@example.net']);
  t.not(anon.reply('friend@example.net')?.code, 250, 'no relay without AUTH');

  // The two failed AUTHs above are logged as warnings; nothing else may be.
  const warnings = (await pf.log()).split('\n').filter((l) => /warning|fatal|panic/i.test(l) && !/SASL (PLAIN|LOGIN) authentication failed/.test(l));
  t.deepEqual(warnings, []);
});
