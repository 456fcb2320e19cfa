// `mailseal alias add|list|del`, as a person runs them.

import test from 'ava';
import Database from 'better-sqlite3';
import { addUser, cli, sandbox } from '../helpers/agent.ts';

const out = (r: { stdout: Buffer }) => r.stdout.toString();

test('alias add / list / del: local and outside destinations, lowercase, table and JSON, audit rows', async (t) => {
  const sb = sandbox('msal-');
  t.teardown(() => sb.cleanup());
  await addUser(sb, 'amy@example.org', 'a good long password');
  await addUser(sb, 'ben@example.org', 'a good long password');

  const add = await cli(sb, ['alias', 'add', 'Team@Example.org', 'AMY@example.org', 'ben@example.org', 'Friend@Outside.Example']);
  t.is(add.code, 0, add.stderr);
  t.is(out(add), 'added alias team@example.org -> amy@example.org, ben@example.org, friend@outside.example\n');
  t.is(add.stderr, '');
  t.is((await cli(sb, ['alias', 'add', 'postmaster@example.org', 'team@example.org'])).code, 0, 'to another alias');

  t.is(out(await cli(sb, ['alias', 'list'])), [
    'ALIAS                   DESTINATIONS',
    'postmaster@example.org  team@example.org',
    'team@example.org        amy@example.org, ben@example.org, friend@outside.example',
    '',
  ].join('\n'));
  t.deepEqual(JSON.parse(out(await cli(sb, ['alias', 'list', '--json']))), [
    { source: 'postmaster@example.org', destinations: ['team@example.org'] },
    { source: 'team@example.org', destinations: ['amy@example.org', 'ben@example.org', 'friend@outside.example'] },
  ]);
  t.deepEqual(JSON.parse(out(await cli(sb, ['alias', 'list', '--domain', 'OUTSIDE.example', '--json']))).map((a: { source: string }) => a.source), ['team@example.org'], 'by destination domain too');

  const some = await cli(sb, ['alias', 'del', 'team@example.org', 'Friend@outside.example']);
  t.is(out(some), 'deleted alias team@example.org -> friend@outside.example\n');
  const all = await cli(sb, ['alias', 'del', 'POSTMASTER@example.org']);
  t.is(out(all), 'deleted alias postmaster@example.org -> team@example.org\n');
  t.deepEqual(JSON.parse(out(await cli(sb, ['alias', 'list', '--json']))), [{ source: 'team@example.org', destinations: ['amy@example.org', 'ben@example.org'] }]);

  const db = new Database(sb.db, { readonly: true });
  t.teardown(() => db.close());
  t.deepEqual(db.prepare("SELECT address, event, detail FROM audit WHERE event LIKE 'alias-%' ORDER BY id").all(), [
    { address: 'team@example.org', event: 'alias-add', detail: 'amy@example.org, ben@example.org, friend@outside.example' },
    { address: 'postmaster@example.org', event: 'alias-add', detail: 'team@example.org' },
    { address: 'team@example.org', event: 'alias-del', detail: 'friend@outside.example' },
    { address: 'postmaster@example.org', event: 'alias-del', detail: 'team@example.org' },
  ]);
});

test('alias: clear one-line errors, nothing half-added', async (t) => {
  const sb = sandbox('msal-');
  t.teardown(() => sb.cleanup());
  await addUser(sb, 'amy@example.org', 'a good long password');
  t.is((await cli(sb, ['alias', 'add', 'team@example.org', 'amy@example.org'])).code, 0);
  const cases: [string[], string][] = [
    [['alias', 'add', 'sales@elsewhere.example', 'amy@example.org'], 'mailseal: error: elsewhere.example is not a domain served here, so sales@elsewhere.example cannot be an alias\nmailseal: hint: add it first: mailseal domain add elsewhere.example\n'],
    [['alias', 'add', 'sales@example.org', 'amy@example.org', 'bob@example.org'], 'mailseal: error: no such user or alias: bob@example.org\nmailseal: hint: example.org is served here; create the user first (mailseal user add bob@example.org) or fix the address\n'],
    [['alias', 'add', 'sales@example.org', 'sales@example.org'], 'mailseal: error: an alias cannot point to itself: sales@example.org\n'],
    [['alias', 'add', 'team@example.org', 'amy@example.org'], 'mailseal: error: alias team@example.org -> amy@example.org already exists\n'],
    [['alias', 'add', '@example.org', 'amy@example.org'], 'mailseal: error: invalid alias "@example.org": catch-all aliases (@domain) are not supported\n'],
    [['alias', 'add', 'no-at-sign', 'amy@example.org'], 'mailseal: error: invalid alias "no-at-sign": expected local@domain\n'],
    [['alias', 'add', "o'brien@example.org", 'amy@example.org'], `mailseal: error: invalid alias "o'brien@example.org": the part before '@' may hold letters, digits, '.', '_', '+', '=' and '-' (at most 64)\n`],
    [['alias', 'add', '../x@example.org', 'amy@example.org'], `mailseal: error: invalid alias "../x@example.org": the part before '@' may hold letters, digits, '.', '_', '+', '=' and '-' (at most 64)\n`],
    [['alias', 'add', 'x@example.org', 'a b@outside.example'], `mailseal: error: invalid destination "a b@outside.example": the part before '@' may hold letters, digits, '.', '_', '+', '=' and '-' (at most 64)\n`],
    [['alias', 'add', 'x@example.org', 'a@localhost'], 'mailseal: error: invalid destination "a@localhost": invalid domain "localhost": a mail domain has at least two labels, e.g. example.org\n'],
    [['alias', 'del', 'nobody@example.org'], 'mailseal: error: no such alias: nobody@example.org\nmailseal: hint: mailseal alias list shows the aliases\n'],
    [['alias', 'del', 'team@example.org', 'bob@example.org'], 'mailseal: error: team@example.org does not point to bob@example.org (it points to amy@example.org)\n'],
  ];
  for (const [args, stderr] of cases) {
    const r = await cli(sb, args);
    t.is(r.code, 2, args.join(' '));
    t.is(r.stderr, stderr);
    t.is(out(r), '');
  }
  t.deepEqual(JSON.parse(out(await cli(sb, ['alias', 'list', '--json']))), [{ source: 'team@example.org', destinations: ['amy@example.org'] }], 'nothing of the refused ones stored');
  const missing = await cli(sb, ['alias', 'add', 'x@example.org']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^error: missing required argument 'destination'/);
});

test('alias add over a user address warns that the mailbox no longer gets the mail, unless it keeps a copy', async (t) => {
  const sb = sandbox('msal-');
  t.teardown(() => sb.cleanup());
  await addUser(sb, 'amy@example.org', 'a good long password');
  await addUser(sb, 'ben@example.org', 'a good long password');
  const r = await cli(sb, ['alias', 'add', 'amy@example.org', 'ben@example.org']);
  t.is(r.code, 0);
  t.is(r.stderr, 'mailseal: warning: amy@example.org is also a user: mail to it now goes to ben@example.org only, not to its mailbox (add amy@example.org as a destination to keep a copy)\n');
  const keep = await cli(sb, ['alias', 'add', 'amy@example.org', 'amy@example.org']);
  t.is(keep.code, 0, keep.stderr);
  t.is(keep.stderr, '', 'a copy stays in the mailbox now: no warning');
  t.deepEqual(JSON.parse(out(await cli(sb, ['alias', 'list', '--json']))), [{ source: 'amy@example.org', destinations: ['amy@example.org', 'ben@example.org'] }]);
});
