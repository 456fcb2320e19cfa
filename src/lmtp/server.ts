// The LMTP listener: smtp-server in LMTP mode, glue only. RCPT resolves the recipient (550 at
// RCPT for unknown users and hostile addresses); DATA hands the stream to deliver() and answers
// one reply per accepted recipient, in order (RFC 2033).

import crypto from 'node:crypto';
import fs from 'node:fs';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import { hostname } from '../config.ts';
import { deliver, type Seal, type Target } from '../deliver/deliver.ts';
import { toMailsealError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { installDataScan } from './datascan.ts';
import { installEnhancedCodes, replyError, savedText } from './replies.ts';

/** Finds where a recipient's mail goes; throws MailsealError (no-user, bad-address, …). */
export type Resolve = (rcpt: string) => Promise<Target & { user: string }>;

export interface LmtpOptions {
  resolve: Resolve;
  logger: Logger;
  maxSize: number;
  /** Key wrapping for each message (a worker pool in `serve`). */
  seal?: Seal;
  /** Name in the greeting and the Received: header. */
  name?: string;
}

export interface Listener {
  /** A new SMTPServer with the shared handlers: one per listening address. */
  add(): SMTPServer;
  /** Stop accepting; wait for transactions in flight (up to graceMs), then close the rest. */
  close(graceMs?: number): Promise<void>;
}

/** Random bytes for delivery ids, drawn 4 KiB at a time: one CSPRNG call per 341 messages. */
let idPool = Buffer.alloc(0);
let idAt = 0;

/** A short random delivery id (16 characters), like Dovecot's session ids; reveals nothing. */
function deliveryId(): string {
  if (idAt + 12 > idPool.length) {
    idPool = crypto.randomBytes(4092);
    idAt = 0;
  }
  idAt += 12;
  return idPool.toString('base64url', idAt - 12, idAt);
}

export function createLmtpServer(opts: LmtpOptions): Listener {
  installEnhancedCodes();
  installDataScan();
  const { logger, resolve } = opts;
  const name = opts.name ?? hostname();
  const targets = new WeakMap<SMTPServerAddress, Target & { user: string }>();
  let inFlight = 0;
  let idle: (() => void) | null = null;

  const servers: SMTPServer[] = [];
  const options: ConstructorParameters<typeof SMTPServer>[0] = {
    lmtp: true,
    name,
    banner: 'mailseal ready',
    size: opts.maxSize,
    rejectOversized: true,
    hideENHANCEDSTATUSCODES: false,
    hideDSN: true,
    disableReverseLookup: true,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,

    onRcptTo(address, session, cb) {
      const rcpt = address.address;
      // Postfix may name one address twice in a transaction (directly and through an alias,
      // with different original recipients) and RFC 2033 wants a reply for each. smtp-server
      // folds a repeated address into its first envelope entry and would then send one reply
      // too few: keep a copy of the first entry in the envelope, so every count is right, and
      // store the message once (onData).
      const first = session.envelope.rcptTo.find((a) => a.address.toLowerCase() === rcpt.toLowerCase());
      resolve(rcpt).then(
        (t) => {
          targets.set(address, t);
          if (first) {
            const copy = { ...first };
            targets.set(copy, t);
            session.envelope.rcptTo.push(copy);
          }
          cb();
        },
        (err) => {
          const e = toMailsealError(err);
          if (e.code === 'internal') logger.error({ rcpt, err }, 'recipient lookup failed');
          else logger.info({ rcpt, reply: e.responseCode, reason: e.message }, 'recipient refused');
          const text = e.code === 'no-user' ? `<${rcpt}> User doesn't exist` : `<${rcpt}> ${e.message}`;
          cb(replyError(e, text));
        },
      );
    },

    onData(stream, session, cb) {
      inFlight++;
      const started = performance.now();
      const id = deliveryId();
      const rcpts = session.envelope.rcptTo;
      // One delivery per distinct address; a repeated address gets the same reply again.
      const slot = new Map<string, number>();
      const list: (Target & { user: string })[] = [];
      const which = rcpts.map((a) => {
        const key = a.address.toLowerCase();
        let i = slot.get(key);
        if (i === undefined) {
          i = list.push(targets.get(a)!) - 1;
          slot.set(key, i);
        }
        return i;
      });
      const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
      deliver({
        source: stream,
        targets: list,
        seal: opts.seal,
        trace: { from, helo: session.hostNameAppearsAs ?? '', remoteAddress: session.remoteAddress, host: name, id },
      })
        .then((unique) => {
          const ms = Math.round(performance.now() - started);
          const replies = which.map((u, i) => {
            const r = unique[u]!;
            const rcpt = rcpts[i]!.address;
            if (r.ok) {
              logger.info({ id, cid: session.id, from, rcpt, size: r.size, result: 250, ms }, 'delivered');
              return savedText(rcpt, id);
            }
            const e = r.error;
            const log = { id, cid: session.id, from, rcpt, result: e.responseCode, reason: e.message, ms };
            if (e.code === 'internal') logger.error({ ...log, err: e.cause ?? e }, 'delivery failed');
            else logger.warn(log, 'delivery failed');
            const text = e.code === 'internal' ? `<${rcpt}> internal error, delivery id ${id}` : `<${rcpt}> ${e.message}`;
            return replyError(e, text);
          });
          cb(null, replies as unknown as string);
        })
        .finally(() => {
          inFlight--;
          if (inFlight === 0 && idle) idle();
        });
    },
  };

  return {
    add() {
      const server = new SMTPServer(options);
      server.on('error', (err) => logger.error({ err }, 'LMTP server error'));
      netServer(server).on('connection', coalesceWrites);
      servers.push(server);
      return server;
    },
    close(graceMs = 30_000) {
      return new Promise<void>((resolveClose) => {
        const done = () => {
          clearTimeout(timer);
          let left = servers.length;
          if (left === 0) resolveClose();
          for (const s of servers) s.close(() => --left === 0 && resolveClose());
        };
        const timer = setTimeout(done, graceMs);
        // Stop accepting new connections now; SMTPServer.close() waits for idle clients to leave.
        for (const s of servers) netServer(s).close();
        if (inFlight === 0) done();
        else idle = done;
      });
    },
  };
}

/**
 * The replies a client's pipelined commands get in one turn of the event loop (250 to MAIL and
 * each RCPT, 354 to DATA) go out in one write instead of one system call each: the first write
 * of a turn corks the socket, the check phase after the turn's I/O uncorks it.
 */
function coalesceWrites(sock: import('node:net').Socket): void {
  const write = sock.write;
  let corked = false;
  sock.write = function (this: import('node:net').Socket, ...args: Parameters<typeof write>) {
    if (!corked) {
      corked = true;
      this.cork();
      setImmediate(() => {
        corked = false;
        this.uncork();
      });
    }
    return write.apply(this, args);
  } as typeof write;
}

function netServer(s: SMTPServer): import('node:net').Server {
  return (s as unknown as { server: import('node:net').Server }).server;
}

/** Listen on TCP. */
export function listenTcp(l: Listener, host: string, port: number): Promise<{ host: string; port: number }> {
  const server = l.add();
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = netServer(server).address();
      resolve(typeof a === 'object' && a ? { host: a.address, port: a.port } : { host, port });
    });
  });
}

/** Listen on a unix socket with the mode (and group) Postfix needs; a stale socket is replaced. */
export async function listenSocket(l: Listener, path: string, mode: number, gid?: number): Promise<void> {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch {
    // no old socket
  }
  const server = l.add();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (gid !== undefined) fs.chownSync(path, -1, gid);
  fs.chmodSync(path, mode);
}

export type { SMTPServerSession };
