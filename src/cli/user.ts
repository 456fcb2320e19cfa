// `mailseal user …`: accounts with keys — add, passwd, recover, reset, recovery-code, del,
// disable/enable, repair, list, show.

import { type Command, Option } from 'commander';
import { execFileSync } from 'node:child_process';
import { findUser, openDb, type Db } from '../accounts/db.ts';
import { changePassword, loadUser, recoverUser, renewRecoveryCode, resetUser } from '../accounts/credentials.ts';
import { forgetPending, pendingOf, settle } from '../accounts/journal.ts';
import { addUser, deleteUser, normalizeAddress, setEnabled } from '../accounts/users.ts';
import { DEFAULTS } from '../config.ts';
import { MailsealError } from '../errors.ts';
import { globals, passwordStdinOption, showCode } from './common.ts';
import { askSecret, type SecretOptions } from './prompt.ts';
import { table } from './table.ts';

function ownerOf(name: string | undefined): { uid: number; gid: number } | undefined {
  if (!name) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new MailsealError('usage', `no such system user: ${name}`);
  }
}

interface Row {
  address: string;
  curve: string;
  key_id: string | null;
  enabled: number;
  home: string;
  created_at: string;
}

function userTable(rows: Row[]): string {
  return table(['ADDRESS', 'CURVE', 'USER KEY', 'ENABLED', 'CREATED'],
    rows.map((r) => [r.address, r.curve, (r.key_id ?? '-').slice(0, 16), r.enabled ? 'yes' : 'no', r.created_at]));
}

async function withDb(cmd: Command, f: (db: Db) => Promise<void>): Promise<void> {
  const db = openDb(globals(cmd).db);
  try {
    await f(db);
  } finally {
    db.close();
  }
}

/**
 * `<parent> <name> <address> [--password-stdin]`: `body` runs with the database open and the
 * user loaded (an interrupted change of theirs settled first).
 */
function onUser(
  cmd: Command, description: string,
  body: (db: Db, address: string, o: SecretOptions & { discardOldMail?: boolean }) => Promise<void>,
): void {
  cmd.description(description)
    .argument('<address>')
    .addOption(passwordStdinOption())
    .action(async (address: string, o: SecretOptions, c: Command) => {
      const addr = normalizeAddress(address);
      await withDb(c, async (db) => {
        await loadUser(db, addr);
        await body(db, addr, o);
      });
    });
}

/** A new password, asked twice on a terminal (once with --password-stdin). */
async function newPassword(address: string, o: SecretOptions): Promise<string> {
  const pw = await askSecret(`new password for ${address}`, o);
  if (!o.passwordStdin && (await askSecret(`repeat the new password for ${address}`, o)) !== pw) {
    throw new MailsealError('usage', 'the passwords do not match');
  }
  return pw;
}

export function registerUser(program: Command): void {
  const user = program.command('user').description('manage mail users and their keys');

  user
    .command('add')
    .description('create a user: login, Maildir, keys sealed with the password')
    .argument('<address>', 'user@domain (stored lowercase)')
    .addOption(new Option('--curve <curve>', 'key curve: secp521r1, secp384r1, prime256v1').env('MAILSEAL_CURVE').default(DEFAULTS.curve))
    .addOption(new Option('--owner <user>', 'system user that owns the mail files (when run as root)').env('MAILSEAL_USER'))
    .addOption(passwordStdinOption())
    .action(async (address: string, o: { curve: string; owner?: string; passwordStdin?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const owner = ownerOf(o.owner);
      if (!owner && process.getuid?.() === 0) {
        process.stderr.write('mailseal: warning: running as root without --owner: the files will belong to root\n');
      }
      const addr = normalizeAddress(address);
      const password = await askSecret(`new password for ${addr}`, o);
      if (!o.passwordStdin) {
        const again = await askSecret(`repeat the password for ${addr}`, o);
        if (again !== password) throw new MailsealError('usage', 'the passwords do not match');
      }
      const db = openDb(g.db);
      try {
        const r = await addUser(db, g.maildir, { address: addr, password, curve: o.curve, owner });
        process.stdout.write(`created ${r.address}\n  home      ${r.home}\n  user key  ${r.userKeyId}\n  INBOX key ${r.folderKeyId}\n`);
        showCode(r.recoveryCode);
      } finally {
        db.close();
      }
    });

  onUser(user.command('passwd'), 'change a password (asks for the current one); mail and keys stay, re-wrapped', async (db, addr, o) => {
    const old = await askSecret(`current password for ${addr}`, o);
    const pw = await newPassword(addr, o);
    await changePassword(db, addr, old, pw);
    process.stdout.write(`password of ${addr} changed; all mail stays readable\n`);
  });

  onUser(user.command('recover'), 'set a new password with the recovery code (a forgotten password); issues a new code', async (db, addr, o) => {
    const code = await askSecret(`recovery code for ${addr}`, o);
    const pw = await newPassword(addr, o);
    await recoverUser(db, addr, code, pw, showCode).catch((err: unknown) => {
      if (err instanceof MailsealError && err.code === 'bad-password') {
        throw Object.assign(err, { hint: 'nothing was changed; the code is the one shown by "user add" or the last "recover"' });
      }
      throw err;
    });
    process.stdout.write(`password of ${addr} set; all mail stays readable; the old recovery code is void\n`);
  });

  const reset = user.command('reset').option('--discard-old-mail', 'required: agree that mail received so far can no longer be read with the new password');
  onUser(reset, 'admin reset without the password or the code: new keys, OLD MAIL STAYS SEALED', async (db, addr, o) => {
    if (!o.discardOldMail) {
      throw Object.assign(new MailsealError('usage', `a reset makes new keys: the mail ${addr} has received so far stays sealed to the old password`), {
        hint: 'use "user passwd" with the current password or "user recover" with the recovery code; to reset anyway, add --discard-old-mail',
      });
    }
    const pw = await newPassword(addr, o);
    const r = await resetUser(db, addr, pw, showCode);
    process.stdout.write(`${addr} reset: new user key and ${r.folders} new folder key(s).\n` +
      'Mail received before now stays sealed to the old keys: it opens only with the old password.\n');
  });

  onUser(user.command('recovery-code'), 'issue a new recovery code (asks for the password); the old code is void', async (db, addr, o) => {
    const pw = await askSecret(`password for ${addr}`, o);
    showCode(await renewRecoveryCode(db, addr, pw));
  });

  user
    .command('del')
    .description('delete a user (with --keep-mail or --purge)')
    .argument('<address>')
    .option('--keep-mail', 'keep the home (mail and keys) on disk')
    .option('--purge', 'remove the home with all mail and keys')
    .action(async (address: string, o: { keepMail?: boolean; purge?: boolean }, cmd: Command) => {
      const addr = normalizeAddress(address);
      if (!!o.keepMail === !!o.purge) throw new MailsealError('usage', 'say what happens to the mail: --keep-mail or --purge');
      const g = globals(cmd);
      await withDb(cmd, async (db) => {
        const r = await deleteUser(db, g.maildir, addr, { purge: !!o.purge });
        process.stdout.write(`deleted ${addr}${r.aliases ? ` and ${r.aliases} alias(es) to it` : ''}; ${o.purge ? `removed ${r.home}` : `mail kept in ${r.home}`}\n`);
      });
    });

  for (const [name, enabled] of [['disable', false], ['enable', true]] as const) {
    user
      .command(name)
      .description(enabled ? 'let a user log in and receive mail again' : 'refuse logins and mail (550) for a user; nothing is deleted')
      .argument('<address>')
      .action(async (address: string, _o: unknown, cmd: Command) => {
        const addr = normalizeAddress(address);
        await withDb(cmd, async (db) => {
          setEnabled(db, addr, enabled);
          process.stdout.write(`${addr} ${enabled ? 'enabled' : 'disabled'}\n`);
        });
      });
  }

  user
    .command('repair')
    .description('finish or undo password changes, recoveries and rotations that were cut off')
    .argument('[address]', 'one user (default: every user with an interrupted change)')
    .option('--forget', 'drop the record of the interrupted change of ADDRESS without applying it (when repair cannot judge it)')
    .action(async (address: string | undefined, o: { forget?: boolean }, cmd: Command) => {
      await withDb(cmd, async (db) => {
        if (o.forget) {
          if (!address) throw new MailsealError('usage', '--forget needs an address');
          const a = normalizeAddress(address);
          process.stdout.write(`${a}: ${forgetPending(db, a) ? 'record of the interrupted change dropped; the dict is kept as it is' : 'nothing to do'}\n`);
          return;
        }
        const list = address ? [normalizeAddress(address)]
          : (db.prepare('SELECT address FROM pending ORDER BY address').all() as { address: string }[]).map((r) => r.address);
        let failed = false;
        for (const a of list) {
          const u = findUser(db, a);
          if (!u) throw new MailsealError('no-user', `no such user: ${a}`);
          if (list.length > 1) process.stderr.write(`mailseal: settling ${a} (waits for its dict lock)\n`);
          const r = await settle(db, a, u.home).catch((err: unknown) => {
            if (!(err instanceof MailsealError) || list.length === 1) throw err;
            process.stderr.write(`mailseal: error: ${a}: ${err.message}\n`);
            failed = true;
            return 'failed' as const;
          });
          if (r === 'failed') continue;
          process.stdout.write(`${a}: ${r === 'applied' ? 'interrupted change completed (its new password and any recovery code it printed are now valid)'
            : r === 'undone' ? 'interrupted change rolled back (the previous password and recovery code stay valid)' : 'nothing to do'}\n`);
        }
        if (failed) throw new MailsealError('locked', 'some interrupted changes could not be settled (see above)');
      });
    });

  user
    .command('list')
    .description('list users')
    .option('--json', 'one JSON array, for scripts')
    .action((o: { json?: boolean }, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        const rows = db.prepare('SELECT address, curve, key_id, enabled, home, created_at FROM users ORDER BY address').all() as Row[];
        process.stdout.write(o.json ? JSON.stringify(rows) + '\n' : userTable(rows));
      } finally {
        db.close();
      }
    });

  user
    .command('show')
    .description('show one user')
    .argument('<address>')
    .option('--json', 'JSON, for scripts')
    .action((address: string, o: { json?: boolean }, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        const addr = normalizeAddress(address);
        const u = findUser(db, addr);
        if (!u) throw new MailsealError('no-user', `no such user: ${addr}`);
        const rec = db.prepare('SELECT created_at FROM recovery WHERE address = ?').get(addr) as { created_at: string } | undefined;
        const p = pendingOf(db, addr);
        const info = { ...u, recovery: rec ? `code issued ${rec.created_at}` : null, pending: p ? `${p.kind} interrupted at ${p.started_at} (run "mailseal user repair")` : null };
        if (o.json) process.stdout.write(JSON.stringify(info) + '\n');
        else for (const [k, v] of Object.entries(info)) process.stdout.write(`${k.padEnd(8)} ${v ?? '-'}\n`);
      } finally {
        db.close();
      }
    });
}
