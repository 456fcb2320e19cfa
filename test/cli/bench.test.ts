// `mailseal bench` as a person runs it, tiny: it exits 0, --json parses, every message got 250
// from both servers and lies sealed in new/, and nothing is left behind — temp dirs, the agent,
// Dovecot — also after Ctrl-C. No timing is asserted.

import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, cli, sandbox, type Sandbox } from '../helpers/agent.ts';
import { haveDovecot } from '../helpers/dovecot.ts';
import type { BenchReport } from '../../src/bench/run.ts';

const dovecotHere = haveDovecot() && process.getuid?.() === 0;
/** A tiny bench, less its warm-up; TINY warms up with exactly 5 messages. */
const TINY_RUNS = ['--messages', '20', '--runs', '1', '--disk-seconds', '0.3', '--crypto-ops', '10'];
const TINY = [...TINY_RUNS, '--warmup', '5'];

/** A sandbox whose TMPDIR is its own dir, so that the bench's temp dirs land where we can look. */
function benchBox(prefix: string): Sandbox {
  const sb = sandbox(prefix);
  sb.env = { ...sb.env, TMPDIR: sb.dir };
  return sb;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Live processes whose command line or title mentions `needle`. */
function processesWith(needle: string): string[] {
  const out: string[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle) && alive(Number(p))) out.push(`${p}: ${cmd}`);
    } catch {
      // gone
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes can take a moment to be reaped after the bench exits. */
async function settle(pids: number[], needle: string): Promise<{ alive: number[]; named: string[] }> {
  for (let i = 0; i < 50; i++) {
    const a = pids.filter(alive);
    const n = processesWith(needle);
    if (a.length === 0 && n.length === 0) return { alive: [], named: [] };
    await sleep(100);
  }
  return { alive: pids.filter(alive), named: processesWith(needle) };
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

test.serial('bench --json --keep: every message 250 from both servers, sealed files in new/, then all stopped', async (t) => {
  if (process.env.CI) t.true(dovecotHere, 'CI runs as root with Dovecot installed');
  const sb = benchBox('msb-');
  t.teardown(() => sb.cleanup());
  const r = await cli(sb, ['bench', '--json', '--keep', '--cases', '4KiBx2,64KiBx1@prime256v1', '--recipients', '2', ...TINY]);
  t.is(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout.toString()) as BenchReport;
  t.true(rep.ok);
  t.true(rep.dirs.kept);
  t.true(rep.dirs.root.startsWith(sb.dir + path.sep));
  t.deepEqual(rep.cases.map((c) => [c.case.name, c.case.recipients, c.case.messages]), [['4KiBx2@secp521r1', 2, 20], ['64KiBx1@prime256v1', 2, 20]]);
  t.is('version' in rep.dovecot, dovecotHere, dovecotHere ? 'Dovecot side present' : 'no Dovecot here');

  const servers = (c: BenchReport['cases'][number]) => [c.mailseal, ...(c.dovecot ? [c.dovecot] : [])];
  let expectedFiles = 0;
  for (const c of rep.cases) {
    t.is(c.dovecot !== null, dovecotHere);
    t.is(c.mailseal.transactionsPerMessage, 1, 'mailseal stores one message for both recipients');
    // Dovecot 2.3 LMTP + mail_crypt cannot: the 2nd recipient is a copy of the 1st's encrypted file.
    if (c.dovecot) t.is(c.dovecot.transactionsPerMessage, 2);
    for (const s of servers(c)) {
      t.like(s.warmup, { messages: 5, boundSeconds: 0, sent: 5, accepted: 10, stored: 10, sealed: 10 });
      t.true(s.warmup.seconds > 0);
      t.is(s.runs.length, 1);
      for (const run of s.runs) {
        t.like(run, { messages: 20, sent: 20, accepted: 40, refused: 0, stored: 40, sealed: 40, incomplete: false, errors: [] });
        t.true(run.cpuSeconds >= 0 && run.peakRssBytes > 0 && run.p50Ms > 0 && run.p99Ms >= run.p50Ms);
      }
      expectedFiles += (5 + 20) * 2;
    }
    if (c.dovecot) t.true(c.ratio !== null && c.ratio.msgsPerSec! > 0);
  }
  t.deepEqual(rep.disk.map((x) => x.writers), [1, 4]);
  t.true(rep.disk.every((x) => x.files > 0));
  t.deepEqual(rep.crypto.map((c) => [c.curve, c.path]), [['secp521r1', 'native'], ['secp521r1', 'node'], ['prime256v1', 'native'], ['prime256v1', 'node']]);
  t.true(rep.crypto.every((c) => c.ops > 0 && c.cpuMs > 0));
  t.is(rep.crypto.find((c) => c.path === 'node')!.library, 'node:crypto');

  // The kept mail root really holds them: all in new/, all sealed, none in tmp/. The disk probe's
  // files stay until the end too, in their own directories (see src/bench/disk.ts).
  const all = walk(rep.dirs.maildir);
  const probe = all.filter((f) => /[/\\]\.durable-probe-[14][/\\]/.test(f));
  t.true(probe.length > 0 && probe.length === rep.disk.reduce((a, d) => a + d.files, 0), 'one file per durable write of the probe');
  const files = all.filter((f) => !probe.includes(f));
  const delivered = files.filter((f) => path.basename(path.dirname(f)) === 'new');
  t.is(delivered.length, expectedFiles);
  // Warm-ups go to users of their own (u5…u8), so the timed runs (u1…u4) find the mailboxes as
  // they would without a warm-up. Paths: <root>/<domain>/<user>/Maildir/new/<file>.
  for (const c of rep.cases) {
    const n = servers(c).length;
    const ofCurve = delivered.filter((f) => path.basename(path.resolve(f, '../../../..')) === `${c.case.curve}.bench.invalid`);
    const warm = ofCurve.filter((f) => Number(path.basename(path.resolve(f, '../../..')).slice(1)) > 4);
    t.is(warm.length, 5 * 2 * n, `${c.case.name}: warm-up mail only to the warm-up users`);
    t.is(ofCurve.length - warm.length, 20 * 2 * n, `${c.case.name}: timed mail only to the others`);
  }
  for (const f of delivered) {
    const head = Buffer.alloc(9);
    const fd = fs.openSync(f, 'r');
    fs.readSync(fd, head, 0, 9, 0);
    fs.closeSync(fd);
    t.true(head.equals(Buffer.from('CRYPTED\x03\x07', 'latin1')), f);
  }
  t.is(files.filter((f) => path.basename(path.dirname(f)) === 'tmp').length, 0);

  const pids = [rep.agent.pid, ...('pids' in rep.dovecot ? [rep.dovecot.pid, ...rep.dovecot.pids] : [])];
  if ('pids' in rep.dovecot) t.true(rep.dovecot.pids.length > 1, 'Dovecot master and its children were seen');
  const left = await settle(pids, path.basename(rep.dirs.root));
  t.deepEqual(left, { alive: [], named: [] }, 'agent and Dovecot stopped');
});

test.serial('bench: temp dirs removed and servers stopped afterwards; the text report has the table', async (t) => {
  const sb = benchBox('msb-');
  t.teardown(() => sb.cleanup());
  const before = new Set(fs.readdirSync(sb.dir));
  // The default kind of warm-up: bounded in time (1 s here), at most a cap of messages.
  const r = await cli(sb, ['bench', '--cases', '4KiBx1', ...TINY_RUNS, '--warmup-seconds', '1']);
  t.is(r.code, 0, r.stderr);
  const out = r.stdout.toString();
  const warm = /^  warm-up +(\d+) msgs, (\d+\.\d) s(?: +(\d+) msgs, (\d+\.\d) s| +-)$/m.exec(out);
  t.truthy(warm, out);
  t.true(Number(warm![1]) >= 1 && (!dovecotHere || Number(warm![3]) >= 1), 'each server got warm-up messages');
  // It ends at the time bound, not before (unless it reached its cap of 6000 messages).
  t.true(Number(warm![2]) >= 1 || Number(warm![1]) === 6000, warm![0]);
  if (dovecotHere) t.true(Number(warm![4]) >= 1 || Number(warm![3]) === 6000, warm![0]);
  t.regex(r.stderr, /^mailseal bench: 4KiBx1@secp521r1: warm-up of mailseal, 1 s \(at most 6000 messages\)$/m);
  t.regex(r.stderr, /^mailseal bench: 4KiBx1@secp521r1: warm-up of mailseal: \d+ messages in \d+\.\d s$/m);
  t.regex(out, /^4KiBx1@secp521r1: 4 KiB messages, 1 connection, secp521r1, 1 recipient — 20 messages × 1 run, median$/m);
  for (const row of ['msgs/s', 'MiB/s', 'p50 latency', 'p99 latency', 'CPU (server)', 'peak RSS', 'disk ceiling share']) t.regex(out, new RegExp(`^  ${row.replace(/[()/]/g, '\\$&')} `, 'm'));
  t.regex(out, new RegExp(`^  250 replies → files +20/20 → 20 sealed${dovecotHere ? ' +20/20 → 20 sealed' : ''}`, 'm'));
  t.regex(out, /^  target ≥ 2× Dovecot msgs\/s: /m);
  t.regex(out, /^  1 writer +\d+ files\/s$/m);
  t.regex(r.stderr, /^mailseal bench: 4KiBx1@secp521r1: run 1\/1 mailseal: /m);
  t.notRegex(r.stderr + out, /password/i, 'bench passwords are never shown');
  const root = /bench users \(.*\) in (\S+)/.exec(r.stderr)?.[1];
  t.truthy(root);
  t.false(fs.existsSync(root!), 'temp dir removed');
  t.deepEqual([...fs.readdirSync(sb.dir)].filter((f) => !before.has(f) && !f.startsWith('tsx-')), [], 'nothing else left in TMPDIR');
  t.deepEqual(await settle([], path.basename(root!)), { alive: [], named: [] });
});

test.serial('bench: Ctrl-C stops the agent and Dovecot and removes the temp dirs', async (t) => {
  const sb = benchBox('msb-');
  t.teardown(() => sb.cleanup());
  const p = spawn(process.execPath, [BIN, 'bench', '--cases', '4KiBx2', '--messages', '5000', '--runs', '1', '--disk-seconds', '0.3', '--crypto-ops', '10'], {
    env: sb.env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => p.kill('SIGKILL'));
  let err = '';
  const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the bench never got to its runs:\n${err}`)), 120_000);
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (/run 1\/1|warm-up of Dovecot/.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const root = /bench users \(.*\) in (\S+)/.exec(err)![1]!;
  t.true(fs.existsSync(root));
  t.true(processesWith(path.basename(root)).length > 0, 'the agent is running');
  p.kill('SIGINT');
  t.is(await exited, 130, err);
  t.regex(err, /SIGINT: stopping the servers and removing the temp dirs/);
  t.false(fs.existsSync(root), 'temp dir removed');
  t.deepEqual(await settle([], path.basename(root)), { alive: [], named: [] }, 'agent and Dovecot gone');
});

test('bench: usage mistakes are one clear line, exit 2', async (t) => {
  const sb = benchBox('msb-');
  t.teardown(() => sb.cleanup());
  for (const [args, msg] of [
    [['--cases', '4KiBx4', '--size', '1MiB'], 'give either --cases or --size/--connections, not both'],
    [['--size', '12'], 'message size must be between 512 bytes and 32 MiB'],
    [['--cases', '4KiBx4@x25519'], 'unknown curve "x25519" (secp521r1, secp384r1, prime256v1)'],
    [['--runs', '0'], '--runs must be a whole number from 1 to 50'],
    [['--warmup', '10', '--warmup-seconds', '2'], 'give either --warmup or --warmup-seconds, not both'],
    [['--warmup-seconds', '0'], '--warmup-seconds must be more than 0 and at most 600'],
  ] as const) {
    const r = await cli(sb, ['bench', ...args]);
    t.is(r.code, 2, r.stderr);
    t.is(r.stderr.trim(), `mailseal: error: ${msg}`);
  }
  t.deepEqual(fs.readdirSync(sb.dir).filter((f) => f.startsWith('mailseal-bench-')), []);
});
