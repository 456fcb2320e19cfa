// The DATA scan of smtp-server 3.21.6, with its byte loop replaced by Buffer#indexOf.
//
// SMTPStream#_feedDataStream looks for the end of the message ("\r\n.\r\n") and for escape dots
// by testing every byte of every chunk in JavaScript: a quarter of the agent's CPU for a 1 MiB
// message (perf, `mailseal bench --cases 1MiBx4`). Only a dot after a line feed matters, so the
// copy below jumps from one "\n." to the next with indexOf (memchr speed) and runs the original
// code at each; everything else — the carried-over last bytes, the start-of-DATA checks, the
// escape handling, backpressure, byte counting — is upstream's, line for line. It replaces the
// method only when the installed one is the exact text it was written against (a digest of its
// source): any other smtp-server keeps its own. test/lmtp/datascan.test.ts feeds both the same
// random dot-stuffed input in random chunkings and compares every byte and callback.
//
// The code below is derived from smtp-server (lib/smtp-stream.js), Copyright (c) 2015-2025
// Andris Reinman, under the MIT No Attribution license.

import crypto from 'node:crypto';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

/** sha256 of SMTPStream.prototype._feedDataStream.toString() in smtp-server 3.21.6. */
const UPSTREAM_SHA256 = '9d8b903f9a3a63542d72e19a9e2f67009a3b1107a28d57e8e7369355454ff230';

const END_SEQUENCE = Buffer.from('\r\n.\r\n');
const DOT_CRLF = Buffer.from('.\r\n');
const LF_DOT = Buffer.from('\n.');

export const upstreamFeedDataStream = SMTPStream.prototype._feedDataStream;

/** Processes a chunk in data mode: escape dots are removed and the final dot ends the data mode. */
export function feedDataStream(this: SMTPStream, chunk: Buffer, done: (err?: Error) => void): void {
  // only called in data mode, which always has a stream
  const dataStream = this._dataStream!;
  if (this._lastBytes && this._lastBytes.length) {
    chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length);
    this._lastBytes = false;
  }
  let len = chunk.length;
  // Does the data start with the end terminator? (Only while no payload byte has been consumed:
  // see upstream on why this must not test dataBytes.)
  if (this._atDataStart && len >= 3 && Buffer.compare(chunk.subarray(0, 3), DOT_CRLF) === 0) {
    this._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  // an escape dot as the first byte
  if (this._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
    chunk = chunk.subarray(1);
    len--;
    this._atDataStart = false;
  }
  // Upstream: for (i = 2; i < len - 2; i++) if (chunk[i] === 0x2e && chunk[i - 1] === 0x0a) {…}.
  // Here: the same i, found as the dot of each "\n." at or after index 1.
  for (let lf = chunk.indexOf(LF_DOT, 1); lf !== -1 && lf + 1 < len - 2; lf = chunk.indexOf(LF_DOT, lf + 1)) {
    const i = lf + 1;
    // the terminator: everything before it, with the CRLF that ends the last line, is content
    if (Buffer.compare(chunk.subarray(i - 2, i + 3), END_SEQUENCE) === 0) {
      const buf = chunk.subarray(0, i);
      this._countDataBytes(buf.length);
      this._endDataMode(buf, chunk.subarray(i + 3), done);
      return;
    }
    // an escape dot: emit what came before it and go on after it
    if (chunk[i + 1] === 0x2e) {
      const buf = chunk.subarray(0, i);
      this._lastBytes = false;
      this._countDataBytes(buf.length);
      if (dataStream.writable) dataStream.write(buf);
      const rest = chunk.subarray(i + 1);
      setImmediate(() => this._feedDataStream(rest, done));
      return;
    }
  }
  // keep the last bytes
  this._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4);
  // emit what comes before them, stopping for backpressure
  if (this._lastBytes.length < chunk.length) {
    const buf = chunk.subarray(0, chunk.length - this._lastBytes.length);
    this._countDataBytes(buf.length);
    if (dataStream.writable) {
      const handled = dataStream.write(buf);
      if (!handled && !dataStream.destroyed) {
        // a stream that the application destroys never drains, it only closes
        const onDrain = () => {
          dataStream.removeListener('drain', onDrain);
          dataStream.removeListener('close', onDrain);
          done();
        };
        dataStream.once('drain', onDrain);
        dataStream.once('close', onDrain);
      } else {
        return done();
      }
    } else {
      return done();
    }
  } else {
    // nothing to emit, continue with the input stream
    return done();
  }
}

/** Whether the installed smtp-server's DATA scan is the one feedDataStream was derived from. */
export function upstreamMatches(): boolean {
  const text = upstreamFeedDataStream.toString();
  return crypto.createHash('sha256').update(text).digest('hex') === UPSTREAM_SHA256;
}

/**
 * Install the indexOf scan (once; idempotent). Returns whether it is in place: false when
 * smtp-server is not the version it was written for (its own scan then stays).
 */
export function installDataScan(): boolean {
  if (SMTPStream.prototype._feedDataStream === feedDataStream) return true;
  if (!upstreamMatches()) return false;
  SMTPStream.prototype._feedDataStream = feedDataStream;
  return true;
}
