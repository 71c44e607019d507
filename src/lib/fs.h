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
/* fs_open_trusted - open an absolute path that only root can have put there: every directory
 * on the way is owned by root and writable by nobody else (group root may write; a sticky
 * directory such as /tmp may be world-writable), every symlink followed is root's and lies in
 * such a directory, and the object reached is root's and not writable by others. Walked with
 * openat and O_NOFOLLOW, one component at a time, so nothing is checked by name and opened
 * later. flags: open(2) flags (O_NOFOLLOW and O_CLOEXEC are added). Returns the descriptor,
 * or -1 with *error_r naming the component and why (caller frees). */
int fs_open_trusted(const char *path, int flags, char **error_r);
/* fs_read_fd - the rest of fd (at most max bytes) into fresh NUL-terminated memory; 0 or -1
 * with errno (EFBIG: larger than max). */
int fs_read_fd(int fd, size_t max, char **data_r, size_t *len_r);
/* fs_unique_name - "<sec>.M<usec>P<pid>Q<counter>R<random>.<host>" into out: unique across
 * processes and hosts, sortable by time. Returns out. */
char *fs_unique_name(char *out, size_t outsz, const char *host);

#endif
