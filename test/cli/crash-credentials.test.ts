// Crash safety of credential changes: the CLI is killed (SIGKILL, injected with MAILSEAL_FAULT)
// after the change is journaled but before the dict is written, and after the dict is written
// but before SQLite has the change. At each point the user can log in — the login hash (first
// passdb) or the pending hash (second passdb) matches a password that opens every message —
// and `user repair` settles to exactly one consistent state, with the matching recovery code.

import test from 'ava';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { openEscrow, readEscrow } from '../../src/accounts/recovery.ts';
import { cli, type Sandbox, sandbox, startAgent } from '../helpers/agent.ts';
import { codeIn, deliver, row, tokensRead, verifies } from '../helpers/accounts.ts';
import { homeOf } from '../helpers/mailbox.ts';

const P1 = 'first long password';
const P2 = 'second long password';
const ADDR = 'carol@example.org';

async function escrowOpens(sb: Sandbox, code: string): Promise<boolean> {
  const db = new Database(sb.db, { readonly: true });
  const escrow = readEscrow(db, ADDR);
  db.close();
  try {
    await openEscrow(ADDR, escrow, code);
    return true;
  } catch {
    return false;
  }
}

type Kind = 'passwd' | 'recover' | 'rotate';
const cases: { kind: Kind; point: 'journal' | 'dict' }[] = [];
for (const kind of ['passwd', 'recover', 'rotate'] as const) for (const point of ['journal', 'dict'] as const) cases.push({ kind, point });

for (const { kind, point } of cases) {
  test(`${kind} killed at "${point}": a password still opens everything; repair settles to ${point === 'dict' ? 'the new' : 'the old'} state`, async (t) => {
    const sb = sandbox('mscc-');
    t.teardown(() => sb.cleanup());
    const add = await cli(sb, ['user', 'add', ADDR, '--curve', 'prime256v1', '--password-stdin'], `${P1}\n`);
    t.is(add.code, 0, add.stderr);
    const code1 = codeIn(add.stdout);
    const agent = await startAgent(sb);
    t.teardown(() => agent.kill());
    const mail = (await deliver(agent.port, ADDR, 2)).sort();
    const keyBefore = row(sb, ADDR).key_id;

    const args = kind === 'rotate' ? ['key', 'rotate', ADDR, '--user'] : ['user', kind, ADDR];
    const input = kind === 'passwd' ? `${P1}\n${P2}\n` : kind === 'recover' ? `${code1}\n${P2}\n` : `${P1}\n`;
    const env = { ...sb.env, MAILSEAL_FAULT: point };
    const crashed = await cli({ ...sb, env }, [...args, '--password-stdin'], input);
    t.is(crashed.code, null, `killed, not exited: ${crashed.stderr}`);
    const code2 = kind === 'passwd' ? null : codeIn(crashed.stdout);

    const newPw = kind === 'rotate' ? P1 : P2;
    const r = row(sb, ADDR);
    t.is(r.pendingKind, kind, 'the change is in the journal');
    // What Dovecot's two passdbs accept at this moment, and whether that password opens all mail.
    const works = point === 'dict' ? newPw : P1;
    t.true(await verifies(r.password, works) || await verifies(r.pending, works), 'a passdb accepts it');
    t.deepEqual(await tokensRead(sb, ADDR, works), mail, 'and it opens every message');
    if (kind !== 'rotate') {
      const other = point === 'dict' ? P1 : P2;
      await t.throwsAsync(tokensRead(sb, ADDR, other), undefined, 'the other password does not open the keys');
    }
    const dict = path.join(homeOf(sb.maildir, ADDR), 'Maildir', 'dovecot-attributes');
    if (point === 'journal') {
      // Killed while holding Dovecot's dotlock: it goes stale after 60 s (as in Dovecot); a test
      // does not wait for that.
      t.true(fs.existsSync(`${dict}.lock`));
      fs.unlinkSync(`${dict}.lock`);
    }
    // Delivery goes on meanwhile.
    const during = await deliver(agent.port, ADDR, 1);

    const show = await cli(sb, ['user', 'show', ADDR]);
    t.regex(show.stdout.toString(), new RegExp(`pending +${kind} interrupted at `));
    const repair = await cli(sb, ['user', 'repair']);
    t.is(repair.code, 0, repair.stderr);
    t.regex(repair.stdout.toString(), point === 'dict' ? /carol@example\.org: interrupted change completed/ : /carol@example\.org: interrupted change rolled back/);
    const s = row(sb, ADDR);
    t.is(s.pending, null);
    t.is(s.pendingKind, null);
    t.true(await verifies(s.password, works));
    t.deepEqual(await tokensRead(sb, ADDR, works), [...mail, ...during].sort());
    if (kind === 'rotate') t.is(s.key_id !== keyBefore, point === 'dict', 'active user key id follows the dict');
    t.is(s.escrowKey, s.key_id, 'escrow holds the active user key');
    if (code2) {
      t.is(await escrowOpens(sb, point === 'dict' ? code2 : code1), true, 'the valid recovery code opens the escrow');
      t.is(await escrowOpens(sb, point === 'dict' ? code1 : code2), false, 'the other one does not');
    }
    t.is((await cli(sb, ['user', 'repair', ADDR])).stdout.toString(), `${ADDR}: nothing to do\n`);
  });
}
