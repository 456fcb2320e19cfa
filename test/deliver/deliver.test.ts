// deliver()'s guessed seal: with the key of the last delivery to a folder known, the seal starts
// beside the lookup that checks the key, and is used only when the lookup confirms that key. A
// rotated key gets a fresh seal and the guessed one's key material is wiped; a failed lookup
// fails the delivery (no file anywhere) and wipes it too.

import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { deliver, type Seal, type Target } from '../../src/deliver/deliver.ts';
import { MailsealError } from '../../src/errors.ts';
import { decodeHeader } from '../../src/mailcrypt/format.ts';
import { type EcPrivateKey, type EcPublicKey, generateKey, publicOnly } from '../../src/mailcrypt/keys.ts';
import { openFile } from '../../src/mailcrypt/open.ts';
import { nativeSeal, type Probe, type ProbePaths } from '../../src/mailcrypt/native.ts';
import { makeSealParams, type SealParams } from '../../src/mailcrypt/seal.ts';

const MSG = Buffer.from('Subject: guessed\r\n\r\nthe body, line one\r\nline two\r\n');

function folder(t: import('ava').ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msd-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const sub of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(dir, sub));
  return dir;
}

/**
 * A seal that records each key it was asked for (`started`, at once) and the parameters it gave
 * (`calls`, when done); `fail(to)` makes it reject for that key instead.
 */
function recordingSeal(fail: (to: EcPublicKey) => boolean = () => false) {
  const started: EcPublicKey[] = [];
  const calls: { to: EcPublicKey; params: SealParams }[] = [];
  const seal: Seal = async (to) => {
    started.push(to);
    if (fail(to)) throw new MailsealError('internal', 'sealing failed: a worker exited');
    const params = await makeSealParams(to);
    calls.push({ to, params });
    return params;
  };
  return { seal, calls, started };
}

async function run(target: Target, seal: Seal) {
  const [r] = await deliver({
    source: Readable.from([MSG]),
    targets: [target],
    seal,
    trace: { from: 'a@example.net', helo: 'h', remoteAddress: '127.0.0.1', host: 'test', id: 'G' },
  });
  return r!;
}

async function plaintext(file: string, key: EcPrivateKey): Promise<string> {
  let out = '';
  const sink = new Writable({ write: (c: Buffer, _e, cb) => ((out += c.toString('latin1')), cb()) });
  await openFile(file, (id) => (id === key.id ? key : null), sink);
  return out;
}

const zero = (b: Buffer) => b.every((x) => x === 0);

/** Until `n` seals have finished (at most 20 s), and the callbacks queued behind them have run. */
async function settled(calls: unknown[], n: number): Promise<void> {
  for (let i = 0; i < 2000 && calls.length < n; i++) await new Promise((res) => setTimeout(res, 10));
  await new Promise((res) => setImmediate(res));
}

test('guess confirmed: one seal, started before the lookup answered, to that key; the mail opens with it', async (t) => {
  const dir = folder(t);
  const key = await generateKey('secp521r1');
  const { seal, calls, started } = recordingSeal();
  let startedBeforeLookup = -1;
  const lookup = async () => {
    await new Promise((res) => setTimeout(res, 20));
    startedBeforeLookup = started.length;
    return publicOnly(key); // another object than the guess, the same key
  };
  const r = await run({ rcpt: 'a@x', folder: dir, key: lookup, guess: () => publicOnly(key) }, seal);
  t.true(r.ok);
  t.is(startedBeforeLookup, 1, 'the seal to the guess ran beside the lookup');
  t.is(calls.length, 1);
  t.is(calls[0]!.to.id, key.id);
  const file = r.ok ? r.path : '';
  t.is(decodeHeader(fs.readFileSync(file)).stanzas[0]!.keyId, key.id);
  t.true((await plaintext(file, key)).endsWith('the body, line one\nline two\n'));
});

test('guess wrong (key rotated): sealed to the looked-up key; the guessed seal is wiped unused', async (t) => {
  const dir = folder(t);
  const old = await generateKey('prime256v1');
  const now = await generateKey('prime256v1');
  const { seal, calls } = recordingSeal();
  const r = await run({ rcpt: 'a@x', folder: dir, key: async () => publicOnly(now), guess: () => publicOnly(old) }, seal);
  t.true(r.ok);
  await settled(calls, 2);
  t.deepEqual(calls.map((c) => c.to.id).sort(), [old.id, now.id].sort(), 'the guess, then the right key');
  const file = r.ok ? r.path : '';
  t.is(decodeHeader(fs.readFileSync(file)).stanzas[0]!.keyId, now.id);
  t.true((await plaintext(file, now)).includes('line two'));
  await t.throwsAsync(plaintext(file, old), undefined, 'not readable with the old key');
  t.true(zero(calls.find((c) => c.to.id === old.id)!.params.kd), 'guessed key material wiped');
  t.is(fs.readdirSync(path.join(dir, 'new')).length, 1);
});

test('lookup fails with a guess: the delivery fails, nothing stored, the guessed seal wiped', async (t) => {
  const dir = folder(t);
  const old = await generateKey('secp521r1');
  const { seal, calls } = recordingSeal();
  const r = await run({
    rcpt: 'a@x',
    folder: dir,
    key: async () => {
      throw new MailsealError('no-key', 'the user has no key');
    },
    guess: () => publicOnly(old),
  }, seal);
  t.false(r.ok);
  t.is(r.ok ? '' : r.error.code, 'no-key');
  await settled(calls, 1); // the guessed seal may still be running when the delivery has failed
  t.is(calls.length, 1);
  t.true(zero(calls[0]!.params.kd), 'guessed key material wiped');
  for (const sub of ['new', 'tmp', 'cur']) t.deepEqual(fs.readdirSync(path.join(dir, sub)), [], sub);
});

test('the guessed seal fails before the lookup answers: no unhandled rejection; a rotated key is sealed to anyway', async (t) => {
  const dir = folder(t);
  const old = await generateKey('prime256v1');
  const now = await generateKey('prime256v1');
  const { seal, calls } = recordingSeal((to) => to.id === old.id);
  // The agent has no 'unhandledRejection' listener: one would end it (Node's default).
  const unhandled: unknown[] = [];
  const note = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', note);
  t.teardown(() => process.off('unhandledRejection', note));
  const lookup = async () => {
    await new Promise((res) => setTimeout(res, 50)); // the guessed seal has long failed by now
    return publicOnly(now);
  };
  const r = await run({ rcpt: 'a@x', folder: dir, key: lookup, guess: () => publicOnly(old) }, seal);
  t.deepEqual(unhandled, []);
  t.true(r.ok, r.ok ? '' : r.error.message);
  t.deepEqual(calls.map((c) => c.to.id), [now.id]);
  t.true((await plaintext(r.ok ? r.path : '', now)).includes('line one'));
});

test('the guessed seal fails and the lookup confirms the key: the delivery fails (4xx), nothing stored', async (t) => {
  const dir = folder(t);
  const key = await generateKey('secp521r1');
  const { seal, started } = recordingSeal(() => true);
  const lookup = async () => {
    await new Promise((res) => setTimeout(res, 50));
    return publicOnly(key);
  };
  const r = await run({ rcpt: 'a@x', folder: dir, key: lookup, guess: () => publicOnly(key) }, seal);
  t.false(r.ok);
  t.is(r.ok ? '' : r.error.code, 'internal');
  t.is(started.length, 1, 'not sealed twice');
  for (const sub of ['new', 'tmp', 'cur']) t.deepEqual(fs.readdirSync(path.join(dir, sub)), [], sub);
});

(nativeSeal() ? test : test.skip)('probe paths: the guessed seal reads them in its own job and the lookup gets what it read; else the lookup reads', async (t) => {
  const dir = folder(t);
  const uidlist = path.join(dir, 'dovecot-uidlist');
  fs.writeFileSync(uidlist, '3 V1 N1 G0123456789abcdef0123456789abcdef\n');
  const key = await generateKey('prime256v1');
  const asked: (ProbePaths | undefined)[] = [];
  const native: Seal = Object.assign(
    async (to: EcPublicKey, probe?: ProbePaths) => {
      asked.push(probe);
      return makeSealParams(to, { probe });
    },
    { readsProbe: true },
  );
  const got: (Probe | null | undefined)[] = [];
  const target: Target = {
    rcpt: 'a@x',
    folder: dir,
    key: async (probe) => (got.push(probe), publicOnly(key)),
    guess: () => publicOnly(key),
    probe: [uidlist, path.join(dir, 'no-dict')],
  };
  t.true((await run(target, native)).ok);
  t.deepEqual(asked, [target.probe], 'the seal was asked to read');
  t.deepEqual(got, [{ head: fs.readFileSync(uidlist), dict: null }], 'the lookup got its reads');

  // A seal that reads nothing (the worker pool) is not asked to, and the lookup does not wait
  // for it; with no guess (a folder's first delivery) the lookup reads before any seal.
  got.length = 0;
  asked.length = 0;
  let sealDone = false;
  const pool: Seal = async (to, probe) => {
    asked.push(probe);
    await new Promise((res) => setTimeout(res, 50));
    sealDone = true;
    return makeSealParams(to);
  };
  let lookupBeforeSeal = false;
  t.true((await run({ ...target, key: async (p) => ((lookupBeforeSeal = !sealDone), got.push(p), publicOnly(key)) }, pool)).ok);
  t.true(lookupBeforeSeal, 'the lookup ran beside the seal, not after it');
  t.true((await run({ ...target, guess: undefined }, native)).ok);
  t.deepEqual(got, [undefined, undefined]);
  t.deepEqual(asked, [undefined, undefined], 'neither seal was asked to read');
  t.is(fs.readdirSync(path.join(dir, 'new')).length, 3);
});
