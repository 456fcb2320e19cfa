// The indexOf DATA scan (src/lmtp/datascan.ts) against smtp-server's own: the same input, cut
// into the same random chunks, must give the same commands, the same message bytes, byte counts
// and size flags, in the same order.

import crypto from 'node:crypto';
import test from 'ava';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { feedDataStream, installDataScan, upstreamFeedDataStream, upstreamMatches } from '../../src/lmtp/datascan.ts';
import { createLmtpServer } from '../../src/lmtp/server.ts';
import { createLogger } from '../../src/log.ts';

type Feed = typeof upstreamFeedDataStream;

/**
 * Everything an SMTPStream told its user, as one transcript. Some random inputs stall upstream's
 * parser for good (a write callback never comes); then the transcript so far ends in "stalled",
 * and ours must stall at the same point.
 */
async function transcript(feed: Feed, chunks: Buffer[], maxBytes: number, slowReader: boolean, stallMs = 500): Promise<string[]> {
  const out: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<void>((resolve) => (timer = setTimeout(resolve, stallMs)));
  const finished = feedAll(out, feed, chunks, maxBytes, slowReader);
  if ((await Promise.race([finished.then(() => 'done'), stalled.then(() => 'stalled')])) === 'stalled') out.push('stalled');
  clearTimeout(timer);
  return out;
}

async function feedAll(out: string[], feed: Feed, chunks: Buffer[], maxBytes: number, slowReader: boolean): Promise<void> {
  const s = new SMTPStream();
  s._feedDataStream = feed; // this instance only
  s.oncommand = (cmd, cb) => {
    const line = cmd.toString('latin1');
    out.push(`cmd ${JSON.stringify(line)}`);
    if (line.toUpperCase() !== 'DATA') return cb?.();
    // as smtp-connection does: data mode starts after the command handler returns
    setImmediate(() => {
      const ds = s.startDataMode(maxBytes);
      const parts: Buffer[] = [];
      const read = () => {
        let b: Buffer | null;
        while ((b = ds.read() as Buffer | null) !== null) parts.push(b);
      };
      if (slowReader) ds.on('readable', () => setImmediate(read));
      else ds.on('data', (b: Buffer) => parts.push(b));
      ds.on('end', () => {
        const body = Buffer.concat(parts);
        out.push(`data ${body.toString('base64')} bytes=${ds.byteLength} exceeded=${ds.sizeExceeded}`);
        s.continue();
      });
      cb?.();
    });
  };
  for (const c of chunks) {
    await new Promise<void>((resolve, reject) => s.write(c, (err) => (err ? reject(err) : resolve())));
  }
  await new Promise<void>((resolve) => s.end(resolve));
  await new Promise((r) => setImmediate(r));
}

/** Random bytes rich in the tokens the scan cares about: dots at line starts, CR, LF, terminators. */
function tricky(rand: () => number, n: number): Buffer {
  const tokens = ['.', '..', '\r\n', '\n', '\r', 'a', 'xyz', '\r\n.', '\r\n..', '.\r\n', '\r\n.\r\n', 'NOOP\r\n', 'DATA\r\n', '\x00\xff'];
  let s = '';
  while (s.length < n) s += tokens[Math.floor(rand() * tokens.length)]!;
  return Buffer.from(s, 'latin1');
}

function cut(rand: () => number, buf: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < buf.length; ) {
    const r = rand();
    const len = r < 0.3 ? 1 + Math.floor(rand() * 4) : r < 0.9 ? 1 + Math.floor(rand() * 64) : 1 + Math.floor(rand() * 4096);
    chunks.push(buf.subarray(at, at + len));
    at += len;
  }
  return chunks;
}

function prng(seed: number): () => number {
  // mulberry32: reproducible cases (the seed is in the failure message)
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('written against this smtp-server: the upstream scan is the one it copies, and the server uses ours', (t) => {
  t.true(upstreamMatches(), 'smtp-server changed: re-derive src/lmtp/datascan.ts from its _feedDataStream and update the digest');
  createLmtpServer({ resolve: async () => Promise.reject(new Error('unused')), logger: createLogger('silent'), maxSize: 1024 });
  t.is(SMTPStream.prototype._feedDataStream, feedDataStream);
  t.true(installDataScan());
});

test('same transcript as upstream for random dot-stuffed streams in random chunkings', async (t) => {
  const base = crypto.randomInt(2 ** 31);
  let stalls = 0;
  for (let k = 0; k < 400; k++) {
    const seed = base + k;
    const rand = prng(seed);
    const parts: Buffer[] = [];
    for (let m = 0, n = 1 + Math.floor(rand() * 3); m < n; m++) {
      parts.push(Buffer.from('DATA\r\n'), tricky(rand, Math.floor(rand() * 600)), Buffer.from('\r\n.\r\nNOOP\r\n'));
    }
    const input = Buffer.concat(parts);
    const chunks = cut(rand, input);
    const maxBytes = rand() < 0.2 ? 1 + Math.floor(rand() * 300) : 0;
    const slow = rand() < 0.3;
    let theirs = await transcript(upstreamFeedDataStream, chunks, maxBytes, slow);
    let ours = await transcript(feedDataStream, chunks, maxBytes, slow);
    if (JSON.stringify(ours) !== JSON.stringify(theirs) && (ours.at(-1) === 'stalled' || theirs.at(-1) === 'stalled')) {
      // a busy machine, not a stall? once more with time to spare
      theirs = await transcript(upstreamFeedDataStream, chunks, maxBytes, slow, 5000);
      ours = await transcript(feedDataStream, chunks, maxBytes, slow, 5000);
    }
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) {
      t.deepEqual(ours, theirs, `seed ${seed}`);
      return;
    }
    if (ours.at(-1) === 'stalled') stalls++;
  }
  t.true(stalls < 40, `${stalls} of 400 random streams stalled: the comparison says little`);
});

/**
 * When the parser lets the writer go on: after a first chunk, a second of `n` bytes is written
 * while nobody reads the data stream; is its callback called at once (no backpressure) or only
 * once a reader drains the stream? And how much the reader got.
 */
async function waitsForDrain(feed: Feed, first: number, n: number): Promise<string> {
  const s = new SMTPStream();
  s._feedDataStream = feed;
  let ds: ReturnType<SMTPStream['startDataMode']> | null = null;
  s.oncommand = (_cmd, cb) => {
    ds = s.startDataMode();
    cb?.();
  };
  const write = (b: Buffer) => new Promise<void>((resolve) => s.write(b, () => resolve()));
  await write(Buffer.from(`DATA\r\n${'a'.repeat(first - 2)}\r\n`, 'latin1'));
  let called = false;
  const second = write(Buffer.from('b'.repeat(n), 'latin1')).then(() => (called = true));
  await new Promise((r) => setImmediate(r));
  const before = called;
  let got = 0;
  ds!.on('data', (b: Buffer) => (got += b.length));
  await second;
  await new Promise((r) => setImmediate(r));
  return `${before ? 'went on' : 'waited'}, ${got} bytes`;
}

test('backpressure as upstream: a chunk around the high-water mark after one whose last bytes were kept', async (t) => {
  for (const first of [6, 100, 9000]) {
    for (let n = 16370; n <= 16392; n++) {
      t.is(await waitsForDrain(feedDataStream, first, n), await waitsForDrain(upstreamFeedDataStream, first, n), `first ${first}, n ${n}`);
    }
  }
});

test('large bodies: one 1 MiB message in 64 KiB reads, and a body of dotted lines', async (t) => {
  const lines: string[] = [];
  for (let i = 0; i < 14000; i++) lines.push(i % 7 === 0 ? `..dotted ${i}` : `line ${i} ${'x'.repeat(i % 70)}`);
  for (const body of [crypto.randomBytes(1 << 20).toString('base64'), lines.join('\r\n')]) {
    const input = Buffer.from(`DATA\r\n${body}\r\n.\r\nQUIT\r\n`, 'latin1');
    const chunks: Buffer[] = [];
    for (let at = 0; at < input.length; at += 65536) chunks.push(input.subarray(at, at + 65536));
    // No stall is expected here: time enough for a loaded machine (2000 escape dots are 2000
    // turns of the event loop in both scans).
    const ours = await transcript(feedDataStream, chunks, 0, false, 120_000);
    t.deepEqual(ours, await transcript(upstreamFeedDataStream, chunks, 0, false, 120_000));
    const unstuffed = Buffer.from(`${body.replace(/^\.\./gm, '.')}\r\n`, 'latin1').toString('base64');
    t.is(ours[1]!.split(' ')[1], unstuffed);
    t.is(ours[2], 'cmd "QUIT"');
  }
});
