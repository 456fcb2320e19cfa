// `mailseal user add|list|show`: accounts with keys.

import { type Command, Option } from 'commander';
import { execFileSync } from 'node:child_process';
import { findUser, openDb } from '../accounts/db.ts';
import { addUser, normalizeAddress } from '../accounts/users.ts';
import { DEFAULTS } from '../config.ts';
import { MailsealError } from '../errors.ts';
import { globals, passwordStdinOption } from './common.ts';
import { askSecret } from './prompt.ts';

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

function table(rows: Row[]): string {
  const head = ['ADDRESS', 'CURVE', 'USER KEY', 'ENABLED', 'CREATED'];
  const body = rows.map((r) => [r.address, r.curve, (r.key_id ?? '-').slice(0, 16), r.enabled ? 'yes' : 'no', r.created_at]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n') + '\n';
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
      } finally {
        db.close();
      }
    });

  user
    .command('list')
    .description('list users')
    .option('--json', 'one JSON array, for scripts')
    .action((o: { json?: boolean }, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        const rows = db.prepare('SELECT address, curve, key_id, enabled, home, created_at FROM users ORDER BY address').all() as Row[];
        process.stdout.write(o.json ? JSON.stringify(rows) + '\n' : table(rows));
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
        const u = findUser(db, normalizeAddress(address));
        if (!u) throw new MailsealError('no-user', `no such user: ${normalizeAddress(address)}`);
        if (o.json) process.stdout.write(JSON.stringify(u) + '\n');
        else for (const [k, v] of Object.entries(u)) process.stdout.write(`${k.padEnd(8)} ${v ?? '-'}\n`);
      } finally {
        db.close();
      }
    });
}
