// `mailseal config postfix|dovecot`: print (or with --out, write) working configuration for this
// database and mail root. Nothing is secret in it: paths and queries only.

import { type Command, Option } from 'commander';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sodium from 'libsodium-wrappers-sumo';
import { DEFAULTS } from '../config.ts';
import { dovecotConfig } from '../config/dovecot.ts';
import { type ConfigFile, configPath, printable, writeFiles } from '../config/files.ts';
import { lmtpTransport, postfixConfig } from '../config/postfix.ts';
import { MailsealError } from '../errors.ts';
import { curveByName } from '../mailcrypt/curves.ts';
import { globals } from './common.ts';

interface Account {
  name: string;
  uid: number;
  gid: number;
  group: string;
  groups: number[];
}

/** A system user, or null if there is none by that name. */
function account(name: string): Account | null {
  if (!/^[a-z_][a-z0-9_-]*\$?$/i.test(name)) return null;
  try {
    const id = (args: string[]) => execFileSync('id', [...args, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return { name, uid: Number(id(['-u'])), gid: Number(id(['-g'])), group: id(['-gn']), groups: id(['-G']).split(/\s+/).map(Number) };
  } catch {
    return null;
  }
}

/** Whether `who` can read `file` by its mode bits (and search every directory above it). */
function canRead(who: Account, file: string): boolean {
  const allowed = (p: string, bit: number) => {
    const st = fs.statSync(p);
    if (who.uid === 0) return true;
    if (st.uid === who.uid) return (st.mode & (bit << 6)) !== 0;
    if (who.groups.includes(st.gid)) return (st.mode & (bit << 3)) !== 0;
    return (st.mode & bit) !== 0;
  };
  try {
    for (let d = path.dirname(file); ; d = path.dirname(d)) {
      if (!allowed(d, 1)) return false;
      if (d === path.dirname(d)) break;
    }
    return allowed(file, 4);
  } catch {
    return false;
  }
}

function warn(msg: string): void {
  process.stderr.write(`mailseal: warning: ${msg}\n`);
}

function checkDb(db: string): void {
  if (!fs.existsSync(db)) warn(`there is no database at ${db} yet ("mailseal domain add" or "mailseal user add" creates it)`);
}

/** Print the files, or write them into `out` and say what was written. */
function emit(files: ConfigFile[], installDir: string, out: string | undefined, group: number | undefined, next: string[]): void {
  if (out === undefined) {
    process.stdout.write(printable(installDir, files));
    return;
  }
  for (const p of writeFiles(out, files, group)) process.stdout.write(`wrote ${p}\n`);
  for (const line of next) process.stdout.write(`next: ${line}\n`);
}

const outOption = () => new Option('--out <dir>', 'write the files into this directory (mode 0640) instead of printing them');

export function registerConfig(program: Command): void {
  const config = program.command('config').description('print Postfix or Dovecot configuration for this database');

  config
    .command('postfix')
    .description('Postfix: sqlite: maps, main.cf lines (LMTP to the agent, Dovecot SASL) and a submission service for master.cf')
    .addOption(new Option('--lmtp <target>', 'where the agent listens: HOST:PORT, unix:private/mailseal or /abs/socket').env('MAILSEAL_LISTEN').default(DEFAULTS.listen))
    .addOption(new Option('--sasl-path <path>', "Dovecot's auth socket, relative to Postfix's queue directory or absolute").default('private/auth'))
    .addOption(outOption())
    .action((o: { lmtp: string; saslPath: string; out?: string }, cmd: Command) => {
      const g = globals(cmd);
      const db = configPath(g.db, 'database');
      const out = o.out === undefined ? undefined : configPath(o.out, '--out');
      if (!/^[A-Za-z0-9._/+@=~-]+$/.test(o.saslPath)) throw new MailsealError('usage', `invalid --sasl-path ${JSON.stringify(o.saslPath)}`);
      const installDir = out ?? '/etc/postfix';
      const files = postfixConfig({ db, dir: installDir, lmtp: lmtpTransport(o.lmtp), saslPath: o.saslPath });
      checkDb(db);
      const postfix = account('postfix');
      if (postfix && fs.existsSync(db) && !canRead(postfix, db)) {
        warn(`the postfix user cannot read ${db}: give it read access to the file and its directories (e.g. chgrp postfix on both, g+r / g+x)`);
      }
      // proxymap opens the tables as the postfix user.
      const group = process.getuid?.() === 0 && postfix ? postfix.gid : undefined;
      emit(files, installDir, out, group, [
        `append ${installDir}/mailseal-main.cf to main.cf and ${installDir}/mailseal-master.cf to master.cf`,
        'postfix check && postfix reload',
      ]);
    });

  config
    .command('dovecot')
    .description('Dovecot 2.3: SQL passdb/userdb ({ARGON2ID}), mail_crypt, and the auth socket for Postfix SASL')
    .addOption(new Option('--mail-user <user>', 'system user that owns the mail store').env('MAILSEAL_USER').default('vmail'))
    .addOption(new Option('--sasl-socket <path>', 'auth socket for Postfix (absolute; inside its queue directory)').default('/var/spool/postfix/private/auth'))
    .addOption(new Option('--postfix-user <user>', 'owner of that socket').default('postfix'))
    .addOption(new Option('--curve <curve>', 'curve for keys Dovecot makes itself').env('MAILSEAL_CURVE').default(DEFAULTS.curve))
    .addOption(outOption())
    .action(async (o: { mailUser: string; saslSocket: string; postfixUser: string; curve: string; out?: string }, cmd: Command) => {
      const g = globals(cmd);
      const db = configPath(g.db, 'database');
      const maildir = configPath(g.maildir, 'mail root');
      const out = o.out === undefined ? undefined : configPath(o.out, '--out');
      if (!path.isAbsolute(o.saslSocket)) throw new MailsealError('usage', `--sasl-socket must be an absolute path: ${o.saslSocket}`);
      const saslSocket = configPath(o.saslSocket, '--sasl-socket');
      const curve = curveByName(o.curve).name;
      const mailUser = account(o.mailUser);
      if (!mailUser) {
        throw Object.assign(new MailsealError('usage', `no such system user: ${o.mailUser}`), {
          hint: `create it (useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin ${o.mailUser}) or give --mail-user`,
        });
      }
      if (mailUser.uid === 0) throw new MailsealError('usage', '--mail-user must not be root');
      if (!account(o.postfixUser)) throw new MailsealError('usage', `no such system user: ${o.postfixUser} (give --postfix-user)`);
      await sodium.ready;
      const installDir = out ?? '/etc/dovecot';
      const files = dovecotConfig({
        db,
        maildir,
        dir: installDir,
        mailUser,
        saslSocket,
        postfixUser: o.postfixUser,
        curve,
        hashMemBytes: sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE,
      });
      checkDb(db);
      emit(files, installDir, out, undefined, [
        `add "!include ${installDir}/mailseal.conf" at the end of /etc/dovecot/dovecot.conf; comment out "!include auth-system.conf.ext" in conf.d/10-auth.conf`,
        'doveconf -n >/dev/null && doveadm reload',
      ]);
    });
}
