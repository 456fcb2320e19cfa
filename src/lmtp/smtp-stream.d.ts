// smtp-server's DATA/command parser (exported as smtp-server/lib/smtp-stream.js, untyped): the
// parts datascan.ts replaces and relies on.
declare module 'smtp-server/lib/smtp-stream.js' {
  import type { PassThrough, Writable } from 'node:stream';

  export class SMTPStream extends Writable {
    constructor(options?: { maxCommandLength?: number });
    oncommand: (command: Buffer, callback?: () => void) => void;
    startDataMode(maxBytes?: number): PassThrough & { byteLength: number; sizeExceeded: boolean };
    continue(): void;
    dataBytes: number;
    _dataStream: PassThrough | null;
    _lastBytes: Buffer | false;
    _atDataStart: boolean;
    _countDataBytes(len: number): void;
    _endDataMode(chunk: Buffer | false, remainder: Buffer, done: (err?: Error) => void): void;
    _feedDataStream(chunk: Buffer, done: (err?: Error) => void): void;
  }
}
