// The agent under test: `mailseal serve` as a child process on a free loopback port, over the
// bench's mail root and database, so that its CPU time and peak RSS can be read from /proc.
// Its log (one JSON line per delivery, as in production) goes to a file, not through us.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { alive } from './proc.ts';

const BIN = fileURLToPath(new URL('../../bin/mailseal.js', import.meta.url));

export interface AgentOptions {
  maildir: string;
  db: string;
  /** The agent's log file. */
  logFile: string;
  /** When root: drop to this user after binding (the owner of the mail store). */
  user?: string;
  /** TMPDIR of the agent: writable by the user it runs as (tsx keeps its cache there). */
  tmpDir: string;
  /** Extra arguments for node itself (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  startTimeoutMs?: number;
}

export interface RunningAgent {
  pid: number;
  port: number;
  /** Which EC implementation the agent reported at startup. */
  sealing: string;
  /** SIGTERM (graceful: it finishes transactions, writes profiles), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number | null>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Start `mailseal serve --listen 127.0.0.1:0`; resolves once it logged that it is serving.
 * @throws with the log tail if it exits or does not come up in time
 */
export async function startAgent(o: AgentOptions): Promise<RunningAgent> {
  const env = { ...process.env };
  // The bench decides the agent's settings (an operator's MAILSEAL_SOCKET must not add a socket);
  // MAILSEAL_NATIVE=0 passes, to measure the node:crypto path.
  for (const k of Object.keys(env)) if (k.startsWith('MAILSEAL_') && k !== 'MAILSEAL_NATIVE' && k !== 'MAILSEAL_DEBUG') delete env[k];
  env.TMPDIR = o.tmpDir;
  const args = [...(o.nodeArgs ?? []), BIN, '--maildir', o.maildir, '--db', o.db, 'serve', '--listen', '127.0.0.1:0', '--log-level', 'info'];
  if (o.user) args.push('--user', o.user);
  const fd = fs.openSync(o.logFile, 'a', 0o600);
  const proc = spawn(process.execPath, args, { env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((r) => proc.on('exit', (code, signal) => r((exitCode = code ?? (signal ? 128 : null)))));
  proc.on('error', () => undefined);
  const pid = proc.pid;
  const stop = async (graceMs = 30_000): Promise<number | null> => {
    if (exitCode !== undefined || pid === undefined) return exitCode ?? null;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  const deadline = Date.now() + (o.startTimeoutMs ?? 30_000);
  while (Date.now() < deadline && exitCode === undefined && pid !== undefined && alive(pid)) {
    const log = fs.readFileSync(o.logFile, 'utf8');
    for (const line of log.split('\n')) {
      if (!line.includes('"mailseal serving LMTP"')) continue;
      const ev = JSON.parse(line) as { listen: string[]; sealing: string };
      const listen = ev.listen[0]!;
      return { pid, port: Number(listen.slice(listen.lastIndexOf(':') + 1)), sealing: ev.sealing, stop };
    }
    await sleep(50);
  }
  await stop(1000);
  const tail = fs.readFileSync(o.logFile, 'utf8').split('\n').slice(-15).join('\n');
  throw new Error(`the agent did not start (exit ${exitCode ?? 'none'}):\n${tail}`);
}
