// FolderKeys, the delivery path's cache of folder GUIDs and dicts: it answers from memory while
// nothing changed, and follows every change another process makes — a rotated key (the dict
// replaced by rename), a folder deleted and made again (a new uidlist, a new GUID and key).

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { openDb } from '../../src/accounts/db.ts';
import { addUser } from '../../src/accounts/users.ts';
import { generateKey } from '../../src/mailcrypt/keys.ts';
import { formatPrivateKey, formatPublicKey } from '../../src/mailcrypt/keystring.ts';
import { folderPath } from '../../src/maildir/paths.ts';
import { ensureMailbox, readMailboxGuid } from '../../src/maildir/uidlist.ts';
import { readDict, updateDict } from '../../src/store/dictfile.ts';
import { DICT_NAME, FolderKeys } from '../../src/store/folderkeys.ts';
import { activePublicKey, putKey } from '../../src/store/keyring.ts';
import { sandbox } from '../helpers/agent.ts';

test('cached while unchanged; a rotated key and a re-created folder are seen at once', async (t) => {
  const sb = sandbox('msk-');
  t.teardown(() => sb.cleanup());
  const db = openDb(sb.db);
  t.teardown(() => db.close());
  const added = await addUser(db, sb.maildir, { address: 'kim@example.org', password: 'folder-keys-password', curve: 'prime256v1' });
  const maildir = path.join(added.home, 'Maildir');
  const keys = new FolderKeys();

  t.is(keys.lastKey(maildir), undefined, 'no guess before the first lookup');
  const k1 = await keys.activeKey(maildir, maildir);
  t.is(await keys.activeKey(maildir, maildir), k1, 'same object from the cache');
  t.is(keys.lastKey(maildir), k1, 'the last key looked up is the guess');

  // Another process rotates the INBOX key.
  const guid = (await readMailboxGuid(maildir))!;
  let rotated = '';
  await updateDict(path.join(maildir, DICT_NAME), async (dict) => {
    const user = activePublicKey(dict, 'user', guid)!;
    const k = await generateKey(user.curve);
    putKey(dict, 'folder', guid, { id: k.id, publicString: formatPublicKey(k), privateString: await formatPrivateKey(k, { to: user }) }, true);
    rotated = k.id;
  });
  t.is(keys.lastKey(maildir), k1, 'the guess is only what the last lookup found');
  t.is((await keys.activeKey(maildir, maildir)).id, rotated);
  t.is(keys.lastKey(maildir)!.id, rotated);

  // A folder gets a key on first use; deleted and made again (as an IMAP client may), it is a new
  // mailbox: new GUID, new key, never the old folder's.
  const box = folderPath(maildir, 'Lists');
  const g1 = await ensureMailbox(box);
  const f1 = await keys.activeKey(maildir, box);
  t.is((await keys.activeKey(maildir, box)).id, f1.id);
  fs.rmSync(box, { recursive: true });
  const g2 = await ensureMailbox(box);
  t.not(g1, g2);
  t.is(keys.lastKey(box)!.id, f1.id);
  const f2 = await keys.activeKey(maildir, box);
  t.not(f2.id, f1.id);
  t.is(keys.lastKey(box), f2);
  keys.clear();
  t.is(keys.lastKey(box), undefined, 'clear() (SIGHUP) forgets the guesses too');
  const { dict } = await readDict(path.join(maildir, DICT_NAME));
  t.is(activePublicKey(dict, 'folder', g2)!.id, f2.id, 'the key is the new GUID\'s');
});

test('with a probe (the reads the seal job made) the lookup trusts it: its GUID, its dict stamp, no reads of its own', async (t) => {
  const sb = sandbox('msk-');
  t.teardown(() => sb.cleanup());
  const db = openDb(sb.db);
  t.teardown(() => db.close());
  const added = await addUser(db, sb.maildir, { address: 'lou@example.org', password: 'folder-keys-password', curve: 'prime256v1' });
  const maildir = path.join(added.home, 'Maildir');
  const [uidlistPath, dictPath] = FolderKeys.probePaths(maildir, maildir);
  t.is(uidlistPath, path.join(maildir, 'dovecot-uidlist'));
  t.is(dictPath, path.join(maildir, DICT_NAME));
  const head = fs.readFileSync(uidlistPath);
  const st = fs.statSync(dictPath);
  const probe = { head, dict: { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs } };
  const keys = new FolderKeys();
  const k1 = await keys.activeKey(maildir, maildir, probe);

  // The files on disk are made unreadable as a uidlist: a lookup with the probe does not read them.
  fs.renameSync(uidlistPath, `${uidlistPath}.away`);
  fs.writeFileSync(uidlistPath, 'garbage\n');
  t.is(await keys.activeKey(maildir, maildir, probe), k1, 'same key, from the probe and the cache');
  await t.throwsAsync(keys.activeKey(maildir, maildir), { message: /dovecot-uidlist/ }, 'without a probe it reads the file');
  fs.renameSync(`${uidlistPath}.away`, uidlistPath);

  // A probe whose stamp differs from the cached one makes the lookup read the dict again.
  const guid = (await readMailboxGuid(maildir))!;
  let rotated = '';
  await updateDict(dictPath, async (dict) => {
    const user = activePublicKey(dict, 'user', guid)!;
    const k = await generateKey(user.curve);
    putKey(dict, 'folder', guid, { id: k.id, publicString: formatPublicKey(k), privateString: await formatPrivateKey(k, { to: user }) }, true);
    rotated = k.id;
  });
  t.is((await keys.activeKey(maildir, maildir, probe)).id, k1.id, 'the stale stamp still matches the cache: the probe is trusted');
  const st2 = fs.statSync(dictPath);
  t.is((await keys.activeKey(maildir, maildir, { head, dict: { ino: st2.ino, size: st2.size, mtimeMs: st2.mtimeMs } })).id, rotated);

  // A folder deleted and made again shows its new GUID in the probe's head: a new key.
  const box = folderPath(maildir, 'Lists');
  await ensureMailbox(box);
  const probeOf = () => {
    const [u, d] = FolderKeys.probePaths(maildir, box);
    const s = fs.statSync(d);
    return { head: fs.readFileSync(u), dict: { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs } };
  };
  const f1 = await keys.activeKey(maildir, box, probeOf());
  fs.rmSync(box, { recursive: true });
  await ensureMailbox(box);
  const f2 = await keys.activeKey(maildir, box, probeOf());
  t.not(f2.id, f1.id);
  t.is((await keys.activeKey(maildir, box)).id, f2.id, 'the same key as a lookup that reads for itself');
});
