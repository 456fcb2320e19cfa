// The DATA scan of smtp-server 3.21.6, with its byte loop replaced by Buffer#indexOf.
//
// SMTPStream#_feedDataStream looks for the end of the message ("\r\n.\r\n") and for escape dots
// by testing every byte of every chunk in JavaScript: a quarter of the agent's CPU for a 1 MiB
// message (perf, `mailseal bench --cases 1MiBx4`). Only a dot after a line feed matters, so the
// copy below jumps from one "\n." to the next with indexOf (memchr speed) and runs the original
// code at each, and it emits a chunk that has no such line without first copying it behind the
// 4 bytes kept from the chunk before. Everything else — the start-of-DATA checks, the escape
// handling, backpressure, byte counting — is upstream's. It replaces the method only when the
// installed one is the exact text it was written against (a digest of its source): any other
// smtp-server keeps its own. test/lmtp/datascan.test.ts feeds both the same random dot-stuffed
// input in random chunkings and compares every byte and callback.
//
// The code below is derived from smtp-server (lib/smtp-stream.js), Copyright (c) 2015-2025
// Andris Reinman, under the MIT No Attribution license.

import crypto from 'node:crypto';
import type { PassThrough } from 'node:stream';
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
  const last = this._lastBytes;
  if (last && last.length) {
    if (!this._atDataStart && chunk.length >= 4 && !dotAfterLineFeed(last, chunk)) {
      // The usual chunk: no line in it starts with a dot. Upstream copies the kept bytes and the
      // chunk into one buffer, finds nothing, emits all but the last 4 bytes and keeps those;
      // the same here without the copy (a memmove of every chunk: 4% of the agent at 1 MiB).
      this._lastBytes = chunk.subarray(chunk.length - 4);
      this._countDataBytes(last.length + chunk.length - 4);
      return emit(dataStream, [last, chunk.subarray(0, chunk.length - 4)], done);
    }
    chunk = Buffer.concat([last, chunk], last.length + chunk.length);
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
  // emit what comes before them
  if (this._lastBytes.length < chunk.length) {
    const buf = chunk.subarray(0, chunk.length - this._lastBytes.length);
    this._countDataBytes(buf.length);
    return emit(dataStream, [buf], done);
  }
  // nothing to emit, continue with the input stream
  return done();
}

/** Write `bufs` to the data stream, then continue — after 'drain' if it asks to wait. */
function emit(dataStream: PassThrough, bufs: Buffer[], done: (err?: Error) => void): void {
  if (!dataStream.writable) return done();
  let handled = true;
  for (const b of bufs) if (b.length) handled = dataStream.write(b);
  if (handled || dataStream.destroyed) return done();
  // a stream that the application destroys never drains, it only closes
  const onDrain = () => {
    dataStream.removeListener('drain', onDrain);
    dataStream.removeListener('close', onDrain);
    done();
  };
  dataStream.once('drain', onDrain);
  dataStream.once('close', onDrain);
}

/**
 * Whether `last ‖ chunk` has a dot after a line feed where upstream's loop looks (index 2 up to
 * length − 3), without joining them.
 */
function dotAfterLineFeed(last: Buffer, chunk: Buffer): boolean {
  const len = last.length + chunk.length;
  for (let i = 2; i <= last.length && i < len - 2; i++) {
    if (last[i - 1] === 0x0a && (i < last.length ? last[i] : chunk[i - last.length]) === 0x2e) return true;
  }
  const lf = chunk.indexOf(LF_DOT);
  return lf !== -1 && lf + 1 < chunk.length - 2;
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
