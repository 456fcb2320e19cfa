#!/usr/bin/env node
// mailseal entry point: runs the compiled dist/ when it was built from the current sources (npm
// run build; see bin/dist.cjs), else the TypeScript in src/ through tsx.
//
// CommonJS on purpose (bin/package.json): libuv's threadpool runs the key wrapping (src/native)
// and every file-system call, and fsync holds a thread for milliseconds, so the default of 4
// would leave sealing waiting behind a few fsyncs. Its size is read once, when the pool first
// starts — and Node's ES-module loader starts it to read an ES-module entry file, before any of
// that file's code runs. A CommonJS entry is read synchronously, so this line comes first.
'use strict';
process.env.UV_THREADPOOL_SIZE ??= '16';

const { pathToFileURL } = require('node:url');
const dist = require('./dist.cjs').freshDist();
process.env.MAILSEAL_CODE = dist ? 'dist' : 'src (tsx)'; // for the start-up log

(dist
  ? import(pathToFileURL(dist).href)
  : import('tsx/esm/api').then(({ register }) => {
      register();
      return import('../src/main.ts');
    })
).catch((err) => {
  console.error(err);
  process.exit(1);
});
