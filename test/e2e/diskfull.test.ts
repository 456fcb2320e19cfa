// A full disk: the agent answers 452 4.3.1 (Postfix retries), removes the partial file, leaves
// nothing in new/, and delivers again as soon as there is room. The mail root is a small tmpfs.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { addUser, sandbox, startAgent } from '../helpers/agent.ts';
import { lmtpSend } from '../helpers/lmtp.ts';
import { files, homeOf, readMailbox } from '../helpers/mailbox.ts';

test('ENOSPC → 452 4.3.1, partial file removed, next message delivered', async (t) => {
  const sb = sandbox('msf-');
  t.teardown(() => sb.cleanup());
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m,mode=0755', 'tmpfs', sb.maildir]);
  t.teardown(() => execFileSync('umount', ['-l', sb.maildir]));
  await addUser(sb, 'fay@example.org', 'disk-full-password', 'prime256v1');
  const agent = await startAgent(sb);
  t.teardown(() => agent.kill());
  const home = homeOf(sb.maildir, 'fay@example.org');

  const big = Buffer.from(`Subject: big\r\n\r\n${crypto.randomBytes(3 * 1024 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`);
  const r1 = await lmtpSend(agent.port, { from: 's@example.net', to: ['fay@example.org'], body: big });
  t.is(r1.data[0]!.code, 452, r1.data[0]!.text);
  t.regex(r1.data[0]!.text, /^4\.3\.1 /);
  t.deepEqual(files(path.join(home, 'Maildir', 'new')), []);
  t.deepEqual(files(path.join(home, 'Maildir', 'tmp')), [], 'partial file removed');

  const r2 = await lmtpSend(agent.port, { from: 's@example.net', to: ['fay@example.org'], body: Buffer.from('Subject: small\r\n\r\nfits\r\n') });
  t.is(r2.data[0]!.code, 250, r2.data[0]!.text);
  const box = await readMailbox(home, 'disk-full-password');
  t.is(box.length, 1);
  t.true(box[0]!.plain.toString().endsWith('\n\nfits\n'));
});

test('ENOSPC on a message small enough for the one-job native write: 452 4.3.1, nothing left, then 250', async (t) => {
  const sb = sandbox('msf-');
  t.teardown(() => sb.cleanup());
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0755', 'tmpfs', sb.maildir]);
  t.teardown(() => execFileSync('umount', ['-l', sb.maildir]));
  await addUser(sb, 'gus@example.org', 'disk-full-password', 'prime256v1');
  const agent = await startAgent(sb);
  t.teardown(() => agent.kill());
  const home = homeOf(sb.maildir, 'gus@example.org');
  // Leave less room than one 100 KiB message (well under the 256 KiB streaming threshold).
  const filler = path.join(sb.maildir, 'filler');
  const free = () => Number(execFileSync('df', ['-B1', '--output=avail', sb.maildir], { encoding: 'utf8' }).split('\n')[1]);
  fs.writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 40 * 1024)));
  const body = Buffer.from(`Subject: mid\r\n\r\n${crypto.randomBytes(75 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`);
  const r1 = await lmtpSend(agent.port, { from: 's@example.net', to: ['gus@example.org'], body });
  t.is(r1.data[0]!.code, 452, r1.data[0]!.text);
  t.regex(r1.data[0]!.text, /^4\.3\.1 /);
  t.deepEqual(files(path.join(home, 'Maildir', 'new')), []);
  t.deepEqual(files(path.join(home, 'Maildir', 'tmp')), [], 'partial file removed');

  fs.rmSync(filler);
  const r2 = await lmtpSend(agent.port, { from: 's@example.net', to: ['gus@example.org'], body });
  t.is(r2.data[0]!.code, 250, r2.data[0]!.text);
  const [name] = files(path.join(home, 'Maildir', 'new'));
  t.is(fs.statSync(name!).mode & 0o777, 0o600, 'mail files are 0600');
  const box = await readMailbox(home, 'disk-full-password');
  t.is(box.length, 1);
  t.true(box[0]!.plain.includes(body.subarray(body.length - 200, body.length - 2).toString().replace(/\r\n/g, '\n')));
});
