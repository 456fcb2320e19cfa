// The pure parts of `mailseal bench`: case specs and the target preset, the bench message, the
// statistics and verdicts, the CPU-profile summary. No timing is asserted anywhere.

import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseCases, parseSize, TARGETS_PRESET } from '../../src/bench/cases.ts';
import { benchMessage, quantile } from '../../src/bench/client.ts';
import { summariseProfiles } from '../../src/bench/profile.ts';
import { type WarmupStats, warmupOk } from '../../src/bench/run.ts';
import { judge, median, ratios, runOk, summarise, type RunStats } from '../../src/bench/stats.ts';

const d = { curve: 'secp521r1', recipients: 1 };

test('sizes: binary units, bounds', (t) => {
  t.is(parseSize('4KiB'), 4096);
  t.is(parseSize('4k'), 4096);
  t.is(parseSize('1MiB'), 1 << 20);
  t.is(parseSize('65536'), 65536);
  for (const bad of ['3', 'big', '1GiB', '4 parsecs', '']) t.throws(() => parseSize(bad), { message: /size/ });
});

test('cases: the targets preset is issue 6 table, each with its target', (t) => {
  const cases = parseCases('targets', d);
  t.is(cases.map((c) => c.name).join(','), TARGETS_PRESET);
  t.deepEqual(cases.map((c) => [c.size, c.connections, c.curve, c.target?.metric, c.target?.min]), [
    [4096, 4, 'secp521r1', 'msgsRatio', 3],
    [4096, 1, 'secp521r1', 'msgsRatio', 2],
    [4096, 4, 'prime256v1', 'diskShare', 0.7],
    [1 << 20, 4, 'secp521r1', 'mibRatio', 1.5],
  ]);
  t.deepEqual(cases.map((c) => c.messages), [600, 600, 600, 192], 'defaults sized for a couple of minutes');
  t.deepEqual(cases.map((c) => [c.warmupSeconds, c.warmup]), [[5, 6000], [5, 6000], [5, 6000], [5, 256]], 'warm-up: 5 s, at most 256 MiB');
  t.deepEqual(parseCases('4KiBx1,1MiBx1,32MiBx1', { ...d, recipients: 4, warmupSeconds: 2 }).map((c) => [c.warmupSeconds, c.warmup]), [[2, 6000], [2, 64], [2, 10]]);
  const custom = parseCases('64k x 2, 4KiBx1@prime256v1', { ...d, recipients: 3, messages: 20, warmup: 5 });
  t.deepEqual(custom.map((c) => [c.name, c.recipients, c.messages, c.warmup, c.warmupSeconds, c.target]), [
    ['64KiBx2@secp521r1', 3, 20, 5, 0, undefined],
    ['4KiBx1@prime256v1', 3, 20, 5, 0, undefined],
  ], 'an exact warm-up count has no time bound');
  t.throws(() => parseCases('4KiBx4@x25519', d), { message: /unknown curve/ });
  t.throws(() => parseCases('4KiB', d), { message: /invalid case/ });
});

test('bench message: exact size, CRLF lines ≤ 78, no line starting with a dot, one final dot', (t) => {
  for (const size of [512, 513, 514, 4096, 4097, 65_536, 1 << 20]) {
    const m = benchMessage(size, 'b@x.invalid');
    t.true(m.subarray(-3).equals(Buffer.from('.\r\n')));
    const body = m.subarray(0, -3).toString('latin1');
    t.is(body.length, size);
    t.true(body.endsWith('\r\n'));
    const lines = body.slice(0, -2).split('\r\n');
    t.false(lines.some((l) => l.startsWith('.') || l.length > 78 || l.includes('\r') || l.includes('\n')));
    t.true(lines.includes(''), 'headers end');
  }
});

test('stats: median, nearest-rank quantile, ratios, verdicts, run checks', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 2, 3]), 2.5);
  t.is(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5), 5);
  t.is(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.99), 10);
  t.true(Number.isNaN(quantile([], 0.5)));
  const run = (msgs: number, extra: Partial<RunStats> = {}): RunStats => ({
    messages: 10, sent: 10, accepted: 10, refused: 0, stored: 10, sealed: 10, incomplete: false, errors: [], seconds: 1,
    msgsPerSec: msgs, mibPerSec: msgs / 256, filesPerSec: msgs, p50Ms: 1, p99Ms: 2, cpuSeconds: 1, cpuMsPerMsg: 100,
    peakRssBytes: 1 << 20, diskShare: msgs / 1000, otherCpuSeconds: 0, ...extra,
  });
  const ours = summarise([run(300), run(310), run(290)]);
  const theirs = summarise([run(100), run(90), run(110)]);
  t.is(ours.msgsPerSec, 300);
  const q = ratios(ours, theirs);
  t.is(q.msgsPerSec, 3);
  const [c4] = parseCases('4KiBx4@secp521r1', d);
  t.deepEqual(judge(c4!, ours, q), { text: '≥ 3× Dovecot msgs/s', value: 3, met: true });
  t.is(judge(c4!, ours, null)!.met, null, 'no Dovecot: not judged');
  t.true(runOk(run(1), 1));
  t.false(runOk(run(1, { sealed: 9 }), 1), 'a plaintext file is a failure');
  t.false(runOk(run(1, { refused: 1, accepted: 9, stored: 9, sealed: 9 }), 1));
  t.false(runOk(run(1), 2), 'two recipients each');
  const w = (x: Partial<WarmupStats>): WarmupStats => ({ messages: 10, boundSeconds: 0, seconds: 1, sent: 10, accepted: 10, stored: 10, sealed: 10, ...x });
  t.true(warmupOk(w({}), 1));
  t.false(warmupOk(w({ sent: 9, accepted: 9, stored: 9, sealed: 9 }), 1), 'an exact warm-up sends them all');
  t.true(warmupOk(w({ boundSeconds: 5, sent: 9, accepted: 9, stored: 9, sealed: 9 }), 1), 'a timed one may stop early');
  t.false(warmupOk(w({ boundSeconds: 5, sent: 0, accepted: 0, stored: 0, sealed: 0 }), 1), 'but not before the first message');
  t.false(warmupOk(w({ boundSeconds: 5, sealed: 9 }), 1), 'a plaintext file is a failure');
  t.false(warmupOk(w({ accepted: 19, stored: 19, sealed: 19 }), 2), 'every recipient stored');
});

test('profile summary: self time per function, idle apart, main thread and workers apart, inside the timed windows', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msbp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 9, columnNumber: 0, scriptId: '0' });
  const profile = {
    nodes: [
      { id: 1, callFrame: frame('(root)') },
      { id: 2, callFrame: frame('(idle)') },
      { id: 3, callFrame: frame('sealEmpty', 'file:///x/y.ts') },
      { id: 4, callFrame: frame('(garbage collector)') },
    ],
    samples: [2, 2, 3, 3, 3, 4, 2, 3],
    timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 1000, 1000], startTime: 0, endTime: 8000,
  };
  fs.writeFileSync(path.join(dir, 'CPU.20260101.000000.42.0.001.cpuprofile'), JSON.stringify(profile));
  fs.writeFileSync(path.join(dir, 'CPU.20260101.000000.42.1.002.cpuprofile'), JSON.stringify(profile));
  fs.writeFileSync(path.join(dir, 'CPU.20260101.000000.42.2.003.cpuprofile'), JSON.stringify(profile));
  const s = summariseProfiles(dir);
  t.deepEqual(s.map((x) => [x.threads, x.files, x.totalMs, x.busyMs]), [['main thread', 1, 8, 5], ['worker threads (2)', 2, 16, 10]]);
  t.deepEqual(s[0]!.top.map((e) => [e.fn, e.selfMs, e.share]), [['sealEmpty /x/y.ts:10', 4, 0.8], ['(garbage collector)', 1, 0.2]]);
  // Only the timed runs count: the samples at 2, 3, 4, 5 ms.
  const w = summariseProfiles(dir, 15, [{ fromUs: 2000, toUs: 6000 }]);
  t.deepEqual(w[0]!.top.map((e) => [e.fn, e.selfMs]), [['sealEmpty /x/y.ts:10', 3], ['(garbage collector)', 1]]);
  t.is(w[0]!.totalMs, 4);
});
