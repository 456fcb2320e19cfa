// LMTP delivers CRLF; Dovecot stores LF (spec §8). This converts CRLF to LF on the fly and
// counts what the Maildir file name needs: S = stored (LF) size, W = size with CRLF. The native
// addon does the conversion where it is built (src/native/lf.c); this file has the same in
// TypeScript for where it is not.

import { type Addon, nativeAddon } from '../mailcrypt/native.ts';

/** Stateful CRLF → LF converter; feed chunks in order, then call `end()`. */
export class LfConverter {
  /** Bytes produced so far (the stored size, S=). */
  size = 0;
  /** Line feeds produced so far; W = size + lines. */
  lines = 0;
  private cr = false; // the previous chunk ended in CR
  private readonly native: Addon['lfConvert'] | null;
  /** [held CR (0/1), LFs of the last chunk]: shared with the native converter. */
  private readonly state = new Float64Array(2);
  /** Reused output of the native converter. */
  private scratch = Buffer.alloc(0);

  /** `portable`: the TypeScript converter even where the native addon is built (tests). */
  constructor(portable = false) {
    this.native = portable ? null : (nativeAddon()?.lfConvert ?? null);
  }

  /**
   * Convert one chunk. A trailing CR is held back until the next chunk shows what follows.
   * The result is only valid until the next push(): use (encrypt) it before.
   */
  push(chunk: Buffer): Buffer {
    if (this.native) {
      // One pass of memchr/memcpy in the addon instead of a few native calls per line, into a
      // buffer that is reused (no allocation per chunk: less garbage for large messages).
      this.state[0] = this.cr ? 1 : 0;
      if (this.scratch.length < chunk.length + 1) this.scratch = Buffer.allocUnsafe(Math.max(chunk.length + 1, 64 * 1024));
      const out = this.scratch;
      const n = this.native(chunk, out, this.state);
      this.cr = this.state[0] === 1;
      this.size += n;
      this.lines += this.state[1]!;
      return out.subarray(0, n);
    }
    let src = chunk;
    if (this.cr) {
      src = Buffer.concat([Buffer.from([13]), chunk]);
      this.cr = false;
    }
    let end = src.length;
    if (end > 0 && src[end - 1] === 13) {
      this.cr = true;
      end--;
    }
    let out: Buffer;
    let at = src.indexOf('\r\n');
    if (at < 0 || at >= end) {
      out = src.subarray(0, end);
    } else {
      out = Buffer.allocUnsafe(end);
      let o = 0;
      let from = 0;
      while (at >= 0 && at < end) {
        o += src.copy(out, o, from, at);
        from = at + 1; // drop the CR, keep the LF
        at = src.indexOf('\r\n', from);
      }
      o += src.copy(out, o, from, end);
      out = out.subarray(0, o);
    }
    this.count(out);
    return out;
  }

  /** Whatever was held back (a final lone CR). */
  end(): Buffer {
    if (!this.cr) return Buffer.alloc(0);
    this.cr = false;
    const out = Buffer.from([13]);
    this.count(out);
    return out;
  }

  /** Count bytes that are added verbatim (already LF), e.g. our trace headers. */
  count(buf: Buffer): void {
    this.size += buf.length;
    let at = buf.indexOf(10); // a number needle: no string conversion per call
    while (at >= 0) {
      this.lines++;
      at = buf.indexOf(10, at + 1);
    }
  }

  /** The CRLF size (W=). */
  get vsize(): number {
    return this.size + this.lines;
  }
}
