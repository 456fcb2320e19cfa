// Small stream helpers for tests.

import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** A Writable that keeps what it is given. */
export class Collect extends Writable {
  private chunks: Buffer[] = [];
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.chunks.push(chunk);
    cb();
  }
  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Run `input` through the transforms and return the output bytes. */
export async function through(input: Buffer | Buffer[], ...transforms: NodeJS.ReadWriteStream[]): Promise<Buffer> {
  const out = new Collect();
  await pipeline([Readable.from(Array.isArray(input) ? input : [input]), ...transforms, out]);
  return out.data;
}
