// `mailseal bench`: the agent side by side with Dovecot's own LMTP + mail_crypt on a throw-away
// mail root (issue 6). Progress on stderr, the report on stdout (`--json` for machines).

import { type Command, Option } from 'commander';
import os from 'node:os';
import { checkCurve, type BenchCase, makeCase, parseCases, parseCount, parseSize, TARGETS_PRESET, WARMUP_SECONDS } from '../bench/cases.ts';
import { MailsealError } from '../errors.ts';

interface BenchFlags {
  cases?: string;
  size?: string;
  connections?: string;
  curve?: string;
  recipients: string;
  messages?: string;
  warmup?: string;
  warmupSeconds?: string;
  runs: string;
  dovecot: boolean;
  json?: boolean;
  keep?: boolean;
  profile?: string;
  dir: string;
  diskSeconds: string;
  cryptoOps: string;
  timeLimit: string;
  mailUser?: string;
}

const HELP = `
Starts the agent (\`mailseal serve\`) and, when Dovecot 2.3 is installed and this runs as root, a
private Dovecot LMTP with mail_crypt over the same throw-away users, homes and keys; sends the
same load to both, alternating, and reports msgs/s, MiB/s, latency, server CPU and peak RSS,
the ratio mailseal/Dovecot, the disk's durable-write ceiling and the fixed crypto cost per
message. Without case flags it runs issue 6's target table:
  ${TARGETS_PRESET}
A case is SIZExCONNECTIONS[@CURVE]. Everything it creates is removed at the end (also on
Ctrl-C) unless --keep. --maildir/--db are not used: the bench makes its own.

Examples:
  mailseal bench
  mailseal bench --size 4KiB --connections 4 --curve prime256v1 --runs 5
  mailseal bench --cases 4KiBx1,1MiBx4@prime256v1 --recipients 2 --json
  mailseal bench --size 4KiB --connections 4 --profile prof/    # agent under node --cpu-prof
`;

/** Seconds in (0, max]. @throws MailsealError usage */
function parseSeconds(what: string, s: string, max: number): number {
  const n = Number(s);
  if (!(n > 0 && n <= max)) throw new MailsealError('usage', `${what} must be more than 0 and at most ${max}`);
  return n;
}

function buildCases(f: BenchFlags): BenchCase[] {
  const recipients = parseCount('--recipients', f.recipients, 32);
  const d = {
    curve: checkCurve(f.curve ?? 'secp521r1'),
    recipients,
    ...(f.messages !== undefined ? { messages: parseCount('--messages', f.messages, 100_000) } : {}),
    ...(f.warmup !== undefined ? { warmup: parseCount('--warmup', f.warmup, 10_000, 0) } : {}),
    ...(f.warmupSeconds !== undefined ? { warmupSeconds: parseSeconds('--warmup-seconds', f.warmupSeconds, 600) } : {}),
  };
  if (f.warmup !== undefined && f.warmupSeconds !== undefined) throw new MailsealError('usage', 'give either --warmup or --warmup-seconds, not both');
  const single = f.size !== undefined || f.connections !== undefined || f.curve !== undefined;
  if (f.cases !== undefined) {
    if (f.size !== undefined || f.connections !== undefined) {
      throw new MailsealError('usage', 'give either --cases or --size/--connections, not both');
    }
    return parseCases(f.cases, d);
  }
  if (!single) return parseCases('targets', d);
  return [makeCase(parseSize(f.size ?? '4KiB'), parseCount('--connections', f.connections ?? '4', 64), d.curve, d)];
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('measure the agent against Dovecot LMTP + mail_crypt on the same machine')
    .addOption(new Option('--cases <list>', `"targets" or SIZExCONN[@CURVE],… (default: targets = ${TARGETS_PRESET})`))
    .addOption(new Option('--size <bytes>', 'one case: message size (4KiB, 1MiB, 65536)'))
    .addOption(new Option('--connections <n>', 'one case: LMTP connections, reused (default 4)'))
    .addOption(new Option('--curve <name>', 'curve of the bench users where a case names none (secp521r1, secp384r1, prime256v1)'))
    .addOption(new Option('--recipients <n>', 'recipients per message').default('1'))
    .addOption(new Option('--messages <n>', 'messages per timed run (default: 600 of 4 KiB, 192 of 1 MiB)'))
    .addOption(new Option('--warmup-seconds <s>', `warm-up per server and case before the timed runs, seconds, at most 6000 messages and 256 MiB (default: ${WARMUP_SECONDS})`))
    .addOption(new Option('--warmup <n>', 'instead: exactly this many warm-up messages to each server'))
    .addOption(new Option('--runs <n>', 'timed runs per server and case (the median is reported)').default('3'))
    .addOption(new Option('--no-dovecot', 'measure the agent alone'))
    .addOption(new Option('--json', 'print the report as JSON'))
    .addOption(new Option('--keep', 'keep the temp dir (mail root, database, logs) and its mail'))
    .addOption(new Option('--profile <dir>', 'run the agent under node --cpu-prof, write the profiles to DIR, print the top functions').env('MAILSEAL_BENCH_PROFILE'))
    .addOption(new Option('--dir <parent>', 'where to make the temp dir: the disk under test').env('MAILSEAL_BENCH_DIR').default(os.tmpdir()))
    .addOption(new Option('--disk-seconds <s>', 'seconds per durable-write ceiling measurement').default('2'))
    .addOption(new Option('--crypto-ops <n>', 'empty messages sealed per EC path for the crypto cost').default('200'))
    .addOption(new Option('--time-limit <s>', 'longest timed run, seconds').default('120'))
    .addOption(new Option('--mail-user <name>', 'as root: owner of the bench mail store (default vmail, else nobody)'))
    .addHelpText('after', HELP)
    .action(async (f: BenchFlags) => {
      const cases = buildCases(f);
      const runs = parseCount('--runs', f.runs, 50);
      const diskSeconds = parseSeconds('--disk-seconds', f.diskSeconds, 60);
      const timeLimitSeconds = parseCount('--time-limit', f.timeLimit, 3600);
      // Loaded here, not at startup: `mailseal serve` does not need the bench.
      const { runBench } = await import('../bench/run.ts');
      const { renderReport } = await import('../bench/report.ts');
      const progress = (line: string) => process.stderr.write(`mailseal bench: ${line}\n`);
      const report = await runBench({
        cases,
        runs,
        dovecot: f.dovecot,
        keep: f.keep === true,
        ...(f.profile ? { profileDir: f.profile } : {}),
        parent: f.dir,
        diskSeconds,
        cryptoOps: parseCount('--crypto-ops', f.cryptoOps, 100_000),
        timeLimitSeconds,
        ...(f.mailUser ? { mailUser: f.mailUser } : {}),
        progress,
      });
      process.stdout.write(f.json ? JSON.stringify(report, null, 2) + '\n' : renderReport(report, runs));
      if (!report.ok) {
        throw new MailsealError('internal', 'not every message was answered 250 and stored sealed: the figures above are not valid');
      }
    });
}
