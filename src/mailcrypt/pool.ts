// A small pool of worker threads for the per-message key wrapping (makeSealParams), so that the
// EC work of every delivery runs beside the event loop and on every core. Requests go round-robin;
// each worker serves many at once (its keygen and PBKDF2 use libuv's threadpool).

import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { MailsealError } from '../errors.ts';
import { workerBoot } from '../workerboot.ts';
import type { EcPublicKey } from './keys.ts';
import type { SealParams } from './seal.ts';

interface Pending {
  resolve: (p: SealParams) => void;
  reject: (e: Error) => void;
}

/** Worker bootstrap: seal-worker.js, or seal-worker.ts under tsx. */
const BOOT = workerBoot(import.meta.url, 'seal-worker');

/** Longest wait before a worker that keeps dying at start is tried again. */
const MAX_BACKOFF_MS = 30_000;

export class SealPool {
  private workers: Worker[] = [];
  private pending = new Map<number, Pending & { slot: number }>();
  private next = 0;
  private seq = 0;
  private closed = false;
  /** Per slot: did the current worker finish loading; how many in a row died before that. */
  private loaded: boolean[] = [];
  private failures: number[] = [];
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  /** `onRespawn` hears of a worker that died and when it will be replaced (for the log). */
  constructor(
    size = Math.max(1, os.availableParallelism()),
    private onRespawn?: (slot: number, delayMs: number) => void,
    /** The worker's code (eval'd); tests give one that cannot start. */
    private boot = BOOT,
  ) {
    for (let i = 0; i < size; i++) {
      this.loaded.push(false);
      this.failures.push(0);
      this.workers.push(this.spawn(i));
    }
  }

  /**
   * Resolves once every worker has loaded; rejects as soon as one dies before loading (a worker
   * that cannot start, e.g. after dropping privileges, would otherwise fail every message).
   */
  ready(): Promise<void> {
    if (this.loaded.every(Boolean)) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Start the worker of one slot; if it dies, its requests fail (→ 451) and it is replaced. */
  private spawn(slot: number): Worker {
    const w = new Worker(this.boot, { eval: true });
    w.unref();
    this.loaded[slot] = false;
    w.on('message', (m: { id: number; ready?: true; header?: Uint8Array; kd?: Uint8Array; error?: string }) => {
      if (m.ready) {
        this.loaded[slot] = true;
        this.failures[slot] = 0;
        if (this.loaded.every(Boolean)) for (const x of this.waiters.splice(0)) x.resolve();
        return;
      }
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new MailsealError('internal', `sealing failed: ${m.error}`));
      // kd over the transferred memory, not a copy: wiping it (Sealer, deliver) must reach every byte.
      else p.resolve({ header: Buffer.from(m.header!), kd: Buffer.from(m.kd!.buffer, m.kd!.byteOffset, m.kd!.byteLength) });
    });
    w.on('exit', () => {
      for (const [id, p] of this.pending) {
        if (p.slot !== slot) continue;
        this.pending.delete(id);
        p.reject(new MailsealError('internal', 'seal worker exited'));
      }
      if (this.closed) return;
      if (!this.loaded[slot]) {
        // Died while loading: tell whoever waits for ready(), and back off before the next try
        // instead of spinning a core on a worker that cannot start.
        for (const x of this.waiters.splice(0)) x.reject(new MailsealError('internal', 'a seal worker could not start'));
        const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** this.failures[slot]!);
        this.failures[slot]!++;
        this.onRespawn?.(slot, delay);
        setTimeout(() => {
          if (!this.closed) this.workers[slot] = this.spawn(slot);
        }, delay).unref();
      } else {
        this.onRespawn?.(slot, 0);
        this.workers[slot] = this.spawn(slot);
      }
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
