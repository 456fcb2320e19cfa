/* One durable Maildir write in one threadpool job (design.md "Durability"): create tmp/<name>
 * (O_EXCL, 0600), write every buffer, fsync, close, rename into new/. Through node:fs these are
 * six round trips to libuv's threadpool per message (each a futex wake-up and a promise on the
 * event loop); a message that fits in memory pays one here. On any failure the tmp file is
 * removed and the promise rejects with an Error carrying `code` (ENOSPC, EEXIST, …) and
 * `syscall`, like node:fs errors. The new/ directory fsync stays with the caller, which shares
 * it between concurrent deliveries; syncDir() does that one in one job too (open, fsync, close),
 * and readHead() reads the start of a small file (a dovecot-uidlist's header) in one job.
 * Only ciphertext is ever handed to these functions. */

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "addon.h"

#define MAX_BUFS 64

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep; /* the array of buffers, alive until the job completes (NULL for syncDir) */
  enum { WRITE, SYNC_DIR, READ_HEAD } kind; /* SYNC_DIR and READ_HEAD use `tmp` as their path */
  unsigned char head[4096];                  /* READ_HEAD: the first bytes of the file */
  size_t head_len;                           /* asked for, then read */
  int missing;                               /* READ_HEAD: ENOENT (resolves to null) */
  char tmp[PATH_MAX];
  char final[PATH_MAX];
  char dir[PATH_MAX]; /* WRITE: if set, the directory to fsync after the rename (new/) */
  struct iovec iov[MAX_BUFS];
  int niov;
  int err;
  const char *syscall;
} WriteJob;

int fsync_dir_path(const char *dir, const char **syscall) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *syscall = "open";
    return errno;
  }
  int err = fsync(fd) != 0 ? errno : 0;
  if (err) *syscall = "fsync";
  close(fd);
  return err;
}

int read_prefix(const char *path, unsigned char *buf, size_t *len, const char **syscall) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *syscall = "open";
    return errno;
  }
  ssize_t n;
  do n = pread(fd, buf, *len, 0);
  while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : 0;
  if (err) *syscall = "read";
  else *len = (size_t)n;
  close(fd);
  return err;
}

static void sync_dir(WriteJob *j, const char *dir) {
  j->err = fsync_dir_path(dir, &j->syscall);
}

static void read_head(WriteJob *j) {
  int err = read_prefix(j->tmp, j->head, &j->head_len, &j->syscall);
  if (err == ENOENT) j->missing = 1; /* only open() says ENOENT */
  else j->err = err;
}

void probe_folder(Probe *p) {
  const char *sys = NULL;
  p->head_len = sizeof p->head;
  int err = read_prefix(p->uidlist, p->head, &p->head_len, &sys);
  if (err == ENOENT) p->head_missing = 1;
  else if (err) p->failed = 1;
  struct stat st;
  if (stat(p->dict, &st) != 0) {
    if (errno == ENOENT) p->dict_missing = 1;
    else p->failed = 1;
    return;
  }
  /* As node:fs computes Stats#ino, #size and #mtimeMs, so that the two compare equal. */
  p->ino = (double)st.st_ino;
  p->size = (double)st.st_size;
  p->mtime_ms = (double)st.st_mtim.tv_sec * 1e3 + (double)st.st_mtim.tv_nsec / 1e6;
}

static void write_execute(napi_env env, void *data) {
  (void)env;
  WriteJob *j = data;
  if (j->kind == SYNC_DIR) {
    sync_dir(j, j->tmp);
    return;
  }
  if (j->kind == READ_HEAD) {
    read_head(j);
    return;
  }
  int fd = open(j->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    j->err = errno;
    j->syscall = "open";
    return;
  }
  struct iovec *iov = j->iov;
  int n = j->niov;
  while (n > 0) {
    ssize_t w = writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      j->err = errno;
      j->syscall = "write";
      goto fail;
    }
    while (n > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  if (fsync(fd) != 0) {
    j->err = errno;
    j->syscall = "fsync";
    goto fail;
  }
  if (close(fd) != 0) {
    fd = -1;
    j->err = errno;
    j->syscall = "close";
    goto fail;
  }
  fd = -1;
  if (rename(j->tmp, j->final) != 0) {
    j->err = errno;
    j->syscall = "rename";
    goto fail;
  }
  /* The file is in new/ now: a failing directory fsync is reported (4xx: the client sends again,
   * a duplicate at worst) but cannot be undone. */
  if (j->dir[0]) sync_dir(j, j->dir);
  return;
fail:
  if (fd >= 0) close(fd);
  unlink(j->tmp);
}

napi_value errno_error(napi_env env, int e, const char *syscall) {
  napi_value msg, err, code, sys, no;
  char text[PATH_MAX + 96];
  snprintf(text, sizeof text, "%s: %s", syscall, strerror(e));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &code);
  napi_set_named_property(env, err, "code", code);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, err, "syscall", sys);
  napi_create_int32(env, -e, &no);
  napi_set_named_property(env, err, "errno", no);
  return err;
}

static void write_complete(napi_env env, napi_status status, void *data) {
  WriteJob *j = data;
  if (status != napi_ok || j->err) {
    napi_value err = errno_error(env, j->err ? j->err : ECANCELED, j->syscall ? j->syscall : "write");
    napi_reject_deferred(env, j->deferred, err);
  } else {
    napi_value v;
    if (j->kind == READ_HEAD && !j->missing) {
      void *dst;
      napi_create_buffer_copy(env, j->head_len, j->head, &dst, &v);
    } else if (j->kind == READ_HEAD) {
      napi_get_null(env, &v);
    } else {
      napi_get_undefined(env, &v);
    }
    napi_resolve_deferred(env, j->deferred, v);
  }
  if (j->keep) napi_delete_reference(env, j->keep);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value queue(napi_env env, WriteJob *j, const char *what) {
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, write_execute, write_complete, j, &j->work);
  if (napi_queue_async_work(env, j->work) != napi_ok) {
    if (j->keep) napi_delete_reference(env, j->keep);
    napi_delete_async_work(env, j->work);
    free(j);
    napi_throw_error(env, NULL, "cannot queue the job");
    return NULL;
  }
  return promise;
}

/* A zeroed job, or NULL with a JS exception pending. */
static WriteJob *new_job(napi_env env) {
  WriteJob *j = calloc(1, sizeof *j);
  if (!j) napi_throw_error(env, NULL, "out of memory");
  return j;
}

int get_path(napi_env env, napi_value v, char dst[PATH_MAX]) {
  size_t len;
  return napi_get_value_string_utf8(env, v, dst, PATH_MAX, &len) == napi_ok && len < PATH_MAX - 1;
}

/* Free the job, throw a TypeError with the usage line. */
static napi_value usage(napi_env env, WriteJob *j, const char *text) {
  free(j);
  napi_throw_type_error(env, NULL, text);
  return NULL;
}

/* syncDir(path: string): Promise<void> — open, fsync, close a directory in one job. */
napi_value js_sync_dir(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  WriteJob *j = new_job(env);
  if (!j) return NULL;
  if (argc != 1 || !get_path(env, argv[0], j->tmp)) return usage(env, j, "syncDir(path)");
  j->kind = SYNC_DIR;
  return queue(env, j, "mailseal.syncDir");
}

/* readHead(path: string, length ≤ 4096): Promise<Buffer | null> — open, pread from 0, close in
 * one job; null if the file does not exist. */
napi_value js_read_head(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  WriteJob *j = new_job(env);
  if (!j) return NULL;
  uint32_t len;
  if (argc != 2 || !get_path(env, argv[0], j->tmp) || napi_get_value_uint32(env, argv[1], &len) != napi_ok ||
      len == 0 || len > sizeof j->head) {
    return usage(env, j, "readHead(path, length ≤ 4096)");
  }
  j->kind = READ_HEAD;
  j->head_len = len;
  return queue(env, j, "mailseal.readHead");
}

/* writeDurable(tmpPath: string, finalPath: string, buffers: Buffer[], syncDir?: string):
 * Promise<void> — with syncDir, that directory (new/) is fsynced after the rename, in the same job. */
napi_value js_write_durable(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  WriteJob *j = new_job(env);
  if (!j) return NULL;
  bool is_array;
  uint32_t count = 0;
  napi_valuetype t4 = napi_undefined;
  if (argc == 4) napi_typeof(env, argv[3], &t4);
  if (argc < 3 || !get_path(env, argv[0], j->tmp) || !get_path(env, argv[1], j->final) ||
      napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[2], &count) != napi_ok || count > MAX_BUFS ||
      (t4 != napi_undefined && !get_path(env, argv[3], j->dir))) {
    return usage(env, j, "writeDurable(tmpPath, finalPath, buffers[≤64], syncDir?)");
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value b;
    bool is_buf = false;
    void *p;
    size_t n;
    if (napi_get_element(env, argv[2], i, &b) != napi_ok || napi_is_buffer(env, b, &is_buf) != napi_ok || !is_buf ||
        napi_get_buffer_info(env, b, &p, &n) != napi_ok) {
      return usage(env, j, "writeDurable: buffers must be Buffers");
    }
    if (n == 0) continue;
    j->iov[j->niov].iov_base = p;
    j->iov[j->niov].iov_len = n;
    j->niov++;
  }
  /* The array holds the buffers: it must stay as it is until the promise settles (the callers
   * pass an array they no longer touch). */
  if (napi_create_reference(env, argv[2], 1, &j->keep) != napi_ok) {
    free(j);
    napi_throw_error(env, NULL, "writeDurable: cannot keep the buffers");
    return NULL;
  }
  return queue(env, j, "mailseal.writeDurable");
}

const char *errno_name(int e) {
  switch (e) {
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EIO: return "EIO";
    case EROFS: return "EROFS";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EFBIG: return "EFBIG";
    case EXDEV: return "EXDEV";
    case ECANCELED: return "ECANCELED";
    default: return "EUNKNOWN";
  }
}
