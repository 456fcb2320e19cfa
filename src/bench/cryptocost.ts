// The fixed crypto cost of one message (issue 6: ≤ 2 ms CPU on secp521r1): seal N empty messages
// in-process through src/mailcrypt (ephemeral key + ECDH, PBKDF2, check hash, header, GCM tag),
// once through the system libcrypto and once through node:crypto. Each path runs in its own
// worker thread, whose environment (MAILSEAL_NATIVE) picks the path as it does in the agent.

import { Worker } from 'node:worker_threads';
import { workerBoot } from '../workerboot.ts';

export interface CryptoCost {
  curve: string;
  /** The path asked for. */
  path: 'native' | 'node';
  /** The library that actually did the EC work (node:crypto if libcrypto.so.3 did not load). */
  library: string;
  ops: number;
  /** CPU milliseconds per message (all threads of the process). */
  cpuMs: number;
  /** Wall milliseconds per message, one at a time. */
  wallMs: number;
}

/** Worker bootstrap: cryptocost-worker.js, or the .ts under tsx. */
const BOOT = workerBoot(import.meta.url, 'cryptocost-worker');

/** Seal up to `ops` empty messages (at most `seconds`) on `curve` through one EC path. */
export function measureCryptoCost(curve: string, path: 'native' | 'node', ops: number, seconds: number): Promise<CryptoCost> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (path === 'node') env.MAILSEAL_NATIVE = '0';
  else delete env.MAILSEAL_NATIVE;
  return new Promise((resolve, reject) => {
    const w = new Worker(BOOT, { eval: true, env, workerData: { curve, ops, seconds } });
    let done = false;
    w.once('message', (m: { library: string; n: number; cpuMs: number; wallMs: number }) => {
      done = true;
      resolve({ curve, path, library: m.library, ops: m.n, cpuMs: m.cpuMs, wallMs: m.wallMs });
      void w.terminate();
    });
    w.once('error', reject);
    w.once('exit', (code) => {
      if (!done) reject(new Error(`crypto cost worker exited with ${code}`));
    });
  });
}
