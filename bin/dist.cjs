// The compiled JavaScript in dist/: `node bin/dist.cjs build` (npm run build) compiles src/ with
// tsc and records how new the sources were; bin/mailseal.js runs dist/ only while that record
// still matches src/, and src/ through tsx otherwise — a stale build is never run. dist/ spares
// the agent tsx's loader thread (≈30 MiB of memory) and the compile at start-up.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const SRC = path.join(ROOT, 'src');
const DIST = path.join(ROOT, 'dist');
const STAMP = path.join(DIST, '.built-from');

/** Newest modification time (ms) of the files that make up dist/: src/ without the addon's build. */
function newestSource(dir = SRC) {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (p !== path.join(SRC, 'native')) newest = Math.max(newest, fs.statSync(p).mtimeMs, newestSource(p));
    } else if (e.name.endsWith('.ts') || e.name.endsWith('.sql')) {
      newest = Math.max(newest, fs.statSync(p).mtimeMs);
    }
  }
  return newest;
}

/** dist/main.js if dist/ was built from the sources as they are now, else null. */
function freshDist() {
  try {
    const built = JSON.parse(fs.readFileSync(STAMP, 'utf8'));
    return built.newest === newestSource() ? path.join(DIST, 'main.js') : null;
  } catch {
    return null;
  }
}

function build() {
  let tsc;
  try {
    tsc = require.resolve('typescript/bin/tsc');
  } catch {
    console.error('mailseal: typescript is not installed (npm ci --omit=dev?): dist/ not built; mailseal runs src/ through tsx');
    return;
  }
  const newest = newestSource();
  fs.rmSync(DIST, { recursive: true, force: true });
  execFileSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
  fs.cpSync(path.join(SRC, 'accounts', 'migrations'), path.join(DIST, 'accounts', 'migrations'), { recursive: true });
  fs.writeFileSync(STAMP, JSON.stringify({ newest }) + '\n');
}

module.exports = { freshDist, newestSource };

if (require.main === module && process.argv[2] === 'build') build();
