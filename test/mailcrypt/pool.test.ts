// The worker pool makes the same kind of headers as makeSealParams: what it seals opens with the
// folder key, and a killed worker fails its requests (→ 451) and is replaced.

import test from 'ava';
import crypto from 'node:crypto';
import { OpenStream } from '../../src/mailcrypt/open.ts';
import { SealPool } from '../../src/mailcrypt/pool.ts';
import { SealStream } from '../../src/mailcrypt/seal.ts';
import { generateKey } from '../../src/mailcrypt/keys.ts';
import { through } from '../helpers/streams.ts';

test('pool-made keys seal messages that open with the folder key, on every curve', async (t) => {
  const pool = new SealPool(2);
  t.teardown(() => pool.close());
  for (const curve of ['secp521r1', 'secp384r1', 'prime256v1']) {
    const key = await generateKey(curve);
    const plain = crypto.randomBytes(5000);
    const sealed = await Promise.all([1, 2, 3].map(async () => through(plain, new SealStream(await pool.seal(key)))));
    for (const s of sealed) t.true((await through(s, new OpenStream((id) => (id === key.id ? key : null)))).equals(plain), curve);
    t.false(sealed[0]!.equals(sealed[1]!), 'a fresh message key each time');
  }
});

test('a dead worker fails its requests and is replaced', async (t) => {
  const pool = new SealPool(1);
  t.teardown(() => pool.close());
  const key = await generateKey('secp521r1'); // slow enough that the request is still in flight
  await pool.seal(key);
  const w = (pool as unknown as { workers: import('node:worker_threads').Worker[] }).workers[0]!;
  const inFlight = pool.seal(key);
  await w.terminate();
  await t.throwsAsync(inFlight, { message: /seal worker exited/ });
  const p = await pool.seal(key);
  t.is(p.kd.length, 60, 'the replacement serves');
});

test('a worker that cannot start: ready() rejects and it is retried with a growing delay, not in a busy loop', async (t) => {
  const delays: number[] = [];
  let enough!: () => void;
  const three = new Promise<void>((r) => (enough = r));
  const pool = new SealPool(1, (_slot, ms) => {
    delays.push(ms);
    if (delays.length === 3) enough();
  }, 'throw new Error("cannot load")');
  t.teardown(() => pool.close());
  await t.throwsAsync(pool.ready(), { message: /could not start/ });
  await three;
  t.deepEqual(delays.slice(0, 3), [100, 200, 400]);
});

test('ready() resolves once the workers have loaded', async (t) => {
  const pool = new SealPool(2);
  t.teardown(() => pool.close());
  await t.notThrowsAsync(pool.ready());
  await t.notThrowsAsync(pool.ready(), 'and at once after that');
});
