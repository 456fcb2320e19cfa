/* SHA-256 for the fixed-size work of mail_crypt v2 key wrapping (PBKDF2-HMAC-SHA256 and the
 * 2048-step check-hash chain). One block compression, with the x86 SHA extensions when the CPU
 * has them and portable C otherwise. */
#ifndef MAILSEAL_SHA256_H
#define MAILSEAL_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* Compress one 64-byte block into state[8]. */
typedef void (*sha256_compress_fn)(uint32_t state[8], const uint8_t block[64]);

typedef struct {
  const char *name;
  sha256_compress_fn one;
  /* n ≤ 3 independent (state, block) pairs at once. */
  void (*many)(uint32_t *const s[], const uint8_t *const b[], int n);
  /* Optional: mailcrypt_kdf's iterations (i = 1 … rounds) with everything in registers: HMAC
   * states inner/outer, PBKDF2's U (as the next inner block's first 32 bytes) and running XOR of
   * blocks a and b, the chain's h; ua, ub, acca, accb and c are updated in place. */
  void (*kdf_rounds)(const uint32_t inner[8], const uint32_t outer[8], uint8_t ua[64], uint8_t ub[64],
                     uint32_t acca[8], uint32_t accb[8], uint8_t c[64], uint32_t rounds);
} Sha256;

/* The fastest compression this CPU can run. */
const Sha256 *sha256_pick(void);

/* The plain C compression (also where SHA-NI exists, for tests). */
extern const Sha256 SHA256_PORTABLE;

/* SHA-256 of data[len], continuing from `state` after `prefix` bytes already compressed. */
void sha256_finish(sha256_compress_fn f, const uint32_t state[8], uint64_t prefix,
                   const uint8_t *data, size_t len, uint8_t out[32]);

/* SHA-256 from the standard IV. */
void sha256(sha256_compress_fn f, const uint8_t *data, size_t len, uint8_t out[32]);

/* PBKDF2-HMAC-SHA256. */
void pbkdf2_sha256(sha256_compress_fn f, const uint8_t *pw, size_t pwlen, const uint8_t *salt,
                   size_t saltlen, uint32_t rounds, uint8_t *out, size_t outlen);

/* Dovecot's check-hash chain: h = h0; for i = 1..rounds: h = SHA-256(h || u32be(i)). In place. */
void sha256_chain(sha256_compress_fn f, uint8_t h[32], uint32_t rounds);

/* The key-wrapping KDFs of one mail_crypt message in one pass: t = PBKDF2-HMAC-SHA256(secret,
 * salt, rounds, 48) and check = the chain over SHA-256(kd); PBKDF2's two output blocks and the
 * chain are computed side by side (`many`). */
void mailcrypt_kdf(const Sha256 *h, const uint8_t *secret, size_t secretlen, const uint8_t *salt,
                   size_t saltlen, const uint8_t *kd, size_t kdlen, uint32_t rounds,
                   uint8_t t[48], uint8_t check[32]);

/* Overwrite memory in a way the compiler keeps. */
void wipe(void *p, size_t n);

#endif
