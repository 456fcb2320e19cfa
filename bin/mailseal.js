#!/usr/bin/env node
// mailseal entry point: loads the TypeScript sources through tsx, then runs the CLI.
//
// libuv's threadpool runs the key wrapping (src/native) and every file-system call; fsync
// holds a thread for milliseconds, so the default of 4 would leave sealing waiting behind a few
// fsyncs. The size is read once, at the pool's first use, which is after this line.
process.env.UV_THREADPOOL_SIZE ??= '16';
const { register } = await import('tsx/esm/api');

register();
await import('../src/main.ts');
