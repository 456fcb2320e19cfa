// Where the agent's time went: the top self-time functions of V8 CPU profiles (`node --cpu-prof`
// writes one `.cpuprofile` per thread: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  startTime: number;
  endTime: number;
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
  /** Profiled wall time, summed over the threads. */
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
  return `${file}:${line + 1}`;
}

/** Self time per function, over several profiles. */
function selfTimes(files: string[]): { total: number; idle: number; byFn: Map<string, number> } {
  const byFn = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const f of files) {
    const p = JSON.parse(fs.readFileSync(f, 'utf8')) as CpuProfile;
    const label = new Map<number, string>();
    for (const n of p.nodes) {
      const name = n.callFrame.functionName || '(anonymous)';
      label.set(n.id, name.startsWith('(') && !n.callFrame.url ? name : `${name} ${where(n.callFrame.url, n.callFrame.lineNumber)}`.trim());
    }
    const duration = (p.endTime - p.startTime) / 1000;
    if (p.samples.length === 0) continue;
    const per = duration / p.samples.length;
    total += duration;
    for (const s of p.samples) {
      const k = label.get(s) ?? '(unknown)';
      if (k === '(idle)') idle += per;
      else byFn.set(k, (byFn.get(k) ?? 0) + per);
    }
  }
  return { total, idle, byFn };
}

/** The `top` functions by self time, main thread and worker threads apart. */
export function summariseProfiles(dir: string, top = 15): ProfileSummary[] {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  const thread = (f: string) => Number(f.split('.')[4] ?? 0);
  const groups: [string, string[]][] = [
    ['main thread', files.filter((f) => thread(f) === 0)],
    ['worker threads', files.filter((f) => thread(f) !== 0)],
  ];
  const out: ProfileSummary[] = [];
  for (const [name, list] of groups) {
    if (list.length === 0) continue;
    const { total, idle, byFn } = selfTimes(list.map((f) => path.join(dir, f)));
    const busy = total - idle;
    const entries = [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)
      .map(([fn, ms]) => ({ fn, selfMs: ms, share: busy > 0 ? ms / busy : 0 }));
    out.push({ threads: list.length > 1 ? `${name} (${list.length})` : name, files: list.length, totalMs: total, busyMs: busy, top: entries });
  }
  return out;
}
