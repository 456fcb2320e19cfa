// Starting and watching the private daemons `mailseal bench` runs (and the test harnesses reuse):
// free loopback ports, a daemonising master started with its stderr in a file, and waiting for
// a listener's greeting.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Distinct ports the OS hands out for listen(0) on 127.0.0.1; freed again before returning. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/**
 * Run a daemonising command (`dovecot -c CONF`): the master keeps the stderr it was given, so a
 * pipe would never close. Its stderr goes to `errFile`; resolves when the process we started
 * exits (the daemon lives on), with its exit code (128 + signal if killed) and that stderr.
 */
export function startDaemon(bin: string, args: string[], errFile: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const fd = fs.openSync(errFile, 'w');
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', fd] });
    fs.closeSync(fd);
    const read = () => fs.readFileSync(errFile, 'utf8');
    child.on('error', (e) => resolve({ code: 127, stderr: e.message }));
    child.on('exit', (code, signal) => resolve({ code: code ?? 128 + (signal ? os.constants.signals[signal] : 0), stderr: read() }));
  });
}

/**
 * Resolve once `port` on 127.0.0.1 accepts a connection and sends a line starting with `expect`.
 * @throws after `deadline` (ms since the epoch), with the last thing seen
 */
export async function waitGreeting(port: number, expect: string, deadline: number): Promise<void> {
  let last = '';
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      let buf = '';
      const done = (v: boolean) => {
        sock.destroy();
        resolve(v);
      };
      sock.setTimeout(2000, () => done(false));
      sock.on('error', (e) => {
        last = e.message;
        done(false);
      });
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        if (buf.includes('\n')) {
          last = buf.trim();
          done(buf.startsWith(expect));
        }
      });
      sock.on('close', () => done(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${port} never greeted with "${expect}" (last: ${last})`);
}
