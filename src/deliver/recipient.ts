// RCPT TO → where the mail goes. Unknown or disabled users are 550 5.1.1; an address that could
// reach outside the mail root (`..`, `/`, `\`, NUL, control characters) is 550 5.1.3 before any
// lookup. `alice+news@d` goes to alice, into folder `news` if it exists, else INBOX.

import fs from 'node:fs/promises';
import path from 'node:path';
import { type Db, findUser } from '../accounts/db.ts';
import { MailsealError } from '../errors.ts';
import { folderPath, isInside } from '../maildir/paths.ts';
import { FolderKeys } from '../store/folderkeys.ts';
import type { Target } from './deliver.ts';

export interface ResolverOptions {
  /** The open user database (a function: SIGHUP reopens it). */
  db: () => Db;
  mailRoot: string;
  /** Recipient delimiter ('' = off). */
  delimiter: string;
  keys: FolderKeys;
}

const HOSTILE = /[\x00-\x1f\x7f/\\]|\.\./;

/** @throws MailsealError bad-address */
export function splitAddress(rcpt: string): { local: string; domain: string } {
  if (rcpt.length > 320 || HOSTILE.test(rcpt)) throw new MailsealError('bad-address', 'invalid address');
  const at = rcpt.lastIndexOf('@');
  const local = rcpt.slice(0, at);
  const domain = rcpt.slice(at + 1);
  if (at < 1 || !domain || domain.startsWith('.') || local.startsWith('.')) throw new MailsealError('bad-address', 'invalid address');
  return { local, domain };
}

async function isMaildir(dir: string): Promise<boolean> {
  try {
    return (await fs.stat(path.join(dir, 'cur'))).isDirectory();
  } catch {
    return false;
  }
}

export function createResolver(o: ResolverOptions) {
  const root = path.resolve(o.mailRoot);
  return async (rcpt: string): Promise<Target & { user: string }> => {
    const { local, domain } = splitAddress(rcpt.toLowerCase());
    let user = findUser(o.db(), `${local}@${domain}`);
    let detail = '';
    const cut = o.delimiter ? local.indexOf(o.delimiter) : -1;
    if (!user && cut > 0) {
      detail = local.slice(cut + o.delimiter.length);
      user = findUser(o.db(), `${local.slice(0, cut)}@${domain}`);
    }
    if (!user || !user.enabled) throw new MailsealError('no-user', 'no such user');
    const home = path.resolve(user.home);
    if (!isInside(root, home)) {
      throw new MailsealError('internal', `home of ${user.address} (${home}) is outside the mail root ${root}`);
    }
    const maildir = path.join(home, 'Maildir');
    let folder = maildir;
    if (detail) {
      const candidate = folderPath(maildir, detail);
      if (await isMaildir(candidate)) folder = candidate;
    }
    return {
      rcpt,
      user: user.address,
      folder,
      key: (probe) => o.keys.activeKey(maildir, folder, probe),
      guess: () => o.keys.lastKey(folder),
      probe: FolderKeys.probePaths(maildir, folder),
    };
  };
}
