/* Functions of the mailseal_native addon defined outside seal.c (which registers them). */
#ifndef MAILSEAL_ADDON_H
#define MAILSEAL_ADDON_H

#include <limits.h>
#include <node_api.h>

/* maildir.c: writeDurable(tmpPath, finalPath, buffers[]): Promise<void> */
napi_value js_write_durable(napi_env env, napi_callback_info info);

/* maildir.c: syncDir(path): Promise<void> */
napi_value js_sync_dir(napi_env env, napi_callback_info info);

/* maildir.c: readHead(path, length): Promise<Buffer | null> */
napi_value js_read_head(napi_env env, napi_callback_info info);

/* direct.c: a large message's tmp/ file with O_DIRECT: fileOpen(tmpPath): Promise<DirectFile>,
 * fileAppend(f, buffers), fileCommit(f, finalPath, buffers, syncDir?), fileAbort(f): Promise<void>,
 * fileDirect(f): boolean */
napi_value js_file_open(napi_env env, napi_callback_info info);
napi_value js_file_append(napi_env env, napi_callback_info info);
napi_value js_file_commit(napi_env env, napi_callback_info info);
napi_value js_file_abort(napi_env env, napi_callback_info info);
napi_value js_file_direct(napi_env env, napi_callback_info info);

/* lf.c: lfConvert(src, dst, state): number */
napi_value js_lf_convert(napi_env env, napi_callback_info info);

/* maildir.c: what the key lookup of a delivery reads, done inside the seal's job (seal.c): the
 * head of the folder's dovecot-uidlist and a stat of the user's dict. `failed` (an errno other
 * than ENOENT) means: read them again the usual way. */
#define PROBE_HEAD 512
typedef struct {
  char uidlist[PATH_MAX];
  char dict[PATH_MAX];
  unsigned char head[PROBE_HEAD];
  size_t head_len;
  int head_missing;
  int dict_missing;
  double ino, size, mtime_ms;
  int failed;
} Probe;
void probe_folder(Probe *p);

/* maildir.c: open, fsync, close a directory; 0 or the errno (and the failing call in *syscall). */
int fsync_dir_path(const char *dir, const char **syscall);

/* maildir.c: the first *len bytes of a file (open, pread from 0, close) into buf, *len set to what
 * was read; 0 or the errno (ENOENT: no such file). */
int read_prefix(const char *path, unsigned char *buf, size_t *len, const char **syscall);

/* maildir.c: a path argument into dst[PATH_MAX]; false if it is not a string or too long. */
int get_path(napi_env env, napi_value v, char dst[PATH_MAX]);

/* An Error like node:fs's: message "<syscall>: <strerror>", code ("ENOSPC"), syscall, errno. */
napi_value errno_error(napi_env env, int e, const char *syscall);

/* The errno constant's name ("ENOSPC"), as node:fs errors carry it in `code`. */
const char *errno_name(int e);

#endif
