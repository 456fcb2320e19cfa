// `mailseal key list|rotate`: a user's mail_crypt keys as they are in the dict, and new active
// keys (old ones stay, so old mail stays readable).

import type { Command } from 'commander';
import fs from 'node:fs/promises';
import path from 'node:path';
import { loadUser, rotateFolderKey, rotateUserKey } from '../accounts/credentials.ts';
import { openDb } from '../accounts/db.ts';
import { dictFile } from '../accounts/journal.ts';
import { normalizeAddress } from '../accounts/users.ts';
import { MailsealError } from '../errors.ts';
import { parsePrivateKey } from '../mailcrypt/keystring.ts';
import { readMailboxGuid } from '../maildir/uidlist.ts';
import { readDict } from '../store/dictfile.ts';
import { keyPaths, listKeys } from '../store/keyring.ts';
import { globals, passwordStdinOption, showCode } from './common.ts';
import { askSecret, type SecretOptions } from './prompt.ts';
import { table } from './table.ts';

/** Mailbox GUID → folder name, from the uidlists of INBOX and the Maildir++ folders. */
async function folderNames(maildir: string): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  const inbox = await readMailboxGuid(maildir).catch(() => null);
  if (inbox) names.set(inbox, 'INBOX');
  for (const e of await fs.readdir(maildir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory() || !e.name.startsWith('.') || e.name === '.' || e.name === '..') continue;
    const guid = await readMailboxGuid(path.join(maildir, e.name)).catch(() => null);
    if (guid) names.set(guid, e.name.slice(1));
  }
  return names;
}

interface KeyRow {
  scope: string;
  folder: string;
  id: string;
  active: boolean;
  locked: string;
}

function keyTable(rows: KeyRow[]): string {
  return table(['SCOPE', 'FOLDER', 'KEY ID', 'ACTIVE', 'PRIVATE KEY LOCKED BY'], rows.map((r) => [r.scope, r.folder, r.id, r.active ? 'yes' : '', r.locked]));
}

export function registerKey(program: Command): void {
  const key = program.command('key').description("a user's mail_crypt keys");

  key
    .command('list')
    .description('the user key(s) and folder keys, the active ones, and what locks each private key')
    .argument('<address>')
    .option('--json', 'JSON, for scripts')
    .action(async (address: string, o: { json?: boolean }, cmd: Command) => {
      const addr = normalizeAddress(address);
      const db = openDb(globals(cmd).db);
      try {
        const u = await loadUser(db, addr);
        const { dict } = await readDict(dictFile(u.home));
        const names = await folderNames(path.join(u.home, 'Maildir'));
        const rows: KeyRow[] = listKeys(dict).map((k) => {
          const s = k.hasPrivate ? dict.get(keyPaths(k.scope, k.guid).priv(k.id)) : undefined;
          let locked = 'no private key';
          if (s !== undefined) {
            const p = parsePrivateKey(s);
            locked = p.enctype === 2 ? 'password' : p.enctype === 1 ? `key ${p.encryptedTo.slice(0, 16)}` : 'nothing (plain)';
          }
          return { scope: k.scope, folder: k.scope === 'user' ? '-' : names.get(k.guid) ?? k.guid, id: k.id, active: k.active, locked };
        });
        process.stdout.write(o.json ? JSON.stringify(rows) + '\n' : keyTable(rows));
      } finally {
        db.close();
      }
    });

  key
    .command('rotate')
    .description('a new active key for a folder (default INBOX; no password needed) or, with --user, the user key')
    .argument('<address>')
    .option('--folder <name>', 'the folder whose key to rotate (default INBOX)')
    .option('--user', 'rotate the user key: asks for the password; issues a new recovery code')
    .addOption(passwordStdinOption())
    .action(async (address: string, o: SecretOptions & { folder?: string; user?: boolean }, cmd: Command) => {
      const addr = normalizeAddress(address);
      if (o.user && o.folder) throw new MailsealError('usage', 'give --folder or --user, not both');
      const db = openDb(globals(cmd).db);
      try {
        await loadUser(db, addr);
        if (o.user) {
          const pw = await askSecret(`password for ${addr}`, o);
          const r = await rotateUserKey(db, addr, pw, showCode);
          process.stdout.write(`new user key ${r.keyId}; ${r.rewrapped} folder key(s) re-encrypted to it` +
            `${r.left ? `, ${r.left} left as they were (locked by a key the password does not open)` : ''}\n`);
        } else {
          const folder = o.folder ?? 'INBOX';
          const r = await rotateFolderKey(db, addr, folder);
          process.stdout.write(`new key for ${folder}: ${r.keyId}; new mail is sealed to it, old mail keeps its key\n`);
        }
      } finally {
        db.close();
      }
    });
}
