// Durable Maildir delivery (design.md "Durability"): write into tmp/, fsync the file, rename it
// into new/ with S=/W= in its name, fsync new/ (through the native addon in one threadpool job
// where it is built). Concurrent deliveries into one directory share
// a directory fsync (group commit). A failed delivery leaves nothing in new/ and removes its
// tmp/ file. Only ciphertext is ever handed to this module.

import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { hostname } from '../config.ts';
import { type DirectFile, nativeAddon } from '../mailcrypt/native.ts';
import { makeMaildirName } from './filename.ts';

let seq = 0;
// Read once: process.pid and os.hostname() are a system call on every access.
const PID = process.pid;
const HOST = hostname();

/** A unique base name: `<sec>.M<usec>P<pid>Q<n>.<host>` (Dovecot's form). */
export function uniqueBase(now = Date.now()): string {
  const sec = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000 + Math.floor(Math.random() * 1000);
  return makeMaildirName({ sec, usec, pid: PID, seq: ++seq, host: HOST });
}

interface Round {
  promise: Promise<void>;
}

/** Group commit of directory fsyncs: callers share one fsync that starts after their rename. */
class DirSyncer {
  private running = new Map<string, Round>();
  private next = new Map<string, Round>();

  /**
   * If no fsync of `dir` is running or queued, run `work` as this round — work that renames into
   * `dir` and then fsyncs it, in one job — and return its promise; else null (then rename and
   * call sync()). Whoever renames into `dir` meanwhile joins the round after it, as with sync().
   */
  lead(dir: string, work: () => Promise<void>): Promise<void> | null {
    if (this.running.has(dir) || this.next.has(dir)) return null;
    return this.start(dir, work).promise;
  }

  sync(dir: string): Promise<void> {
    const queued = this.next.get(dir);
    if (queued) return queued.promise;
    const running = this.running.get(dir);
    if (!running) return this.start(dir).promise;
    // An fsync is in flight and may have started before our rename: join the next one.
    const round: Round = {
      promise: running.promise.catch(() => undefined).then(() => {
        this.next.delete(dir);
        return this.start(dir).promise;
      }),
    };
    this.next.set(dir, round);
    return round.promise;
  }

  private start(dir: string, work = () => fsyncDir(dir)): Round {
    const round: Round = {
      promise: work().finally(() => {
        if (this.running.get(dir) === round) this.running.delete(dir);
      }),
    };
    this.running.set(dir, round);
    return round;
  }
}

/** open, fsync, close a directory (one native job where the addon is built). */
async function fsyncDir(dir: string): Promise<void> {
  const native = nativeAddon();
  if (native) return native.syncDir(dir);
  const fh = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const dirSyncer = new DirSyncer();

/** fsync a directory, sharing the call with concurrent callers. */
export function syncDir(dir: string): Promise<void> {
  return dirSyncer.sync(dir);
}

/**
 * One message being written into a Maildir folder (the folder holds cur/, new/, tmp/). Nothing
 * touches the disk until the first write() or commit(): a message that fits in memory is written
 * at commit() in one native job (create tmp/ file, write, fsync, close, rename), a larger one is
 * streamed into its tmp/ file as it comes — through the addon's DirectFile (O_DIRECT: no copy
 * into the page cache, no writeback at fsync) where it is built, else through node:fs.
 */
export class MaildirWriter {
  private base = uniqueBase();
  private fh: fs.FileHandle | null = null;
  private df: DirectFile | null = null;
  private closed = false;
  written = 0;

  constructor(private readonly folder: string) {}

  get tmpPath(): string {
    return path.join(this.folder, 'tmp', this.base);
  }

  /** Whether the tmp file is written with O_DIRECT (for tests). */
  get direct(): boolean {
    return this.df !== null && nativeAddon()!.fileDirect(this.df);
  }

  /** Run `create` (which makes tmp/<base> with O_EXCL) again under a new name while the name is taken. */
  private async freshName<T>(create: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await create();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 5) throw err;
        this.base = uniqueBase();
      }
    }
  }

  /** Create `tmp/<unique>` (O_EXCL, mode 0600) through node:fs. */
  private async open(): Promise<fs.FileHandle> {
    return (this.fh = await this.freshName(() => fs.open(this.tmpPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)));
  }

  /** The last write(): settled(), commit() and abort() wait for it (a DirectFile takes one job at a time). */
  private writing: Promise<void> | null = null;

  /** Wait for the last write(); rethrows its error. */
  async settled(): Promise<void> {
    if (this.writing) await this.writing;
  }

  /** Append `bufs` (one writev or one native job; the rest again after a short write). */
  write(bufs: Buffer[]): Promise<void> {
    const w = this.append(bufs);
    this.writing = w;
    return w;
  }

  private async append(bufs: Buffer[]): Promise<void> {
    const native = nativeAddon();
    if (native && !this.fh) {
      const df = this.df ?? (this.df = await this.freshName(() => native.fileOpen(this.tmpPath)));
      const list = few(bufs);
      await native.fileAppend(df, list);
      for (const b of list) this.written += b.length;
      return;
    }
    const fh = this.fh ?? (await this.open());
    let rest = bufs.filter((b) => b.length > 0);
    while (rest.length > 0) {
      let n = (await fh.writev(rest)).bytesWritten;
      this.written += n;
      while (rest.length > 0 && n >= rest[0]!.length) n -= rest.shift()!.length;
      if (rest.length > 0 && n > 0) rest[0] = rest[0]!.subarray(n);
    }
  }

  /**
   * Write `tail` (the bytes not yet written), fsync, rename into new/ with the plaintext sizes in
   * the name, fsync new/.
   * @returns the final path.
   */
  async commit(size: number, vsize: number, tail: Buffer[] = []): Promise<string> {
    const final = () => path.join(this.folder, 'new', `${this.base},S=${size},W=${vsize}`);
    const newDir = path.join(this.folder, 'new');
    const native = nativeAddon();
    await this.settled(); // a write still in flight, or its error, comes first
    tail = few(tail);
    // Usually nobody else is syncing new/: then its fsync goes in the same job too (`led`).
    const durable = (job: (syncDir?: string) => Promise<void>): Promise<boolean> => {
      const round = dirSyncer.lead(newDir, () => job(newDir));
      return round ? round.then(() => true) : job().then(() => false);
    };
    let led = false;
    if (native && this.df) {
      const df = this.df;
      led = await durable((dir) => native.fileCommit(df, final(), tail, dir));
    } else if (native && !this.fh) {
      led = await this.freshName(() => durable((dir) => native.writeDurable(this.tmpPath, final(), tail, dir)));
    } else {
      await this.write(tail);
      const fh = this.fh ?? (await this.open());
      await fh.sync();
      await this.close();
      await fs.rename(this.tmpPath, final());
    }
    if (led) return final();
    // If this fsync fails the file is in new/ but the client hears 4xx and sends again: a
    // duplicate, never a loss.
    await syncDir(newDir);
    return final();
  }

  /** Give up: close and remove the tmp file, if there is one. Never throws. */
  async abort(): Promise<void> {
    await this.writing?.catch(() => undefined);
    if (this.df) {
      const df = this.df;
      await Promise.resolve()
        .then(() => nativeAddon()!.fileAbort(df))
        .catch(() => undefined);
      return;
    }
    if (!this.fh) return;
    await this.close().catch(() => undefined);
    await fs.unlink(this.tmpPath).catch(() => undefined);
  }

  private async close(): Promise<void> {
    if (this.closed || !this.fh) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** At most 64 buffers (the native jobs' limit): many small chunks (a slow client) joined into one. */
function few(bufs: Buffer[]): Buffer[] {
  return bufs.length > 64 ? [Buffer.concat(bufs)] : bufs;
}
