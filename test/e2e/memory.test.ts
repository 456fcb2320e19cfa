// Streaming, not buffering: delivering a 100 MiB message (two recipients) grows the agent's
// peak RSS (VmHWM) by less than 64 MiB, and the message still decrypts byte-exact. No timing.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { addUser, sandbox, startAgent } from '../helpers/agent.ts';
import { LmtpClient } from '../helpers/lmtp.ts';
import { homeOf } from '../helpers/mailbox.ts';
import { openFile } from '../../src/mailcrypt/open.ts';
import { readDict } from '../../src/store/dictfile.ts';
import { dictKeyLookup } from '../../src/store/unlock.ts';
import path from 'node:path';
import { Writable } from 'node:stream';

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

test('a 100 MiB message to two recipients: peak RSS grows < 64 MiB, both copies decrypt', async (t) => {
  const sb = sandbox('msm-');
  t.teardown(() => sb.cleanup());
  await addUser(sb, 'max@example.org', 'memory-test-pw-1', 'prime256v1');
  await addUser(sb, 'mia@example.org', 'memory-test-pw-2', 'prime256v1');
  const agent = await startAgent(sb, ['--max-size', String(200 * 1024 * 1024)]);
  t.teardown(() => agent.kill());

  // Warm up (first delivery loads code paths), then measure.
  const c = await LmtpClient.connect(agent.port);
  t.teardown(() => c.close());
  await c.reply();
  await c.cmd('LHLO mem');
  const tx = async (body: (s: net.Socket) => Promise<void>) => {
    await c.cmd('MAIL FROM:<s@example.net>');
    await c.cmd('RCPT TO:<max@example.org>');
    await c.cmd('RCPT TO:<mia@example.org>');
    await c.cmd('DATA');
    await body(c.sock);
    return [await c.reply(), await c.reply()];
  };
  await tx(async (s) => void s.write('Subject: warm\r\n\r\nwarm\r\n.\r\n'));
  const before = peakRss(agent.proc.pid!);

  const hash = crypto.createHash('sha256');
  const line = (i: number) => Buffer.from(`${String(i).padStart(12, '0')} ${'x'.repeat(112)}\r\n`);
  const lines = Math.ceil((100 * 1024 * 1024) / 128);
  const replies = await tx(async (s) => {
    const head = Buffer.from('Subject: hundred mebibytes\r\n\r\n');
    hash.update(head.toString('latin1').replace(/\r\n/g, '\n'));
    s.write(head);
    for (let i = 0; i < lines; i++) {
      const l = line(i);
      hash.update(l.subarray(0, l.length - 2));
      hash.update('\n');
      if (!s.write(l)) await new Promise((r) => s.once('drain', r));
    }
    s.write('.\r\n');
  });
  t.deepEqual(replies.map((r) => r.code), [250, 250], JSON.stringify(replies));
  const growth = peakRss(agent.proc.pid!) - before;
  t.log(`peak RSS growth ${(growth / 1048576).toFixed(1)} MiB for a 100 MiB message to 2 recipients`);
  t.true(growth < 64 * 1024 * 1024, `peak RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);

  const want = hash.digest('hex');
  for (const [who, pw] of [['max@example.org', 'memory-test-pw-1'], ['mia@example.org', 'memory-test-pw-2']] as const) {
    const maildir = path.join(homeOf(sb.maildir, who), 'Maildir');
    const big = fs.readdirSync(path.join(maildir, 'new')).map((f) => path.join(maildir, 'new', f)).sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!;
    const { dict } = await readDict(path.join(maildir, 'dovecot-attributes'));
    const h = crypto.createHash('sha256');
    let skip = 7; // our trace header lines
    let rest = '';
    await openFile(big, dictKeyLookup(dict, async () => pw), new Writable({
      write(chunk: Buffer, _e, cb) {
        if (skip > 0) {
          rest += chunk.toString('latin1');
          while (skip > 0 && rest.includes('\n')) {
            rest = rest.slice(rest.indexOf('\n') + 1);
            skip--;
          }
          if (skip === 0) h.update(Buffer.from(rest, 'latin1'));
        } else h.update(chunk);
        cb();
      },
    }));
    t.is(h.digest('hex'), want, `${who}: 100 MiB decrypt to the bytes sent`);
  }
});
