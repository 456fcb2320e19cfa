// One DATA stream → one sealed Maildir file per recipient (design.md "The data path").
// The body is read once, converted CRLF → LF once, and fanned out to one encrypting writer per
// recipient; every write is awaited, so the slowest writer sets the pace (backpressure) and
// memory stays bounded by the chunk size times the number of recipients. Nothing but
// ciphertext reaches the disk. Each recipient gets its own result: one failing writer (no key,
// disk full) does not stop the others.

import type { Readable } from 'node:stream';
import { MailsealError, toMailsealError } from '../errors.ts';
import type { EcPublicKey } from '../mailcrypt/keys.ts';
import { nativeSeal, type Probe, type ProbePaths } from '../mailcrypt/native.ts';
import { makeSealParams, type SealParams, Sealer } from '../mailcrypt/seal.ts';
import { MaildirWriter } from '../maildir/writer.ts';
import { LfConverter } from './lf.ts';
import { type TraceInfo, traceHeaders } from './trace.ts';

/** Where one recipient's copy goes. */
export interface Target {
  /** Recipient as given in RCPT TO. */
  rcpt: string;
  /** The Maildir folder directory (holds cur/ new/ tmp/). */
  folder: string;
  /**
   * Resolves the folder's active public key (creating it if needed); with a probe, from the
   * files as the probe read them instead of reading them itself.
   */
  key: (probe?: Probe | null) => Promise<EcPublicKey>;
  /**
   * The key `key()` resolved last time, if known, without I/O. The seal to it starts while
   * `key()` checks the dict and the folder; it is used only if `key()` gives the same key.
   */
  guess?: () => EcPublicKey | undefined;
  /** The files `key()` reads: a seal that can read them too (the native one) does, in its job. */
  probe?: ProbePaths;
}

export type Result = { ok: true; path: string; size: number; vsize: number } | { ok: false; error: MailsealError };

/** Bytes buffered per recipient before a write is issued. */
const FLUSH_AT = 256 * 1024;

class Sink {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  error: MailsealError | null = null;

  constructor(
    readonly target: Target,
    private readonly writer: MaildirWriter,
    private readonly sealer: Sealer,
    private readonly headerSize: { size: number; lines: number },
  ) {
    this.pending.push(sealer.header);
    this.pendingBytes = sealer.header.length;
  }

  static async open(target: Target, trace: Buffer, seal: Seal): Promise<Sink> {
    const params = await sealTo(target, seal);
    const writer = new MaildirWriter(target.folder);
    const sealer = new Sealer(params);
    const counter = new LfConverter();
    counter.count(trace);
    const sink = new Sink(target, writer, sealer, { size: counter.size, lines: counter.lines });
    sink.add(sealer.update(trace));
    return sink;
  }

  private add(buf: Buffer): void {
    if (buf.length === 0) return;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
  }

  /** Encrypt a plaintext chunk (at once: `plain` may be reused after); write when enough has gathered. */
  async write(plain: Buffer): Promise<void> {
    this.add(this.sealer.update(plain));
    if (this.pendingBytes >= FLUSH_AT) await this.flush();
  }

  /**
   * Hand what has gathered to the writer without waiting for it: the next chunks are taken in
   * and enciphered while it is written (an O_DIRECT write waits for the device). The writer has
   * at most one write in flight: this waits for the previous one first (its error surfaces here,
   * as it does at the writer's commit and is ignored by its abort), so at most two batches are
   * held.
   */
  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    await this.writer.settled();
    const bufs = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.writer.write(bufs).catch(() => undefined); // seen by settled(), commit() or abort()
  }

  async commit(body: LfConverter): Promise<Result> {
    this.add(this.sealer.final());
    // What is still buffered goes with the commit: a small message is one durable write.
    const tail = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    const size = this.headerSize.size + body.size;
    const vsize = size + this.headerSize.lines + body.lines;
    const path = await this.writer.commit(size, vsize, tail);
    return { ok: true, path, size, vsize };
  }

  async abort(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    await this.writer.abort();
  }
}

/**
 * Makes a message key and header for a folder key (in-process, or a worker pool's). With
 * `probe`, a seal that can (the native one) also reads those files for the key lookup, in the
 * same threadpool job, and returns what it found as `probe`.
 */
export type Seal = ((to: EcPublicKey, probe?: ProbePaths) => Promise<SealParams>) & {
  /** It does read them (the native seal): the lookup then waits for its reads instead of reading. */
  readsProbe?: boolean;
};

/** A Seal through makeSealParams on this thread: the native path, which reads probes, where it is built. */
export function sealHere(): Seal {
  return Object.assign((to: EcPublicKey, probe?: ProbePaths) => makeSealParams(to, { probe }), { readsProbe: nativeSeal() !== null });
}

/**
 * A message key sealed to the target's active key. With a guess (the key of the last delivery to
 * the folder), the seal starts at once, and the files the lookup checks are read in the seal's
 * own job after it (where the seal can: one job for both, instead of three); else beside it. If
 * the lookup finds another key (rotated, or a re-created folder), the guessed seal's key material
 * is wiped unused and the seal is made again to the right key; if the lookup fails, so does the
 * delivery, as without a guess.
 */
async function sealTo(target: Target, seal: Seal): Promise<SealParams> {
  const guess = target.guess?.();
  const probing = !!(guess && target.probe && seal.readsProbe);
  const early = guess ? seal(guess, probing ? target.probe : undefined) : null;
  // A rejection that comes before the lookup's answer must not count as unhandled (Node would
  // end the process); whoever uses `early` still gets it.
  early?.catch(() => undefined);
  const discard = () => early?.then((p) => p.kd.fill(0), () => undefined);
  let key: EcPublicKey;
  try {
    // Without a probe (a seal that does not read, or a failed read) the lookup reads for itself.
    const probe = probing ? await early!.then((p) => p.probe, () => undefined) : undefined;
    key = await target.key(probe);
  } catch (err) {
    discard();
    throw err;
  }
  if (early && guess!.id === key.id) return early;
  discard();
  return seal(key);
}

export interface DeliveryInput {
  source: Readable & { sizeExceeded?: boolean };
  targets: Target[];
  trace: Omit<TraceInfo, 'rcpt'>;
  /** Default: makeSealParams on this thread (the native path where it is built). */
  seal?: Seal;
}

/**
 * Deliver one message to every target. Resolves with one result per target, in order; never
 * rejects. A source error (client gone) or an oversized message fails every target and leaves
 * no file behind.
 */
export async function deliver(input: DeliveryInput): Promise<Result[]> {
  const { source, targets } = input;
  const results: (Result | null)[] = targets.map(() => null);
  const opened = await Promise.all(
    targets.map((t, i) =>
      Sink.open(t, traceHeaders({ ...input.trace, rcpt: t.rcpt }), input.seal ?? sealHere()).catch((err) => {
        results[i] = { ok: false, error: toMailsealError(err) };
        return null;
      }),
    ),
  );
  const live = new Set<Sink>(opened.filter((s): s is Sink => s !== null));
  const fail = async (sink: Sink, err: unknown) => {
    sink.error = toMailsealError(err);
    live.delete(sink);
    await sink.abort();
  };
  const lf = new LfConverter();
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (source.sizeExceeded) throw new MailsealError('too-big', 'message exceeds the size limit');
      const out = lf.push(chunk);
      if (out.length === 0 || live.size === 0) continue;
      await Promise.all([...live].map((s) => s.write(out).catch((err) => fail(s, err))));
    }
    if (source.sizeExceeded) throw new MailsealError('too-big', 'message exceeds the size limit');
    const tail = lf.end();
    if (tail.length) await Promise.all([...live].map((s) => s.write(tail).catch((err) => fail(s, err))));
  } catch (err) {
    // Nothing of this message may stay: abort every writer and drain what is left.
    const e = toMailsealError(err);
    await Promise.all([...live].map((s) => fail(s, e)));
    source.resume();
  }
  await Promise.all(
    opened.map(async (sink, i) => {
      if (!sink) return;
      if (sink.error) {
        results[i] = { ok: false, error: sink.error };
        return;
      }
      try {
        results[i] = await sink.commit(lf);
      } catch (err) {
        await sink.abort();
        results[i] = { ok: false, error: toMailsealError(err) };
      }
    }),
  );
  return results.map((r) => r ?? { ok: false, error: new MailsealError('internal', 'no result') });
}
