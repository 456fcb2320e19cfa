// Mail domains we serve (the `domains` table, Postfix's virtual_mailbox_domains): validation,
// add, list, delete. Stored lowercase; a domain is only deleted once nothing refers to it.

import { MailsealError } from '../errors.ts';
import { audit, type Db } from './db.ts';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function usage(message: string, hint?: string): MailsealError {
  return Object.assign(new MailsealError('usage', message), hint ? { hint } : {});
}

/**
 * A domain name as we store it: trimmed, lowercase, LDH labels (punycode for IDNs), at least two
 * labels, not an IP address.
 * @throws MailsealError usage, naming the problem
 */
export function normalizeDomain(input: string): string {
  const d = input.trim().toLowerCase();
  const shown = JSON.stringify(d.slice(0, 80));
  if (d === '') throw usage('empty domain name');
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(d)) throw usage(`invalid domain ${shown}: not ASCII`, 'give an internationalised domain in its punycode form (xn--…)');
  if (d.length > 253) throw usage(`invalid domain ${shown}: longer than 253 characters`);
  const labels = d.split('.');
  if (labels.length < 2) throw usage(`invalid domain ${shown}: a mail domain has at least two labels, e.g. example.org`);
  for (const l of labels) {
    if (!LABEL.test(l)) throw usage(`invalid domain ${shown}: each label is 1-63 letters, digits or '-', not starting or ending with '-'`);
  }
  if (/^\d+$/.test(labels.at(-1)!)) throw usage(`invalid domain ${shown}: that is an IP address, not a domain`);
  return d;
}

export interface DomainRow {
  name: string;
  /** Users with an address in the domain (enabled or not). */
  users: number;
  /** Alias sources in the domain. */
  aliases: number;
  created_at: string;
}

export function domainExists(db: Db, name: string): boolean {
  return db.prepare('SELECT 1 FROM domains WHERE name = ?').get(name) !== undefined;
}

/** @throws MailsealError usage (invalid, already there) */
export function addDomain(db: Db, input: string): string {
  const name = normalizeDomain(input);
  db.transaction(() => {
    if (domainExists(db, name)) throw usage(`domain ${name} already exists`);
    db.prepare('INSERT INTO domains (name) VALUES (?)').run(name);
    audit(db, null, 'domain-add', name);
  }).immediate();
  return name;
}

export function listDomains(db: Db): DomainRow[] {
  return db
    .prepare(
      `SELECT d.name,
         (SELECT count(*) FROM users u WHERE u.domain = d.name) AS users,
         (SELECT count(DISTINCT a.source) FROM aliases a WHERE a.source LIKE '%@' || d.name) AS aliases,
         d.created_at
       FROM domains d ORDER BY d.name`,
    )
    .all() as DomainRow[];
}

/** The part after the last '@'. */
function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1);
}

/**
 * Delete a domain that nothing refers to any more: no user, no alias from or to an address in it.
 * @throws MailsealError usage (unknown, still in use: the message counts what is left)
 */
export function deleteDomain(db: Db, input: string): string {
  const name = normalizeDomain(input);
  db.transaction(() => {
    if (!domainExists(db, name)) throw usage(`no such domain: ${name}`, 'mailseal domain list shows the domains');
    const users = (db.prepare('SELECT count(*) AS n FROM users WHERE domain = ?').get(name) as { n: number }).n;
    const rows = db.prepare('SELECT source, destination FROM aliases').all() as { source: string; destination: string }[];
    const aliases = new Set(rows.filter((r) => domainOf(r.source) === name || domainOf(r.destination) === name).map((r) => r.source)).size;
    if (users > 0 || aliases > 0) {
      const what = [users ? `${users} user${users === 1 ? '' : 's'}` : '', aliases ? `${aliases} alias${aliases === 1 ? '' : 'es'}` : '']
        .filter(Boolean)
        .join(' and ');
      const see = [users ? '"mailseal user list"' : '', aliases ? `"mailseal alias list --domain ${name}"` : ''].filter(Boolean).join(' and ');
      throw usage(`domain ${name} is still in use by ${what}`, `remove them first; ${see} ${users && aliases ? 'show' : 'shows'} them`);
    }
    db.prepare('DELETE FROM domains WHERE name = ?').run(name);
    audit(db, null, 'domain-del', name);
  }).immediate();
  return name;
}
