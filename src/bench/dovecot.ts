// The anchor: a private Dovecot 2.3 LMTP with mail_crypt over the bench's users, homes and dicts
// (SQLite userdb on the same database, save_version 2, mail_fsync=optimized), on a free loopback
// port, everything under its own temp dir, stopped by its pid. Needs root (mail_uid switching).
// The settings are those known to work on Debian 12 (Dovecot 2.3.19): test/helpers/dovecot.ts
// and ../shared/reference/dovecot.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { alive } from './proc.ts';
import { freePorts, startDaemon, waitGreeting } from './daemon.ts';

export interface DovecotAvailability {
  ok: boolean;
  /** `dovecot --version`, when installed. */
  version?: string;
  /** Why it cannot run here. */
  reason?: string;
}

function onPath(bin: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    if (!dir) continue;
    try {
      fs.accessSync(path.join(dir, bin), fs.constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** Can a private Dovecot 2.3 run here (installed, root)? */
export function dovecotAvailable(): DovecotAvailability {
  if (!onPath('dovecot') || !onPath('doveadm')) return { ok: false, reason: 'dovecot/doveadm not installed (apt-get install dovecot-core dovecot-lmtpd dovecot-sqlite)' };
  let version = '';
  try {
    version = execFileSync('dovecot', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return { ok: false, reason: 'dovecot --version failed' };
  }
  if (!version.startsWith('2.3.')) return { ok: false, version, reason: `Dovecot ${version}: the bench configures Dovecot 2.3` };
  if (process.getuid?.() !== 0) return { ok: false, version, reason: 'Dovecot needs root (mail_uid switching): run the bench as root' };
  return { ok: true, version };
}

export interface DovecotOptions {
  /** The SQLite user database (users: address, home, curve, enabled). */
  db: string;
  /** Mail uid/gid: owner of the homes. */
  uid: number;
  gid: number;
  curve: string;
  /** instance_name; it shows in every process title. Default `mailseal-bench-<port>`. */
  instance?: string;
  /** Leave the dir (config, log) in place after stop(). */
  keepDir?: boolean;
  startTimeoutMs?: number;
}

export interface RunningDovecot {
  /** The master process; its children are the lmtp, auth, … processes. */
  pid: number;
  port: number;
  dir: string;
  logPath: string;
  /** SIGTERM the master, wait for it, SIGKILL after 10 s; removes its dir unless kept. Idempotent. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function checkValue(what: string, v: string): string {
  if (/[\r\n\0"'\\]/.test(v) || v.includes(' ')) throw new Error(`${what} cannot be put into dovecot.conf: ${JSON.stringify(v)}`);
  return v;
}

function renderConfig(p: { dir: string; instance: string; port: number; uid: number; gid: number; curve: string; sqlConf: string }): string {
  return `# Private Dovecot for mailseal bench: LMTP only, on the bench's users and keys.
protocols = lmtp
listen = 127.0.0.1
base_dir = ${p.dir}/run
state_dir = ${p.dir}/state
instance_name = ${p.instance}
log_path = ${p.dir}/dovecot.log
info_log_path = ${p.dir}/dovecot.log
auth_verbose = no
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain

passdb {
  driver = sql
  args = ${p.sqlConf}
}
userdb {
  driver = sql
  args = ${p.sqlConf}
}
# argon2id hashes (if a login were made) need more than the default 256M
service auth-worker {
  vsz_limit = 1G
}

mail_uid = ${p.uid}
mail_gid = ${p.gid}
first_valid_uid = ${Math.min(p.uid, 100)}
last_valid_uid = 0
first_valid_gid = ${Math.min(p.gid, 100)}
last_valid_gid = 0
mail_location = maildir:~/Maildir
mail_attribute_dict = file:%h/Maildir/dovecot-attributes
# the promise mailseal keeps too: fsync(file), rename into new/, fsync(new/)
mail_fsync = optimized
mail_plugins = $mail_plugins mail_crypt

namespace inbox {
  inbox = yes
}

plugin {
  mail_crypt_curve = ${p.curve}
  mail_crypt_save_version = 2
  mail_crypt_require_encrypted_user_key = yes
}

service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${p.port}
  }
}
protocol lmtp {
  postmaster_address = postmaster@bench.mailseal.invalid
}
`;
}

const tail = (s: string) => s.split('\n').slice(-20).join('\n');

/**
 * Start the private Dovecot in `dir` (which it then owns). Resolves once LMTP greets.
 * @throws with the dovecot.log tail if it does not come up
 */
export async function startDovecot(dir: string, o: DovecotOptions): Promise<RunningDovecot> {
  await fsp.chmod(dir, 0o755); // auth (dovecot) and mail (vmail) processes traverse it
  const configPath = path.join(dir, 'dovecot.conf');
  const logPath = path.join(dir, 'dovecot.log');
  const pidFile = path.join(dir, 'run', 'master.pid');
  const sqlConf = path.join(dir, 'sql.conf.ext');
  const sql = `driver = sqlite
connect = ${checkValue('database path', path.resolve(o.db))}
default_pass_scheme = ARGON2ID
password_query = SELECT address AS user, password FROM users WHERE address = '%u' AND enabled = 1
user_query = SELECT home, curve AS mail_crypt_curve FROM users WHERE address = '%u' AND enabled = 1
iterate_query = SELECT address AS user FROM users WHERE enabled = 1
`;
  checkValue('dir', dir);
  checkValue('curve', o.curve);

  let pid = 0;
  const stop = async () => {
    if (pid > 0 && alive(pid)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone meanwhile
      }
      const deadline = Date.now() + 10_000;
      while (alive(pid) && Date.now() < deadline) await sleep(20);
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    if (!o.keepDir) await fsp.rm(dir, { recursive: true, force: true });
  };
  let lastErr = '';
  // A port found free can be taken before Dovecot binds it: retry with another.
  for (let attempt = 0; attempt < 4; attempt++) {
    const [port] = await freePorts(1) as [number];
    await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
    await fsp.writeFile(sqlConf, sql, { mode: 0o600 });
    await fsp.writeFile(configPath, renderConfig({ dir, instance: checkValue('instance', o.instance ?? `mailseal-bench-${port}`), port, uid: o.uid, gid: o.gid, curve: o.curve, sqlConf }));
    const r = await startDaemon('dovecot', ['-c', configPath], path.join(dir, 'start.err'));
    const log = () => fsp.readFile(logPath, 'utf8').catch(() => '');
    if (r.code !== 0) {
      lastErr = `dovecot -c exited ${r.code}: ${r.stderr.trim()}\n${tail(await log())}`;
      if (/Address already in use/i.test(lastErr)) continue;
      break;
    }
    const deadline = Date.now() + (o.startTimeoutMs ?? 20_000);
    while (Date.now() < deadline) {
      pid = Number((await fsp.readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (pid > 0) break;
      await sleep(20);
    }
    if (!(pid > 0)) {
      lastErr = `no ${pidFile}\n${tail(await log())}`;
      break;
    }
    try {
      await waitGreeting(port, '220', deadline);
    } catch (e) {
      const l = await log();
      lastErr = `${(e as Error).message}\n${tail(l)}`;
      await stop();
      if (/Address already in use/i.test(l)) {
        pid = 0;
        continue;
      }
      break;
    }
    return { pid, port, dir, logPath, stop };
  }
  await stop();
  throw new Error(`Dovecot did not start: ${lastErr}`);
}
