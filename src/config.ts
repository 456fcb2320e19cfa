// Settings: command-line flags, then MAILSEAL_* environment variables, then these defaults.
// Every default is safe on its own: loopback only, state inside the project directory.

import os from 'node:os';

export const DEFAULTS = Object.freeze({
  /** Mail root: the home of user@domain is <maildir>/<domain>/<user>. */
  maildir: 'maildir',
  /** The SQLite user database, read by Postfix and Dovecot too. */
  db: 'keys/mailseal.db',
  /** LMTP listener; loopback only unless told otherwise. */
  listen: '127.0.0.1:2424',
  /** Largest message accepted (bytes); 552 5.3.4 above it. Postfix's default is 10 MiB. */
  maxSize: 64 * 1024 * 1024,
  /** `alice+news@example.org` is delivered to alice, folder `news` if it exists. Empty: off. */
  recipientDelimiter: '+',
  /** Mode of the unix socket (Postfix's lmtp client must be able to connect). */
  socketMode: '0660',
  /** Curve for new keys. */
  curve: 'secp521r1',
  logLevel: 'info',
  /** Seconds to wait for in-flight transactions on SIGTERM before exiting anyway. */
  shutdownGrace: 30,
});

/** Name shown in the Received: header and LMTP greeting. */
export function hostname(): string {
  return os.hostname().split('.')[0] || 'localhost';
}

/** `HOST:PORT` or `[v6]:PORT` → parts. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new Error(`invalid listen address ${JSON.stringify(s)} (HOST:PORT)`);
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}
