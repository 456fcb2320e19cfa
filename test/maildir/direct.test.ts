// The streamed (large-message) path of MaildirWriter through the addon's DirectFile: O_DIRECT
// where the file system takes it, whatever the chunking the bytes on disk are the bytes given,
// the file is 0600 in new/ with nothing left in tmp/, and every failure removes the tmp file.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeAddon } from '../../src/mailcrypt/native.ts';
import { MaildirWriter } from '../../src/maildir/writer.ts';

const native = nativeAddon();
const ntest = native ? test : test.skip;

function folder(t: { teardown(f: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-direct-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  for (const s of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(d, s));
  return d;
}

/** Whether this file system lets a file be opened with O_DIRECT (what the writer should find). */
function takesDirect(dir: string): boolean {
  const probe = path.join(dir, 'probe');
  try {
    fs.closeSync(fs.openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600));
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

/** Cut `data` into pieces of the given sizes (cycled), grouped into batches of `perBatch`. */
function batches(data: Buffer, sizes: number[], perBatch: number): Buffer[][] {
  const out: Buffer[][] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - at);
    if (i % perBatch === 0) out.push([]);
    out[out.length - 1]!.push(data.subarray(at, at + n));
    at += n;
  }
  return out;
}

ntest('streamed writes land byte-exact for any chunking; O_DIRECT is on where the file system takes it', async (t) => {
  const d = folder(t);
  const cases: { total: number; sizes: number[]; perBatch: number; tail: number }[] = [
    { total: 1024 * 1024 + 17, sizes: [65536], perBatch: 4, tail: 0 }, // the bench's shape
    { total: 512 * 1024, sizes: [4096], perBatch: 64, tail: 0 }, // whole blocks only
    { total: 700 * 1024 + 5, sizes: [700 * 1024 + 5], perBatch: 1, tail: 0 }, // one buffer larger than the staging buffer
    { total: 300 * 1024 + 3, sizes: [1, 4095, 4097, 13, 65521], perBatch: 7, tail: 3000 }, // odd sizes, and a tail at commit
    { total: 4096 * 3 + 1, sizes: [4096], perBatch: 1, tail: 1 },
  ];
  for (const c of cases) {
    const data = crypto.randomBytes(c.total);
    const body = data.subarray(0, c.total - c.tail);
    const w = new MaildirWriter(d);
    for (const b of batches(body, c.sizes, c.perBatch)) await w.write(b);
    t.is(w.direct, takesDirect(d), `O_DIRECT as the file system allows (${c.total})`);
    t.is(fs.statSync(w.tmpPath).mode & 0o777, 0o600);
    const final = await w.commit(c.total, c.total, c.tail ? [data.subarray(c.total - c.tail)] : []);
    t.true(fs.readFileSync(final).equals(data), `bytes of the ${c.total}-byte case`);
    t.is(fs.statSync(final).mode & 0o777, 0o600);
    t.deepEqual(fs.readdirSync(path.join(d, 'tmp')), []);
  }
  t.is(fs.readdirSync(path.join(d, 'new')).length, cases.length);
});

ntest('abort removes the tmp file; a failed commit (rename into a missing new/) removes it too and says why', async (t) => {
  const d = folder(t);
  const w = new MaildirWriter(d);
  await w.write([crypto.randomBytes(300 * 1024)]);
  t.true(fs.existsSync(w.tmpPath));
  await w.abort();
  t.deepEqual(fs.readdirSync(path.join(d, 'tmp')), []);
  await w.abort(); // twice is harmless

  const w2 = new MaildirWriter(d);
  await w2.write([crypto.randomBytes(300 * 1024)]);
  fs.rmSync(path.join(d, 'new'), { recursive: true });
  const err = await t.throwsAsync(w2.commit(1, 1, [Buffer.from('x')]));
  t.is((err as NodeJS.ErrnoException).code, 'ENOENT');
  t.is((err as NodeJS.ErrnoException).syscall, 'rename');
  t.deepEqual(fs.readdirSync(path.join(d, 'tmp')), []);
  await w2.abort();
});

ntest('a DirectFile takes one job at a time and nothing after its commit', async (t) => {
  const d = folder(t);
  const a = native!;
  const tmp = path.join(d, 'tmp', 'x');
  const f0 = await a.fileOpen(tmp);
  await t.throwsAsync(a.fileOpen(tmp), { code: 'EEXIST' });
  await a.fileAbort(f0);
  t.false(fs.existsSync(tmp), 'abort unlinks');
  const f = await a.fileOpen(tmp);
  const first = a.fileAppend(f, [Buffer.alloc(8192, 1)]);
  t.throws(() => a.fileAppend(f, [Buffer.alloc(1)]), { instanceOf: TypeError, message: /still running/ });
  t.throws(() => a.fileAbort(f), { instanceOf: TypeError, message: /still running/ });
  await first;
  await a.fileCommit(f, path.join(d, 'new', 'x'), [Buffer.from('end')]);
  t.throws(() => a.fileAppend(f, [Buffer.alloc(1)]), { instanceOf: TypeError, message: /already committed/ });
  await a.fileAbort(f); // resolves: nothing left to do
  t.is(fs.statSync(path.join(d, 'new', 'x')).size, 8192 + 3);
  t.false(fs.existsSync(tmp));
  t.throws(() => a.fileAppend({} as never, []), { instanceOf: TypeError });
});
