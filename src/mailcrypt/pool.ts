// A small pool of worker threads for the per-message key wrapping (makeSealParams), so that the
// EC work of every delivery runs beside the event loop and on every core. Requests go round-robin;
// each worker serves many at once (its keygen and PBKDF2 use libuv's threadpool).

import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { MailsealError } from '../errors.ts';
import type { EcPublicKey } from './keys.ts';
import type { SealParams } from './seal.ts';

interface Pending {
  resolve: (p: SealParams) => void;
  reject: (e: Error) => void;
}

/** Worker bootstrap: register tsx (as bin/mailseal.js does), then load the TypeScript body. */
const BOOT = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
  `.then((m) => { m.register(); return import(${JSON.stringify(new URL('./seal-worker.ts', import.meta.url).href)}); })`;

export class SealPool {
  private workers: Worker[] = [];
  private pending = new Map<number, Pending & { slot: number }>();
  private next = 0;
  private seq = 0;
  private closed = false;

  constructor(size = Math.max(1, os.availableParallelism())) {
    for (let i = 0; i < size; i++) this.workers.push(this.spawn(i));
  }

  /** Start the worker of one slot; if it dies, its requests fail (→ 451) and it is replaced. */
  private spawn(slot: number): Worker {
    const w = new Worker(BOOT, { eval: true });
    w.unref();
    w.on('message', (m: { id: number; header?: Uint8Array; kd?: Uint8Array; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new MailsealError('internal', `sealing failed: ${m.error}`));
      else p.resolve({ header: Buffer.from(m.header!), kd: Buffer.from(m.kd!) });
    });
    w.on('exit', () => {
      for (const [id, p] of this.pending) {
        if (p.slot !== slot) continue;
        this.pending.delete(id);
        p.reject(new MailsealError('internal', 'seal worker exited'));
      }
      if (!this.closed) this.workers[slot] = this.spawn(slot);
    });
    w.on('error', () => undefined); // 'exit' follows and does the work
    return w;
  }

  /** makeSealParams(to), computed in a worker. */
  seal(to: EcPublicKey): Promise<SealParams> {
    const id = ++this.seq;
    const slot = this.next++ % this.workers.length;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, slot });
      this.workers[slot]!.postMessage({ id, curve: to.curve.name, point: to.point });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
