// Durable Maildir delivery (design.md "Durability"): write into tmp/, fsync the file, rename it
// into new/ with S=/W= in its name, fsync new/. Concurrent deliveries into one directory share
// a directory fsync (group commit). A failed delivery leaves nothing in new/ and removes its
// tmp/ file. Only ciphertext is ever handed to this module.

import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { hostname } from '../config.ts';
import { makeMaildirName } from './filename.ts';

let seq = 0;

/** A unique base name: `<sec>.M<usec>P<pid>Q<n>.<host>` (Dovecot's form). */
export function uniqueBase(now = Date.now()): string {
  const sec = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000 + Math.floor(Math.random() * 1000);
  return makeMaildirName({ sec, usec, pid: process.pid, seq: ++seq, host: hostname() });
}

interface Round {
  promise: Promise<void>;
}

/** Group commit of directory fsyncs: callers share one fsync that starts after their rename. */
class DirSyncer {
  private running = new Map<string, Round>();
  private next = new Map<string, Round>();

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

  private start(dir: string): Round {
    const round: Round = {
      promise: (async () => {
        const fh = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      })().finally(() => {
        if (this.running.get(dir) === round) this.running.delete(dir);
      }),
    };
    this.running.set(dir, round);
    return round;
  }
}

const dirSyncer = new DirSyncer();

/** fsync a directory, sharing the call with concurrent callers. */
export function syncDir(dir: string): Promise<void> {
  return dirSyncer.sync(dir);
}

/** One message being written into a Maildir folder (the folder holds cur/, new/, tmp/). */
export class MaildirWriter {
  private constructor(
    private readonly folder: string,
    private readonly base: string,
    private readonly fh: fs.FileHandle,
    readonly tmpPath: string,
  ) {}

  /** Create `tmp/<unique>` (O_EXCL, mode 0600). */
  static async create(folder: string): Promise<MaildirWriter> {
    for (let attempt = 0; ; attempt++) {
      const base = uniqueBase();
      const tmpPath = path.join(folder, 'tmp', base);
      try {
        const fh = await fs.open(tmpPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
        return new MaildirWriter(folder, base, fh, tmpPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 5) throw err;
      }
    }
  }

  private closed = false;
  written = 0;

  async write(buf: Buffer): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, off, buf.length - off);
      off += bytesWritten;
    }
    this.written += buf.length;
  }

  /**
   * fsync, rename into new/ with the plaintext sizes in the name, fsync new/.
   * @returns the final path.
   */
  async commit(size: number, vsize: number): Promise<string> {
    await this.fh.sync();
    await this.close();
    const final = path.join(this.folder, 'new', `${this.base},S=${size},W=${vsize}`);
    await fs.rename(this.tmpPath, final);
    await syncDir(path.join(this.folder, 'new'));
    return final;
  }

  /** Give up: close and remove the tmp file. Never throws. */
  async abort(): Promise<void> {
    await this.close().catch(() => undefined);
    await fs.unlink(this.tmpPath).catch(() => undefined);
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}
