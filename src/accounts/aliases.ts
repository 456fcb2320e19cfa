// Aliases (the `aliases` table, Postfix's virtual_alias_maps): an address in a domain we serve
// that forwards to one or more destinations, local users or outside addresses. A local user may
// also send as an alias that points to them (smtpd_sender_login_maps). Stored lowercase.

import { MailsealError } from '../errors.ts';
import { audit, type Db, findUser } from './db.ts';
import { domainExists, normalizeDomain } from './domains.ts';
import { normalizeAddress } from './users.ts';

// dot-atom of the characters that are safe everywhere an address goes: a Postfix table key, an
// SQL literal, a Dovecot login, a path component (never '/', '\', quotes, '%', ',' or spaces).
const LOCAL = /^[a-z0-9_+=-]+(?:\.[a-z0-9_+=-]+)*$/;

function usage(message: string, hint?: string): MailsealError {
  return Object.assign(new MailsealError('usage', message), hint ? { hint } : {});
}

/**
 * An address as we store it: trimmed, lowercase, `local@domain` with a plain dot-atom local part
 * (at most 64 characters) and a valid domain.
 * @throws MailsealError usage, naming the problem
 */
export function parseAddress(input: string, what = 'address'): { address: string; local: string; domain: string } {
  const a = normalizeAddress(input);
  const shown = JSON.stringify(a.slice(0, 80));
  const at = a.lastIndexOf('@');
  if (at === 0) throw usage(`invalid ${what} ${shown}: catch-all aliases (@domain) are not supported`);
  if (at < 0) throw usage(`invalid ${what} ${shown}: expected local@domain`);
  const local = a.slice(0, at);
  if (local.length > 64 || !LOCAL.test(local)) {
    throw usage(`invalid ${what} ${shown}: the part before '@' may hold letters, digits, '.', '_', '+', '=' and '-' (at most 64)`);
  }
  let domain: string;
  try {
    domain = normalizeDomain(a.slice(at + 1));
  } catch (err) {
    throw usage(`invalid ${what} ${shown}: ${(err as Error).message}`);
  }
  return { address: a, local, domain };
}

export interface AliasRow {
  source: string;
  destinations: string[];
}

function isAliasSource(db: Db, address: string): boolean {
  return db.prepare('SELECT 1 FROM aliases WHERE source = ?').get(address) !== undefined;
}

export interface AliasAdded {
  source: string;
  added: string[];
  /** Things the operator should know, e.g. that the alias hides a mailbox. */
  warnings: string[];
}

/**
 * Add `source → destinations`. The source must be in a domain we serve; a destination in a domain
 * we serve must be a user or another alias; outside destinations are taken as they are. The
 * source itself is a destination only when it is a user (keep a copy in the mailbox).
 * All or nothing.
 * @throws MailsealError usage (invalid address, domain not served, unknown local destination, already there)
 */
export function addAlias(db: Db, sourceInput: string, destinationInputs: string[]): AliasAdded {
  if (destinationInputs.length === 0) throw usage('give at least one destination');
  const src = parseAddress(sourceInput, 'alias');
  const dests = [...new Set(destinationInputs.map((d) => parseAddress(d, 'destination').address))];
  const warnings: string[] = [];
  db.transaction(() => {
    if (!domainExists(db, src.domain)) {
      throw usage(`${src.domain} is not a domain served here, so ${src.address} cannot be an alias`, `add it first: mailseal domain add ${src.domain}`);
    }
    for (const d of dests) {
      // A user's own address among its destinations keeps a copy in the mailbox (Postfix stops
      // expanding at a self-reference); for anything else a self-reference delivers nowhere.
      if (d === src.address && !findUser(db, d)) throw usage(`an alias cannot point to itself: ${d}`);
      const domain = d.slice(d.lastIndexOf('@') + 1);
      if (domainExists(db, domain) && !findUser(db, d) && !isAliasSource(db, d)) {
        throw usage(`no such user or alias: ${d}`, `${domain} is served here; create the user first (mailseal user add ${d}) or fix the address`);
      }
      if (db.prepare('SELECT 1 FROM aliases WHERE source = ? AND destination = ?').get(src.address, d)) {
        throw usage(`alias ${src.address} -> ${d} already exists`);
      }
    }
    const insert = db.prepare('INSERT INTO aliases (source, destination) VALUES (?, ?)');
    for (const d of dests) insert.run(src.address, d);
    audit(db, src.address, 'alias-add', dests.join(', '));
    const user = findUser(db, src.address);
    const all = (db.prepare('SELECT destination FROM aliases WHERE source = ?').all(src.address) as { destination: string }[]).map((r) => r.destination);
    if (user && !all.includes(src.address)) {
      warnings.push(`${src.address} is also a user: mail to it now goes to ${all.join(', ')} only, not to its mailbox (add ${src.address} as a destination to keep a copy)`);
    }
  }).immediate();
  return { source: src.address, added: dests, warnings };
}

/** Aliases grouped by source, sorted; with `domain`, those with the source or a destination in it. */
export function listAliases(db: Db, domainInput?: string): AliasRow[] {
  const domain = domainInput === undefined ? undefined : normalizeDomain(domainInput);
  const rows = db.prepare('SELECT source, destination FROM aliases ORDER BY source, destination').all() as { source: string; destination: string }[];
  const bySource = new Map<string, string[]>();
  for (const r of rows) {
    const list = bySource.get(r.source) ?? [];
    list.push(r.destination);
    bySource.set(r.source, list);
  }
  const inDomain = (a: string) => a.slice(a.lastIndexOf('@') + 1) === domain;
  return [...bySource]
    .map(([source, destinations]) => ({ source, destinations }))
    .filter((a) => domain === undefined || inDomain(a.source) || a.destinations.some(inDomain));
}

/**
 * Remove `source → destinations`, or every destination of `source` when none are given.
 * @throws MailsealError usage (no such alias / destination)
 */
export function deleteAlias(db: Db, sourceInput: string, destinationInputs: string[] = []): { source: string; removed: string[] } {
  const source = parseAddress(sourceInput, 'alias').address;
  // Destinations are matched as stored; only normalise, so that a malformed stored row can still go.
  const wanted = destinationInputs.map(normalizeAddress);
  let removed: string[] = [];
  db.transaction(() => {
    const have = (db.prepare('SELECT destination FROM aliases WHERE source = ?').all(source) as { destination: string }[]).map((r) => r.destination);
    if (have.length === 0) throw usage(`no such alias: ${source}`, 'mailseal alias list shows the aliases');
    for (const d of wanted) if (!have.includes(d)) throw usage(`${source} does not point to ${d} (it points to ${have.join(', ')})`);
    removed = wanted.length ? [...new Set(wanted)] : have;
    const del = db.prepare('DELETE FROM aliases WHERE source = ? AND destination = ?');
    for (const d of removed) del.run(source, d);
    audit(db, source, 'alias-del', removed.join(', '));
  }).immediate();
  return { source, removed };
}
