// At start, remove what a killed agent left in tmp/: files written on this host by processes
// that no longer run (they are encrypted; they are swept so they do not pile up), and anything
// older than 36 hours, as Dovecot does.

import fs from 'node:fs/promises';
import path from 'node:path';
import { hostname } from '../config.ts';
import { escapeHost } from './filename.ts';

const ANY_AFTER_MS = 36 * 3600 * 1000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function dirs(p: string): Promise<string[]> {
  try {
    return (await fs.readdir(p, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => path.join(p, e.name));
  } catch {
    return [];
  }
}

async function sweepDir(tmp: string, now: number): Promise<number> {
  const host = escapeHost(hostname());
  let n = 0;
  let names: string[];
  try {
    names = await fs.readdir(tmp);
  } catch {
    return 0;
  }
  for (const name of names) {
    const file = path.join(tmp, name);
    try {
      const st = await fs.lstat(file);
      if (!st.isFile()) continue;
      const age = now - st.mtimeMs;
      const m = /^\d+\.M\d+P(\d+)(?:Q\d+)?\.([^,:]+)/.exec(name);
      const ours = m !== null && m[2] === host;
      const stale = age > ANY_AFTER_MS || (ours && !alive(Number(m![1])));
      if (stale) {
        await fs.unlink(file);
        n++;
      }
    } catch {
      // raced with another cleaner or Dovecot: fine
    }
  }
  return n;
}

/** Sweep `<root>/<domain>/<user>/Maildir[/.<folder>]/tmp`; returns how many files were removed. */
export async function sweepTmp(root: string, now = Date.now()): Promise<number> {
  let n = 0;
  for (const domain of await dirs(root)) {
    for (const home of await dirs(domain)) {
      const maildir = path.join(home, 'Maildir');
      n += await sweepDir(path.join(maildir, 'tmp'), now);
      for (const sub of await dirs(maildir)) {
        if (path.basename(sub).startsWith('.')) n += await sweepDir(path.join(sub, 'tmp'), now);
      }
    }
  }
  return n;
}
