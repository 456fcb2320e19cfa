// The disk's durable-write ceiling: how many 4 KiB files per second can be made durable the way
// a delivery must (write, fsync(file), rename tmp/ → new/, fsync(new/)), with 1 and with several
// concurrent writers, each in its own directory (as deliveries to different mailboxes are).
// Bounded in operations and in time. The files are left in place for the bench's final cleanup:
// on ext4 without a journal, every file creation skips inodes freed in the last minute (more if
// their inode-table block is still dirty), so deleting thousands of files here would slow down
// whatever the bench measures next.

import fs from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

export interface DiskCeiling {
  writers: number;
  /** Durable files per second, all writers together. */
  filesPerSec: number;
  files: number;
  seconds: number;
}

async function writer(dir: string, stopAt: number, maxOps: number, data: Buffer): Promise<number> {
  const tmp = path.join(dir, 'tmp');
  const fresh = path.join(dir, 'new');
  await fs.mkdir(tmp, { recursive: true });
  await fs.mkdir(fresh, { recursive: true });
  const dirHandle = await fs.open(fresh, 'r');
  let n = 0;
  try {
    while (n < maxOps && performance.now() < stopAt) {
      const name = `${n}.probe`;
      const fh = await fs.open(path.join(tmp, name), 'wx', 0o600);
      try {
        await fh.write(data, 0, data.length, 0);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rename(path.join(tmp, name), path.join(fresh, name));
      await dirHandle.sync();
      n++;
    }
  } finally {
    await dirHandle.close();
  }
  return n;
}

/**
 * Measure the ceiling under `root` (created; the caller removes it) with `writers` concurrent
 * writers for about `seconds` (at most 20 000 files per writer).
 */
export async function measureDisk(root: string, writers: number, seconds: number): Promise<DiskCeiling> {
  const data = Buffer.alloc(4096, 'x');
  await fs.mkdir(root, { recursive: true });
  const t0 = performance.now();
  const stopAt = t0 + seconds * 1000;
  const counts = await Promise.all(Array.from({ length: writers }, (_, i) => writer(path.join(root, `w${i}`), stopAt, 20_000, data)));
  const elapsed = (performance.now() - t0) / 1000;
  const files = counts.reduce((a, b) => a + b, 0);
  return { writers, filesPerSec: files / elapsed, files, seconds: elapsed };
}
