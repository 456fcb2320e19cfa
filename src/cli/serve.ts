// `mailseal serve` (= `npm start`): the LMTP delivery agent.

import { type Command, Option } from 'commander';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { type Db, openDb } from '../accounts/db.ts';
import { DEFAULTS, parseListen } from '../config.ts';
import { type Seal, sealHere } from '../deliver/deliver.ts';
import { createResolver } from '../deliver/recipient.ts';
import { MailsealError } from '../errors.ts';
import { installDataScan } from '../lmtp/datascan.ts';
import { createLmtpServer, listenSocket, listenTcp } from '../lmtp/server.ts';
import { createLogger } from '../log.ts';
import { sweepTmp } from '../maildir/sweep.ts';
import { FolderKeys } from '../store/folderkeys.ts';
import { SealPool } from '../mailcrypt/pool.ts';
import { nativeSeal, nativeStatus } from '../mailcrypt/native.ts';
import { globals } from './common.ts';

interface ServeOptions {
  listen: string;
  socket?: string;
  socketMode: string;
  socketGroup?: string;
  maxSize: string;
  recipientDelimiter: string;
  user?: string;
  logLevel: string;
}

/** uid/gid of a system user or group name (or number). */
function lookupId(kind: 'user' | 'group', name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  try {
    const line = execFileSync('getent', [kind === 'user' ? 'passwd' : 'group', name], { encoding: 'utf8' });
    return Number(line.split(':')[2]);
  } catch {
    throw new MailsealError('usage', `no such ${kind}: ${name}`);
  }
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the LMTP delivery agent')
    .addOption(new Option('--listen <host:port>', 'LMTP on TCP ("" for none)').env('MAILSEAL_LISTEN').default(DEFAULTS.listen))
    .addOption(new Option('--socket <path>', 'LMTP on a unix socket too').env('MAILSEAL_SOCKET'))
    .addOption(new Option('--socket-mode <octal>', 'mode of the unix socket').env('MAILSEAL_SOCKET_MODE').default(DEFAULTS.socketMode))
    .addOption(new Option('--socket-group <group>', 'group of the unix socket (e.g. postfix)').env('MAILSEAL_SOCKET_GROUP'))
    .addOption(new Option('--max-size <bytes>', 'largest message accepted').env('MAILSEAL_MAX_SIZE').default(String(DEFAULTS.maxSize)))
    .addOption(new Option('--recipient-delimiter <c>', 'user+detail delimiter ("" = off)').env('MAILSEAL_RECIPIENT_DELIMITER').default(DEFAULTS.recipientDelimiter))
    .addOption(new Option('--user <name>', 'when started as root, run as this mail user after binding').env('MAILSEAL_USER'))
    .addOption(new Option('--log-level <level>', 'fatal, error, warn, info, debug').env('MAILSEAL_LOG_LEVEL').default(DEFAULTS.logLevel))
    .action(async (o: ServeOptions, cmd: Command) => {
      const g = globals(cmd);
      const logger = createLogger(o.logLevel);
      const maxSize = Number(o.maxSize);
      if (!Number.isSafeInteger(maxSize) || maxSize < 1024) throw new MailsealError('usage', `--max-size must be a number of bytes ≥ 1024`);
      const asRoot = process.getuid?.() === 0;
      const uid = o.user ? lookupId('user', o.user) : undefined;
      const gid = o.user ? Number(execFileSync('id', ['-g', o.user], { encoding: 'utf8' }).trim()) : undefined;

      let db: Db = openDb(g.db);
      const keys = new FolderKeys();
      const resolve = createResolver({ db: () => db, mailRoot: g.maildir, delimiter: o.recipientDelimiter, keys });
      const swept = await sweepTmp(g.maildir);
      if (swept > 0) logger.info({ swept }, 'removed stale files from tmp/');

      // The native addon seals on libuv's threadpool; without it, node:crypto in worker threads.
      let pool: SealPool | null = null;
      if (!nativeSeal()) {
        pool = new SealPool(undefined, (slot, delayMs) => logger.error({ slot, delayMs }, 'seal worker exited; replacing it'));
        // Load the workers before listening (and before dropping privileges): an agent that
        // cannot seal must not claim to serve.
        await pool.ready().catch(async (err) => {
          await pool!.close();
          throw new MailsealError('internal', `cannot start the sealing workers (${(err as Error).message}); is TMPDIR writable?`);
        });
      }
      const seal: Seal = pool ? (to) => pool!.seal(to) : sealHere();
      const l = createLmtpServer({ resolve, logger, maxSize, seal });
      const where: string[] = [];
      if (o.listen) {
        const { host, port } = parseListen(o.listen);
        const a = await listenTcp(l, host, port);
        where.push(`${a.host}:${a.port}`);
      }
      if (o.socket) {
        const gidSock = o.socketGroup ? lookupId('group', o.socketGroup) : undefined;
        await listenSocket(l, path.resolve(o.socket), parseInt(o.socketMode, 8), gidSock);
        where.push(path.resolve(o.socket));
      }
      if (where.length === 0) throw new MailsealError('usage', 'nothing to listen on: give --listen or --socket');
      if (asRoot && uid !== undefined && gid !== undefined) {
        process.setgroups?.([gid]);
        process.setgid?.(gid);
        process.setuid?.(uid);
      } else if (asRoot) {
        logger.warn('running as root: give --user vmail (the owner of the mail store) to drop privileges');
      }
      const sealing = nativeStatus();
      const code = process.env.MAILSEAL_CODE ?? 'src';
      // the DATA scan: ours (indexOf) on the smtp-server version it was written for, else upstream's
      const dataScan = installDataScan() ? 'indexOf' : 'smtp-server';
      logger.info({ listen: where, maildir: g.maildir, db: g.db, uid: process.getuid?.(), maxSize, sealing, dataScan, code }, 'mailseal serving LMTP');

      const stop = (signal: string) => {
        logger.info({ signal }, 'shutting down: finishing transactions in flight');
        l.close(DEFAULTS.shutdownGrace * 1000).then(async () => {
          await pool?.close();
          db.close();
          logger.info('stopped');
          logger.flush();
          process.exit(0);
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      process.on('SIGHUP', () => {
        // Reopen the user database (e.g. after it was replaced) and forget cached dicts. If it
        // cannot be opened (now running as the mail user), keep serving with the old handle.
        keys.clear();
        try {
          const fresh = openDb(g.db, { readonly: true });
          const old = db;
          db = fresh;
          old.close();
          logger.info('SIGHUP: reopened the user database and cleared caches');
        } catch (err) {
          logger.error({ err }, 'SIGHUP: cannot reopen the user database; still using the old handle');
        }
      });
    });
}
