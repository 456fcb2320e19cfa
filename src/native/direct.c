/* A large message's tmp/ file, written with O_DIRECT where the file system takes it (design.md
 * "Durability"): the ciphertext goes from an aligned staging buffer straight to the device,
 * without a copy into the page cache and without the writeback that fsync would then do in the
 * calling thread. On these VMs (ext4 on virtio) four writers of durable 1 MiB files spent ≈3.4 ms
 * of kernel CPU per file buffered and ≈0.9 ms with O_DIRECT (dd, conv=fsync, 400 files). Small
 * messages stay with writeDurable (maildir.c): at 4 KiB the two cost the same.
 *
 * A DirectFile is an external value owned by one MaildirWriter, which never runs two of its jobs
 * at once (checked here). Each job runs on libuv's threadpool:
 *   fileOpen(tmpPath)                       create O_EXCL 0600, then turn O_DIRECT on (if refused:
 *                                           EINVAL, the file stays buffered)
 *   fileAppend(f, buffers)                  copy into the staging buffer, write its whole 4 KiB
 *                                           blocks, keep the rest for the next call
 *   fileCommit(f, finalPath, buffers, dir?) the same, then the last partial block without
 *                                           O_DIRECT, fsync, close, rename; with dir, fsync it
 *   fileAbort(f)                            close and unlink
 * On any failure the tmp file is closed and removed, and the promise rejects with an Error
 * carrying `code` and `syscall` as node:fs errors do. A DirectFile collected before its commit
 * or abort (a bug) is closed and unlinked by its finaliser. Only ciphertext comes here. */

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addon.h"

/* O_DIRECT alignment: buffer address, file offset and length. 4096 covers 512-byte and 4 KiB
 * logical blocks. */
#define ALIGN 4096
/* Staging: one MaildirWriter flush (256 KiB) plus a partial block. */
#define STAGE (256 * 1024 + ALIGN)
#define MAX_BUFS 64

typedef struct {
  int fd;          /* -1 once closed */
  int direct;      /* O_DIRECT is on */
  int busy;        /* a job is queued or running */
  int done;        /* committed or aborted: nothing left to clean up */
  int orphaned;    /* finalised while a job ran (environment teardown): complete() frees it */
  unsigned char *stage;
  size_t fill;     /* bytes in stage, not yet written */
  off_t off;       /* file offset of stage[0] */
  char tmp[PATH_MAX];
} DirectFile;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep;  /* the buffers array, alive until the job completes */
  napi_ref self;  /* the DirectFile's external value */
  enum { OPEN, APPEND, COMMIT, ABORT } kind;
  DirectFile *f;
  struct iovec iov[MAX_BUFS];
  int niov;
  char final[PATH_MAX];
  char dir[PATH_MAX];
  int err;
  const char *syscall;
} Job;

static int fail(Job *j, const char *syscall) {
  j->err = errno;
  j->syscall = syscall;
  return -1;
}

/* pwrite all of p[0..n) at off; a direct write the kernel refuses (EINVAL: alignment the device
 * does not take) is retried buffered, which is always correct. */
static int write_all(Job *j, const unsigned char *p, size_t n, off_t off) {
  DirectFile *f = j->f;
  while (n > 0) {
    ssize_t w = pwrite(f->fd, p, n, off);
    if (w == 0) {
      errno = EIO; /* no progress: never loop on it */
      return fail(j, "write");
    }
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && f->direct) {
        int fl = fcntl(f->fd, F_GETFL);
        if (fl >= 0 && fcntl(f->fd, F_SETFL, fl & ~O_DIRECT) == 0) {
          f->direct = 0;
          continue;
        }
      }
      return fail(j, "write");
    }
    p += w;
    n -= (size_t)w;
    off += w;
  }
  return 0;
}

/* Copy the job's buffers through the staging buffer, writing its whole blocks; what is left
 * (< ALIGN bytes, or all of it when `last`) is written too when `last`. */
static int drain(Job *j, int last) {
  DirectFile *f = j->f;
  for (int i = 0; i < j->niov; i++) {
    const unsigned char *p = j->iov[i].iov_base;
    size_t n = j->iov[i].iov_len;
    while (n > 0) {
      size_t take = STAGE - f->fill < n ? STAGE - f->fill : n;
      memcpy(f->stage + f->fill, p, take);
      f->fill += take;
      p += take;
      n -= take;
      if (f->fill == STAGE) {
        size_t whole = STAGE - STAGE % ALIGN;
        if (write_all(j, f->stage, whole, f->off) != 0) return -1;
        f->off += (off_t)whole;
        f->fill -= whole;
        memmove(f->stage, f->stage + whole, f->fill);
      }
    }
  }
  size_t whole = f->fill - f->fill % ALIGN;
  if (whole > 0) {
    if (write_all(j, f->stage, whole, f->off) != 0) return -1;
    f->off += (off_t)whole;
    f->fill -= whole;
    memmove(f->stage, f->stage + whole, f->fill);
  }
  if (last && f->fill > 0) {
    /* The last partial block: not a multiple of the alignment, so without O_DIRECT. */
    if (f->direct) {
      int fl = fcntl(f->fd, F_GETFL);
      if (fl < 0 || fcntl(f->fd, F_SETFL, fl & ~O_DIRECT) != 0) return fail(j, "fcntl");
      f->direct = 0;
    }
    if (write_all(j, f->stage, f->fill, f->off) != 0) return -1;
    f->off += (off_t)f->fill;
    f->fill = 0;
  }
  return 0;
}

static void close_unlink(DirectFile *f) {
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  unlink(f->tmp);
  f->done = 1;
}

/* The rest, fsync, close, rename into new/; with j->dir, fsync that directory too. */
static void commit(Job *j) {
  DirectFile *f = j->f;
  if (drain(j, 1) != 0) goto bad;
  if (fsync(f->fd) != 0) {
    fail(j, "fsync");
    goto bad;
  }
  int fd = f->fd;
  f->fd = -1;
  if (close(fd) != 0) {
    fail(j, "close");
    goto bad;
  }
  if (rename(f->tmp, j->final) != 0) {
    fail(j, "rename");
    goto bad;
  }
  f->done = 1;
  /* In new/ now: a failing directory fsync is reported (4xx, a duplicate at worst). */
  if (j->dir[0]) j->err = fsync_dir_path(j->dir, &j->syscall);
  return;
bad:
  close_unlink(f);
}

static void execute(napi_env env, void *data) {
  (void)env;
  Job *j = data;
  DirectFile *f = j->f;
  switch (j->kind) {
    case OPEN: {
      f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (f->fd < 0) {
        fail(j, "open");
        f->done = 1; /* nothing was created */
        return;
      }
      int fl = fcntl(f->fd, F_GETFL);
      /* EINVAL: this file system takes no O_DIRECT (tmpfs before Linux 6.6, some FUSE): buffered. */
      f->direct = fl >= 0 && fcntl(f->fd, F_SETFL, fl | O_DIRECT) == 0;
      return;
    }
    case APPEND:
      if (drain(j, 0) != 0) close_unlink(f);
      return;
    case COMMIT:
      commit(j);
      return;
    case ABORT:
      close_unlink(f);
      return;
  }
}

static void release(DirectFile *f) {
  if (!f->done) close_unlink(f);
  free(f->stage);
  free(f);
}

static void complete(napi_env env, napi_status status, void *data) {
  Job *j = data;
  j->f->busy = 0;
  if (j->f->orphaned) {
    release(j->f);
    napi_delete_async_work(env, j->work);
    free(j);
    return;
  }
  if (status != napi_ok || j->err) {
    napi_value err = errno_error(env, j->err ? j->err : ECANCELED, j->syscall ? j->syscall : "write");
    napi_reject_deferred(env, j->deferred, err);
  } else {
    napi_value v;
    if (j->kind == OPEN) napi_get_reference_value(env, j->self, &v);
    else napi_get_undefined(env, &v);
    napi_resolve_deferred(env, j->deferred, v);
  }
  if (j->keep) napi_delete_reference(env, j->keep);
  napi_delete_reference(env, j->self);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value queue(napi_env env, Job *j, napi_value self, const char *what) {
  napi_value promise, name;
  napi_create_reference(env, self, 1, &j->self);
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  if (napi_queue_async_work(env, j->work) != napi_ok) {
    if (j->keep) napi_delete_reference(env, j->keep);
    napi_delete_reference(env, j->self);
    napi_delete_async_work(env, j->work);
    free(j);
    napi_throw_error(env, NULL, "cannot queue the job");
    return NULL;
  }
  j->f->busy = 1;
  return promise;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  DirectFile *f = data;
  if (f->busy) f->orphaned = 1; /* a job still uses it: complete() frees it */
  else release(f);
}

/* A zeroed job, or NULL with a JS exception pending. */
static Job *new_job(napi_env env) {
  Job *j = calloc(1, sizeof *j);
  if (!j) napi_throw_error(env, NULL, "out of memory");
  return j;
}

static napi_value throw_type(napi_env env, Job *j, const char *text) {
  free(j);
  napi_throw_type_error(env, NULL, text);
  return NULL;
}

/* The DirectFile behind argument 0, free for a job; else NULL with a TypeError thrown. */
static DirectFile *get_file(napi_env env, napi_value v, Job *j) {
  napi_valuetype t;
  void *p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_type(env, j, "not a DirectFile");
    return NULL;
  }
  DirectFile *f = p;
  if (f->busy || f->done || f->fd < 0) {
    throw_type(env, j, f->busy ? "DirectFile: a job is still running" : "DirectFile: already committed or aborted");
    return NULL;
  }
  return f;
}

/* The buffers of an array argument into the job; false with a TypeError thrown. */
static int get_buffers(napi_env env, napi_value arr, Job *j) {
  bool is_array;
  uint32_t count;
  if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array || napi_get_array_length(env, arr, &count) != napi_ok ||
      count > MAX_BUFS) {
    throw_type(env, j, "DirectFile: buffers must be an array of ≤ 64 Buffers");
    return 0;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value b;
    bool is_buf = false;
    void *p;
    size_t n;
    if (napi_get_element(env, arr, i, &b) != napi_ok || napi_is_buffer(env, b, &is_buf) != napi_ok || !is_buf ||
        napi_get_buffer_info(env, b, &p, &n) != napi_ok) {
      throw_type(env, j, "DirectFile: buffers must be Buffers");
      return 0;
    }
    if (n == 0) continue;
    j->iov[j->niov].iov_base = p;
    j->iov[j->niov].iov_len = n;
    j->niov++;
  }
  /* The array holds the buffers: the caller does not touch it until the promise settles. */
  if (napi_create_reference(env, arr, 1, &j->keep) != napi_ok) {
    throw_type(env, j, "DirectFile: cannot keep the buffers");
    return 0;
  }
  return 1;
}

/* fileOpen(tmpPath): Promise<DirectFile> */
napi_value js_file_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ext;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  Job *j = calloc(1, sizeof *j);
  DirectFile *f = calloc(1, sizeof *f);
  void *stage = NULL;
  if (!j || !f || posix_memalign(&stage, ALIGN, STAGE) != 0) {
    free(j);
    free(f);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  f->fd = -1;
  f->stage = stage;
  if (argc != 1 || !get_path(env, argv[0], f->tmp)) {
    free(stage);
    free(f);
    return throw_type(env, j, "fileOpen(tmpPath)");
  }
  if (napi_create_external(env, f, finalize, NULL, &ext) != napi_ok) {
    free(stage);
    free(f);
    free(j);
    napi_throw_error(env, NULL, "fileOpen: cannot make the handle");
    return NULL;
  }
  j->f = f;
  j->kind = OPEN;
  return queue(env, j, ext, "mailseal.fileOpen");
}

/* fileAppend(f, buffers[≤64]): Promise<void> */
napi_value js_file_append(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  Job *j = new_job(env);
  if (!j) return NULL;
  if (argc != 2) return throw_type(env, j, "fileAppend(file, buffers)");
  if (!(j->f = get_file(env, argv[0], j)) || !get_buffers(env, argv[1], j)) return NULL;
  j->kind = APPEND;
  return queue(env, j, argv[0], "mailseal.fileAppend");
}

/* fileCommit(f, finalPath, buffers[≤64], syncDir?): Promise<void> */
napi_value js_file_commit(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  Job *j = new_job(env);
  if (!j) return NULL;
  napi_valuetype t4 = napi_undefined;
  if (argc == 4) napi_typeof(env, argv[3], &t4);
  if (argc < 3 || !get_path(env, argv[1], j->final) || (t4 != napi_undefined && !get_path(env, argv[3], j->dir))) {
    return throw_type(env, j, "fileCommit(file, finalPath, buffers, syncDir?)");
  }
  if (!(j->f = get_file(env, argv[0], j)) || !get_buffers(env, argv[2], j)) return NULL;
  j->kind = COMMIT;
  return queue(env, j, argv[0], "mailseal.fileCommit");
}

/* fileAbort(f): Promise<void> — close and unlink; a file already done resolves at once. */
napi_value js_file_abort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  Job *j = new_job(env);
  if (!j) return NULL;
  void *p = NULL;
  napi_valuetype t;
  if (argc != 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external ||
      napi_get_value_external(env, argv[0], &p) != napi_ok || !p) {
    return throw_type(env, j, "fileAbort(file)");
  }
  j->f = p;
  if (j->f->busy) return throw_type(env, j, "DirectFile: a job is still running");
  if (j->f->done) {
    free(j);
    napi_value promise;
    napi_deferred d;
    napi_create_promise(env, &d, &promise);
    napi_value u;
    napi_get_undefined(env, &u);
    napi_resolve_deferred(env, d, u);
    return promise;
  }
  j->kind = ABORT;
  return queue(env, j, argv[0], "mailseal.fileAbort");
}

/* fileDirect(f): boolean — whether O_DIRECT is on (for tests and logs). */
napi_value js_file_direct(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *p = NULL;
  if (argc != 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "fileDirect(file)");
    return NULL;
  }
  napi_get_boolean(env, ((DirectFile *)p)->direct != 0, &v);
  return v;
}
