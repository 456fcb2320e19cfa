// `mailseal config postfix|dovecot`, as a person runs them: what is printed, what --out writes,
// and the errors. (test/e2e/generated-config.test.ts runs real Postfix and Dovecot on the output.)

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { cli, sandbox } from '../helpers/agent.ts';
import { lmtpTransport } from '../../src/config/postfix.ts';
import { authWorkerVszMiB } from '../../src/config/dovecot.ts';

const out = (r: { stdout: Buffer }) => r.stdout.toString();

test('config postfix prints the main.cf lines, the submission service and four sqlite: maps for this database', async (t) => {
  const sb = sandbox('mscfg-');
  t.teardown(() => sb.cleanup());
  t.is((await cli(sb, ['domain', 'add', 'example.org'])).code, 0);
  const r = await cli(sb, ['config', 'postfix']);
  t.is(r.code, 0, r.stderr);
  const text = out(r);
  const files = [...text.matchAll(/^# ==> (\S+) <==$/gm)].map((m) => m[1]);
  t.deepEqual(files, ['mailseal-main.cf', 'mailseal-master.cf', 'mailseal-virtual-domains.cf', 'mailseal-virtual-mailboxes.cf', 'mailseal-virtual-aliases.cf', 'mailseal-sender-login.cf'].map((f) => `/etc/postfix/${f}`));
  t.regex(text, /^virtual_mailbox_domains = proxy:sqlite:\/etc\/postfix\/mailseal-virtual-domains\.cf$/m);
  t.regex(text, /^virtual_transport = lmtp:inet:127\.0\.0\.1:2424$/m);
  t.regex(text, /^smtpd_sasl_type = dovecot\nsmtpd_sasl_path = private\/auth$/m);
  t.regex(text, /^submission inet n +- +y +- +- +smtpd\n(  -o .*\n)*  -o smtpd_sender_restrictions=reject_sender_login_mismatch\n/m);
  t.regex(text, /^  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject$/m);
  t.is([...text.matchAll(/^dbpath = (.*)$/gm)].map((m) => m[1]).join(), Array(4).fill(sb.db).join(), 'every map reads this database (absolute)');
  t.regex(text, /^query = SELECT address FROM users WHERE address = '%s' AND enabled = 1$/m);

  const other = await cli(sb, ['--db', 'rel/other.db', 'config', 'postfix', '--lmtp', 'unix:private/mailseal']);
  t.regex(out(other), new RegExp(`^dbpath = ${process.cwd().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/rel/other\\.db$`, 'm'));
  t.regex(out(other), /^virtual_transport = lmtp:unix:private\/mailseal$/m);
  t.regex(other.stderr, /^mailseal: warning: there is no database at .*\/rel\/other\.db yet/m);
  t.false(fs.existsSync(path.resolve('rel/other.db')), 'config never creates a database');
});

test('config dovecot prints the conf file and the two SQL files', async (t) => {
  const sb = sandbox('mscfg-');
  t.teardown(() => sb.cleanup());
  t.is((await cli(sb, ['domain', 'add', 'example.org'])).code, 0);
  const r = await cli(sb, ['config', 'dovecot', '--mail-user', 'root']);
  t.is(r.code, 2);
  t.is(r.stderr, 'mailseal: error: --mail-user must not be root\n');
  const nobody = await cli(sb, ['config', 'dovecot', '--mail-user', 'no-such-user-here']);
  t.is(nobody.stderr, 'mailseal: error: no such system user: no-such-user-here\nmailseal: hint: create it (useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin no-such-user-here) or give --mail-user\n');

  const ok = await cli(sb, ['config', 'dovecot', '--mail-user', 'nobody', '--postfix-user', 'nobody', '--curve', 'secp384r1']);
  t.is(ok.code, 0, ok.stderr);
  const text = out(ok);
  t.deepEqual([...text.matchAll(/^# ==> (\S+) <==$/gm)].map((m) => m[1]), ['/etc/dovecot/mailseal.conf', '/etc/dovecot/mailseal-sql.conf.ext', '/etc/dovecot/mailseal-pending-sql.conf.ext']);
  for (const line of [
    'auth_username_format = %Lu',
    'auth_cache_size = 0',
    '  args = /etc/dovecot/mailseal-sql.conf.ext',
    '  args = /etc/dovecot/mailseal-pending-sql.conf.ext',
    '  override_fields = userdb_mail_crypt_private_password=%{password}',
    '  vsz_limit = 512M',
    '  unix_listener /var/spool/postfix/private/auth {',
    '    mode = 0660',
    'mail_uid = nobody',
    'mail_location = maildir:~/Maildir',
    'mail_attribute_dict = file:%h/Maildir/dovecot-attributes',
    'mail_plugins = $mail_plugins mail_crypt',
    '  mail_crypt_save_version = 2',
    '  mail_crypt_curve = secp384r1',
    '  mail_crypt_require_encrypted_user_key = yes',
    `connect = ${sb.db}`,
    'default_pass_scheme = ARGON2ID',
    "password_query = SELECT address AS user, password FROM users WHERE address = '%u' AND enabled = 1",
    "password_query = SELECT p.address AS user, p.password FROM pending p JOIN users u ON u.address = p.address WHERE p.address = '%u' AND u.enabled = 1 AND p.password IS NOT NULL",
    "user_query = SELECT home, curve AS mail_crypt_curve FROM users WHERE address = '%u' AND enabled = 1",
  ]) {
    t.true(text.split('\n').includes(line), line);
  }
  t.is(text.match(/^passdb \{$/gm)?.length, 2, 'two passdbs: current password, then a pending change');
  t.true(text.includes(`mail root ${sb.maildir}`));
});

test('config --out writes the files 0640 and says what it wrote; main.cf and the conf refer to that directory', async (t) => {
  const sb = sandbox('mscfg-');
  t.teardown(() => sb.cleanup());
  const dir = path.join(sb.dir, 'etc', 'postfix');
  const r = await cli(sb, ['config', 'postfix', '--out', dir, '--lmtp', '0.0.0.0:2525']);
  t.is(r.code, 0, r.stderr);
  const names = ['mailseal-main.cf', 'mailseal-master.cf', 'mailseal-virtual-domains.cf', 'mailseal-virtual-mailboxes.cf', 'mailseal-virtual-aliases.cf', 'mailseal-sender-login.cf'];
  t.is(out(r), names.map((n) => `wrote ${dir}/${n}\n`).join('') + `next: append ${dir}/mailseal-main.cf to main.cf and ${dir}/mailseal-master.cf to master.cf\nnext: postfix check && postfix reload\n`);
  t.deepEqual(fs.readdirSync(dir).sort(), [...names].sort());
  for (const n of names) t.is(fs.statSync(path.join(dir, n)).mode & 0o777, 0o640, n);
  const main = fs.readFileSync(path.join(dir, 'mailseal-main.cf'), 'utf8');
  t.regex(main, new RegExp(`^virtual_alias_maps = proxy:sqlite:${dir.replace(/[.]/g, '\\.')}/mailseal-virtual-aliases\\.cf$`, 'm'));
  t.regex(main, /^virtual_transport = lmtp:inet:127\.0\.0\.1:2525$/m, 'a wildcard listen address is reached on loopback');

  const dv = path.join(sb.dir, 'etc', 'dovecot');
  const d = await cli(sb, ['config', 'dovecot', '--out', dv, '--mail-user', 'nobody', '--postfix-user', 'nobody']);
  t.is(d.code, 0, d.stderr);
  t.regex(out(d), new RegExp(`^wrote ${dv}/mailseal\\.conf\nwrote ${dv}/mailseal-sql\\.conf\\.ext\nwrote ${dv}/mailseal-pending-sql\\.conf\\.ext\nnext: add "!include ${dv}/mailseal\\.conf" at the end`));
  t.regex(fs.readFileSync(path.join(dv, 'mailseal.conf'), 'utf8'), new RegExp(`^  args = ${dv}/mailseal-sql\\.conf\\.ext$`, 'm'));

  // Written again: replaced, still 0640.
  fs.chmodSync(path.join(dv, 'mailseal.conf'), 0o600);
  t.is((await cli(sb, ['config', 'dovecot', '--out', dv, '--mail-user', 'nobody', '--postfix-user', 'nobody'])).code, 0);
  t.is(fs.statSync(path.join(dv, 'mailseal.conf')).mode & 0o777, 0o640);
  t.deepEqual(fs.readdirSync(dv).sort(), ['mailseal-pending-sql.conf.ext', 'mailseal-sql.conf.ext', 'mailseal.conf'], 'no temp files left');
});

test('config: paths that cannot go into Postfix/Dovecot syntax, bad --lmtp', async (t) => {
  const sb = sandbox('mscfg-');
  t.teardown(() => sb.cleanup());
  const hint = "mailseal: hint: use a path of letters, digits and . _ - + @ = ~ / only (no spaces, '$', '%', ',' or ':')\n";
  for (const [args, stderr] of [
    [['--db', '/tmp/a b/x.db', 'config', 'postfix'], `mailseal: error: the database path "/tmp/a b/x.db" cannot go into Postfix/Dovecot configuration\n${hint}`],
    [['--db', '/tmp/$x.db', 'config', 'dovecot'], `mailseal: error: the database path "/tmp/$x.db" cannot go into Postfix/Dovecot configuration\n${hint}`],
    [['--maildir', '/srv/100%', 'config', 'dovecot', '--mail-user', 'nobody', '--postfix-user', 'nobody'], `mailseal: error: the mail root path "/srv/100%" cannot go into Postfix/Dovecot configuration\n${hint}`],
    [['config', 'postfix', '--out', '/tmp/x,y'], `mailseal: error: the --out path "/tmp/x,y" cannot go into Postfix/Dovecot configuration\n${hint}`],
    [['config', 'postfix', '--lmtp', 'localhost'], 'mailseal: error: invalid --lmtp "localhost"\nmailseal: hint: give HOST:PORT (e.g. 127.0.0.1:2424), inet:HOST:PORT, unix:private/mailseal or an absolute socket path\n'],
    [['config', 'dovecot', '--sasl-socket', 'private/auth', '--mail-user', 'nobody', '--postfix-user', 'nobody'], 'mailseal: error: --sasl-socket must be an absolute path: private/auth\n'],
  ] as [string[], string][]) {
    const r = await cli(sb, args);
    t.is(r.code, 2, args.join(' '));
    t.is(r.stderr, stderr);
    t.is(out(r), '');
  }
});

test('lmtpTransport: what an operator types → Postfix transport', (t) => {
  t.is(lmtpTransport('127.0.0.1:2424'), 'lmtp:inet:127.0.0.1:2424');
  t.is(lmtpTransport('inet:[::1]:24'), 'lmtp:inet:[::1]:24');
  t.is(lmtpTransport('lmtp:inet:mail.example:24'), 'lmtp:inet:mail.example:24');
  t.is(lmtpTransport('[::]:2424'), 'lmtp:inet:127.0.0.1:2424');
  t.is(lmtpTransport('unix:private/mailseal'), 'lmtp:unix:private/mailseal');
  t.is(lmtpTransport('/var/spool/postfix/private/mailseal'), 'lmtp:unix:/var/spool/postfix/private/mailseal');
  for (const bad of ['', 'unix:', 'host', '127.0.0.1:0', '127.0.0.1:99999', 'a b:1', '$x:1']) t.throws(() => lmtpTransport(bad), { message: /invalid --lmtp/ }, bad);
});

test('authWorkerVszMiB: 4 x m + 256 MiB, at least 512', (t) => {
  t.is(authWorkerVszMiB(64 * 1024 * 1024), 512);
  t.is(authWorkerVszMiB(256 * 1024 * 1024), 1280);
  t.is(authWorkerVszMiB(1), 512);
});
