// A private, real Postfix 3.7 for tests: its own config, queue and data directories under a short
// temp dir (/tmp/mspf-XXXXXX), SMTP (and optionally SASL submission) on free loopback ports, no
// chroot, log to a file through postlogd, short retry timers, virtual_transport pointing at an LMTP
// server. Needs root; the system Postfix (/etc/postfix main.cf, /var/spool/postfix,
// /var/lib/postfix) is neither used nor touched, and several instances can run at once.
//
//   const pf = await startPostfix({ lmtpPort: 2424, domains: ['example.org'], mailboxes: ['a@example.org'] });
//   t.teardown(() => pf.stop());   // always: a failed assertion must not leak the instance
//   const r = await swaks({ server: '127.0.0.1', port: pf.smtpPort, from, to: ['a@example.org'] });
//   await pf.waitFor(new RegExp(`${r.queueId}: to=<a@example\\.org>.*status=sent`));

import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePorts } from '../../src/bench/daemon.ts';

const run = promisify(execFile);

/** sqlite: lookup tables; each query gets `%s` = the lookup key (see sqlite_table(5)). */
export interface PostfixSqliteMaps {
  /** Absolute path of the SQLite file (postfix reads it as the `postfix` user: make it readable). */
  db: string;
  /** virtual_mailbox_domains, e.g. `SELECT name FROM domains WHERE name = '%s'` */
  domainsQuery: string;
  /** virtual_mailbox_maps (with an lmtp: transport only the presence of a result counts). */
  mailboxesQuery: string;
  /** virtual_alias_maps; several rows become one comma-separated result. */
  aliasesQuery?: string;
  /** smtpd_sender_login_maps (enforced on the submission listener only). */
  senderLoginQuery?: string;
}

export interface PostfixOptions {
  /** LMTP server on `lmtpHost` (default 127.0.0.1) → `virtual_transport = lmtp:inet:HOST:PORT`. */
  lmtpPort?: number;
  lmtpHost?: string;
  /** Absolute unix socket path → `lmtp:unix:PATH` (the lmtp client runs as `postfix`: it must be able to connect). */
  lmtpSocket?: string;
  /** Older form: `host:port`, or an absolute unix socket path. */
  lmtp?: string;
  /** Static virtual_mailbox_domains (ignored when `sqlite` is given). */
  domains?: string[];
  /** Static virtual_mailbox_maps (texthash), the addresses Postfix accepts. */
  mailboxes?: string[];
  /** Static virtual_alias_maps (texthash): address → destination(s). */
  aliases?: Record<string, string | string[]>;
  /** Static smtpd_sender_login_maps (texthash): MAIL FROM address → SASL login(s). */
  senderLogins?: Record<string, string | string[]>;
  /** Use sqlite: maps instead of the static lists. */
  sqlite?: PostfixSqliteMaps;
  /**
   * Also listen for submission on another free loopback port (`submissionPort`): SASL through
   * Dovecot's auth socket at `path` (absolute; the socket must be connectable by the `postfix`
   * user), no TLS, plaintext AUTH allowed, relaying only when authenticated, and
   * `reject_sender_login_mismatch` when sender login maps are configured.
   */
  sasl?: { path: string };
  /**
   * Service stanzas to add to master.cf as they are (e.g. `mailseal config postfix`'s submission
   * service), except that a `submission` service listens on the private loopback port
   * (`submissionPort`) instead of 587, and every service runs unchrooted. Not with `sasl`.
   */
  masterCf?: string;
  /** message_size_limit in bytes. Default 10240000 (Postfix's default). 0 = unlimited. */
  messageSizeLimit?: number;
  /** Retry timers in seconds. Defaults: queueRunDelay 1, minimalBackoff 1, maximalBackoff 2. */
  retry?: { queueRunDelay?: number; minimalBackoff?: number; maximalBackoff?: number };
  /**
   * default_transport / relay_transport for mail to domains that are not virtual (bounces to
   * outside senders, relayed mail). Default `discard:…`: logged as `status=sent (…discarded…)`,
   * never leaves the machine, never waits on DNS.
   */
  outboundTransport?: string;
  /** Extra main.cf settings, written last (they win). */
  mainCf?: Record<string, string | number>;
  /** myhostname (also the LHLO name and the Received: header host). Default `mx.mailseal.test`. */
  hostname?: string;
  /** Keep the temp dir after stop() (also env MAILSEAL_KEEP_POSTFIX=1). */
  keepDir?: boolean;
}

export interface QueueRecipient {
  address: string;
  /** Why the last attempt failed, e.g. `host 127.0.0.1[127.0.0.1] said: 451 4.3.0 … (in reply to end of DATA command)`. */
  delay_reason?: string;
  orig_address?: string;
}

/** One message as printed by `postqueue -j` (one JSON object per line). */
export interface QueueEntry {
  queue_name: 'maildrop' | 'incoming' | 'active' | 'deferred' | 'hold' | (string & {});
  queue_id: string;
  /** Seconds since the epoch. */
  arrival_time: number;
  message_size: number;
  forced_expire?: boolean;
  sender: string;
  recipients: QueueRecipient[];
}

/** What a `waitFor` predicate sees on each poll. */
export interface PostfixState {
  log: string;
  queue: QueueEntry[];
}

export interface Postfix {
  smtpPort: number;
  /** 0 unless started with `sasl` or a `submission` service in `masterCf`. */
  submissionPort: number;
  /** The temp dir holding everything below. */
  dir: string;
  configDir: string;
  queueDir: string;
  dataDir: string;
  /** maillog_file (written by postlogd). */
  logPath: string;
  /** The whole log so far ('' before the first line). */
  log(): Promise<string>;
  /** `postqueue -j`: every message in maildrop/incoming/active/deferred/hold. */
  queue(): Promise<QueueEntry[]>;
  /** `postqueue -f`: retry deferred mail now. Resolves when the request is made, not when delivered. */
  flush(): Promise<void>;
  /**
   * Poll (every 100 ms) until the log matches `re` / the predicate returns a truthy value, and
   * return the match / value. A predicate gets the log and `postqueue -j` of that moment.
   * @throws after `timeoutMs` (default 15 s), with the log tail and the queue in the message
   */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  waitFor<T>(pred: (s: PostfixState) => T | null | undefined | false, timeoutMs?: number): Promise<Exclude<T, null | undefined | false>>;
  /** Same as `waitFor(re, timeoutMs)`. */
  waitLog(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Run `postconf -c <configDir> ...args` (e.g. `['-h', 'virtual_transport']`), return stdout. */
  postconf(args: string[]): Promise<string>;
  /** `postsuper -d ALL`: drop every queued message. */
  clearQueue(): Promise<void>;
  /** Stop the master (SIGTERM, as `postfix stop` does), wait for every daemon to exit, remove the dir. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_HOSTNAME = 'mx.mailseal.test';
const POLL_MS = 100;

// ---------------------------------------------------------------------------------------------
// Ports, processes

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Pids of the processes of one instance: every Postfix daemon chdir()s to its queue_directory,
 * so /proc/<pid>/cwd identifies them exactly (and nothing of another instance or of the system).
 */
function instancePids(queueDir: string): number[] {
  const pids: number[] = [];
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      if (fs.readlinkSync(`/proc/${ent}/cwd`) === queueDir) pids.push(Number(ent));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

function masterPid(queueDir: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(queueDir, 'pid', 'master.pid'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Instances not stopped yet: torn down synchronously if the test process exits without stop(). */
const live = new Map<string, { queueDir: string; keep: boolean }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [dir, inst] of live) {
      const pid = masterPid(inst.queueDir);
      if (pid !== null) signal(pid, 'SIGTERM'); // master passes it on to its process group
      for (const p of instancePids(inst.queueDir)) if (p !== pid) signal(p, 'SIGTERM');
      if (!inst.keep) spawnSync('rm', ['-rf', dir]); // daemons may still hold files: rm -rf tolerates that
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Config

function assertToken(what: string, v: string): void {
  if (!v || /[\s,{}#]/.test(v)) throw new Error(`startPostfix: ${what} must be non-empty, without whitespace, ',', '{', '}' or '#': ${JSON.stringify(v)}`);
}

function texthash(entries: [string, string][]): string {
  for (const [k, v] of entries) {
    assertToken('a map key', k);
    if (/[\r\n]/.test(v) || v.trim() === '') throw new Error(`startPostfix: bad map value ${JSON.stringify(v)}`);
  }
  return entries.map(([k, v]) => `${k}\t${v}\n`).join('');
}

function sqliteCf(db: string, query: string): string {
  if (!path.isAbsolute(db)) throw new Error(`startPostfix: sqlite.db must be absolute: ${db}`);
  if (/[\r\n]/.test(query) || /[\r\n]/.test(db)) throw new Error('startPostfix: sqlite db/query must be one line');
  return `dbpath = ${db}\nquery = ${query}\n`;
}

function transportOf(o: PostfixOptions): string {
  if (o.lmtpSocket !== undefined) {
    if (!path.isAbsolute(o.lmtpSocket)) throw new Error(`startPostfix: lmtpSocket must be absolute: ${o.lmtpSocket}`);
    return `lmtp:unix:${o.lmtpSocket}`;
  }
  if (o.lmtpPort !== undefined) return `lmtp:inet:${o.lmtpHost ?? '127.0.0.1'}:${o.lmtpPort}`;
  if (o.lmtp !== undefined) return o.lmtp.startsWith('/') ? `lmtp:unix:${o.lmtp}` : `lmtp:inet:${o.lmtp}`;
  if (o.mainCf?.virtual_transport !== undefined) return String(o.mainCf.virtual_transport);
  throw new Error('startPostfix: give lmtpPort, lmtpSocket, lmtp or mainCf.virtual_transport');
}

const asList = (v: string | string[]) => (Array.isArray(v) ? v.join(', ') : v);

/** Every service unchrooted (column 5 = n), so maps and sockets use ordinary absolute paths. */
function masterCf(smtpPort: number, submissionPort: number, submissionOpts: string[], extra: string): string {
  const sub = submissionPort && !extra
    ? `127.0.0.1:${submissionPort} inet n - n - - smtpd\n${submissionOpts.map((o) => `  -o ${o}\n`).join('')}`
    : '';
  return `# private test instance (test/helpers/postfix.ts): every service unchrooted
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:${smtpPort} inet n - n - - smtpd
${sub}pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
tlsmgr    unix  - - n 1000? 1 tlsmgr
postlog   unix-dgram n - n - 1 postlogd
${extra ? `# masterCf option\n${adaptServices(extra, submissionPort)}` : ''}`;
}

const SERVICE_LINE = /^(\S+)(\s+)(\S+)(\s+\S+\s+\S+\s+)(\S+)(\s+.*)$/;

/** `masterCf` stanzas for a private instance: `submission` on our port, no chroot. */
function adaptServices(text: string, submissionPort: number): string {
  const out = text.split('\n').map((line) => {
    if (line.startsWith('#') || /^\s/.test(line) || line.trim() === '') return line;
    const m = SERVICE_LINE.exec(line);
    if (!m) throw new Error(`startPostfix: masterCf: not a service line: ${line}`);
    const name = m[1] === 'submission' && m[3] === 'inet' ? `127.0.0.1:${submissionPort}` : m[1];
    if (m[3] === 'inet' && name === m[1]) throw new Error(`startPostfix: masterCf: only a "submission" inet service can be moved to a private port: ${line}`);
    return `${name}${m[2]}${m[3]}${m[4]}n${m[6]}`;
  });
  return out.join('\n').replace(/\n*$/, '\n');
}

/**
 * Parse main.cf text (`name = value`, continuation lines start with white space, `#` comments)
 * into settings, e.g. to pass generated lines as `mainCf`. Later lines win.
 */
export function parseMainCf(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let last: string | null = null;
  for (const line of text.split('\n')) {
    if (/^\s*(#|$)/.test(line)) continue;
    if (/^\s/.test(line)) {
      if (last === null) throw new Error(`parseMainCf: continuation without a setting: ${line}`);
      out[last] += ` ${line.trim()}`;
      continue;
    }
    const m = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new Error(`parseMainCf: not a setting: ${line}`);
    last = m[1]!;
    out[last] = m[2]!.trim();
  }
  return out;
}

/** uid of mail_owner (postfix), gid of setgid_group (postdrop). */
async function ids(): Promise<{ postfix: number; postdrop: number }> {
  const { stdout: u } = await run('id', ['-u', 'postfix']);
  const { stdout: d } = await run('getent', ['group', 'postdrop']);
  const ids = { postfix: Number(u.trim()), postdrop: Number(d.split(':')[2]) };
  if (!Number.isInteger(ids.postfix) || !Number.isInteger(ids.postdrop)) throw new Error('startPostfix: no postfix user / postdrop group (apt-get install postfix)');
  return ids;
}

/**
 * Create queue_directory and data_directory with their subdirectories, owners and modes as listed
 * in Postfix's own `$meta_directory/postfix-files` (what `post-install create-missing` does).
 * Returns false if that list cannot be read: then `postfix start` runs its full checks and makes
 * them itself.
 */
async function makeQueueDirs(queueDir: string, dataDir: string): Promise<boolean> {
  const id = await ids();
  await fsp.mkdir(queueDir);
  await fsp.mkdir(dataDir);
  await fsp.chown(dataDir, id.postfix, 0); // master.lock, caches
  await fsp.chmod(dataDir, 0o700);
  let files: string;
  try {
    const meta = (await run('postconf', ['-dh', 'meta_directory'])).stdout.trim() || '/etc/postfix';
    files = await fsp.readFile(path.join(meta, 'postfix-files'), 'utf8');
  } catch {
    return false;
  }
  let made = 0;
  for (const line of files.split('\n')) {
    // $queue_directory/maildrop:d:$mail_owner:$setgid_group:730:uc
    const m = /^\$queue_directory(\/[a-z]+)?:d:([^:]+):([^:]+):([0-7]+):/.exec(line);
    if (!m) continue;
    const uid = m[2] === '$mail_owner' ? id.postfix : m[2] === 'root' ? 0 : null;
    const gid = m[3] === '$setgid_group' ? id.postdrop : m[3] === '-' ? 0 : null; // '-': group left as created
    if (uid === null || gid === null) return false;
    const d = queueDir + (m[1] ?? '');
    await fsp.mkdir(d, { recursive: true });
    await fsp.chown(d, uid, gid);
    await fsp.chmod(d, parseInt(m[4]!, 8));
    made++;
  }
  return made > 10;
}

// ---------------------------------------------------------------------------------------------
// Start / stop

/**
 * Start a private Postfix. Resolves once the master reports its daemons started (the SMTP
 * listener is bound by then). Always pair with `t.teardown(() => pf.stop())`.
 * @throws with the log (and `postfix start` output) if Postfix does not come up
 */
export async function startPostfix(o: PostfixOptions): Promise<Postfix> {
  const transport = transportOf(o);
  const hostname = o.hostname ?? DEFAULT_HOSTNAME;
  if (o.sasl && !path.isAbsolute(o.sasl.path)) throw new Error(`startPostfix: sasl.path must be absolute: ${o.sasl.path}`);
  if (o.sasl) assertToken('sasl.path', o.sasl.path);
  if (o.sasl && o.masterCf) throw new Error('startPostfix: give sasl or masterCf, not both');
  const wantSubmission = !!o.sasl || (o.masterCf !== undefined && /^submission\s+inet\s/m.test(o.masterCf));

  const dir = await fsp.mkdtemp('/tmp/mspf-');
  await fsp.chmod(dir, 0o755); // daemons run as postfix and must traverse it
  const configDir = path.join(dir, 'conf');
  const queueDir = path.join(dir, 'queue');
  const dataDir = path.join(dir, 'data');
  const logPath = path.join(dir, 'maillog');
  const keep = o.keepDir === true || process.env.MAILSEAL_KEEP_POSTFIX === '1';
  try {
    await fsp.mkdir(configDir);
    const quick = await makeQueueDirs(queueDir, dataDir);

    // Lookup tables.
    const cf = (name: string) => path.join(configDir, name);
    const maps: Record<string, string> = {};
    if (o.sqlite) {
      const s = o.sqlite;
      await fsp.writeFile(cf('sqlite-virtual-domains.cf'), sqliteCf(s.db, s.domainsQuery));
      await fsp.writeFile(cf('sqlite-virtual-mailboxes.cf'), sqliteCf(s.db, s.mailboxesQuery));
      maps.virtual_mailbox_domains = `sqlite:${cf('sqlite-virtual-domains.cf')}`;
      maps.virtual_mailbox_maps = `sqlite:${cf('sqlite-virtual-mailboxes.cf')}`;
      if (s.aliasesQuery) {
        await fsp.writeFile(cf('sqlite-virtual-aliases.cf'), sqliteCf(s.db, s.aliasesQuery));
        maps.virtual_alias_maps = `sqlite:${cf('sqlite-virtual-aliases.cf')}`;
      }
      if (s.senderLoginQuery) {
        await fsp.writeFile(cf('sqlite-sender-login.cf'), sqliteCf(s.db, s.senderLoginQuery));
        maps.smtpd_sender_login_maps = `sqlite:${cf('sqlite-sender-login.cf')}`;
      }
    } else {
      for (const d of o.domains ?? []) assertToken('a domain', d);
      maps.virtual_mailbox_domains = (o.domains ?? []).join(', ');
      await fsp.writeFile(cf('virtual-mailboxes'), texthash((o.mailboxes ?? []).map((a) => [a, 'ok'])));
      maps.virtual_mailbox_maps = `texthash:${cf('virtual-mailboxes')}`;
    }
    if (o.aliases && !o.sqlite?.aliasesQuery) {
      await fsp.writeFile(cf('virtual-aliases'), texthash(Object.entries(o.aliases).map(([k, v]) => [k, asList(v)])));
      maps.virtual_alias_maps = `texthash:${cf('virtual-aliases')}`;
    }
    if (o.senderLogins && !o.sqlite?.senderLoginQuery) {
      await fsp.writeFile(cf('sender-logins'), texthash(Object.entries(o.senderLogins).map(([k, v]) => [k, asList(v)])));
      maps.smtpd_sender_login_maps = `texthash:${cf('sender-logins')}`;
    }

    const retry = { queueRunDelay: 1, minimalBackoff: 1, maximalBackoff: 2, ...o.retry };
    const outbound = o.outboundTransport ?? 'discard:mailseal test instance, outbound mail discarded';
    const main: Record<string, string | number> = {
      compatibility_level: '3.6',
      queue_directory: queueDir,
      data_directory: dataDir,
      mail_owner: 'postfix',
      setgid_group: 'postdrop',
      myhostname: hostname,
      mydomain: hostname.replace(/^[^.]+\./, ''),
      myorigin: '$myhostname',
      mydestination: '',
      inet_interfaces: 'loopback-only',
      inet_protocols: 'ipv4',
      mynetworks: '127.0.0.0/8',
      // no /etc/aliases, no local delivery
      alias_maps: '',
      alias_database: '',
      local_recipient_maps: '',
      ...maps,
      virtual_transport: transport,
      default_transport: outbound,
      relay_transport: outbound,
      message_size_limit: o.messageSizeLimit ?? 10240000,
      // the size limit must not exceed these (0 = unlimited); free-space check off on small /tmp
      mailbox_size_limit: 0,
      virtual_mailbox_limit: 0,
      queue_minfree: 0,
      smtputf8_enable: 'yes',
      maillog_file: logPath,
      maillog_file_prefixes: '/tmp',
      // retry deferred mail within seconds, not minutes
      queue_run_delay: `${retry.queueRunDelay}s`,
      minimal_backoff_time: `${retry.minimalBackoff}s`,
      maximal_backoff_time: `${retry.maximalBackoff}s`,
      // no 1 s penalty sleeps on rejects or bursts; no DNS for the client's name
      smtpd_error_sleep_time: '0s',
      in_flow_delay: '0s',
      smtpd_peername_lookup: 'no',
      lmtp_connect_timeout: '5s',
      smtpd_banner: '$myhostname ESMTP mailseal-test',
      biff: 'no',
      ...o.mainCf,
    };
    for (const [k, v] of Object.entries(main)) if (/[\r\n]/.test(String(v))) throw new Error(`startPostfix: main.cf ${k} must be one line`);
    await fsp.writeFile(
      cf('main.cf'),
      `# private test instance (test/helpers/postfix.ts)\n${Object.entries(main)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n')}\n`,
    );

    const submissionOpts = o.sasl
      ? [
          'syslog_name=postfix/submission',
          'smtpd_sasl_auth_enable=yes',
          'smtpd_sasl_type=dovecot',
          `smtpd_sasl_path=${o.sasl.path}`,
          'smtpd_tls_security_level=none',
          'smtpd_tls_auth_only=no',
          'smtpd_client_restrictions=',
          'smtpd_helo_restrictions=',
          `smtpd_sender_restrictions=${maps.smtpd_sender_login_maps ? 'reject_sender_login_mismatch' : ''}`,
          'smtpd_relay_restrictions=permit_sasl_authenticated,reject',
          'smtpd_recipient_restrictions=permit_sasl_authenticated,reject',
        ]
      : [];

    // The OS picks free ports; another process may take one before master binds it: retry.
    let ports: number[] = [];
    for (let attempt = 1; ; attempt++) {
      ports = await freePorts(wantSubmission ? 2 : 1);
      await fsp.writeFile(cf('master.cf'), masterCf(ports[0]!, ports[1] ?? 0, submissionOpts, o.masterCf ?? ''));
      // quick-start: postfix-script skips its ~1.5 s integrity checks (post-install
      // create-missing, postsuper, find) -- the fresh, empty queue is already laid out right.
      if (quick) await fsp.writeFile(path.join(queueDir, 'quick-start'), '');
      // Postfix waits (300 ms steps, ~2 s) for a main.cf modified within the last second to
      // "settle" (dict_load_file): backdate our freshly written files.
      const past = new Date(Date.now() - 60_000);
      for (const f of await fsp.readdir(configDir)) await fsp.utimes(path.join(configDir, f), past, past);
      try {
        await run('postfix', ['-c', configDir, 'start'], { timeout: 60_000 });
        break;
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        const log = await fsp.readFile(logPath, 'utf8').catch(() => '');
        const out = `${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}\n${log}`;
        if (attempt < 3 && /Address already in use/i.test(out)) continue;
        throw new Error(`postfix did not start: ${out}`);
      }
    }
    live.set(dir, { queueDir, keep });
    installExitHook();

    const log = () => fsp.readFile(logPath, 'utf8').catch(() => '');
    const queue = async (): Promise<QueueEntry[]> => {
      const { stdout } = await run('postqueue', ['-c', configDir, '-j']);
      return stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as QueueEntry);
    };
    const waitFor = async (check: RegExp | ((s: PostfixState) => unknown), timeoutMs = 15_000): Promise<any> => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const text = await log();
        if (check instanceof RegExp) {
          const m = text.match(check);
          if (m) return m;
        } else {
          const v = check({ log: text, queue: await queue() });
          if (v !== null && v !== undefined && v !== false) return v;
        }
        if (Date.now() > end) {
          const q = await queue().catch((e: Error) => e.message);
          throw new Error(
            `postfix: ${check instanceof RegExp ? `log never matched ${check}` : 'predicate never held'} within ${timeoutMs} ms\n` +
              `--- queue:\n${JSON.stringify(q, null, 1)}\n--- log tail (${logPath}):\n${text.split('\n').slice(-40).join('\n')}`,
          );
        }
        await sleep(POLL_MS);
      }
    };
    let stopped: Promise<void> | null = null;
    const pf: Postfix = {
      smtpPort: ports[0]!,
      submissionPort: ports[1] ?? 0,
      dir,
      configDir,
      queueDir,
      dataDir,
      logPath,
      log,
      queue,
      async flush() {
        await run('postqueue', ['-c', configDir, '-f']);
      },
      waitFor,
      waitLog: (re, timeoutMs) => waitFor(re, timeoutMs),
      async postconf(args) {
        return (await run('postconf', ['-c', configDir, ...args])).stdout;
      },
      async clearQueue() {
        await run('postsuper', ['-c', configDir, '-d', 'ALL']);
      },
      stop() {
        stopped ??= (async () => {
          // What `postfix stop` does, minus its 1 s poll: SIGTERM the master, which terminates its
          // process group. Then wait until no process runs in our queue dir (SIGKILL after 5 s).
          const pid = masterPid(queueDir);
          if (pid !== null) signal(pid, 'SIGTERM');
          const end = Date.now() + 5000;
          for (;;) {
            const left = instancePids(queueDir);
            if (left.length === 0) break;
            if (Date.now() > end) {
              for (const p of left) signal(p, 'SIGKILL');
              await sleep(50);
              break;
            }
            await sleep(20);
          }
          live.delete(dir);
          if (!keep) await fsp.rm(dir, { recursive: true, force: true });
        })();
        return stopped;
      },
    };
    // `master -w` returns once the master is initialised; the daemons are started right after.
    await pf.waitFor(/postfix\/master\[\d+\]: daemon started/, 15_000).catch(async (err: Error) => {
      await pf.stop();
      throw err;
    });
    return pf;
  } catch (err) {
    if (!live.has(dir) && !keep) await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
}
