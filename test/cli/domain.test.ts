// `mailseal domain add|list|del`, as a person runs them.

import test from 'ava';
import Database from 'better-sqlite3';
import { addUser, cli, sandbox } from '../helpers/agent.ts';

const out = (r: { stdout: Buffer }) => r.stdout.toString();

test('domain add / list / del: lowercase, table and JSON, audit rows', async (t) => {
  const sb = sandbox('msdom-');
  t.teardown(() => sb.cleanup());
  const add = await cli(sb, ['domain', 'add', ' Example.ORG ']);
  t.is(add.code, 0, add.stderr);
  t.is(out(add), 'added domain example.org\n');
  t.is((await cli(sb, ['domain', 'add', 'xn--bcher-kva.example'])).code, 0);

  const table = out(await cli(sb, ['domain', 'list']));
  t.regex(table, /^DOMAIN +USERS +ALIASES +CREATED\nexample\.org +0 +0 +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\nxn--bcher-kva\.example +0 +0 +\S+\n$/);
  const json = JSON.parse(out(await cli(sb, ['domain', 'list', '--json']))) as { name: string; users: number; aliases: number }[];
  t.deepEqual(json.map((d) => [d.name, d.users, d.aliases]), [['example.org', 0, 0], ['xn--bcher-kva.example', 0, 0]]);

  const del = await cli(sb, ['domain', 'del', 'XN--BCHER-KVA.example']);
  t.is(del.code, 0, del.stderr);
  t.is(out(del), 'deleted domain xn--bcher-kva.example\n');
  t.deepEqual((JSON.parse(out(await cli(sb, ['domain', 'list', '--json']))) as { name: string }[]).map((d) => d.name), ['example.org']);

  const db = new Database(sb.db, { readonly: true });
  t.teardown(() => db.close());
  t.deepEqual(db.prepare("SELECT event, detail FROM audit WHERE event LIKE 'domain-%' ORDER BY id").all(), [
    { event: 'domain-add', detail: 'example.org' },
    { event: 'domain-add', detail: 'xn--bcher-kva.example' },
    { event: 'domain-del', detail: 'xn--bcher-kva.example' },
  ]);
});

test('domain: clear one-line errors for bad names, duplicates, unknown domains', async (t) => {
  const sb = sandbox('msdom-');
  t.teardown(() => sb.cleanup());
  const cases: [string[], string][] = [
    [['domain', 'add', 'localhost'], 'mailseal: error: invalid domain "localhost": a mail domain has at least two labels, e.g. example.org\n'],
    [['domain', 'add', 'a_b.example'], `mailseal: error: invalid domain "a_b.example": each label is 1-63 letters, digits or '-', not starting or ending with '-'\n`],
    [['domain', 'add', '--', '-x.example'], `mailseal: error: invalid domain "-x.example": each label is 1-63 letters, digits or '-', not starting or ending with '-'\n`],
    [['domain', 'add', 'a..example'], `mailseal: error: invalid domain "a..example": each label is 1-63 letters, digits or '-', not starting or ending with '-'\n`],
    [['domain', 'add', '../etc'], `mailseal: error: invalid domain "../etc": each label is 1-63 letters, digits or '-', not starting or ending with '-'\n`],
    [['domain', 'add', '10.0.0.1'], 'mailseal: error: invalid domain "10.0.0.1": that is an IP address, not a domain\n'],
    [['domain', 'add', 'bücher.example'], 'mailseal: error: invalid domain "bücher.example": not ASCII\nmailseal: hint: give an internationalised domain in its punycode form (xn--…)\n'],
    [['domain', 'add', `${'a'.repeat(64)}.example`], `mailseal: error: invalid domain "${'a'.repeat(64)}.example": each label is 1-63 letters, digits or '-', not starting or ending with '-'\n`],
    [['domain', 'del', 'nowhere.example'], 'mailseal: error: no such domain: nowhere.example\nmailseal: hint: mailseal domain list shows the domains\n'],
  ];
  for (const [args, stderr] of cases) {
    const r = await cli(sb, args);
    t.is(r.code, 2, args.join(' '));
    t.is(r.stderr, stderr);
    t.is(out(r), '');
  }
  t.is((await cli(sb, ['domain', 'add', 'example.org'])).code, 0);
  const again = await cli(sb, ['domain', 'add', 'EXAMPLE.org']);
  t.is(again.code, 2);
  t.is(again.stderr, 'mailseal: error: domain example.org already exists\n');
});

test('domain del refuses while users or aliases of the domain exist, and says what is left', async (t) => {
  const sb = sandbox('msdom-');
  t.teardown(() => sb.cleanup());
  await addUser(sb, 'amy@example.org', 'a good long password');
  t.is((await cli(sb, ['domain', 'add', 'lists.example'])).code, 0);
  t.is((await cli(sb, ['alias', 'add', 'all@lists.example', 'amy@example.org'])).code, 0);
  t.is((await cli(sb, ['alias', 'add', 'amy.fwd@lists.example', 'someone@outside.example'])).code, 0);

  const users = await cli(sb, ['domain', 'del', 'example.org']);
  t.is(users.code, 2);
  t.is(users.stderr, 'mailseal: error: domain example.org is still in use by 1 user and 1 alias\nmailseal: hint: remove them first; "mailseal user list" and "mailseal alias list --domain example.org" show them\n');
  const aliases = await cli(sb, ['domain', 'del', 'lists.example']);
  t.is(aliases.stderr, 'mailseal: error: domain lists.example is still in use by 2 aliases\nmailseal: hint: remove them first; "mailseal alias list --domain lists.example" shows them\n');

  t.regex(out(await cli(sb, ['domain', 'list'])), /^DOMAIN +USERS +ALIASES +CREATED\nexample\.org +1 +0 +\S+\nlists\.example +0 +2 +\S+\n$/);
  t.is((await cli(sb, ['alias', 'del', 'all@lists.example'])).code, 0);
  t.is((await cli(sb, ['alias', 'del', 'amy.fwd@lists.example'])).code, 0);
  t.is((await cli(sb, ['domain', 'del', 'lists.example'])).code, 0);
  t.deepEqual((JSON.parse(out(await cli(sb, ['domain', 'list', '--json']))) as { name: string }[]).map((d) => d.name), ['example.org']);
});
