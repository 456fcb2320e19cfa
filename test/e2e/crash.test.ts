// kill -9 of the agent in the middle of a stream of deliveries: every message that got a 250
// is on disk and decrypts, nothing half-written is visible in new/, nothing is in clear, and the
// next start sweeps the (encrypted) leftovers from tmp/.

import test from 'ava';
import crypto from 'node:crypto';
import path from 'node:path';
import { addUser, sandbox, startAgent } from '../helpers/agent.ts';
import { LmtpClient } from '../helpers/lmtp.ts';
import { files, grepTree, homeOf, readMailbox } from '../helpers/mailbox.ts';

const PW = 'crash-test-password';

test('kill -9 during deliveries loses no acknowledged message and leaves nothing partial', async (t) => {
  const sb = sandbox('msk-');
  t.teardown(() => sb.cleanup());
  await addUser(sb, 'kim@example.org', PW, 'secp521r1');
  const agent = await startAgent(sb);
  t.teardown(() => agent.kill());

  const acked: string[] = [];
  const sent: string[] = [];
  let stop = false;
  // Four pipelined senders, each on its own connection, until the agent dies.
  const sender = async () => {
    const c = await LmtpClient.connect(agent.port);
    await c.reply();
    await c.cmd('LHLO crash');
    while (!stop) {
      const tok = `K${crypto.randomBytes(8).toString('hex')}`;
      sent.push(tok);
      if ((await c.cmd('MAIL FROM:<s@example.net>')).code !== 250) break;
      if ((await c.cmd('RCPT TO:<kim@example.org>')).code !== 250) break;
      if ((await c.cmd('DATA')).code !== 354) break;
      c.sendData(Buffer.from(`Subject: ${tok}\r\n\r\n${`${tok} body line\r\n`.repeat(2000)}`));
      const r = await c.reply();
      if (r.code !== 250) break;
      acked.push(tok);
    }
    c.close();
  };
  const senders = [sender(), sender(), sender(), sender()];
  while (acked.length < 20) await new Promise((r) => setTimeout(r, 10));
  await agent.kill();
  stop = true;
  await Promise.all(senders);
  t.true(sent.length > acked.length, 'some messages were in flight when the agent died');

  const home = homeOf(sb.maildir, 'kim@example.org');
  const box = await readMailbox(home, PW); // throws if any file in new/ is partial or damaged
  const stored = box.map((m) => /Subject: (K[0-9a-f]+)/.exec(m.plain.toString())![1]!);
  for (const tok of acked) t.true(stored.includes(tok), `acknowledged ${tok} is stored`);
  for (const m of box) t.is(m.size, m.plain.length, 'complete file (S= matches)');
  for (const tok of sent) t.deepEqual(grepTree(sb.dir, tok), [], 'no plaintext, not even in tmp/');

  const leftovers = files(path.join(home, 'Maildir', 'tmp')).length;
  const restarted = await startAgent(sb);
  t.teardown(() => restarted.kill());
  t.deepEqual(files(path.join(home, 'Maildir', 'tmp')), [], 'tmp/ swept at start');
  t.log(`${acked.length} acknowledged of ${sent.length} sent before the kill; ${box.length} stored; ${leftovers} tmp/ leftovers swept`);
});
