/* SHA-256 (FIPS 180-4) block compression, PBKDF2-HMAC-SHA256 (RFC 8018) and Dovecot's check-hash
 * chain, for mail_crypt v2 key wrapping. Everything here hashes small fixed inputs thousands of
 * times, so the cost is the compression itself: with the x86 SHA extensions (SHA-NI) one block
 * costs a few dozen nanoseconds; OpenSSL's EVP/HMAC path adds several hundred per PBKDF2 round.
 * Checked against node:crypto in test/mailcrypt/native.test.ts. */

#include "sha256.h"

#include <string.h>

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t IV[8] = {
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline uint32_t load_be32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}

static inline void store_be32(uint8_t *p, uint32_t v) {
  v = __builtin_bswap32(v);
  memcpy(p, &v, 4);
}

/* n state words, big-endian, to out (a digest, or the first bytes of the next block). */
static inline void store_words(uint8_t *out, const uint32_t *w, int n) {
  for (int i = 0; i < n; i++) store_be32(out + 4 * i, w[i]);
}

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress_portable(uint32_t s[8], const uint8_t block[64]) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++) w[i] = load_be32(block + 4 * i);
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

/* SHA-NI: four rounds per pair of sha256rnds2, the message schedule by sha256msg1/msg2 (the
 * layout of Intel's reference code: state kept as ABEF/CDGH). `n` independent blocks go through
 * in lockstep: one chain of sha256rnds2 is bound by its latency, so two or three interleaved
 * streams (PBKDF2's two output blocks and the check-hash chain) cost little more than one. */
#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))
/* pshufb mask: each 32-bit word's bytes reversed (big-endian bytes <-> words). */
#define BSWAP _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)

/* The state as words [A B C D] [E F G H] (lane 0 first) to the ABEF/CDGH order of sha256rnds2. */
SHANI_TARGET __attribute__((always_inline))
static inline void words_to_state(__m128i dcba, __m128i hgfe, __m128i *abef, __m128i *cdgh) {
  __m128i tmp = _mm_shuffle_epi32(dcba, 0xB1); /* CDAB */
  __m128i x = _mm_shuffle_epi32(hgfe, 0x1B);   /* EFGH */
  *abef = _mm_alignr_epi8(tmp, x, 8);
  *cdgh = _mm_blend_epi16(x, tmp, 0xF0);
}

/* n lanes in lockstep: from the states (abef0, cdgh0) compress the blocks whose message words
 * are (w0, w1, w2, w3) (lane i of wj = W(4j+i)); the digests replace w0 (H0…H3) and w1 (H4…H7). */
SHANI_TARGET __attribute__((always_inline))
static inline void lanes(const int n, const __m128i abef0[], const __m128i cdgh0[], __m128i w0[], __m128i w1[],
                         const __m128i w2[], const __m128i w3[]) {
  __m128i st0[3], st1[3], w[3][4];
  for (int k = 0; k < n; k++) {
    st0[k] = abef0[k];
    st1[k] = cdgh0[k];
    w[k][0] = w0[k];
    w[k][1] = w1[k];
    w[k][2] = w2[k];
    w[k][3] = w3[k];
  }
#pragma GCC unroll 16
  for (int g = 0; g < 16; g++) {
    const __m128i kg = _mm_loadu_si128((const __m128i *)&K[4 * g]);
#pragma GCC unroll 3
    for (int k = 0; k < n; k++) {
      __m128i *wk = w[k];
      if (g >= 4) {
        __m128i t = _mm_sha256msg1_epu32(wk[g & 3], wk[(g - 3) & 3]);
        t = _mm_add_epi32(t, _mm_alignr_epi8(wk[(g - 1) & 3], wk[(g - 2) & 3], 4));
        wk[g & 3] = _mm_sha256msg2_epu32(t, wk[(g - 1) & 3]);
      }
      __m128i m = _mm_add_epi32(wk[g & 3], kg);
      st1[k] = _mm_sha256rnds2_epu32(st1[k], st0[k], m);
      st0[k] = _mm_sha256rnds2_epu32(st0[k], st1[k], _mm_shuffle_epi32(m, 0x0E));
    }
  }
  for (int k = 0; k < n; k++) {
    __m128i a = _mm_add_epi32(st0[k], abef0[k]);
    __m128i c = _mm_add_epi32(st1[k], cdgh0[k]);
    __m128i tmp = _mm_shuffle_epi32(a, 0x1B); /* FEBA */
    c = _mm_shuffle_epi32(c, 0xB1);           /* DCHG */
    w0[k] = _mm_blend_epi16(tmp, c, 0xF0);    /* DCBA: lane 0 = A */
    w1[k] = _mm_alignr_epi8(c, tmp, 8);       /* HGFE */
  }
}

/* n independent blocks in lockstep, states and blocks in memory (the compression behind `one`
 * and `many`): the states to ABEF/CDGH, the blocks' big-endian words to W, lanes(), the digests
 * back as words. */
SHANI_TARGET __attribute__((always_inline))
static inline void shani_n(uint32_t *const s[], const uint8_t *const b[], const int n) {
  __m128i abef[3], cdgh[3], w0[3], w1[3], w2[3], w3[3];
  for (int k = 0; k < n; k++) {
    words_to_state(_mm_loadu_si128((const __m128i *)&s[k][0]), _mm_loadu_si128((const __m128i *)&s[k][4]), &abef[k], &cdgh[k]);
    w0[k] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)b[k]), BSWAP);
    w1[k] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(b[k] + 16)), BSWAP);
    w2[k] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(b[k] + 32)), BSWAP);
    w3[k] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(b[k] + 48)), BSWAP);
  }
  lanes(n, abef, cdgh, w0, w1, w2, w3);
  for (int k = 0; k < n; k++) {
    _mm_storeu_si128((__m128i *)&s[k][0], w0[k]);
    _mm_storeu_si128((__m128i *)&s[k][4], w1[k]);
  }
}

SHANI_TARGET static void compress_shani(uint32_t s[8], const uint8_t block[64]) {
  uint32_t *const sv[1] = {s};
  const uint8_t *const bv[1] = {block};
  shani_n(sv, bv, 1);
}

SHANI_TARGET static void compress_shani_many(uint32_t *const s[], const uint8_t *const b[], int n) {
  if (n == 3) shani_n(s, b, 3);
  else if (n == 2) shani_n(s, b, 2);
  else shani_n(s, b, 1);
}

/* mailcrypt_kdf's loop for SHA-NI, register-resident. Every block of the loop is a 32-byte
 * message (a digest) plus fixed padding, so a digest goes straight from one compression's state
 * into the next one's message words: the state in ABEF/CDGH order converts to the words
 * [A B C D] [E F G H] with the shuffles Intel's code uses to store it, and those are W0…W7 of the
 * next block as sha256msg and sha256rnds2 take them. No byte order round trip through memory
 * (whose 4-byte stores and 16-byte loads defeat store forwarding), no state copies; W8…W15 are
 * constants but for the chain's counter. Same results as the loop in mailcrypt_kdf (the tests
 * compare every wrap with node:crypto, and the portable build with this one). */
SHANI_TARGET static void kdf_rounds_shani(const uint32_t inner[8], const uint32_t outer[8], uint8_t ua[64],
                                          uint8_t ub[64], uint32_t acca[8], uint32_t accb[8], uint8_t c[64],
                                          uint32_t rounds) {
  __m128i in_abef, in_cdgh, out_abef, out_cdgh, iv_abef, iv_cdgh;
  words_to_state(_mm_loadu_si128((const __m128i *)&inner[0]), _mm_loadu_si128((const __m128i *)&inner[4]), &in_abef, &in_cdgh);
  words_to_state(_mm_loadu_si128((const __m128i *)&outer[0]), _mm_loadu_si128((const __m128i *)&outer[4]), &out_abef, &out_cdgh);
  words_to_state(_mm_loadu_si128((const __m128i *)&IV[0]), _mm_loadu_si128((const __m128i *)&IV[4]), &iv_abef, &iv_cdgh);
  /* W8…W15 of an HMAC step (32 bytes after a 64-byte key block: 768 bits) and of a chain step
   * (32 bytes and the counter: 288 bits); lane 0 of the chain's w2 is the counter. */
  const __m128i hw2 = _mm_set_epi32(0, 0, 0, (int)0x80000000), hw3 = _mm_set_epi32(768, 0, 0, 0);
  const __m128i cw3 = _mm_set_epi32(288, 0, 0, 0);
  /* Lanes: 0 = PBKDF2 block a, 1 = block b, 2 = the chain. */
  __m128i w0[3], w1[3];
  w0[0] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)ua), BSWAP);
  w1[0] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(ua + 16)), BSWAP);
  w0[1] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)ub), BSWAP);
  w1[1] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(ub + 16)), BSWAP);
  w0[2] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)c), BSWAP);
  w1[2] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(c + 16)), BSWAP);
  __m128i acc[2][2] = {
    {_mm_loadu_si128((const __m128i *)&acca[0]), _mm_loadu_si128((const __m128i *)&acca[4])},
    {_mm_loadu_si128((const __m128i *)&accb[0]), _mm_loadu_si128((const __m128i *)&accb[4])},
  };
  const __m128i a3[3] = {in_abef, in_abef, iv_abef}, c3[3] = {in_cdgh, in_cdgh, iv_cdgh};
  const __m128i ao[2] = {out_abef, out_abef}, co[2] = {out_cdgh, out_cdgh};
  __m128i w2[3] = {hw2, hw2, hw2}, w3[3] = {hw3, hw3, cw3};
  for (uint32_t i = 1; i <= rounds; i++) {
    w2[2] = _mm_set_epi32(0, 0, (int)0x80000000, (int)i);
    if (i == rounds) {
      /* The chain's last step alone: PBKDF2 has made its `rounds` U's. */
      lanes(1, &a3[2], &c3[2], &w0[2], &w1[2], &w2[2], &w3[2]);
      break;
    }
    lanes(3, a3, c3, w0, w1, w2, w3); /* both inner hashes and chain step i */
    lanes(2, ao, co, w0, w1, w2, w3); /* both outer hashes: U(i+1) of blocks a and b */
    for (int k = 0; k < 2; k++) {
      acc[k][0] = _mm_xor_si128(acc[k][0], w0[k]);
      acc[k][1] = _mm_xor_si128(acc[k][1], w1[k]);
    }
  }
  _mm_storeu_si128((__m128i *)&acca[0], acc[0][0]);
  _mm_storeu_si128((__m128i *)&acca[4], acc[0][1]);
  _mm_storeu_si128((__m128i *)&accb[0], acc[1][0]);
  _mm_storeu_si128((__m128i *)&accb[4], acc[1][1]);
  _mm_storeu_si128((__m128i *)c, _mm_shuffle_epi8(w0[2], BSWAP));
  _mm_storeu_si128((__m128i *)(c + 16), _mm_shuffle_epi8(w1[2], BSWAP));
  _mm_storeu_si128((__m128i *)ua, _mm_shuffle_epi8(w0[0], BSWAP));
  _mm_storeu_si128((__m128i *)(ua + 16), _mm_shuffle_epi8(w1[0], BSWAP));
  _mm_storeu_si128((__m128i *)ub, _mm_shuffle_epi8(w0[1], BSWAP));
  _mm_storeu_si128((__m128i *)(ub + 16), _mm_shuffle_epi8(w1[1], BSWAP));
  /* No key material left in registers the compiler may spill later. */
  for (int k = 0; k < 3; k++) w0[k] = w1[k] = _mm_setzero_si128();
  acc[0][0] = acc[0][1] = acc[1][0] = acc[1][1] = _mm_setzero_si128();
}

static int have_shani(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  int sse41 = (c >> 19) & 1, ssse3 = (c >> 9) & 1;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  return sse41 && ssse3 && ((b >> 29) & 1);
}
#endif

static void compress_portable_many(uint32_t *const s[], const uint8_t *const b[], int n) {
  for (int k = 0; k < n; k++) compress_portable(s[k], b[k]);
}

const Sha256 SHA256_PORTABLE = {"portable", compress_portable, compress_portable_many, NULL};

const Sha256 *sha256_pick(void) {
#if defined(__x86_64__) || defined(__i386__)
  static const Sha256 shani = {"sha-ni", compress_shani, compress_shani_many, kdf_rounds_shani};
  if (have_shani()) return &shani;
#endif
  return &SHA256_PORTABLE;
}

void wipe(void *p, size_t n) {
  volatile uint8_t *v = p;
  while (n--) *v++ = 0;
}

void sha256_finish(sha256_compress_fn f, const uint32_t state[8], uint64_t prefix,
                   const uint8_t *data, size_t len, uint8_t out[32]) {
  uint32_t s[8];
  uint8_t block[64];
  memcpy(s, state, sizeof s);
  uint64_t bits = (prefix + len) * 8;
  for (; len >= 64; data += 64, len -= 64) f(s, data);
  memset(block, 0, sizeof block);
  memcpy(block, data, len);
  block[len] = 0x80;
  if (len >= 56) {
    f(s, block);
    memset(block, 0, sizeof block);
  }
  for (int i = 0; i < 8; i++) block[63 - i] = (uint8_t)(bits >> (8 * i));
  f(s, block);
  store_words(out, s, 8);
  wipe(s, sizeof s);
  wipe(block, sizeof block);
}

void sha256(sha256_compress_fn f, const uint8_t *data, size_t len, uint8_t out[32]) {
  sha256_finish(f, IV, 0, data, len, out);
}

/* One block holding a 32-byte message after `prefix` bytes: the shape of every inner/outer HMAC
 * step and every chain step, so those are a single compression with the padding set once. */
static void pad32(uint8_t block[64], uint64_t total) {
  memset(block + 32, 0, 32);
  block[32] = 0x80;
  uint64_t bits = total * 8;
  for (int i = 0; i < 8; i++) block[63 - i] = (uint8_t)(bits >> (8 * i));
}

/* HMAC-SHA256 key schedule: the states after the ipad and opad blocks. */
static void hmac_init(sha256_compress_fn f, const uint8_t *pw, size_t pwlen, uint32_t inner[8], uint32_t outer[8]) {
  uint8_t key[64], pad[64];
  memset(key, 0, sizeof key);
  if (pwlen > 64) sha256(f, pw, pwlen, key);
  else memcpy(key, pw, pwlen);
  for (int i = 0; i < 64; i++) pad[i] = key[i] ^ 0x36;
  memcpy(inner, IV, 32);
  f(inner, pad);
  for (int i = 0; i < 64; i++) pad[i] = key[i] ^ 0x5c;
  memcpy(outer, IV, 32);
  f(outer, pad);
  wipe(key, sizeof key);
  wipe(pad, sizeof pad);
}

/* U1 = HMAC(pw, salt || u32be(blk)) of PBKDF2 block `blk`, into `u` as the next inner block (U1
 * and its padding) and into `acc` as words (the running XOR starts with U1). */
static void pbkdf2_first(sha256_compress_fn f, const uint32_t inner[8], const uint32_t outer[8],
                         const uint8_t *salt, size_t saltlen, uint32_t blk, uint8_t u[64], uint32_t acc[8]) {
  uint8_t buf[128];
  uint32_t st[8];
  size_t whole = saltlen - saltlen % 64;
  memcpy(st, inner, sizeof st);
  for (size_t i = 0; i < whole; i += 64) f(st, salt + i);
  memcpy(buf, salt + whole, saltlen - whole);
  store_be32(buf + (saltlen - whole), blk);
  sha256_finish(f, st, 64 + whole, buf, saltlen - whole + 4, u);
  pad32(u, 64 + 32);
  memcpy(st, outer, sizeof st);
  f(st, u);
  memcpy(acc, st, sizeof st);
  store_words(u, st, 8);
  wipe(buf, sizeof buf);
  wipe(st, sizeof st);
}

void pbkdf2_sha256(sha256_compress_fn f, const uint8_t *pw, size_t pwlen, const uint8_t *salt,
                   size_t saltlen, uint32_t rounds, uint8_t *out, size_t outlen) {
  uint8_t u[64];
  uint32_t inner[8], outer[8], s[8], acc[8];
  hmac_init(f, pw, pwlen, inner, outer);
  for (uint32_t blk = 1; outlen > 0; blk++) {
    pbkdf2_first(f, inner, outer, salt, saltlen, blk, u, acc);
    /* U2…Uc: two compressions each; the padding bytes of `u` stay in place. */
    for (uint32_t r = 1; r < rounds; r++) {
      memcpy(s, inner, sizeof s);
      f(s, u);
      store_words(u, s, 8);
      memcpy(s, outer, sizeof s);
      f(s, u);
      store_words(u, s, 8);
      for (int i = 0; i < 8; i++) acc[i] ^= s[i];
    }
    uint8_t t[32];
    store_words(t, acc, 8);
    size_t take = outlen < 32 ? outlen : 32;
    memcpy(out, t, take);
    wipe(t, sizeof t);
    out += take;
    outlen -= take;
  }
  wipe(u, sizeof u); wipe(inner, sizeof inner); wipe(outer, sizeof outer); wipe(s, sizeof s); wipe(acc, sizeof acc);
}

void mailcrypt_kdf(const Sha256 *h, const uint8_t *secret, size_t secretlen, const uint8_t *salt,
                   size_t saltlen, const uint8_t *kd, size_t kdlen, uint32_t rounds,
                   uint8_t t[48], uint8_t check[32]) {
  uint8_t ua[64], ub[64], c[64];
  uint32_t inner[8], outer[8], acca[8], accb[8], sa[8], sb[8], sc[8];
  uint32_t *const s3[3] = {sa, sb, sc};
  const uint8_t *const b3[3] = {ua, ub, c};
  hmac_init(h->one, secret, secretlen, inner, outer);
  pbkdf2_first(h->one, inner, outer, salt, saltlen, 1, ua, acca);
  pbkdf2_first(h->one, inner, outer, salt, saltlen, 2, ub, accb);
  sha256(h->one, kd, kdlen, c);
  pad32(c, 36);
  if (h->kdf_rounds) {
    h->kdf_rounds(inner, outer, ua, ub, acca, accb, c, rounds);
    rounds = 0; /* done: skip the loop below */
  }
  for (uint32_t i = 1; i <= rounds; i++) {
    /* Inner hashes of both PBKDF2 blocks beside chain step i; then both outer hashes. */
    store_be32(c + 32, i);
    c[36] = 0x80;
    memcpy(sc, IV, sizeof sc);
    if (i == rounds) {
      h->one(sc, c);
    } else {
      memcpy(sa, inner, sizeof sa);
      memcpy(sb, inner, sizeof sb);
      h->many(s3, b3, 3);
      store_words(ua, sa, 8);
      store_words(ub, sb, 8);
      memcpy(sa, outer, sizeof sa);
      memcpy(sb, outer, sizeof sb);
      h->many(s3, b3, 2);
      store_words(ua, sa, 8);
      store_words(ub, sb, 8);
      for (int k = 0; k < 8; k++) {
        acca[k] ^= sa[k];
        accb[k] ^= sb[k];
      }
    }
    store_words(c, sc, 8);
  }
  store_words(t, acca, 8);
  store_words(t + 32, accb, 4);
  memcpy(check, c, 32);
  wipe(ua, sizeof ua); wipe(ub, sizeof ub); wipe(c, sizeof c);
  wipe(inner, sizeof inner); wipe(outer, sizeof outer); wipe(acca, sizeof acca); wipe(accb, sizeof accb);
  wipe(sa, sizeof sa); wipe(sb, sizeof sb); wipe(sc, sizeof sc);
}

void sha256_chain(sha256_compress_fn f, uint8_t h[32], uint32_t rounds) {
  uint8_t block[64];
  uint32_t s[8];
  memcpy(block, h, 32);
  pad32(block, 36);
  for (uint32_t i = 1; i <= rounds; i++) {
    store_be32(block + 32, i);
    block[36] = 0x80;
    memcpy(s, IV, sizeof s);
    f(s, block);
    store_words(block, s, 8);
  }
  memcpy(h, block, 32);
  wipe(block, sizeof block);
  wipe(s, sizeof s);
}
