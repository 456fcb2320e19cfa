// Fuzz: the dict, uidlist and file-name parsers take random and mutated input and give a
// result or a bad-format MailsealError, never another exception.

import test from 'ava';
import fc from 'fast-check';
import fs from 'node:fs';
import path from 'node:path';
import { typed } from '../helpers/typed.ts';
import { parseDict } from '../../src/store/attributes.ts';
import { listKeys, activePublicKey } from '../../src/store/keyring.ts';
import { parseUidlistGuid } from '../../src/maildir/uidlist.ts';
import { parseMaildirName } from '../../src/maildir/filename.ts';
import { vectorUsers, VECTORS } from '../helpers/vectors.ts';

const numRuns = process.env.SLOW ? 2000 : 300;
const u = vectorUsers()[0]!;
const dictText = fs.readFileSync(path.join(VECTORS, u.dir, 'Maildir', 'dovecot-attributes'), 'utf8');
const uidlist = fs.readFileSync(path.join(VECTORS, u.dir, 'Maildir', 'dovecot-uidlist'), 'utf8');


const mutate = (s: string) => fc.tuple(fc.nat(s.length), fc.nat(s.length), fc.string({ maxLength: 5 }))
  .map(([a, b, ins]) => s.slice(0, Math.min(a, b)) + ins + s.slice(Math.max(a, b)));

test('dict + keyring: random and mutated dicts', (t) => {
  for (const arb of [fc.string({ maxLength: 500 }), mutate(dictText)]) {
    fc.assert(fc.property(arb, (s) => typed(() => {
      const d = parseDict(s);
      listKeys(d);
      activePublicKey(d, 'folder', u.inbox_guid);
      activePublicKey(d, 'user', u.inbox_guid);
    })), { numRuns });
  }
  t.pass();
});

test('uidlist and file names: random and mutated input', (t) => {
  for (const arb of [fc.string({ maxLength: 200 }), mutate(uidlist)]) {
    fc.assert(fc.property(arb, (s) => typed(() => parseUidlistGuid(s)) && typed(() => parseMaildirName(s))), { numRuns });
  }
  t.pass();
});
