// `mailseal serve` runs with a 16-thread libuv pool (bin/mailseal.js): the key wrapping and every
// fsync share that pool, and 4 threads would leave sealing waiting behind a few fsyncs. The size
// only takes effect if it is set before the pool starts, which an ES-module entry point is too
// late for — this catches that coming back. UV_THREADPOOL_SIZE from the environment still wins.

import test from 'ava';
import fs from 'node:fs';
import { sandbox, startAgent } from '../helpers/agent.ts';

async function threads(env: NodeJS.ProcessEnv): Promise<number> {
  const sb = sandbox('mst-');
  const agent = await startAgent({ ...sb, env: Object.fromEntries(Object.entries(sb.env).filter(([k]) => k !== 'UV_THREADPOOL_SIZE')) }, [], env);
  try {
    return fs.readdirSync(`/proc/${agent.proc.pid}/task`).length;
  } finally {
    await agent.kill();
    sb.cleanup();
  }
}

test('the agent starts 16 threadpool threads unless UV_THREADPOOL_SIZE says otherwise', async (t) => {
  const byDefault = await threads({});
  const one = await threads({ UV_THREADPOOL_SIZE: '1' });
  t.is(byDefault - one, 15, `${byDefault} threads by default, ${one} with a pool of 1`);
});
