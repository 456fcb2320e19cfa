// What `mailseal bench` measures: the cases (size × connections × curve × recipients), the preset
// that mirrors issue 6's target table, and the targets each preset case is judged against.

import { MailsealError } from '../errors.ts';
import { CURVES } from '../mailcrypt/curves.ts';

export interface Target {
  /** What is compared: mailseal/Dovecot msgs/s, MiB/s, or the share of the disk ceiling. */
  metric: 'msgsRatio' | 'mibRatio' | 'diskShare';
  /** Met when the measured value is at least this. */
  min: number;
  /** Human form, e.g. "≥ 3× Dovecot msgs/s". */
  text: string;
}

export interface BenchCase {
  /** Canonical spec, e.g. `4KiBx4@secp521r1`. */
  name: string;
  size: number;
  connections: number;
  curve: string;
  recipients: number;
  /** Messages per timed run (each to `recipients` users). */
  messages: number;
  /**
   * Messages sent to each server before the timed runs: exactly this many, or — when
   * `warmupSeconds` is set — at most this many, stopping once that many seconds have passed.
   */
  warmup: number;
  /** Warm-up time per server (0: the warm-up is exactly `warmup` messages). */
  warmupSeconds: number;
  target?: Target;
}

/** Issue 6's target table, in its order. */
export const TARGETS_PRESET = '4KiBx4@secp521r1,4KiBx1@secp521r1,4KiBx4@prime256v1,1MiBx4@secp521r1';

const PRESET_TARGETS: Record<string, Target> = {
  '4KiBx4@secp521r1': { metric: 'msgsRatio', min: 3, text: '≥ 3× Dovecot msgs/s' },
  '4KiBx1@secp521r1': { metric: 'msgsRatio', min: 2, text: '≥ 2× Dovecot msgs/s' },
  '4KiBx4@prime256v1': { metric: 'diskShare', min: 0.7, text: '≥ 70% of the durable-write ceiling' },
  '1MiBx4@secp521r1': { metric: 'mibRatio', min: 1.5, text: '≥ 1.5× Dovecot MiB/s' },
};

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1 << 20, mb: 1 << 20, mib: 1 << 20 };

/** The largest message the bench sends (the agent's default --max-size is 64 MiB). */
export const MAX_SIZE = 32 << 20;
/** Smallest: the headers of a bench message must fit. */
export const MIN_SIZE = 512;

/**
 * `4096`, `4k`, `4KiB`, `1MiB`, `1.5m` → bytes (binary units).
 * @throws MailsealError usage
 */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(s);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new MailsealError('usage', `invalid size ${JSON.stringify(s)} (e.g. 4KiB, 1MiB, 65536)`);
  const n = Math.round(Number(m[1]) * unit);
  if (n < MIN_SIZE || n > MAX_SIZE) throw new MailsealError('usage', `message size must be between ${MIN_SIZE} bytes and ${MAX_SIZE >> 20} MiB`);
  return n;
}

/** 4096 → `4KiB`, 1048576 → `1MiB`, 1000 → `1000B`. */
export function formatSize(n: number): string {
  if (n % (1 << 20) === 0) return `${n >> 20}MiB`;
  if (n % 1024 === 0) return `${n >> 10}KiB`;
  return `${n}B`;
}

export function checkCurve(curve: string): string {
  if (!CURVES.some((c) => c.name === curve)) {
    throw new MailsealError('usage', `unknown curve ${JSON.stringify(curve)} (${CURVES.map((c) => c.name).join(', ')})`);
  }
  return curve;
}

/** A positive whole number option, bounded. @throws MailsealError usage */
export function parseCount(what: string, s: string | number, max: number, min = 1): number {
  const n = typeof s === 'number' ? s : /^\s*\d+\s*$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new MailsealError('usage', `${what} must be a whole number from ${min} to ${max}`);
  return n;
}

/**
 * Default messages per timed run: enough to take a few seconds, few enough that the preset
 * finishes in a couple of minutes on 2 cores (600 of 4 KiB, 192 of 1 MiB).
 */
export function defaultMessages(size: number): number {
  return Math.max(50, Math.min(600, Math.floor((192 << 20) / size)));
}

/**
 * Default warm-up: each server gets WARMUP_SECONDS of the case's load before its timed runs (at
 * most defaultWarmupCap() messages). The agent's CPU per message keeps falling over its first
 * few thousand messages after a start (by 30–45%; not only V8's JIT: README, Performance): a
 * short warm-up measured a cold agent, not the long-running one Postfix talks to. Dovecot gets
 * the same seconds.
 */
export const WARMUP_SECONDS = 5;

/** The most messages a timed warm-up sends: 6000, and at most 256 MiB of mail (10 at least). */
export function defaultWarmupCap(size: number, recipients: number): number {
  return Math.max(10, Math.min(6000, Math.floor((256 << 20) / (size * recipients))));
}

export interface CaseDefaults {
  curve: string;
  recipients: number;
  messages?: number;
  /** An exact warm-up count (no time bound). */
  warmup?: number;
  /** Time-bounded warm-up (the default: WARMUP_SECONDS). */
  warmupSeconds?: number;
}

/**
 * One case from `SIZExCONN[@CURVE]`, e.g. `4KiBx4`, `1MiBx1@prime256v1`.
 * @throws MailsealError usage
 */
export function parseCase(spec: string, d: CaseDefaults): BenchCase {
  const m = /^\s*([0-9.]+\s*[a-z]*)\s*[x×]\s*(\d+)\s*(?:@\s*([a-z0-9]+))?\s*$/i.exec(spec);
  if (!m) throw new MailsealError('usage', `invalid case ${JSON.stringify(spec)} (SIZExCONNECTIONS[@CURVE], e.g. 4KiBx4@prime256v1)`);
  const size = parseSize(m[1]!);
  const connections = parseCount('connections', m[2]!, 64);
  const curve = checkCurve(m[3] ?? d.curve);
  return makeCase(size, connections, curve, d);
}

export function makeCase(size: number, connections: number, curve: string, d: CaseDefaults): BenchCase {
  const name = `${formatSize(size)}x${connections}@${curve}`;
  const messages = d.messages ?? defaultMessages(size);
  const c: BenchCase = {
    name, size, connections, curve, recipients: d.recipients, messages,
    ...(d.warmup !== undefined
      ? { warmup: d.warmup, warmupSeconds: 0 }
      : { warmup: defaultWarmupCap(size, d.recipients), warmupSeconds: d.warmupSeconds ?? WARMUP_SECONDS }),
  };
  const target = d.recipients === 1 ? PRESET_TARGETS[name] : undefined;
  if (target) c.target = target;
  return c;
}

/** `targets` (issue 6's table) or a comma-separated list of case specs. */
export function parseCases(list: string, d: CaseDefaults): BenchCase[] {
  const specs = list.trim() === 'targets' ? TARGETS_PRESET : list;
  const cases = specs.split(',').filter((s) => s.trim() !== '').map((s) => parseCase(s, d));
  if (cases.length === 0) throw new MailsealError('usage', '--cases is empty');
  if (cases.length > 16) throw new MailsealError('usage', 'at most 16 cases in one run');
  return cases;
}
