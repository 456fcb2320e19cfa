// The bench report for people: a header (machine, disk ceiling, crypto cost), one table per case
// (mailseal | Dovecot | ratio), a summary against issue 6's targets and, when profiled, the
// agent's top self-time functions. Plain aligned text; `--json` prints the BenchReport instead.

import { formatSize } from './cases.ts';
import type { BenchReport, CaseResult } from './run.ts';
import { DISTURBED, otherLoad, type Summary } from './stats.ts';

const num = (x: number | null | undefined, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
const mib = (b: number | null) => (b === null || !Number.isFinite(b) ? '-' : `${(b / (1 << 20)).toFixed(0)} MiB`);
const pct = (x: number | null) => (x === null || !Number.isFinite(x) ? '-' : `${(x * 100).toFixed(0)}%`);
const times = (x: number | null) => (x === null || !Number.isFinite(x) ? '-' : `${x.toFixed(2)}×`);

/** Aligned columns; `align` has one letter per column, `l` or `r` (default: first l, rest r). */
function table(rows: string[][], align = 'l', indent = '  '): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, [...c].length)));
  const pad = (c: string, i: number) => ((align[i] ?? (i === 0 ? 'l' : 'r')) === 'l' ? c.padEnd(widths[i]!) : c.padStart(widths[i]!));
  return rows.map((r) => indent + r.map(pad).join('   ').trimEnd()).join('\n');
}

function describe(c: CaseResult['case'], runs: number): string {
  return `${c.name}: ${formatSize(c.size).replace(/(\d)([KM]?i?B)$/, '$1 $2')} messages, ${c.connections} connection${c.connections > 1 ? 's' : ''}, ` +
    `${c.curve}, ${c.recipients} recipient${c.recipients > 1 ? 's' : ''} — ${c.messages} messages × ${runs} run${runs > 1 ? 's' : ''}, median`;
}

function caseTable(r: CaseResult, runs: number, cores: number): string {
  const ms = r.mailseal.median;
  const dv = r.dovecot?.median ?? null;
  const q = r.ratio;
  const col = (f: (s: Summary) => string) => [f(ms), dv ? f(dv) : '-'];
  const delivered = (x: CaseResult['mailseal'] | null) => {
    if (!x) return '-';
    const want = x.runs.length * r.case.messages * r.case.recipients;
    const got = x.runs.reduce((a, b) => a + b.accepted, 0);
    const sealed = x.runs.reduce((a, b) => a + b.sealed, 0);
    return `${got}/${want} → ${sealed} sealed`;
  };
  const warm = (x: CaseResult['mailseal'] | null) => (x ? `${x.warmup.sent} msgs, ${num(x.warmup.seconds, 1)} s` : '-');
  const rows: string[][] = [
    ['', 'mailseal', r.dovecot ? 'Dovecot' : '(no Dovecot)', 'mailseal/Dovecot'],
    ['msgs/s', ...col((s) => num(s.msgsPerSec)), times(q?.msgsPerSec ?? null)],
    ['MiB/s', ...col((s) => num(s.mibPerSec, 2)), times(q?.mibPerSec ?? null)],
    ['p50 latency', ...col((s) => `${num(s.p50Ms)} ms`), times(q?.p50Ms ?? null)],
    ['p99 latency', ...col((s) => `${num(s.p99Ms)} ms`), times(q?.p99Ms ?? null)],
    ['CPU (server)', ...col((s) => `${num(s.cpuSeconds, 2)} s`), times(q?.cpuSeconds ?? null)],
    ['CPU per message', ...col((s) => `${num(s.cpuMsPerMsg, 2)} ms`), times(q?.cpuMsPerMsg ?? null)],
    ['peak RSS', ...col((s) => mib(s.peakRssBytes)), times(q?.peakRssBytes ?? null)],
    ['disk ceiling share', ...col((s) => pct(s.diskShare)), ''],
    ['warm-up', warm(r.mailseal), warm(r.dovecot), ''],
    ['250 replies → files', delivered(r.mailseal), delivered(r.dovecot), ''],
    ['other load (max)', pct(otherLoad(r.mailseal.runs, cores)), r.dovecot ? pct(otherLoad(r.dovecot.runs, cores)) : '-', ''],
  ];
  let out = `${describe(r.case, runs)}\n${table(rows)}`;
  if ((r.dovecot?.transactionsPerMessage ?? 1) > 1) {
    out += '\n  Dovecot gets one transaction per recipient: its LMTP copies the first recipient\'s encrypted file for' +
      '\n  the others and cannot read it without the password (451 4.2.0); Postfix needs lmtp_destination_recipient_limit = 1';
  }
  if (r.verdict) out += `\n  target ${r.verdict.text}: ${verdictText(r.verdict)}`;
  const others = Math.max(otherLoad(r.mailseal.runs, cores), r.dovecot ? otherLoad(r.dovecot.runs, cores) : 0);
  if (others > DISTURBED) out += `\n  WARNING: other processes used up to ${pct(others)} of the machine during these runs: the figures are disturbed`;
  if (!r.ok) out += '\n  PROBLEM: not every message was answered 250 and stored sealed (see the progress lines)';
  return out;
}

function verdictText(v: NonNullable<CaseResult['verdict']>): string {
  if (v.met === null) return 'not judged (no Dovecot)';
  const value = v.text.includes('%') ? pct(v.value) : times(v.value);
  return `${value} — ${v.met ? 'met' : 'NOT met'}`;
}

export function renderReport(rep: BenchReport, runs: number): string {
  const m = rep.machine;
  const out: string[] = [];
  out.push(`mailseal bench, ${rep.started}`);
  out.push(`  machine  ${m.cpu}, ${m.cores} cores, ${m.kernel}`);
  out.push(`  node     ${m.node} (bundled OpenSSL ${m.openssl}); system ${m.systemOpenssl ?? 'openssl not found'}`);
  out.push(`  agent    sealing: ${rep.agent.sealing}${rep.agent.nodeArgs.length ? ` (node ${rep.agent.nodeArgs.join(' ')})` : ''}`);
  out.push('dovecot' in rep && 'version' in rep.dovecot
    ? `  Dovecot  ${rep.dovecot.version}: LMTP + mail_crypt (save_version 2), mail_fsync=optimized, SQLite userdb, same users and keys`
    : `  Dovecot  skipped: ${(rep.dovecot as { skipped: string }).skipped}`);
  out.push(`  disk     ${m.filesystem}`);
  out.push('');
  out.push('Durable-write ceiling (4 KiB: write, fsync, rename into new/, fsync new/)');
  out.push(table(rep.disk.map((d) => [`${d.writers} writer${d.writers > 1 ? 's' : ''}`, `${num(d.filesPerSec, 0)} files/s`])));
  out.push('');
  out.push('Fixed crypto cost per message (seal an empty message, one at a time, in-process)');
  out.push(table([['curve', 'EC path', 'CPU per message', 'wall per message'],
    ...rep.crypto.map((c) => [c.curve, c.path === 'native' && c.library === 'node:crypto' ? 'node:crypto (libcrypto.so.3 not loadable)' : c.library, `${num(c.cpuMs, 2)} ms`, `${num(c.wallMs, 2)} ms`])], 'llrr'));
  for (const r of rep.cases) {
    out.push('');
    out.push(caseTable(r, runs, m.cores));
  }
  out.push('');
  out.push('Summary (mailseal/Dovecot; disk share = durable files/s ÷ the ceiling for 1 or 4 writers)');
  out.push(table([['case', 'mailseal', 'Dovecot', 'ratio', 'disk share', 'target'],
    ...rep.cases.map((r) => {
      const big = r.case.size >= 1 << 20;
      const f = (s: Summary | undefined) => (s ? (big ? `${num(s.mibPerSec)} MiB/s` : `${num(s.msgsPerSec, 0)} msg/s`) : '-');
      const ratio = big ? r.ratio?.mibPerSec : r.ratio?.msgsPerSec;
      return [r.case.name, f(r.mailseal.median), f(r.dovecot?.median), times(ratio ?? null), pct(r.mailseal.median.diskShare),
        r.verdict ? `${r.verdict.text}: ${verdictText(r.verdict)}` : ''];
    })], 'lrrrrl'));
  if (rep.profile) {
    out.push('');
    out.push(`Agent CPU profile (${rep.profile.dir}): top self time during the timed runs`);
    out.push('  (V8 sees JavaScript threads only: the native sealing and file jobs on libuv\'s threadpool and kernel time are not in it)');
    for (const p of rep.profile.summary) {
      out.push(`  ${p.threads}: ${num(p.busyMs / 1000, 2)} s busy of ${num(p.totalMs / 1000, 2)} s`);
      out.push(table(p.top.map((e) => [pct(e.share), `${num(e.selfMs, 0)} ms`, e.fn]), 'rrl', '    '));
    }
  }
  if (!rep.dirs.kept) out.push('', 'Temp dirs, agent and Dovecot: removed and stopped.');
  else out.push('', `Kept: ${rep.dirs.root}`);
  return out.join('\n') + '\n';
}
