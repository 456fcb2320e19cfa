// A private, real Postfix 3.7 for tests: its own config, queue and data directories under a
// short temp dir, SMTP on a free loopback port, no chroot, log to a file (postlogd), short retry
// timers, virtual_transport pointing at the agent. Needs root; the system Postfix is untouched.
//
//   const pf = await startPostfix({ lmtp: '127.0.0.1:2424', domains: ['example.org'], mailboxes: [...] });
//   t.teardown(() => pf.stop());

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PostfixOptions {
  /** `host:port` of the LMTP agent, or an absolute unix socket path. */
  lmtp: string;
  domains: string[];
  /** Addresses Postfix accepts (virtual_mailbox_maps). */
  mailboxes: string[];
  messageSizeLimit?: number;
}

export interface QueueEntry {
  queue_name: string;
  queue_id: string;
  recipients: { address: string; delay_reason?: string }[];
}

export interface Postfix {
  smtpPort: number;
  dir: string;
  log(): string;
  queue(): Promise<QueueEntry[]>;
  /** Ask Postfix to retry deferred mail now. */
  flush(): Promise<void>;
  /** Wait until the log matches. */
  waitLog(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
    s.once('error', reject);
  });
}

const MASTER_CF = (port: number) => `# private test instance: every service unchrooted
127.0.0.1:${port} inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`;

export async function startPostfix(o: PostfixOptions): Promise<Postfix> {
  const dir = await fsp.mkdtemp('/tmp/mspf-');
  await fsp.chmod(dir, 0o755);
  const conf = path.join(dir, 'conf');
  const data = path.join(dir, 'data');
  const logPath = path.join(dir, 'maillog');
  await fsp.mkdir(conf);
  await fsp.mkdir(data);
  await fsp.mkdir(path.join(dir, 'queue')); // postfix-script creates the subdirectories
  const { stdout: pfUid } = await run('id', ['-u', 'postfix']);
  await fsp.chown(data, Number(pfUid.trim()), -1); // master.lock lives here
  const smtpPort = await freePort();
  const transport = o.lmtp.startsWith('/') ? `lmtp:unix:${o.lmtp}` : `lmtp:inet:${o.lmtp}`;
  const inline = (xs: string[]) => `inline:{ ${xs.map((x) => `${x}=ok`).join(', ')} }`;
  await fsp.writeFile(path.join(conf, 'main.cf'), `compatibility_level = 3.6
queue_directory = ${path.join(dir, 'queue')}
data_directory = ${data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.mailseal.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = ${o.domains.join(', ')}
virtual_mailbox_maps = ${inline(o.mailboxes)}
virtual_transport = ${transport}
message_size_limit = ${o.messageSizeLimit ?? 10240000}
smtputf8_enable = yes
maillog_file = ${logPath}
maillog_file_prefixes = /tmp
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
lmtp_connect_timeout = 5s
biff = no
`);
  await fsp.writeFile(path.join(conf, 'master.cf'), MASTER_CF(smtpPort));
  try {
    await run('postfix', ['-c', conf, 'start']);
  } catch (err) {
    const log = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '';
    await fsp.rm(dir, { recursive: true, force: true });
    throw new Error(`postfix did not start: ${(err as Error).message}\n${log}`);
  }
  const log = () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '');
  const pf: Postfix = {
    smtpPort,
    dir,
    log,
    async queue() {
      const { stdout } = await run('postqueue', ['-c', conf, '-j']);
      return stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as QueueEntry);
    },
    async flush() {
      await run('postqueue', ['-c', conf, '-f']);
    },
    async waitLog(re, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = log().match(re);
        if (m) return m;
        if (Date.now() > end) throw new Error(`postfix log never matched ${re}:\n${log()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      await run('postfix', ['-c', conf, 'stop']).catch(() => undefined);
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
  // Wait for smtpd to accept connections.
  await pf.waitLog(/daemon started/, 15_000);
  return pf;
}
