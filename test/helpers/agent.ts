// Run the real agent (`bin/mailseal.js serve`) as a child process on a throw-away mail root and
// user database, for end-to-end tests; and the CLI for one-shot commands.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO } from './vectors.ts';

export const BIN = path.join(REPO, 'bin', 'mailseal.js');

export interface Sandbox {
  dir: string;
  maildir: string;
  db: string;
  env: NodeJS.ProcessEnv;
  cleanup(): void;
}

/** A fresh temp dir with `maildir/` and `keys/mailseal.db` paths (short, for socket paths). */
export function sandbox(prefix = 'ms-'): Sandbox {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  const maildir = path.join(dir, 'maildir');
  const db = path.join(dir, 'keys', 'mailseal.db');
  fs.mkdirSync(maildir, { recursive: true });
  const env = { ...process.env, MAILSEAL_MAILDIR: maildir, MAILSEAL_DB: db };
  return { dir, maildir, db, env, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Run `mailseal ARGS` with `input` on stdin. */
export function cli(sb: Sandbox, args: string[], input = ''): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: sb.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    p.stdin.end(input);
  });
}

/** `mailseal user add` with the password on stdin. */
export async function addUser(sb: Sandbox, address: string, password: string, curve = 'prime256v1', extra: string[] = []): Promise<void> {
  const r = await cli(sb, ['user', 'add', address, '--curve', curve, '--password-stdin', ...extra], `${password}\n`);
  if (r.code !== 0) throw new Error(`user add ${address} failed: ${r.stderr}`);
}

export interface Agent {
  port: number;
  proc: ChildProcess;
  /** Everything the agent logged so far (JSON lines). */
  log(): string;
  /** Parsed log lines. */
  events(): Record<string, unknown>[];
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

/** Start `mailseal serve` on a free loopback port; resolves once it listens. */
export function startAgent(sb: Sandbox, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Agent> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', ...args], {
      env: { ...sb.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    let started = false;
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    const events = () => log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`agent did not start:\n${log}`));
    }, 20_000);
    const onData = (d: Buffer) => {
      log += d.toString();
      if (started) return;
      const ev = events().find((e) => e.msg === 'mailseal serving LMTP');
      if (!ev) return;
      started = true;
      clearTimeout(timer);
      const listen = (ev.listen as string[])[0]!;
      resolve({
        port: Number(listen.slice(listen.lastIndexOf(':') + 1)),
        proc,
        log: () => log,
        events,
        stop: async () => {
          proc.kill('SIGTERM');
          return exited;
        },
        kill: async () => {
          proc.kill('SIGKILL');
          await exited;
        },
      });
    };
    proc.stderr!.on('data', onData);
    proc.stdout!.on('data', onData);
    proc.on('exit', (code) => {
      if (!started) {
        clearTimeout(timer);
        reject(new Error(`agent exited with ${code}:\n${log}`));
      }
    });
  });
}

/**
 * `swaks --protocol LMTP` against the agent (`server` is `host:port` or a socket path) with
 * `input` as the whole message on stdin (`--data -`) if given. Resolves with the transcript;
 * never rejects on a non-zero exit (a 4xx/5xx is what some tests want).
 */
export function swaksLmtp(server: string, args: string[], input?: Buffer): Promise<string> {
  const target = server.startsWith('/') ? ['--socket', server] : ['--server', server];
  const all = ['--protocol', 'LMTP', ...target, ...args, ...(input ? ['--data', '-'] : [])];
  return new Promise((resolve, reject) => {
    const p = spawn('swaks', all, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    p.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
    p.on('error', reject);
    p.on('close', () => resolve(out));
    p.stdin.end(input ?? '');
  });
}
