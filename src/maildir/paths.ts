// Paths inside the mail root, validated so that nothing resolves outside it: the home of
// user@domain is <root>/<domain>/<user>; Maildir++ folders are <Maildir>/.<a>.<b>.

import path from 'node:path';
import { MailsealError } from '../errors.ts';

const BAD = /[\x00-\x1f\x7f/\\]/;

function part(s: string, what: string, max: number): string {
  if (!s || s.length > max || BAD.test(s) || s.startsWith('.') || s.includes('..')) {
    throw new MailsealError('bad-address', `invalid ${what}`);
  }
  return s;
}

/** True if `p` is strictly inside `root`. */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(path.resolve(root), path.resolve(p));
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** `path` must be strictly inside `root`. @throws MailsealError bad-address */
export function assertInside(root: string, p: string): string {
  if (!isInside(root, p)) throw new MailsealError('bad-address', 'path outside the mail root');
  return path.resolve(p);
}

/** `<root>/<domain>/<local>` for a lowercase address. @throws MailsealError bad-address */
export function userHome(root: string, address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 1 || address !== address.toLowerCase()) throw new MailsealError('bad-address', `invalid address ${JSON.stringify(address.slice(0, 80))}`);
  const local = part(address.slice(0, at), 'local part', 64);
  const domain = part(address.slice(at + 1), 'domain', 253);
  return assertInside(root, path.join(root, domain, local));
}

/**
 * The directory of a folder in Maildir++ layout: INBOX is the Maildir itself, `a/b` or `a.b`
 * is `<maildir>/.a.b`. @throws MailsealError bad-address
 */
export function folderPath(maildir: string, folder: string): string {
  if (folder.toUpperCase() === 'INBOX') return maildir;
  const parts = folder.split(/[/.]/);
  for (const p of parts) {
    if (!p || BAD.test(p) || p.length > 255) throw new MailsealError('bad-address', 'invalid folder name');
  }
  return assertInside(maildir, path.join(maildir, '.' + parts.join('.')));
}
