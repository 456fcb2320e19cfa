// The dovecot-attributes file dict: Dovecot's own files parse and re-serialise to the same
// entries; escaping round-trips; updates follow the dotlock protocol under concurrency (threads
// of this process and other processes), remove stale locks, time out, and keep the file whole.

import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MailsealError } from '../../src/errors.ts';
import { escape, parseDict, serializeDict, unescape } from '../../src/store/attributes.ts';
import { readDict, updateDict } from '../../src/store/dictfile.ts';
import { activeId, activePublicKey, listKeys } from '../../src/store/keyring.ts';
import { REPO, vectorUsers, VECTORS } from '../helpers/vectors.ts';

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-dict-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

for (const u of vectorUsers()) {
  test(`${u.dir}: Dovecot's dict parses, keyring finds the keys, serialise gives the same lines`, (t) => {
    const text = fs.readFileSync(path.join(VECTORS, u.dir, 'Maildir', 'dovecot-attributes'), 'utf8');
    const d = parseDict(text);
    t.is(activeId(d, 'user', u.inbox_guid), u.user_key_id);
    t.is(activeId(d, 'folder', u.inbox_guid), u.active_folder_key_id);
    t.is(activePublicKey(d, 'folder', u.inbox_guid)!.id, u.active_folder_key_id);
    const keys = listKeys(d);
    t.deepEqual(keys.filter((k) => k.scope === 'folder').map((k) => k.id).sort(), [...u.folder_key_ids].sort());
    t.true(keys.every((k) => k.hasPublic && k.hasPrivate));
    const lines = (s: string) => {
      const l = s.split('\n');
      const pairs: string[] = [];
      for (let i = 0; i + 1 < l.length; i += 2) pairs.push(`${l[i]}\n${l[i + 1]}`);
      return pairs.sort();
    };
    t.deepEqual(lines(serializeDict(d)), lines(text));
  });
}

test('escaping: \\x01, TAB, CR, LF round-trip; reading stops at a key without a value', (t) => {
  const m = new Map([['a\tb', 'x\ny\rz\x01w'], ['plain', 'value']]);
  const s = serializeDict(m);
  t.is(s.split('\n').length, 5);
  t.deepEqual(parseDict(s), m);
  t.is(unescape(escape('\x01\t\r\n')), '\x01\t\r\n');
  t.is(unescape('a\x010b'), 'a\0b');
  t.deepEqual([...parseDict('k1\nv1\nk2\n').keys()], ['k1']);
  t.throws(() => unescape('bad\x01x'), { instanceOf: MailsealError });
});

test('updateDict: writes the whole file by rename, keeps mode, leaves no lock', async (t) => {
  const d = tmp(t);
  const f = path.join(d, 'dovecot-attributes');
  fs.writeFileSync(f, 'k\nv\n', { mode: 0o640 });
  fs.chmodSync(f, 0o640);
  const ino = fs.statSync(f).ino;
  t.true(await updateDict(f, (m) => void m.set('k2', 'v2')));
  t.is(fs.readFileSync(f, 'utf8'), 'k\nv\nk2\nv2\n');
  t.is(fs.statSync(f).mode & 0o777, 0o640);
  t.not(fs.statSync(f).ino, ino, 'replaced by rename, never edited in place');
  t.false(fs.existsSync(f + '.lock'));
  t.false(await updateDict(f, () => false), 'no change, nothing written');
  await t.throwsAsync(updateDict(f, () => {
    throw new Error('boom');
  }), { message: 'boom' });
  t.is(fs.readFileSync(f, 'utf8'), 'k\nv\nk2\nv2\n', 'a failing update leaves the dict as it was');
  t.false(fs.existsSync(f + '.lock'));
});

test('updateDict: 20 concurrent updaters here and 3 other processes lose no entry', async (t) => {
  const d = tmp(t);
  const f = path.join(d, 'dovecot-attributes');
  const script = `import { updateDict } from ${JSON.stringify(path.join(REPO, 'src/store/dictfile.ts'))};
    for (let i = 0; i < 10; i++) await updateDict(process.argv[1], (m) => void m.set('proc' + process.argv[2] + '-' + i, 'x'));`;
  const children = [0, 1, 2].map((n) => new Promise<number | null>((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, f, String(n)], { cwd: REPO, stdio: 'inherit' });
    p.on('exit', resolve);
  }));
  await Promise.all(Array.from({ length: 20 }, (_, i) => updateDict(f, async (m) => {
    await new Promise((r) => setTimeout(r, Math.random() * 5));
    m.set(`local-${i}`, String(i));
  })));
  t.deepEqual(await Promise.all(children), [0, 0, 0]);
  const { dict } = await readDict(f);
  t.is(dict.size, 20 + 30);
  t.false(fs.existsSync(f + '.lock'));
});

test('updateDict: a stale lock is removed; a live one times out with `locked`', async (t) => {
  const d = tmp(t);
  const f = path.join(d, 'dovecot-attributes');
  fs.writeFileSync(f + '.lock', 'half-written');
  const old = new Date(Date.now() - 120_000);
  fs.utimesSync(f + '.lock', old, old);
  t.true(await updateDict(f, (m) => void m.set('a', 'b'), { staleMs: 60_000 }));
  t.deepEqual([...(await readDict(f)).dict], [['a', 'b']]);
  fs.writeFileSync(f + '.lock', 'held');
  const err = await t.throwsAsync(updateDict(f, (m) => void m.set('c', 'd'), { timeoutMs: 300 }));
  t.is((err as MailsealError).code, 'locked');
  t.is(fs.readFileSync(f + '.lock', 'utf8'), 'held', "someone else's lock is not touched");
});

test('updateDict: a writer whose lock was broken as stale and re-taken by another writes nothing and leaves the other lock alone', async (t) => {
  const d = tmp(t);
  const f = path.join(d, 'dovecot-attributes');
  await updateDict(f, (m) => void m.set('kept', 'yes'));
  const err = await t.throwsAsync(updateDict(f, (m) => {
    // Meanwhile another process judged our lock stale, removed it and took its own.
    fs.unlinkSync(f + '.lock');
    fs.writeFileSync(f + '.lock', 'the other writer');
    m.set('lost', 'write');
  }));
  t.is((err as MailsealError).code, 'locked');
  t.deepEqual([...(await readDict(f)).dict], [['kept', 'yes']], 'the dict is as it was');
  t.is(fs.readFileSync(f + '.lock', 'utf8'), 'the other writer', 'the other lock is not removed or renamed over the dict');
});
