// `mailseal domain add|list|del`: the mail domains served here (Postfix's virtual_mailbox_domains).

import type { Command } from 'commander';
import { openDb } from '../accounts/db.ts';
import { addDomain, deleteDomain, listDomains } from '../accounts/domains.ts';
import { globals } from './common.ts';
import { table } from './table.ts';

export function registerDomain(program: Command): void {
  const domain = program.command('domain').description('manage the mail domains served here');

  domain
    .command('add')
    .description('serve a domain (stored lowercase; users and aliases need their domain)')
    .argument('<domain>', 'e.g. example.org (punycode for internationalised names)')
    .action((name: string, _o: unknown, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        process.stdout.write(`added domain ${addDomain(db, name)}\n`);
      } finally {
        db.close();
      }
    });

  domain
    .command('list')
    .description('list the domains, with how many users and aliases each has')
    .option('--json', 'one JSON array, for scripts')
    .action((o: { json?: boolean }, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        const rows = listDomains(db);
        process.stdout.write(
          o.json
            ? JSON.stringify(rows) + '\n'
            : table(['DOMAIN', 'USERS', 'ALIASES', 'CREATED'], rows.map((r) => [r.name, String(r.users), String(r.aliases), r.created_at])),
        );
      } finally {
        db.close();
      }
    });

  domain
    .command('del')
    .description('stop serving a domain; refused while users or aliases of it exist')
    .argument('<domain>')
    .action((name: string, _o: unknown, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        process.stdout.write(`deleted domain ${deleteDomain(db, name)}\n`);
      } finally {
        db.close();
      }
    });
}
