// `mailseal alias add|list|del`: addresses that forward to users or outside addresses
// (Postfix's virtual_alias_maps; a user may also send as an alias that points to them).

import type { Command } from 'commander';
import { openDb } from '../accounts/db.ts';
import { addAlias, deleteAlias, listAliases } from '../accounts/aliases.ts';
import { globals } from './common.ts';
import { table } from './table.ts';

export function registerAlias(program: Command): void {
  const alias = program.command('alias').description('manage aliases (forwarding addresses)');

  alias
    .command('add')
    .description('make SOURCE forward to one or more destinations (local users or outside addresses)')
    .argument('<source>', 'address in a domain served here (stored lowercase)')
    .argument('<destination...>', 'where its mail goes')
    .action((source: string, destinations: string[], _o: unknown, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        const r = addAlias(db, source, destinations);
        for (const w of r.warnings) process.stderr.write(`mailseal: warning: ${w}\n`);
        process.stdout.write(`added alias ${r.source} -> ${r.added.join(', ')}\n`);
      } finally {
        db.close();
      }
    });

  alias
    .command('list')
    .description('list aliases')
    .option('--domain <domain>', 'only aliases from or to this domain')
    .option('--json', 'one JSON array of {source, destinations}, for scripts')
    .action((o: { json?: boolean; domain?: string }, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        const rows = listAliases(db, o.domain);
        process.stdout.write(o.json ? JSON.stringify(rows) + '\n' : table(['ALIAS', 'DESTINATIONS'], rows.map((r) => [r.source, r.destinations.join(', ')])));
      } finally {
        db.close();
      }
    });

  alias
    .command('del')
    .description('remove an alias, or only some of its destinations')
    .argument('<source>')
    .argument('[destination...]', 'remove only these destinations (default: all)')
    .action((source: string, destinations: string[], _o: unknown, cmd: Command) => {
      const db = openDb(globals(cmd).db);
      try {
        const r = deleteAlias(db, source, destinations);
        process.stdout.write(`deleted alias ${r.source} -> ${r.removed.join(', ')}\n`);
      } finally {
        db.close();
      }
    });
}
