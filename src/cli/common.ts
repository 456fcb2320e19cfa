// Options every command shares, resolved flags > MAILSEAL_* env > defaults.

import { type Command, Option } from 'commander';
import path from 'node:path';
import { DEFAULTS } from '../config.ts';

export interface GlobalOptions {
  maildir: string;
  db: string;
}

export function globalOptions(program: Command): void {
  program
    .addOption(new Option('--maildir <dir>', 'mail root: homes are <dir>/<domain>/<user>').env('MAILSEAL_MAILDIR').default(DEFAULTS.maildir))
    .addOption(new Option('--db <file>', 'SQLite user database').env('MAILSEAL_DB').default(DEFAULTS.db));
}

/** The global options, with paths made absolute. */
export function globals(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals() as GlobalOptions;
  return { maildir: path.resolve(o.maildir), db: path.resolve(o.db) };
}

export function passwordStdinOption(): Option {
  return new Option('--password-stdin', 'read secrets from standard input, one per line, in prompt order');
}

/**
 * A new recovery code, once, on stdout. Changes that replace the code print it before they
 * commit, so that a run cut off after that point still leaves the valid code on screen.
 */
export function showCode(code: string): void {
  process.stdout.write(`recovery code (shown once: keep it offline; it is the only way in without the password):\n  ${code}\n`);
}
