// `mailseal serve` runs with a 16-thread libuv pool (bin/mailseal.js): the key wrapping and every
// fsync share that pool, and 4 threads would leave sealing waiting behind a few fsyncs. The size
// only takes effect if it is set before the pool starts, which an ES-module entry point is too
// late for — this catches that coming back. UV_THREADPOOL_SIZE from the environment still wins.
// And the compiled dist/ is what runs, but only while it matches src/ (bin/dist.cjs).

import test from 'ava';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { sandbox, startAgent } from '../helpers/agent.ts';

async function threads(env: NodeJS.ProcessEnv): Promise<number> {
  return (await started(env)).threads;
}

/** Start the agent; its thread count and start-up log line. */
async function started(env: NodeJS.ProcessEnv): Promise<{ threads: number; event: Record<string, unknown> }> {
  const sb = sandbox('mst-');
  const agent = await startAgent({ ...sb, env: Object.fromEntries(Object.entries(sb.env).filter(([k]) => k !== 'UV_THREADPOOL_SIZE')) }, [], env);
  try {
    return {
      threads: fs.readdirSync(`/proc/${agent.proc.pid}/task`).length,
      event: agent.events().find((e) => e.msg === 'mailseal serving LMTP')!,
    };
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

test('the agent runs dist/ when it was built from the current sources, else src/ through tsx', async (t) => {
  const require = createRequire(import.meta.url);
  const { freshDist } = require('../../bin/dist.cjs') as { freshDist: () => string | null };
  const expected = freshDist() ? 'dist' : 'src (tsx)'; // `npm test` builds first: dist in CI
  if (process.env.CI) t.is(expected, 'dist', 'CI runs npm test, which builds dist/');
  const { event } = await started({});
  t.is(event.code, expected);
});
