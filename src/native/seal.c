/* mailseal_native: key wrapping (here), durable Maildir writes (maildir.c), CRLF → LF (lf.c).
 *
 * mailseal's native key wrapping for mail_crypt v2 (spec §2.3; design.md "Where the CPU goes").
 *
 * seal(curve, field, peerPoint, rounds) runs on libuv's threadpool and does all the fixed work of
 * one message: a random message key kd (60 bytes: GCM key, IV, AAD), an ephemeral EC key on the
 * recipient's curve and ECDH with the folder key, through the system's libcrypto.so.3 (whose
 * P-521 is ~9x faster than the OpenSSL inside node); t = PBKDF2-HMAC-SHA256(secret, point) and
 * the check-hash chain over SHA-256(kd), with our own SHA-256 (SHA-NI where the CPU has it); and
 * kd encrypted under t with AES-256-CBC. It resolves to [point, encryptedKey, check, kd]; the
 * caller writes the header and runs AES-256-GCM with kd.
 *
 * libcrypto is opened with RTLD_DEEPBIND: the node binary exports its own OpenSSL symbols, and
 * without deep binding those would serve libcrypto's internal calls (and be as slow as node's).
 * When it cannot be opened, `ec` is null and the caller uses node:crypto instead.
 *
 * The ECDH secret and the derived key t exist only in this call's memory and are wiped before
 * the promise settles; kd goes back to the caller, which wipes it once the cipher has it. */

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <dlfcn.h>
#include <pthread.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"
#include "sha256.h"

/* ---- system libcrypto (only the EC functions; everything by dlsym) ------------------------ */

typedef int (*OBJ_sn2nid_f)(const char *);
typedef void *(*EC_KEY_new_by_curve_name_f)(int);
typedef int (*EC_KEY_generate_key_f)(void *);
typedef const void *(*EC_KEY_get0_group_f)(const void *);
typedef const void *(*EC_KEY_get0_public_key_f)(const void *);
typedef void (*EC_KEY_free_f)(void *);
typedef void *(*EC_POINT_new_f)(const void *);
typedef void (*EC_POINT_free_f)(void *);
typedef size_t (*EC_POINT_point2oct_f)(const void *, const void *, int, unsigned char *, size_t, void *);
typedef int (*EC_POINT_oct2point_f)(const void *, void *, const unsigned char *, size_t, void *);
typedef int (*ECDH_compute_key_f)(void *, size_t, const void *, const void *, void *);
typedef int (*RAND_bytes_f)(unsigned char *, int);
typedef void *(*EVP_CIPHER_CTX_new_f)(void);
typedef void (*EVP_CIPHER_CTX_free_f)(void *);
typedef const void *(*EVP_aes_256_cbc_f)(void);
typedef int (*EVP_EncryptInit_ex_f)(void *, const void *, void *, const unsigned char *, const unsigned char *);
typedef int (*EVP_EncryptUpdate_f)(void *, unsigned char *, int *, const unsigned char *, int);
typedef int (*EVP_EncryptFinal_ex_f)(void *, unsigned char *, int *);
typedef void *(*EC_GROUP_dup_f)(const void *);
typedef void (*EC_GROUP_free_f)(void *);
typedef const void *(*EC_GROUP_get0_bn_f)(const void *);
typedef const void *(*EC_GROUP_method_of_f)(const void *);
typedef int (*EC_GROUP_set_generator_f)(void *, const void *, const void *, const void *);
typedef int (*EC_GROUP_precompute_mult_f)(void *, void *);
typedef const void *(*EC_KEY_get0_private_key_f)(const void *);
typedef int (*EC_POINT_mul_f)(const void *, void *, const void *, const void *, const void *, void *);
typedef int (*EC_POINT_get_affine_coordinates_f)(const void *, const void *, void *, void *, void *);
typedef void *(*BN_new_f)(void);
typedef void (*BN_clear_free_f)(void *);
typedef int (*BN_bn2binpad_f)(const void *, unsigned char *, int);

static struct {
  OBJ_sn2nid_f sn2nid;
  EC_KEY_new_by_curve_name_f key_new;
  EC_KEY_generate_key_f generate;
  EC_KEY_get0_group_f group;
  EC_KEY_get0_public_key_f pub;
  EC_KEY_free_f key_free;
  EC_POINT_new_f point_new;
  EC_POINT_free_f point_free;
  EC_POINT_free_f point_clear_free;
  EC_POINT_point2oct_f point2oct;
  EC_POINT_oct2point_f oct2point;
  ECDH_compute_key_f ecdh;
  RAND_bytes_f rand;
  EVP_CIPHER_CTX_new_f ctx_new;
  EVP_CIPHER_CTX_free_f ctx_free;
  EVP_aes_256_cbc_f cbc;
  EVP_EncryptInit_ex_f enc_init;
  EVP_EncryptUpdate_f enc_update;
  EVP_EncryptFinal_ex_f enc_final;
  EC_GROUP_dup_f group_dup;
  EC_GROUP_free_f group_free;
  EC_GROUP_get0_bn_f order;
  EC_GROUP_get0_bn_f cofactor;
  EC_GROUP_set_generator_f set_generator;
  EC_GROUP_precompute_mult_f precompute;
  EC_KEY_get0_private_key_f priv;
  EC_POINT_mul_f mul;
  EC_POINT_get_affine_coordinates_f affine;
  BN_new_f bn_new;
  BN_clear_free_f bn_clear_free;
  BN_bn2binpad_f bn2binpad;
  EC_GROUP_method_of_f method_of;
  const void *(*nistp521)(void);
} ec;
static const char *ec_library = NULL; /* set once loaded */
static int nid_p521;
static int peer_tables_on; /* libcrypto has what the fixed-base tables need */
static char ec_error[256] = "";

static void load_libcrypto(void) {
  void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (!h) {
    snprintf(ec_error, sizeof ec_error, "%s", dlerror());
    return;
  }
#define SYM(field, name)                                                  \
  do {                                                                    \
    *(void **)(&ec.field) = dlsym(h, name);                               \
    if (!ec.field) {                                                      \
      snprintf(ec_error, sizeof ec_error, "libcrypto.so.3 has no %s", name); \
      return;                                                             \
    }                                                                     \
  } while (0)
  SYM(sn2nid, "OBJ_sn2nid");
  SYM(key_new, "EC_KEY_new_by_curve_name");
  SYM(generate, "EC_KEY_generate_key");
  SYM(group, "EC_KEY_get0_group");
  SYM(pub, "EC_KEY_get0_public_key");
  SYM(key_free, "EC_KEY_free");
  SYM(point_new, "EC_POINT_new");
  SYM(point_free, "EC_POINT_free");
  SYM(point2oct, "EC_POINT_point2oct");
  SYM(oct2point, "EC_POINT_oct2point");
  SYM(ecdh, "ECDH_compute_key");
  SYM(rand, "RAND_bytes");
  SYM(ctx_new, "EVP_CIPHER_CTX_new");
  SYM(ctx_free, "EVP_CIPHER_CTX_free");
  SYM(cbc, "EVP_aes_256_cbc");
  SYM(enc_init, "EVP_EncryptInit_ex");
  SYM(enc_update, "EVP_EncryptUpdate");
  SYM(enc_final, "EVP_EncryptFinal_ex");
#define OPT(field, name) (*(void **)(&ec.field) = dlsym(h, name))
  /* The fixed-base tables (below) only where all of these exist: without them, plain ECDH. */
  peer_tables_on = OPT(group_dup, "EC_GROUP_dup") && OPT(group_free, "EC_GROUP_free") && OPT(order, "EC_GROUP_get0_order") &&
                   OPT(cofactor, "EC_GROUP_get0_cofactor") && OPT(set_generator, "EC_GROUP_set_generator") &&
                   OPT(precompute, "EC_GROUP_precompute_mult") && OPT(priv, "EC_KEY_get0_private_key") &&
                   OPT(mul, "EC_POINT_mul") && OPT(affine, "EC_POINT_get_affine_coordinates") && OPT(bn_new, "BN_new") &&
                   OPT(bn_clear_free, "BN_clear_free") && OPT(bn2binpad, "BN_bn2binpad") &&
                   OPT(point_clear_free, "EC_POINT_clear_free") && OPT(method_of, "EC_GROUP_method_of") &&
                   OPT(nistp521, "EC_GFp_nistp521_method");
#undef OPT
  nid_p521 = ec.sn2nid("secp521r1");
  if (peer_tables_on) { /* and P-521 runs on the nistp521 code, which uses them */
    void *k = ec.key_new(nid_p521);
    peer_tables_on = k && ec.method_of(ec.group(k)) == ec.nistp521();
    if (k) ec.key_free(k);
  }
#undef SYM
  ec_library = "libcrypto.so.3 (system)";
}

static const Sha256 *sha;

/* ---- one seal ---------------------------------------------------------------------------- */

#define MAX_FIELD 66            /* P-521 */
#define MAX_POINT (1 + 2 * MAX_FIELD)
#define KD_LEN 60
#define T_LEN 48
#define EKD_LEN 64 /* kd under AES-256-CBC with PKCS#7 padding */

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  /* in */
  int nid;
  size_t field; /* coordinate size of the curve */
  unsigned char peer[MAX_POINT];
  size_t peer_len;
  uint32_t rounds;
  /* out */
  unsigned char kd[KD_LEN];
  unsigned char point[MAX_POINT];
  unsigned char ekd[EKD_LEN];
  unsigned char check[32];
  const char *error; /* static string */
  int bad_point;
  Probe *probe; /* with a 5th argument: the key lookup's reads, after the seal */
} Job;

/* out[64] = AES-256-CBC(key = t[0..32), iv = t[32..48)) of kd, PKCS#7-padded (spec §2.3). */
static int encrypt_kd(const unsigned char t[T_LEN], const unsigned char kd[KD_LEN], unsigned char out[EKD_LEN]) {
  void *ctx = ec.ctx_new();
  int n = 0, m = 0, ok = ctx && ec.enc_init(ctx, ec.cbc(), NULL, t, t + 32) == 1 &&
                        ec.enc_update(ctx, out, &n, kd, KD_LEN) == 1 && ec.enc_final(ctx, out + n, &m) == 1 &&
                        n + m == EKD_LEN;
  if (ctx) ec.ctx_free(ctx);
  return ok;
}

/* ---- fixed-base tables for recipients' keys (P-521) --------------------------------------
 * The ECDH of a seal multiplies the recipient's point P by the ephemeral scalar k, and P is the
 * same for every message to a folder. For P-521, P is made the generator of a copy of the curve's
 * group, which gets OpenSSL's precomputed table (EC_GROUP_precompute_mult): nistp521's
 * constant-time fixed-base code then computes k·P in ≈0.29 ms against ≈0.52 ms for
 * ECDH_compute_key, after ≈0.3 ms once for the table. The secret is the same: the x coordinate,
 * padded to the field size. (P-256's table costs 39 ms to build for a 0.05 ms gain: plain ECDH.)
 * A key gets a table the second time it is sealed to within the last PEER_TABLES new keys (a
 * build plus a multiplication costs a little more than one ECDH, so one-off recipients and a
 * cycle through more keys than fit never pay for tables), and only where P-521 runs on OpenSSL's
 * nistp521 code, which uses them. At most PEER_TABLES keys (≈8 KiB each) are kept; the least
 * recently used one not in use by a job makes room. Without a table the seal uses
 * ECDH_compute_key. */

#define PEER_TABLES 512

typedef struct {
  void *group; /* NULL: free slot (all tables are P-521's) */
  size_t len;
  unsigned char point[MAX_POINT];
  unsigned refs;
  unsigned long used;
} PeerTable;

static PeerTable peer_tables[PEER_TABLES];
/* Hashes of the last PEER_TABLES keys sealed to without a table (0: empty). */
static uint64_t peer_seen[PEER_TABLES];
static unsigned peer_seen_at;
static double peer_stats[3]; /* tables built, seals through a table, tables evicted (for tests) */
static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long peer_clock;

/* Under peer_lock: the table of that point, or NULL. */
static PeerTable *peer_find(const unsigned char *oct, size_t len) {
  for (int i = 0; i < PEER_TABLES; i++) {
    PeerTable *e = &peer_tables[i];
    if (e->group && e->len == len && memcmp(e->point, oct, len) == 0) return e;
  }
  return NULL;
}

static PeerTable *peer_hold(PeerTable *e) {
  peer_stats[1]++;
  e->refs++;
  e->used = ++peer_clock;
  return e;
}

/* The table for the P-521 point `peer` (in `group`), held until peer_release; NULL if none can be
 * made. */
static PeerTable *peer_acquire(const void *group, const void *peer, const unsigned char *oct, size_t len) {
  if (!peer_tables_on) return NULL;
  uint64_t hash = 1469598103934665603ULL; /* FNV-1a of the point: "seen before?" only */
  for (size_t i = 0; i < len; i++) hash = (hash ^ oct[i]) * 1099511628211ULL;
  if (hash == 0) hash = 1;
  pthread_mutex_lock(&peer_lock);
  PeerTable *e = peer_find(oct, len);
  if (e) peer_hold(e);
  int again = 0;
  for (int i = 0; !e && i < PEER_TABLES && !again; i++) {
    if (peer_seen[i] == hash) {
      peer_seen[i] = 0;
      again = 1;
    }
  }
  if (!e && !again) peer_seen[peer_seen_at++ % PEER_TABLES] = hash;
  pthread_mutex_unlock(&peer_lock);
  if (e || !again) return e;
  /* Build it outside the lock; a job that built the same table meanwhile wins. */
  void *g = ec.group_dup(group);
  if (!g || ec.set_generator(g, peer, ec.order(group), ec.cofactor(group)) != 1 || ec.precompute(g, NULL) != 1) {
    if (g) ec.group_free(g);
    return NULL;
  }
  pthread_mutex_lock(&peer_lock);
  e = peer_find(oct, len);
  if (!e) {
    for (int i = 0; i < PEER_TABLES; i++) {
      PeerTable *c = &peer_tables[i];
      if (!c->group) {
        e = c;
        break;
      }
      if (c->refs == 0 && (!e || c->used < e->used)) e = c;
    }
    if (e) {
      peer_stats[0]++;
      if (e->group) {
        peer_stats[2]++;
        ec.group_free(e->group);
      }
      e->group = g;
      g = NULL;
      e->len = len;
      memcpy(e->point, oct, len);
      e->refs = 0;
    }
  }
  if (e) peer_hold(e);
  pthread_mutex_unlock(&peer_lock);
  if (g) ec.group_free(g); /* lost the race, or every slot is in use */
  return e;
}

static void peer_release(PeerTable *e) {
  pthread_mutex_lock(&peer_lock);
  e->refs--;
  pthread_mutex_unlock(&peer_lock);
}

/* secret = x(k·P) through P's table, padded to `field` bytes; 1 on success. */
static int peer_secret(PeerTable *t, const void *key, unsigned char *secret, size_t field) {
  void *r = ec.point_new(t->group), *x = ec.bn_new();
  int ok = r && x && ec.mul(t->group, r, ec.priv(key), NULL, NULL, NULL) == 1 &&
           ec.affine(t->group, r, x, NULL, NULL) == 1 && ec.bn2binpad(x, secret, (int)field) == (int)field;
  if (x) ec.bn_clear_free(x);
  if (r) ec.point_clear_free(r);
  return ok;
}

static void seal_execute(napi_env env, void *data) {
  (void)env;
  Job *j = data;
  unsigned char secret[MAX_FIELD], t[T_LEN];
  void *key = NULL, *peer = NULL;
  if (ec.rand(j->kd, KD_LEN) != 1) { j->error = "libcrypto: no random bytes"; return; }
  key = ec.key_new(j->nid);
  if (!key) { j->error = "libcrypto: unknown curve"; return; }
  if (ec.generate(key) != 1) { j->error = "libcrypto: EC key generation failed"; goto out; }
  const void *group = ec.group(key);
  size_t plen = 1 + 2 * j->field;
  if (ec.point2oct(group, ec.pub(key), 4 /* POINT_CONVERSION_UNCOMPRESSED */, j->point, plen, NULL) != plen) {
    j->error = "libcrypto: cannot encode the ephemeral point";
    goto out;
  }
  peer = ec.point_new(group);
  if (!peer) {
    j->error = "libcrypto: out of memory";
    goto out;
  }
  if (ec.oct2point(group, peer, j->peer, j->peer_len, NULL) != 1) {
    j->error = "invalid public key point";
    j->bad_point = 1;
    goto out;
  }
  PeerTable *table = j->nid == nid_p521 ? peer_acquire(group, peer, j->peer, j->peer_len) : NULL;
  int derived = table && peer_secret(table, key, secret, j->field);
  if (table) peer_release(table);
  if (!derived) derived = ec.ecdh(secret, j->field, peer, key, NULL) == (int)j->field;
  if (!derived) {
    j->error = "libcrypto: ECDH failed";
    goto out;
  }
  mailcrypt_kdf(sha, secret, j->field, j->point, plen, j->kd, KD_LEN, j->rounds, t, j->check);
  if (!encrypt_kd(t, j->kd, j->ekd)) j->error = "libcrypto: AES-256-CBC failed";
  if (j->probe && !j->error) probe_folder(j->probe);
out:
  wipe(secret, sizeof secret);
  wipe(t, sizeof t);
  if (peer) ec.point_free(peer);
  ec.key_free(key);
}

static napi_value buffer_of(napi_env env, const unsigned char *p, size_t n) {
  napi_value b;
  void *dst;
  if (napi_create_buffer_copy(env, n, p, &dst, &b) != napi_ok) return NULL;
  return b;
}

static napi_value number(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

/* null if a read failed; else { head: Buffer | null, dict: { ino, size, mtimeMs } | null }. */
static napi_value probe_value(napi_env env, const Probe *p) {
  napi_value v, head, dict;
  if (p->failed) {
    napi_get_null(env, &v);
    return v;
  }
  napi_create_object(env, &v);
  if (p->head_missing) napi_get_null(env, &head);
  else head = buffer_of(env, p->head, p->head_len);
  if (p->dict_missing) {
    napi_get_null(env, &dict);
  } else {
    napi_create_object(env, &dict);
    napi_set_named_property(env, dict, "ino", number(env, p->ino));
    napi_set_named_property(env, dict, "size", number(env, p->size));
    napi_set_named_property(env, dict, "mtimeMs", number(env, p->mtime_ms));
  }
  napi_set_named_property(env, v, "head", head);
  napi_set_named_property(env, v, "dict", dict);
  return v;
}

static void seal_complete(napi_env env, napi_status status, void *data) {
  Job *j = data;
  if (status != napi_ok || j->error) {
    napi_value msg, err, code;
    napi_create_string_utf8(env, j->error ? j->error : "seal cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_create_string_utf8(env, j->bad_point ? "EBADPOINT" : "ESEAL", NAPI_AUTO_LENGTH, &code);
    napi_set_named_property(env, err, "code", code);
    napi_reject_deferred(env, j->deferred, err);
  } else {
    napi_value arr;
    napi_create_array_with_length(env, 4, &arr);
    napi_set_element(env, arr, 0, buffer_of(env, j->point, 1 + 2 * j->field));
    napi_set_element(env, arr, 1, buffer_of(env, j->ekd, EKD_LEN));
    napi_set_element(env, arr, 2, buffer_of(env, j->check, 32));
    napi_set_element(env, arr, 3, buffer_of(env, j->kd, KD_LEN));
    if (j->probe) napi_set_element(env, arr, 4, probe_value(env, j->probe));
    napi_resolve_deferred(env, j->deferred, arr);
  }
  napi_delete_async_work(env, j->work);
  free(j->probe);
  wipe(j, sizeof *j);
  free(j);
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* Buffer contents of argument `v`, or NULL. */
static int get_buffer(napi_env env, napi_value v, void **data, size_t *len) {
  bool is;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return 0;
  return napi_get_buffer_info(env, v, data, len) == napi_ok;
}

/* seal(curveName: string, fieldSize: number, peerPoint: Buffer, rounds, probe?: [uidlistPath,
 * dictPath]): Promise<[point, encryptedKey, check, kd, probe?]> — with `probe`, the same job then
 * reads the uidlist's head and stats the dict (probe_folder) for the key lookup. */
static napi_value js_seal(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4 || argc > 5) return throw_type(env, "seal(curve, field, point, rounds, probe?)");
  if (!ec_library) return throw_type(env, "libcrypto.so.3 is not loaded");
  char curve[32];
  size_t clen;
  if (napi_get_value_string_utf8(env, argv[0], curve, sizeof curve, &clen) != napi_ok) return throw_type(env, "curve: string");
  uint32_t field, rounds;
  if (napi_get_value_uint32(env, argv[1], &field) != napi_ok || field == 0 || field > MAX_FIELD) return throw_type(env, "field size");
  void *peer;
  size_t peer_len;
  if (!get_buffer(env, argv[2], &peer, &peer_len) || peer_len == 0 || peer_len > MAX_POINT) return throw_type(env, "point: Buffer");
  if (napi_get_value_uint32(env, argv[3], &rounds) != napi_ok || rounds == 0 || rounds > 1000000) return throw_type(env, "rounds");
  int nid = ec.sn2nid(curve);
  if (nid == 0) return throw_type(env, "unknown curve");

  Job *j = calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  j->nid = nid;
  j->field = field;
  memcpy(j->peer, peer, peer_len);
  j->peer_len = peer_len;
  j->rounds = rounds;
  napi_valuetype t5 = napi_undefined;
  if (argc == 5) napi_typeof(env, argv[4], &t5);
  if (t5 != napi_undefined && t5 != napi_null) {
    napi_value a, b;
    bool is_array = false;
    j->probe = calloc(1, sizeof *j->probe);
    if (!j->probe || napi_is_array(env, argv[4], &is_array) != napi_ok || !is_array ||
        napi_get_element(env, argv[4], 0, &a) != napi_ok || napi_get_element(env, argv[4], 1, &b) != napi_ok ||
        !get_path(env, a, j->probe->uidlist) || !get_path(env, b, j->probe->dict)) {
      free(j->probe);
      free(j);
      return throw_type(env, "probe: [uidlistPath, dictPath]");
    }
  }

  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "mailseal.seal", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, seal_execute, seal_complete, j, &j->work);
  if (napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_async_work(env, j->work);
    free(j->probe);
    free(j);
    napi_throw_error(env, NULL, "cannot queue the seal");
    return NULL;
  }
  return promise;
}

/* pbkdf2(password, salt, rounds, length): Buffer — synchronous: the primitive alone, for tests. */
static napi_value js_pbkdf2(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *pw, *salt;
  size_t pwlen, saltlen;
  uint32_t rounds, len;
  if (argc != 4 || !get_buffer(env, argv[0], &pw, &pwlen) || !get_buffer(env, argv[1], &salt, &saltlen) ||
      napi_get_value_uint32(env, argv[2], &rounds) != napi_ok || napi_get_value_uint32(env, argv[3], &len) != napi_ok ||
      rounds == 0 || len == 0 || len > 1024) {
    return throw_type(env, "pbkdf2(password: Buffer, salt: Buffer, rounds, length ≤ 1024)");
  }
  napi_value out;
  void *dst;
  napi_create_buffer(env, len, &dst, &out);
  pbkdf2_sha256(sha->one, pw, pwlen, salt, saltlen, rounds, dst, len);
  return out;
}

/* chain(h0: Buffer(32), rounds): Buffer — synchronous: the primitive alone, for tests. */
static napi_value js_chain(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *h0;
  size_t hlen;
  uint32_t rounds;
  if (argc != 2 || !get_buffer(env, argv[0], &h0, &hlen) || hlen != 32 || napi_get_value_uint32(env, argv[1], &rounds) != napi_ok) {
    return throw_type(env, "chain(h0: Buffer of 32 bytes, rounds)");
  }
  napi_value out;
  void *dst;
  napi_create_buffer_copy(env, 32, h0, &dst, &out);
  sha256_chain(sha->one, dst, rounds);
  return out;
}

static napi_value str_or_null(napi_env env, const char *s) {
  napi_value v;
  if (s) napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  return v;
}

/* p521TableStats(): [tables built, seals through a table, tables evicted] — for tests. */
static napi_value js_table_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value arr, v;
  napi_create_array_with_length(env, 3, &arr);
  pthread_mutex_lock(&peer_lock);
  for (uint32_t i = 0; i < 3; i++) {
    napi_create_double(env, peer_stats[i], &v);
    napi_set_element(env, arr, i, v);
  }
  pthread_mutex_unlock(&peer_lock);
  return arr;
}

static napi_value bool_value(napi_env env, int b) {
  napi_value v;
  napi_get_boolean(env, b != 0, &v);
  return v;
}

/* The interface's version: src/mailcrypt/native.ts refuses a build of another one (a stale
 * build/ after an update) and falls back to node:crypto and node:fs instead of failing calls. */
#define ADDON_ABI 2

static napi_value abi_value(napi_env env) {
  napi_value v;
  napi_create_uint32(env, ADDON_ABI, &v);
  return v;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load_once(void) {
  /* MAILSEAL_SHA256=portable: the plain C compression even where SHA-NI exists (for tests). */
  const char *force = getenv("MAILSEAL_SHA256");
  sha = force && strcmp(force, "portable") == 0 ? &SHA256_PORTABLE : sha256_pick();
  load_libcrypto();
}

static napi_value init(napi_env env, napi_value exports) {
  pthread_once(&once, load_once);
  napi_property_descriptor props[] = {
    {"seal", NULL, js_seal, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pbkdf2", NULL, js_pbkdf2, NULL, NULL, NULL, napi_enumerable, NULL},
    {"chain", NULL, js_chain, NULL, NULL, NULL, napi_enumerable, NULL},
    {"p521TableStats", NULL, js_table_stats, NULL, NULL, NULL, napi_enumerable, NULL},
    {"writeDurable", NULL, js_write_durable, NULL, NULL, NULL, napi_enumerable, NULL},
    {"syncDir", NULL, js_sync_dir, NULL, NULL, NULL, napi_enumerable, NULL},
    {"readHead", NULL, js_read_head, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fileOpen", NULL, js_file_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fileAppend", NULL, js_file_append, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fileCommit", NULL, js_file_commit, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fileAbort", NULL, js_file_abort, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fileDirect", NULL, js_file_direct, NULL, NULL, NULL, napi_enumerable, NULL},
    {"lfConvert", NULL, js_lf_convert, NULL, NULL, NULL, napi_enumerable, NULL},
    {"abi", NULL, NULL, NULL, NULL, abi_value(env), napi_enumerable, NULL},
    {"sha256", NULL, NULL, NULL, NULL, str_or_null(env, sha->name), napi_enumerable, NULL},
    {"ec", NULL, NULL, NULL, NULL, str_or_null(env, ec_library), napi_enumerable, NULL},
    {"ecError", NULL, NULL, NULL, NULL, str_or_null(env, ec_library ? NULL : ec_error), napi_enumerable, NULL},
    {"p521Tables", NULL, NULL, NULL, NULL, bool_value(env, ec_library && peer_tables_on), napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
