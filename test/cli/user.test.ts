// `mailseal user add|list|show`, as a person runs them.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { cli, sandbox } from '../helpers/agent.ts';
import { readDict } from '../../src/store/dictfile.ts';
import { listKeys } from '../../src/store/keyring.ts';
import { openPrivateKey } from '../../src/mailcrypt/keystring.ts';

test('user add: lowercase address, keys in the dict (user key opens with the password), then list and show', async (t) => {
  const sb = sandbox('msu-');
  t.teardown(() => sb.cleanup());
  const r = await cli(sb, ['user', 'add', 'Zoe@Example.ORG', '--curve', 'secp384r1', '--password-stdin'], 'a good long password\n');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout.toString(), /^created zoe@example\.org\n  home      .*\/example\.org\/zoe\n  user key  [0-9a-f]{64}\n  INBOX key [0-9a-f]{64}\nrecovery code \(shown once: .*\):\n  (?:[0-9A-HJKMNP-TV-Z]{4}-){7}[0-9A-HJKMNP-TV-Z]{4}\n$/);
  const maildir = path.join(sb.maildir, 'example.org', 'zoe', 'Maildir');
  for (const d of ['cur', 'new', 'tmp']) t.true(fs.statSync(path.join(maildir, d)).isDirectory());
  const { dict } = await readDict(path.join(maildir, 'dovecot-attributes'));
  const keys = listKeys(dict);
  t.deepEqual(keys.map((k) => [k.scope, k.active]), [['user', true], ['folder', true]]);
  const userKeyString = [...dict].find(([k]) => k.startsWith('priv/') && k.includes('/pvt/server/'))![1];
  t.is((await openPrivateKey(userKeyString, { password: 'a good long password' })).curve.name, 'secp384r1');

  const list = await cli(sb, ['user', 'list', '--json']);
  const rows = JSON.parse(list.stdout.toString()) as { address: string; curve: string; key_id: string }[];
  t.deepEqual(rows.map((x) => [x.address, x.curve, x.key_id]), [['zoe@example.org', 'secp384r1', keys[0]!.id]]);
  t.regex((await cli(sb, ['user', 'list'])).stdout.toString(), /^ADDRESS +CURVE +USER KEY +ENABLED +CREATED\nzoe@example\.org +secp384r1 +[0-9a-f]{16} +yes /);
  t.regex((await cli(sb, ['user', 'show', 'ZOE@example.org'])).stdout.toString(), /^address  zoe@example\.org\n/);
});

test('user add: clear one-line errors for a weak password, a taken address, a hostile address, a bad curve', async (t) => {
  const sb = sandbox('msu-');
  t.teardown(() => sb.cleanup());
  const weak = await cli(sb, ['user', 'add', 'amy@example.org', '--password-stdin'], 'short\n');
  t.is(weak.code, 2);
  t.is(weak.stderr.split('\n').filter((l) => l.startsWith('mailseal: error')).join(), 'mailseal: error: the password must be at least 10 characters long');
  t.is((await cli(sb, ['user', 'add', 'amy@example.org', '--password-stdin'], 'a good long password\n')).code, 0);
  const again = await cli(sb, ['user', 'add', 'AMY@example.org', '--password-stdin'], 'a good long password\n');
  t.is(again.code, 2);
  t.regex(again.stderr, /mailseal: error: user amy@example\.org already exists\n/);
  const hostile = await cli(sb, ['user', 'add', '../../etc@example.org', '--password-stdin'], 'a good long password\n');
  t.is(hostile.code, 1);
  t.regex(hostile.stderr, /mailseal: error: invalid local part\n/);
  t.false(fs.existsSync(path.join(sb.dir, 'etc')));
  const curve = await cli(sb, ['user', 'add', 'bo@example.org', '--curve', 'x25519', '--password-stdin'], 'a good long password\n');
  t.regex(curve.stderr, /mailseal: error: unsupported curve "x25519" \(use secp521r1, secp384r1 or prime256v1\)\n/);
  t.false(curve.stderr.includes('    at '), 'no stack trace');
  const show = await cli(sb, ['user', 'show', 'nobody@example.org']);
  t.is(show.stderr, 'mailseal: error: no such user: nobody@example.org\n');
});
