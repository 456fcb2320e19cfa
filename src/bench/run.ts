// `mailseal bench`, start to end: a throw-away world (setup.ts), the fixed crypto cost and the
// disk's durable-write ceiling, then the agent and Dovecot side by side on the same users and
// keys — per case a warm-up of each, then timed runs alternating between them (ABBA order) — and
// everything undone afterwards, also on Ctrl-C.

import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MailsealError } from '../errors.ts';
import { type RunningAgent, startAgent } from './agent.ts';
import type { BenchCase } from './cases.ts';
import { benchMessage, runLoad } from './client.ts';
import { type CryptoCost, measureCryptoCost } from './cryptocost.ts';
import { type DiskCeiling, measureDisk } from './disk.ts';
import { dovecotAvailable, type RunningDovecot, startDovecot } from './dovecot.ts';
import { machineInfo, type MachineInfo } from './machine.ts';
import { processTree, resetPeakRss, systemBusySeconds, treeCpuSeconds, treePeakRss } from './proc.ts';
import { monotonicUs, type ProfileSummary, summariseProfiles, type Window } from './profile.ts';
import { type BenchUser, Cleanup, countSealed, createUsers, listNew, mailUser, removeDir } from './setup.ts';
import { DISTURBED, judge, otherLoad, type Ratios, ratios, runOk, type RunStats, runStats, summarise, type Summary, type Verdict } from './stats.ts';

export interface BenchOptions {
  cases: BenchCase[];
  runs: number;
  /** Run Dovecot beside the agent when it is available. */
  dovecot: boolean;
  /** Keep the temp dir (mail root, database, logs) afterwards. */
  keep: boolean;
  /** Write the agent's V8 CPU profiles here and summarise them. */
  profileDir?: string;
  /** Parent of the temp dir: the disk under test. */
  parent: string;
  diskSeconds: number;
  cryptoOps: number;
  /** Per timed run. */
  timeLimitSeconds: number;
  mailUser?: string;
  progress: (line: string) => void;
}

export interface WarmupStats {
  /** The warm-up's message count: exact, or a cap when it is bounded in time. */
  messages: number;
  /** Its time bound, seconds (0: none: all `messages` are sent). */
  boundSeconds: number;
  /** How long it took. */
  seconds: number;
  sent: number;
  accepted: number;
  stored: number;
  sealed: number;
}

export interface ServerResult {
  /**
   * Transactions per message: 1, or one per recipient for Dovecot (2.3 LMTP + mail_crypt stores
   * the 2nd recipient by copying the 1st's encrypted file, which it cannot read without the
   * user's password: 451 4.2.0; so it is driven as Postfix must drive it,
   * lmtp_destination_recipient_limit = 1).
   */
  transactionsPerMessage: number;
  warmup: WarmupStats;
  runs: RunStats[];
  median: Summary;
}

export interface CaseResult {
  case: BenchCase;
  mailseal: ServerResult;
  dovecot: ServerResult | null;
  /** mailseal / Dovecot. */
  ratio: Ratios | null;
  verdict?: Verdict;
  ok: boolean;
}

export interface BenchReport {
  started: string;
  finished: string;
  machine: MachineInfo;
  /** The temp dirs (removed afterwards unless kept). */
  dirs: { root: string; maildir: string; dovecot: string | null; kept: boolean };
  agent: { pid: number; sealing: string; nodeArgs: string[] };
  dovecot: { version: string; pid: number; port: number; pids: number[] } | { skipped: string };
  disk: DiskCeiling[];
  crypto: CryptoCost[];
  cases: CaseResult[];
  /** Top self-time functions of the agent during its timed runs (not start-up, not warm-up). */
  profile?: { dir: string; summary: ProfileSummary[] };
  ok: boolean;
}

interface Server {
  name: 'mailseal' | 'Dovecot';
  port: number;
  pid: number;
}

function signalsOn(handler: (sig: NodeJS.Signals) => void): () => void {
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, handler);
  return () => {
    for (const s of sigs) process.off(s, handler);
  };
}

const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** Every warm-up message stored and sealed: all of them, or (bounded in time) at least one. */
export function warmupOk(w: WarmupStats, recipients: number): boolean {
  const all = w.boundSeconds > 0 ? w.sent >= 1 && w.sent <= w.messages : w.sent === w.messages;
  return all && w.accepted === w.sent * recipients && w.stored === w.accepted && w.sealed === w.stored;
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const started = new Date().toISOString();
  const cleanup = new Cleanup();
  const exitHook = () => cleanup.runSync();
  process.on('exit', exitHook);
  const offSignals = signalsOn((sig) => {
    o.progress(`${sig}: stopping the servers and removing the temp dirs`);
    void cleanup.run(o.progress).finally(() => process.exit(128 + (os.constants.signals[sig] ?? 2)));
  });
  try {
    return await bench(o, cleanup, started);
  } finally {
    await cleanup.run(o.progress);
    offSignals();
    process.off('exit', exitHook);
  }
}

async function bench(o: BenchOptions, cleanup: Cleanup, started: string): Promise<BenchReport> {
  const owner = mailUser(o.mailUser);
  const dvAvail = o.dovecot ? dovecotAvailable() : { ok: false, reason: 'disabled (--no-dovecot)' };
  if (!dvAvail.ok) o.progress(`no Dovecot side: ${dvAvail.reason}`);

  await fsp.mkdir(o.parent, { recursive: true });
  const root = await fsp.mkdtemp(path.join(path.resolve(o.parent), 'mailseal-bench-'));
  if (!o.keep) removeDir(cleanup, root);
  await fsp.chmod(root, 0o755); // Dovecot's mail processes (the mail user) traverse it
  const maildir = path.join(root, 'maildir');
  const db = path.join(root, 'keys', 'mailseal.db');
  await fsp.mkdir(maildir, { mode: 0o755 });
  if (owner) await fsp.chown(maildir, owner.uid, owner.gid);

  // Users: max(4, recipients) per curve, so that concurrent messages mostly go to different
  // mailboxes; as many again for the warm-ups, so that the timed runs find the mailboxes as
  // without a warm-up (a server that gets slower as a mailbox grows is not measured on fuller
  // mailboxes the longer the warm-up).
  const perCurve = new Map<string, number>();
  for (const c of o.cases) perCurve.set(c.curve, Math.max(perCurve.get(c.curve) ?? 0, 2 * Math.max(4, c.recipients)));
  const total = [...perCurve.values()].reduce((a, b) => a + b, 0);
  o.progress(`creating ${total} bench users (${[...perCurve.keys()].join(', ')}) in ${root}`);
  const users = await createUsers(db, maildir, perCurve, owner);

  const crypto: CryptoCost[] = [];
  for (const curve of perCurve.keys()) {
    for (const p of ['native', 'node'] as const) {
      const c = await measureCryptoCost(curve, p, o.cryptoOps, 5);
      o.progress(`crypto cost ${curve} via ${c.library}: ${fmt(c.cpuMs, 2)} ms CPU per message (${c.ops} seals)`);
      crypto.push(c);
    }
  }

  const disk: DiskCeiling[] = [];
  for (const writers of [1, 4]) {
    const d = await measureDisk(path.join(maildir, `.durable-probe-${writers}`), writers, o.diskSeconds);
    o.progress(`disk ceiling, ${writers} writer${writers > 1 ? 's' : ''}: ${fmt(d.filesPerSec, 0)} durable 4 KiB files/s`);
    disk.push(d);
  }
  // Delivered mail stays until the end (see disk.ts: deleting it between runs would slow every
  // later file creation on ext4 without a journal), unless the disk cannot hold it all.
  const need = o.cases.reduce((a, c) => a + (c.warmup + o.runs * c.messages) * c.recipients * (c.size + 4096) * 2, 0);
  const st = await fsp.statfs(maildir);
  const deleteBetweenRuns = need > (st.bavail * st.bsize) / 2;
  if (deleteBetweenRuns) o.progress(`not enough free space to keep every delivered message (${fmt(need / 2 ** 20, 0)} MiB): deleting them after each run`);
  const ceiling = (connections: number) => disk.find((d) => d.writers === (connections > 1 ? 4 : 1))?.filesPerSec ?? null;

  // The agent, as the mail user; optionally profiled.
  const nodeArgs: string[] = [];
  let profTmp: string | undefined;
  if (o.profileDir) {
    profTmp = path.join(root, 'cpuprof');
    await fsp.mkdir(profTmp, { mode: 0o755 });
    if (owner) await fsp.chown(profTmp, owner.uid, owner.gid);
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', profTmp);
  }
  // The agent's worker threads load tsx, which caches in $TMPDIR: it must be the mail user's.
  const agentTmp = path.join(root, 'agent-tmp');
  await fsp.mkdir(agentTmp, { mode: 0o700 });
  if (owner) await fsp.chown(agentTmp, owner.uid, owner.gid);
  o.progress(`starting the agent${owner ? ` (as ${owner.name})` : ''}${o.profileDir ? ' with --cpu-prof' : ''}`);
  const agent: RunningAgent = await startAgent({ maildir, db, logFile: path.join(root, 'agent.log'), tmpDir: agentTmp, ...(owner ? { user: owner.name } : {}), nodeArgs });
  let agentStopped = false;
  cleanup.add('stop the agent', async () => {
    if (!agentStopped) await agent.stop(10_000);
  }, () => {
    try {
      process.kill(agent.pid, 'SIGKILL');
    } catch {
      // gone
    }
  });

  let dovecot: RunningDovecot | null = null;
  let dvDir: string | null = null;
  const dvPids = new Set<number>();
  if (dvAvail.ok && owner) {
    // Dovecot's unix sockets live in its base_dir: keep the path short.
    dvDir = root.length < 60 ? path.join(root, 'dovecot') : await fsp.mkdtemp('/tmp/msbd-');
    await fsp.mkdir(dvDir, { recursive: true, mode: 0o755 });
    if (!o.keep && dvDir !== path.join(root, 'dovecot')) removeDir(cleanup, dvDir);
    o.progress(`starting Dovecot ${dvAvail.version} LMTP (mail_crypt, same users and keys)`);
    const curve = o.cases[0]!.curve;
    dovecot = await startDovecot(dvDir, { db, uid: owner.uid, gid: owner.gid, curve, keepDir: o.keep, instance: path.basename(root) });
    const dv = dovecot;
    cleanup.add('stop Dovecot', () => dv.stop(), () => {
      try {
        process.kill(dv.pid, 'SIGTERM');
      } catch {
        // gone
      }
    });
  }

  const servers: Server[] = [{ name: 'mailseal', port: agent.port, pid: agent.pid }];
  if (dovecot) servers.push({ name: 'Dovecot', port: dovecot.port, pid: dovecot.pid });
  const from = 'bench@sender.bench.invalid';

  const results: CaseResult[] = [];
  /** When the agent was under timed load: the profile summary counts only these. */
  const timed: Window[] = [];
  for (const c of o.cases) {
    const all = users.get(c.curve)!;
    const [timedUsers, warmUsers] = [all.slice(0, all.length / 2), all.slice(all.length / 2)];
    const body = benchMessage(c.size, from);

    const split = (s: Server) => s.name === 'Dovecot' && c.recipients > 1;
    /** One batch of `messages` to one server; verifies the new files (removes them if space is short). */
    const batch = async (s: Server, list: BenchUser[], messages: number, limitMs: number) => {
      const recipientsOf = (i: number) => Array.from({ length: c.recipients }, (_, k) => list[(i * c.recipients + k) % list.length]!.address);
      const before = new Set(await listNew(list));
      resetPeakRss(s.pid);
      const cpu0 = treeCpuSeconds(s.pid);
      const all0 = systemBusySeconds();
      const own0 = process.cpuUsage();
      const load = await runLoad({ port: s.port, connections: c.connections, messages, recipientsOf, from, body, timeLimitMs: limitMs, onePerRecipient: split(s) });
      const cpuSeconds = treeCpuSeconds(s.pid) - cpu0;
      const own = process.cpuUsage(own0);
      // What the rest of the machine did meanwhile (never below 0: the counters tick coarsely).
      const otherCpuSeconds = Math.max(0, systemBusySeconds() - all0 - cpuSeconds - (own.user + own.system) / 1e6);
      const peakRssBytes = treePeakRss(s.pid);
      if (s.name === 'Dovecot') for (const p of processTree(s.pid)) dvPids.add(p);
      const fresh = (await listNew(list)).filter((f) => !before.has(f));
      const sealed = await countSealed(fresh);
      if (deleteBetweenRuns && !o.keep) await Promise.all(fresh.map((f) => fsp.unlink(f)));
      return { load, cpuSeconds, peakRssBytes, stored: fresh.length, sealed, otherCpuSeconds };
    };

    const per = new Map<Server['name'], { warmup: WarmupStats; runs: RunStats[] }>();
    for (const s of servers) {
      o.progress(`${c.name}: warm-up of ${s.name}, ${c.warmupSeconds ? `${c.warmupSeconds} s (at most ${c.warmup} messages)` : `${c.warmup} messages`}`);
      const w = await batch(s, warmUsers, c.warmup, (c.warmupSeconds || o.timeLimitSeconds) * 1000);
      const warmup = { messages: c.warmup, boundSeconds: c.warmupSeconds, seconds: w.load.seconds, sent: w.load.sent, accepted: w.load.accepted, stored: w.stored, sealed: w.sealed };
      per.set(s.name, { warmup, runs: [] });
      if (c.warmupSeconds) o.progress(`${c.name}: warm-up of ${s.name}: ${w.load.sent} messages in ${fmt(w.load.seconds, 1)} s`);
      if (!warmupOk(warmup, c.recipients) || w.load.errors.length > 0) {
        // Measuring a server that refuses mail would only measure its error path.
        const where = s.name === 'mailseal' ? path.join(root, 'agent.log') : dovecot?.logPath ?? 'dovecot.log';
        const counts = `${w.load.sent} of ${c.warmup} sent${w.load.incomplete && !c.warmupSeconds ? ' (time limit hit)' : ''}, ${w.load.accepted} of ${w.load.sent * c.recipients} recipients accepted, ${w.stored} stored, ${w.sealed} sealed`;
        throw new MailsealError('internal', `${s.name} failed the warm-up (${counts}): ` +
          `${w.load.errors.slice(0, 2).join('; ')}${o.keep ? ` (log: ${where})` : ' (run with --keep to read its log)'}`);
      }
    }
    for (let r = 0; r < o.runs; r++) {
      const order = r % 2 === 0 ? servers : [...servers].reverse();
      for (const s of order) {
        const fromUs = monotonicUs();
        const b = await batch(s, timedUsers, c.messages, o.timeLimitSeconds * 1000);
        if (s.name === 'mailseal') timed.push({ fromUs, toUs: monotonicUs() });
        const st = runStats(c, b.load, b, ceiling(c.connections));
        per.get(s.name)!.runs.push(st);
        const bad = runOk(st, c.recipients) ? '' : `; PROBLEM: ${st.refused} refused, ${st.stored} stored, ${st.sealed} sealed${st.incomplete ? ', time limit hit' : ''} ${st.errors.join('; ')}`;
        const others = otherLoad([st], os.availableParallelism());
        const busy = others > DISTURBED ? `; WARNING: other processes used ${fmt(others * 100, 0)}% of the machine meanwhile` : '';
        o.progress(`${c.name}: run ${r + 1}/${o.runs} ${s.name}: ${fmt(st.msgsPerSec)} msg/s, ${fmt(st.mibPerSec, 2)} MiB/s, p50 ${fmt(st.p50Ms)} ms, CPU ${fmt(st.cpuSeconds, 2)} s${bad}${busy}`);
      }
    }
    const done = (name: Server['name']): ServerResult | null => {
      const x = per.get(name);
      const s = servers.find((v) => v.name === name);
      return x && s ? { transactionsPerMessage: split(s) ? c.recipients : 1, ...x, median: summarise(x.runs) } : null;
    };
    const ms = done('mailseal')!;
    const dv = done('Dovecot');
    const ratio = dv ? ratios(ms.median, dv.median) : null;
    const ok = [ms, ...(dv ? [dv] : [])].every((x) => warmupOk(x.warmup, c.recipients) && x.runs.every((r) => runOk(r, c.recipients)));
    const verdict = judge(c, ms.median, ratio);
    results.push({ case: c, mailseal: ms, dovecot: dv, ratio, ...(verdict ? { verdict } : {}), ok });
  }

  // Stop the agent now: its profiles are written as it exits.
  o.progress('stopping the servers');
  const code = await agent.stop(30_000);
  agentStopped = true;
  if (code !== 0) o.progress(`the agent exited with ${code}`);
  let profile: BenchReport['profile'];
  if (o.profileDir && profTmp) {
    const dest = path.resolve(o.profileDir);
    await fsp.mkdir(dest, { recursive: true });
    for (const f of await fsp.readdir(profTmp)) await fsp.copyFile(path.join(profTmp, f), path.join(dest, f));
    const summary = summariseProfiles(profTmp, 15, timed);
    profile = { dir: dest, summary };
  }
  const dvPidList = dovecot ? [...dvPids] : [];
  if (dovecot) await dovecot.stop();
  if (o.keep) o.progress(`kept ${root}`);

  return {
    started,
    finished: new Date().toISOString(),
    machine: machineInfo(root, dvAvail.version),
    dirs: { root, maildir, dovecot: dvDir, kept: o.keep },
    agent: { pid: agent.pid, sealing: agent.sealing, nodeArgs },
    dovecot: dovecot ? { version: dvAvail.version!, pid: dovecot.pid, port: dovecot.port, pids: dvPidList } : { skipped: dvAvail.ok ? 'not root' : dvAvail.reason! },
    disk,
    crypto,
    cases: results,
    ...(profile ? { profile } : {}),
    ok: results.every((r) => r.ok),
  };
}
