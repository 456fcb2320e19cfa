// Where the agent's time went: the top self-time functions of V8 CPU profiles (`node --cpu-prof`
// writes one `.cpuprofile` per thread: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  /** µs between samples; the first is from startTime. */
  timeDeltas: number[];
  /** µs of CLOCK_MONOTONIC, the clock of process.hrtime(). */
  startTime: number;
  endTime: number;
}

/** A stretch of CLOCK_MONOTONIC time in µs (process.hrtime.bigint() / 1000). */
export interface Window {
  fromUs: number;
  toUs: number;
}

/** Now, on the clock of the profiles' timestamps. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export interface ProfileEntry {
  /** `name file:line`. */
  fn: string;
  selfMs: number;
  /** Share of the busy (non-idle) time of these threads. */
  share: number;
}

export interface ProfileSummary {
  /** `main thread` or `worker threads (N)`. */
  threads: string;
  files: number;
  /** Profiled wall time (inside the windows), summed over the threads. */
  totalMs: number;
  /** Time not idle. */
  busyMs: number;
  top: ProfileEntry[];
}

const ROOT = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));

function where(url: string, line: number): string {
  if (!url) return '';
  let file = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (file.startsWith(ROOT + path.sep)) file = path.relative(ROOT, file);
  // Code that tsx transpiled has no useful line numbers (everything is on line 1).
  return line > 0 ? `${file}:${line + 1}` : file;
}

/**
 * Self time per function, over several profiles, counting only samples inside `windows` (all
 * samples if none). A sample stands for the time until the next one.
 */
function selfTimes(files: string[], windows: Window[]): { total: number; idle: number; byFn: Map<string, number> } {
  const byFn = new Map<string, number>();
  let total = 0;
  let idle = 0;
  const inside = (t: number) => windows.length === 0 || windows.some((w) => t >= w.fromUs && t < w.toUs);
  for (const f of files) {
    const p = JSON.parse(fs.readFileSync(f, 'utf8')) as CpuProfile;
    const label = new Map<number, string>();
    for (const n of p.nodes) {
      const name = n.callFrame.functionName || '(anonymous)';
      label.set(n.id, name.startsWith('(') && !n.callFrame.url ? name : `${name} ${where(n.callFrame.url, n.callFrame.lineNumber)}`.trim());
    }
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0;
      const next = i + 1 < p.samples.length ? t + (p.timeDeltas[i + 1] ?? 0) : p.endTime;
      if (!inside(t)) continue;
      const ms = Math.max(0, next - t) / 1000;
      total += ms;
      const k = label.get(p.samples[i]!) ?? '(unknown)';
      if (k === '(idle)') idle += ms;
      else byFn.set(k, (byFn.get(k) ?? 0) + ms);
    }
  }
  return { total, idle, byFn };
}

/** The `top` functions by self time, main thread and worker threads apart (busy threads only). */
export function summariseProfiles(dir: string, top = 15, windows: Window[] = []): ProfileSummary[] {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  const thread = (f: string) => Number(f.split('.')[4] ?? 0);
  const groups: [string, string[]][] = [
    ['main thread', files.filter((f) => thread(f) === 0)],
    ['worker threads', files.filter((f) => thread(f) !== 0)],
  ];
  const out: ProfileSummary[] = [];
  for (const [name, list] of groups) {
    if (list.length === 0) continue;
    const { total, idle, byFn } = selfTimes(list.map((f) => path.join(dir, f)), windows);
    const busy = total - idle;
    const entries = [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)
      .map(([fn, ms]) => ({ fn, selfMs: ms, share: busy > 0 ? ms / busy : 0 }));
    out.push({ threads: list.length > 1 ? `${name} (${list.length})` : name, files: list.length, totalMs: total, busyMs: busy, top: entries });
  }
  return out;
}
