// The numbers of one timed run, their medians over runs, the mailseal/Dovecot ratios and the
// verdict on a case's target. Pure: no I/O.

import type { BenchCase } from './cases.ts';
import { quantile, type LoadResult } from './client.ts';

export interface RunStats {
  messages: number;
  /** Transactions completed. */
  sent: number;
  /** Recipients answered 250 after the data. */
  accepted: number;
  /** Recipients not answered 250. */
  refused: number;
  /** New files in the recipients' new/ directories after the run. */
  stored: number;
  /** …of which begin with `CRYPTED\x03\x07`. */
  sealed: number;
  incomplete: boolean;
  errors: string[];
  seconds: number;
  msgsPerSec: number;
  mibPerSec: number;
  /** Durable files (recipients stored) per second. */
  filesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** utime+stime of the server's processes during the run. */
  cpuSeconds: number;
  cpuMsPerMsg: number;
  /** Peak RSS during the run (VmHWM after a reset), summed over the server's processes. */
  peakRssBytes: number;
  /** filesPerSec / the disk's durable-write ceiling for this many writers. */
  diskShare: number | null;
  /**
   * CPU seconds the rest of the machine used during the run (all CPU time minus the server's and
   * the bench's own; includes kernel threads such as ksoftirqd, so it is approximate): above a few
   * percent of the capacity, the figures are disturbed.
   */
  otherCpuSeconds: number;
}

export type Summary = Pick<RunStats, 'msgsPerSec' | 'mibPerSec' | 'filesPerSec' | 'p50Ms' | 'p99Ms' | 'cpuSeconds' | 'cpuMsPerMsg' | 'peakRssBytes'> & {
  diskShare: number | null;
};

export const SUMMARY_KEYS = ['msgsPerSec', 'mibPerSec', 'filesPerSec', 'p50Ms', 'p99Ms', 'cpuSeconds', 'cpuMsPerMsg', 'peakRssBytes', 'diskShare'] as const;

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function runStats(c: BenchCase, load: LoadResult, server: { cpuSeconds: number; peakRssBytes: number; stored: number; sealed: number; otherCpuSeconds: number }, ceiling: number | null): RunStats {
  const s = load.seconds > 0 ? load.seconds : NaN;
  const filesPerSec = load.accepted / s;
  return {
    messages: c.messages,
    sent: load.sent,
    accepted: load.accepted,
    refused: load.refused,
    stored: server.stored,
    sealed: server.sealed,
    incomplete: load.incomplete,
    errors: load.errors,
    seconds: load.seconds,
    msgsPerSec: load.sent / s,
    mibPerSec: (load.sent * c.size) / s / (1 << 20),
    filesPerSec,
    p50Ms: quantile(load.latencies, 0.5),
    p99Ms: quantile(load.latencies, 0.99),
    cpuSeconds: server.cpuSeconds,
    cpuMsPerMsg: load.sent > 0 ? (server.cpuSeconds * 1000) / load.sent : NaN,
    peakRssBytes: server.peakRssBytes,
    diskShare: ceiling ? filesPerSec / ceiling : null,
    otherCpuSeconds: server.otherCpuSeconds,
  };
}

/** Median of each figure over the runs. */
export function summarise(runs: RunStats[]): Summary {
  const out = {} as Record<(typeof SUMMARY_KEYS)[number], number | null>;
  for (const k of SUMMARY_KEYS) {
    const xs = runs.map((r) => r[k]).filter((x): x is number => x !== null);
    out[k] = xs.length ? median(xs) : null;
  }
  return out as Summary;
}

export type Ratios = Record<(typeof SUMMARY_KEYS)[number], number | null>;

/** mailseal / Dovecot for each figure (null where either is missing). */
export function ratios(a: Summary, b: Summary): Ratios {
  const out = {} as Ratios;
  for (const k of SUMMARY_KEYS) {
    const x = a[k];
    const y = b[k];
    out[k] = x !== null && y !== null && Number.isFinite(x) && Number.isFinite(y) && y !== 0 ? x / y : null;
  }
  return out;
}

export interface Verdict {
  text: string;
  value: number | null;
  /** null when it cannot be judged (no Dovecot to compare with). */
  met: boolean | null;
}

export function judge(c: BenchCase, ours: Summary, ratio: Ratios | null): Verdict | undefined {
  const t = c.target;
  if (!t) return undefined;
  const value = t.metric === 'diskShare' ? ours.diskShare : t.metric === 'msgsRatio' ? ratio?.msgsPerSec ?? null : ratio?.mibPerSec ?? null;
  return { text: t.text, value, met: value === null ? null : value >= t.min };
}

/** True if every message of the run was answered 250 for every recipient and stored sealed. */
export function runOk(r: Pick<RunStats, 'messages' | 'sent' | 'accepted' | 'refused' | 'stored' | 'sealed' | 'incomplete'>, recipients: number): boolean {
  return !r.incomplete && r.sent === r.messages && r.refused === 0 && r.accepted === r.messages * recipients &&
    r.stored === r.accepted && r.sealed === r.stored;
}

/** Above this share of the machine used by other processes during a run, the report says so. */
export const DISTURBED = 0.05;

/** The largest share of the machine's capacity (cores × seconds) others used in any of the runs. */
export function otherLoad(runs: RunStats[], cores: number): number {
  return Math.max(0, ...runs.map((r) => (r.seconds > 0 ? r.otherCpuSeconds / (r.seconds * cores) : 0)));
}
