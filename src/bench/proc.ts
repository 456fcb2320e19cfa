// What the servers cost, read from /proc (Linux): CPU time (utime+stime, and that of reaped
// children) and peak RSS (VmHWM, reset through clear_refs) of a process and its descendants.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let ticks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`, 100 on Linux unless proven otherwise). */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

interface Stat {
  pid: number;
  ppid: number;
  state: string;
  /** utime+stime+cutime+cstime, in clock ticks. */
  cpu: number;
}

function readStat(pid: number): Stat | null {
  let s: string;
  try {
    s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // f[0] = state (field 3), f[1] = ppid (4), f[11..14] = utime, stime, cutime, cstime (14–17)
  const n = (i: number) => Number(f[i] ?? 0);
  return { pid, ppid: n(1), state: f[0] ?? '?', cpu: n(11) + n(12) + n(13) + n(14) };
}

/** True if `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = readStat(pid);
  return st !== null && st.state !== 'Z';
}

/** `root` and all its live descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (!st || st.state === 'Z') continue;
    const list = children.get(st.ppid);
    if (list) list.push(st.pid);
    else children.set(st.ppid, [st.pid]);
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  if (alive(root)) walk(root);
  return out;
}

/**
 * CPU seconds used so far by `root` and its descendants, including children they have reaped
 * (a process that exits between two readings moves into its parent's cutime/cstime, so the
 * difference of two readings stays right).
 */
export function treeCpuSeconds(root: number): number {
  let sum = 0;
  for (const pid of processTree(root)) sum += readStat(pid)?.cpu ?? 0;
  return sum / clockTicks();
}

function statusField(pid: number, field: string): number {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Peak RSS (VmHWM) in bytes, summed over `root` and its descendants. */
export function treePeakRss(root: number): number {
  let sum = 0;
  for (const pid of processTree(root)) sum += statusField(pid, 'VmHWM');
  return sum;
}

/** Reset the peak RSS of `root` and its descendants to their current RSS (clear_refs 5). */
export function resetPeakRss(root: number): void {
  for (const pid of processTree(root)) {
    try {
      fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      // not ours (or gone): its peak stays the lifetime peak
    }
  }
}

/**
 * CPU seconds all processes of the machine have used since boot (user, nice, system, irq,
 * softirq, steal from /proc/stat): with our own figures subtracted, what others used meanwhile.
 */
export function systemBusySeconds(): number {
  try {
    const line = fs.readFileSync('/proc/stat', 'latin1').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return busy / clockTicks();
  } catch {
    return NaN;
  }
}
