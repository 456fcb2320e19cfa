// A full disk: the agent answers 452 4.3.1 (Postfix retries), removes the partial file, leaves
// nothing in new/, and delivers again as soon as there is room. The mail root is a small tmpfs.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
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
