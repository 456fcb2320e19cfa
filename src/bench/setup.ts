// The bench's throw-away world: a temp dir with a mail root and a user database, bench users
// with keys (random passwords, never shown nor kept), the mail user that owns it all when run as
// root, and a cleanup list that undoes everything — at the end, on an error, and on Ctrl-C.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { openDb } from '../accounts/db.ts';
import { weakPassword } from '../accounts/password.ts';
import { addUser } from '../accounts/users.ts';
import { MailsealError } from '../errors.ts';
import { userHome } from '../maildir/paths.ts';

/** Undo steps, run last-added first. `run` is idempotent; `runSync` is the exit-time fallback. */
export class Cleanup {
  private steps: { name: string; async: () => Promise<void>; sync: () => void }[] = [];
  private running: Promise<void> | null = null;

  add(name: string, async: () => Promise<void>, sync: () => void): void {
    this.steps.push({ name, async, sync });
  }

  run(onError: (msg: string) => void = () => undefined): Promise<void> {
    return (this.running ??= (async () => {
      while (this.steps.length > 0) {
        const s = this.steps.pop()!;
        try {
          await s.async();
        } catch (e) {
          onError(`cleanup (${s.name}): ${(e as Error).message}`);
        }
      }
    })());
  }

  /** Synchronous best effort (process 'exit'): kill, remove. */
  runSync(): void {
    while (this.steps.length > 0) {
      try {
        this.steps.pop()!.sync();
      } catch {
        // best effort
      }
    }
  }
}

/** Remove a directory tree, synchronously or not. */
export function removeDir(cleanup: Cleanup, dir: string): void {
  cleanup.add(`remove ${dir}`, () => fsp.rm(dir, { recursive: true, force: true }), () => fs.rmSync(dir, { recursive: true, force: true }));
}

export interface MailUser {
  name: string;
  uid: number;
  gid: number;
}

/**
 * When running as root: the system user that owns the bench mail store (the agent drops to it,
 * Dovecot's mail processes run as it). `vmail` if it exists, else `nobody`.
 * @throws MailsealError usage if a named user does not exist
 */
export function mailUser(name?: string): MailUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (n: string, flag: string) => Number(execFileSync('id', [flag, n], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  for (const n of name ? [name] : ['vmail', 'nobody']) {
    try {
      return { name: n, uid: id(n, '-u'), gid: id(n, '-g') };
    } catch {
      // try the next
    }
  }
  throw new MailsealError('usage', `no such system user: ${name ?? 'vmail or nobody'}`);
}

/** A random login password that passes the strength rules. Never printed, never stored. */
function randomPassword(address: string): string {
  for (;;) {
    const p = crypto.randomBytes(18).toString('base64url');
    if (weakPassword(p, address) === null) return p;
  }
}

export interface BenchUser {
  address: string;
  curve: string;
  /** `<home>/Maildir/new`. */
  newDir: string;
}

/** The domain of a curve's bench users. */
export function benchDomain(curve: string): string {
  return `${curve.toLowerCase()}.bench.invalid`;
}

/**
 * Create `count` users on each curve (`u1@<curve>.bench.invalid` …) with keys, owned by `owner`.
 * Files first, DB rows last (addUser), as `mailseal user add` does.
 */
export async function createUsers(dbFile: string, mailRoot: string, curves: Map<string, number>, owner?: MailUser): Promise<Map<string, BenchUser[]>> {
  const db = openDb(dbFile);
  const out = new Map<string, BenchUser[]>();
  try {
    for (const [curve, count] of curves) {
      const list: BenchUser[] = [];
      for (let i = 1; i <= count; i++) {
        const address = `u${i}@${benchDomain(curve)}`;
        const o = owner ? { uid: owner.uid, gid: owner.gid } : undefined;
        await addUser(db, mailRoot, { address, password: randomPassword(address), curve, ...(o ? { owner: o } : {}) });
        list.push({ address, curve, newDir: path.join(userHome(mailRoot, address), 'Maildir', 'new') });
      }
      out.set(curve, list);
    }
  } finally {
    db.close();
  }
  return out;
}

const MAGIC = Buffer.from('CRYPTED\x03\x07', 'latin1');

/** The files now in the users' new/ directories. */
export async function listNew(users: BenchUser[]): Promise<string[]> {
  const all: string[] = [];
  for (const u of users) {
    for (const f of await fsp.readdir(u.newDir)) all.push(path.join(u.newDir, f));
  }
  return all;
}

/** How many of `files` begin with the mail_crypt magic `CRYPTED\x03\x07`. */
export async function countSealed(files: string[]): Promise<number> {
  let n = 0;
  const head = Buffer.alloc(MAGIC.length);
  for (const f of files) {
    const fh = await fsp.open(f, 'r');
    try {
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      if (bytesRead === head.length && head.equals(MAGIC)) n++;
    } finally {
      await fh.close();
    }
  }
  return n;
}
