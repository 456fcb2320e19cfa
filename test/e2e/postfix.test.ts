// Through real Postfix: swaks submits to a private Postfix whose virtual_transport is the agent.
// A message lands sealed; a 451 from the agent (user without a usable key) leaves it deferred in
// Postfix's queue and a retry delivers it once the key is back; a 550 from the agent bounces.

import test from 'ava';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { updateDict } from '../../src/store/dictfile.ts';
import { DICT_NAME } from '../../src/store/folderkeys.ts';
import { addUser, sandbox, startAgent } from '../helpers/agent.ts';
import { grepTree, homeOf, readMailbox } from '../helpers/mailbox.ts';
import { startPostfix } from '../helpers/postfix.ts';

const run = promisify(execFile);
const PW = 'postfix-path-password';

async function submit(port: number, to: string, body: string): Promise<string> {
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${port}`, '--from', 'sender@example.net', '--to', to, '--body', body, '--header', `Subject: ${body}`]);
  return stdout;
}

test('Postfix → agent: delivered sealed; 451 deferred then retried; 550 bounced', async (t) => {
  const sb = sandbox('msp-');
  t.teardown(() => sb.cleanup());
  await addUser(sb, 'paul@example.org', PW, 'secp521r1');
  const agent = await startAgent(sb);
  t.teardown(() => agent.kill());
  // Long retry timers: the deferred message must stay deferred until the test flushes the queue
  // (with 1 s timers a loaded machine may already be retrying it when the queue is read).
  const pf = await startPostfix({
    lmtp: `127.0.0.1:${agent.port}`, domains: ['example.org'], mailboxes: ['paul@example.org', 'ghost@example.org'],
    retry: { queueRunDelay: 300, minimalBackoff: 300, maximalBackoff: 600 },
  });
  t.teardown(() => pf.stop());
  const home = homeOf(sb.maildir, 'paul@example.org');

  // 1. Plain delivery.
  const tok1 = `PF${crypto.randomBytes(6).toString('hex')}`;
  t.regex(await submit(pf.smtpPort, 'paul@example.org', tok1), /250 2\.0\.0 Ok: queued/);
  await pf.waitLog(/to=<paul@example\.org>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \(250 2\.0\.0 <paul@example\.org> \S+ Saved\)/);
  const box = await readMailbox(home, PW);
  const m1 = box.find((m) => m.plain.includes(tok1));
  t.truthy(m1, 'delivered and decrypts');
  t.regex(m1!.plain.toString(), /^Return-Path: <sender@example\.net>\nDelivered-To: paul@example\.org\nReceived: from mx\.mailseal\.test /);

  // 2. The agent answers 451 (the user's keys are gone): Postfix defers and keeps the message.
  const dictFile = path.join(home, 'Maildir', DICT_NAME);
  const saved = fs.readFileSync(dictFile);
  await updateDict(dictFile, (d) => d.clear());
  const tok2 = `PF${crypto.randomBytes(6).toString('hex')}`;
  await submit(pf.smtpPort, 'paul@example.org', tok2);
  await pf.waitLog(/to=<paul@example\.org>.*status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 451 4\.3\.0 <paul@example\.org> /);
  const q = await pf.queue();
  t.is(q.length, 1);
  t.is(q[0]!.queue_name, 'deferred');
  t.regex(q[0]!.recipients[0]!.delay_reason ?? '', /451 4\.3\.0/);
  t.deepEqual(grepTree(sb.maildir, tok2), [], 'nothing stored in clear while deferred');

  // The key comes back (restored by rename, as Dovecot writes); the retry delivers it.
  fs.writeFileSync(dictFile + '.new', saved);
  fs.renameSync(dictFile + '.new', dictFile);
  await pf.flush();
  await pf.waitLog(new RegExp(`${q[0]!.queue_id}: to=<paul@example\\.org>.*status=sent \\(250 2\\.0\\.0 `));
  t.truthy((await readMailbox(home, PW)).find((m) => m.plain.includes(tok2)), 'retried and delivered');
  t.deepEqual(await pf.queue(), []);

  // 3. A recipient Postfix knows but the agent does not: 550 → bounce.
  await submit(pf.smtpPort, 'ghost@example.org', 'to nobody');
  await pf.waitLog(/to=<ghost@example\.org>.*status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 <ghost@example\.org> User doesn't exist/);

  for (const tok of [tok1, tok2]) t.deepEqual(grepTree(sb.maildir, tok), [], 'no plaintext at rest');
});
