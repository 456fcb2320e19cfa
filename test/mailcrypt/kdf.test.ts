// The check-hash chain computed with one SHA-256 compression per step equals the chain computed
// with node:crypto, for random key material and any number of rounds.

import test from 'ava';
import crypto from 'node:crypto';
import fc from 'fast-check';
import { checkHash } from '../../src/mailcrypt/kdf.ts';

function reference(kd: Buffer, rounds: number): Buffer {
  let h = crypto.createHash('sha256').update(kd).digest();
  const block = Buffer.alloc(36);
  for (let i = 1; i <= rounds; i++) {
    h.copy(block, 0);
    block.writeUInt32BE(i, 32);
    h = crypto.createHash('sha256').update(block).digest();
  }
  return h;
}

test('checkHash equals the node:crypto chain (2048 rounds and random rounds)', (t) => {
  const kd = crypto.randomBytes(60);
  t.deepEqual(checkHash(kd, 2048), reference(kd, 2048));
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 80 }), fc.integer({ min: 0, max: 300 }), (b, r) =>
    checkHash(Buffer.from(b), r).equals(reference(Buffer.from(b), r))), { numRuns: 100 });
  t.pass();
});
