// `mailseal cat`, as a person runs it (transcripts): Dovecot's own files decrypt with the login
// password; a wrong password, a tampered file or a bad path give one clear line and no output.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { cli, sandbox } from '../helpers/agent.ts';
import { vectorPath, vectorUsers, VECTORS } from '../helpers/vectors.ts';

const u = vectorUsers().find((x) => x.dir === 'rotate')!;

function copyMaildir(t: { teardown: (f: () => void) => void }) {
  const sb = sandbox('msc-');
  t.teardown(() => sb.cleanup());
  const home = path.join(sb.maildir, 'example.test', 'rotate');
  fs.cpSync(path.join(VECTORS, u.dir, 'Maildir'), path.join(home, 'Maildir'), { recursive: true });
  return { sb, file: (i: number) => path.join(home, 'Maildir', u.messages[i]!.maildir_file.split('/Maildir/')[1]!) };
}

test('cat: every message (old and rotated key) with the password; --crlf is what IMAP serves', async (t) => {
  const { sb, file } = copyMaildir(t);
  for (const [i, m] of u.messages.entries()) {
    const r = await cli(sb, ['cat', '--password-stdin', '--crlf', file(i)], `${u.password}\n`);
    t.is(r.code, 0, r.stderr);
    t.true(r.stdout.equals(fs.readFileSync(vectorPath(m.plain_file))), `uid ${m.uid}`);
    const lfOut = await cli(sb, ['cat', '--password-stdin', file(i)], `${u.password}\n`);
    t.is(lfOut.stdout.length, m.S);
  }
});

test('cat --headers: a short summary', async (t) => {
  const { sb, file } = copyMaildir(t);
  const r = await cli(sb, ['cat', '--headers', '--password-stdin', file(1)], `${u.password}\n`);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout.toString(), /^From: "Fixture Sender" <sender@example\.org>\nTo: rotate@example\.test\nDate: Mon, 23 Nov 2026 08:00:00 GMT\nSubject: fixture r2-before \(2k\)\nMessage-ID: <r2-before\.rotate\.example\.test@fixtures\.lab>\n$/);
});

test('cat: wrong password → one error line with a hint, exit 1, nothing on stdout', async (t) => {
  const { sb, file } = copyMaildir(t);
  const r = await cli(sb, ['cat', '--password-stdin', file(0)], 'not-the-password\n');
  t.is(r.code, 1);
  t.is(r.stdout.length, 0);
  t.is(r.stderr, 'mailseal: error: wrong password\nmailseal: hint: the password is the one the user logs in to IMAP with\n');
});

test('cat: a tampered file → error, nothing on stdout; a plaintext file passes through without a password', async (t) => {
  const { sb, file } = copyMaildir(t);
  const f = file(1);
  const b = fs.readFileSync(f);
  b[b.length - 100]! ^= 0x80;
  fs.writeFileSync(f, b);
  const r = await cli(sb, ['cat', '--password-stdin', f], `${u.password}\n`);
  t.is(r.code, 1);
  t.is(r.stdout.length, 0);
  t.is(r.stderr, 'mailseal: error: authentication failed: the file is truncated or was modified\n');
  const plain = path.join(path.dirname(f), '1.M1P1.host,S=5');
  fs.writeFileSync(plain, 'Subject: old plaintext mail\n\nhi\n');
  const p = await cli(sb, ['cat', plain]);
  t.is(p.code, 0, p.stderr);
  t.is(p.stdout.toString(), 'Subject: old plaintext mail\n\nhi\n');
});

test('cat: a file outside a Maildir or missing → usage error', async (t) => {
  const sb = sandbox('msc-');
  t.teardown(() => sb.cleanup());
  const r = await cli(sb, ['cat', '/nonexistent/file']);
  t.is(r.code, 2);
  t.is(r.stderr, 'mailseal: error: no such file: /nonexistent/file\n');
  fs.writeFileSync(path.join(sb.dir, 'loose'), 'x');
  const r2 = await cli(sb, ['cat', path.join(sb.dir, 'loose')]);
  t.is(r2.code, 2);
  t.regex(r2.stderr, /is not inside a Maildir cur\/, new\/ or tmp\/ directory/);
});
