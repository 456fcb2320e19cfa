/* CRLF → LF for the stored message (spec §8), and the count of LFs produced, for S= and W=.
 * Through Buffer.indexOf('\r\n') and copy() in JavaScript this costs a few native calls per line
 * (≈5 ms per MiB of 76-column text); here it is memchr and memcpy. Same contract as
 * src/deliver/lf.ts: a CR at the end of a chunk is held back until the next chunk shows whether
 * an LF follows; lone CRs and bare LFs stay. */

#define NAPI_VERSION 8
#include <node_api.h>
#include <string.h>

#include "addon.h"

static size_t count_lf(const unsigned char *p, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += p[i] == '\n';
  return c;
}

/* lfConvert(src: Buffer, dst: Buffer (≥ src.length + 1), state: Float64Array(2) [heldCr, lines])
 * → bytes written to dst. state[0] (0/1) is read and updated; state[1] is set to the LFs written. */
napi_value js_lf_convert(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *srcp, *dstp, *statep;
  size_t slen, dlen, n;
  napi_typedarray_type type;
  bool ok = argc == 3;
  ok = ok && napi_get_buffer_info(env, argv[0], &srcp, &slen) == napi_ok;
  ok = ok && napi_get_buffer_info(env, argv[1], &dstp, &dlen) == napi_ok && dlen >= slen + 1;
  ok = ok && napi_get_typedarray_info(env, argv[2], &type, &n, &statep, NULL, NULL) == napi_ok &&
       type == napi_float64_array && n >= 2;
  if (!ok) {
    napi_throw_type_error(env, NULL, "lfConvert(src: Buffer, dst: Buffer ≥ src+1, state: Float64Array(2))");
    return NULL;
  }
  const unsigned char *s = srcp, *end = s + slen;
  unsigned char *d = dstp, *d0 = dstp;
  double *state = statep;
  int held = state[0] != 0;
  size_t lines = 0;
  if (held && s < end) {
    if (*s == '\n') {
      *d++ = '\n';
      lines++;
      s++;
    } else {
      *d++ = '\r';
    }
    held = 0;
  }
  while (s < end) {
    const unsigned char *cr = memchr(s, '\r', (size_t)(end - s));
    const unsigned char *stop = cr ? cr : end;
    size_t run = (size_t)(stop - s);
    memcpy(d, s, run);
    lines += count_lf(s, run);
    d += run;
    s = stop;
    if (!cr) break;
    if (cr + 1 == end) { /* hold it: the LF may come with the next chunk */
      held = 1;
      s = end;
    } else if (cr[1] == '\n') {
      *d++ = '\n';
      lines++;
      s = cr + 2;
    } else {
      *d++ = '\r';
      s = cr + 1;
    }
  }
  state[0] = held;
  state[1] = (double)lines;
  napi_value out;
  napi_create_double(env, (double)(d - d0), &out);
  return out;
}
