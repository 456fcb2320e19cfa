// The LMTP listener: smtp-server in LMTP mode, glue only. RCPT resolves the recipient (550 at
// RCPT for unknown users and hostile addresses); DATA hands the stream to deliver() and answers
// one reply per accepted recipient, in order (RFC 2033).

import crypto from 'node:crypto';
import fs from 'node:fs';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import { hostname } from '../config.ts';
import { deliver, type Seal, type Target } from '../deliver/deliver.ts';
import { MailsealError, toMailsealError } from '../errors.ts';
import type { Logger } from '../log.ts';
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

/** A short unique delivery id, like Dovecot's session ids. */
function deliveryId(): string {
  return crypto.randomBytes(12).toString('base64url');
}

export function createLmtpServer(opts: LmtpOptions): Listener {
  installEnhancedCodes();
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
      if (session.envelope.rcptTo.some((a) => a.address.toLowerCase() === rcpt.toLowerCase())) {
        // smtp-server would merge the two, and the client would then wait for a reply that
        // never comes after DATA. Refuse the repeat; the first one is still delivered.
        return cb(replyError(new MailsealError('bad-address', 'duplicate'), `<${rcpt}> duplicate recipient`));
      }
      resolve(rcpt).then(
        (t) => {
          targets.set(address, t);
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
      const list = rcpts.map((a) => targets.get(a)!);
      const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
      deliver({
        source: stream,
        targets: list,
        seal: opts.seal,
        trace: { from, helo: session.hostNameAppearsAs ?? '', remoteAddress: session.remoteAddress, host: name, id },
      })
        .then((results) => {
          const ms = Math.round(performance.now() - started);
          const replies = results.map((r, i) => {
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
