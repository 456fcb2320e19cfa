// LMTP delivers CRLF; Dovecot stores LF (spec §8). This converts CRLF to LF on the fly and
// counts what the Maildir file name needs: S = stored (LF) size, W = size with CRLF.

/** Stateful CRLF → LF converter; feed chunks in order, then call `end()`. */
export class LfConverter {
  /** Bytes produced so far (the stored size, S=). */
  size = 0;
  /** Line feeds produced so far; W = size + lines. */
  lines = 0;
  private cr = false; // the previous chunk ended in CR

  /** Convert one chunk. A trailing CR is held back until the next chunk shows what follows. */
  push(chunk: Buffer): Buffer {
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
    let at = buf.indexOf(10);
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
