// Key derivation used by dcrypt: PBKDF2-HMAC-SHA256 (spec §2.3 step 3, §3.2) and the
// iterated SHA-256 check hash over the message key material (spec §2.3).

import crypto from 'node:crypto';
import { promisify } from 'node:util';
import { sha256Chain } from './sha256chain.ts';

const pbkdf2Async = promisify(crypto.pbkdf2);

/** PBKDF2-HMAC-SHA256 on libuv's threadpool. */
export function pbkdf2(password: Buffer, salt: Buffer, rounds: number, length: number): Promise<Buffer> {
  return pbkdf2Async(password, salt, rounds, length, 'sha256');
}

/**
 * Dovecot's key-material check hash: h0 = SHA-256(kd), hi = SHA-256(h(i-1) ‖ u32be(i)) for
 * i = 1…rounds; returns h(rounds).
 */
export function checkHash(kd: Buffer, rounds: number): Buffer {
  return sha256Chain(crypto.createHash('sha256').update(kd).digest(), rounds);
}
