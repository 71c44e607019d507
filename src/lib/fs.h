/* fs - durable file system helpers: fsync'd creation, directories, unique names. */
#ifndef TERN_FS_H
#define TERN_FS_H
#include <stddef.h>
#include <sys/types.h>

/* fs_mkdirs - mkdir -p with mode for each created level; 0 or -1 with errno. */
int fs_mkdirs(const char *path, mode_t mode);
/* fs_fsync_dir - fsync the directory at path; 0 or -1. */
int fs_fsync_dir(const char *path);
/* fs_fsync_parent - fsync the directory that holds path. */
int fs_fsync_parent(const char *path);
/* fs_write_all - write every byte, retrying on EINTR/short writes; 0 or -1. */
int fs_write_all(int fd, const void *p, size_t n);
/* fs_write_file_atomic - tmp name in the same dir, O_EXCL, write, fsync, rename, fsync dir. */
int fs_write_file_atomic(const char *path, const void *p, size_t n, mode_t mode);
/* fs_read_file - whole file (at most max bytes) into fresh memory; -1 with errno (EFBIG;
 * ELOOP: the name is a symlink, never followed: root reads files in data dirs others own). */
int fs_read_file(const char *path, size_t max, char **data_r, size_t *len_r);
/* fs_unique_name - "<sec>.M<usec>P<pid>Q<counter>R<random>.<host>" into out: unique across
 * processes and hosts, sortable by time. Returns out. */
char *fs_unique_name(char *out, size_t outsz, const char *host);

#endif
