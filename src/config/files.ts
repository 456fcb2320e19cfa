// Generated configuration files: what they are, how paths are checked before they go into
// Postfix or Dovecot syntax, and how they are printed or written.

import fs from 'node:fs';
import path from 'node:path';
import { MailsealError } from '../errors.ts';

export interface ConfigFile {
  /** File name, without directory. */
  name: string;
  content: string;
}

// Characters that mean nothing special to Postfix (main.cf `$` expansion, ',' lists, map
// `type:name`) or Dovecot (`%` variables, space-separated `args`, quotes, `#`).
const SAFE_PATH = /^\/[A-Za-z0-9._/+@=~-]*$/;

/**
 * An absolute path that can be written into Postfix and Dovecot configuration as it is.
 * @throws MailsealError usage
 */
export function configPath(p: string, what: string): string {
  const abs = path.resolve(p);
  if (!SAFE_PATH.test(abs)) {
    throw Object.assign(new MailsealError('usage', `the ${what} path ${JSON.stringify(abs)} cannot go into Postfix/Dovecot configuration`), {
      hint: "use a path of letters, digits and . _ - + @ = ~ / only (no spaces, '$', '%', ',' or ':')",
    });
  }
  return abs;
}

/** Every file under a `# ==> PATH <==` line, as `tail` shows several files. */
export function printable(dir: string, files: ConfigFile[]): string {
  return files.map((f) => `# ==> ${path.join(dir, f.name)} <==\n${f.content}`).join('\n');
}

/**
 * Write the files into `dir` (created if missing), mode 0640, group `group` when given (the
 * daemon that reads them). Each file is replaced by rename, never half-written.
 * @returns the paths written
 */
export function writeFiles(dir: string, files: ConfigFile[], group?: number): string[] {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  return files.map((f) => {
    const dest = path.join(dir, f.name);
    const tmp = `${dest}.tmp${process.pid}`;
    fs.writeFileSync(tmp, f.content, { mode: 0o640 });
    fs.chmodSync(tmp, 0o640); // whatever the umask
    if (group !== undefined) fs.chownSync(tmp, -1, group);
    fs.renameSync(tmp, dest);
    return dest;
  });
}
