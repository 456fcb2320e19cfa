// Worker thread body for cryptocost.ts: seal `ops` empty messages one after another on one curve,
// through whichever EC path this thread's environment selects, and report the cost per message.

import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { type EcPublicKey, generateKey, publicOnly } from '../mailcrypt/keys.ts';
import { nativeSeal } from '../mailcrypt/native.ts';
import { makeSealParams, Sealer } from '../mailcrypt/seal.ts';

const { curve, ops, seconds } = workerData as { curve: string; ops: number; seconds: number };

async function sealEmpty(to: EcPublicKey): Promise<number> {
  const sealer = new Sealer(await makeSealParams(to));
  return sealer.header.length + sealer.final().length;
}

const to = publicOnly(await generateKey(curve));
for (let i = 0; i < 5; i++) await sealEmpty(to); // load libraries, warm the JIT
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let n = 0;
// One at a time: the process is otherwise idle, so its CPU time is this work's (threadpool included).
while (n < ops && performance.now() - t0 < seconds * 1000) {
  await sealEmpty(to);
  n++;
}
const wall = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
parentPort!.postMessage({
  library: nativeSeal()?.description ?? 'node:crypto',
  n,
  cpuMs: (cpu.user + cpu.system) / 1000 / n,
  wallMs: wall / n,
});
