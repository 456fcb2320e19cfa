// mailseal command line: parse argv, run the command, turn errors into one clear line.

import { Command, CommanderError } from 'commander';
import { MailsealError } from './errors.ts';
import { registerBench } from './cli/bench.ts';
import { registerCat } from './cli/cat.ts';
import { registerServe } from './cli/serve.ts';
import { registerUser } from './cli/user.ts';
import { registerKey } from './cli/key.ts';
import { globalOptions } from './cli/common.ts';
import { registerDomain } from './cli/domain.ts';
import { registerAlias } from './cli/alias.ts';
import { registerConfig } from './cli/config.ts';

const program = new Command('mailseal')
  .description('LMTP delivery agent that seals mail at rest for Dovecot mail_crypt')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();
globalOptions(program);
registerServe(program);
registerUser(program);
registerKey(program);
registerCat(program);
registerBench(program);
registerDomain(program);
registerAlias(program);
registerConfig(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (err instanceof MailsealError) {
    process.stderr.write(`mailseal: error: ${err.message}\n`);
    const hint = (err as MailsealError & { hint?: string }).hint;
    if (hint) process.stderr.write(`mailseal: hint: ${hint}\n`);
    process.exitCode = err.exitCode;
  } else {
    const e = err as NodeJS.ErrnoException;
    const msg = e.code && e.path ? `${e.code}: ${e.path}` : e.message ?? String(err);
    process.stderr.write(`mailseal: error: ${msg}\n`);
    if (process.env.MAILSEAL_DEBUG) process.stderr.write(`${e.stack}\n`);
    process.exitCode = 1;
  }
}
