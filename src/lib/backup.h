/* backup - copying a live data dir: SQLite databases through the online backup API, files by
 * content. Used by `tern backup` (store/backup.c, queue/backup.c, cli/cmd_backup.c). */
#ifndef TERN_LIB_BACKUP_H
#define TERN_LIB_BACKUP_H
#include <stdint.h>

struct backup_counts {
	uint64_t files;		/* message or queue files copied */
	uint64_t bytes;		/* their bytes */
	uint64_t dropped;	/* database rows whose file went away before it was copied */
};

/* backup_sqlite - copy the database src to dst (which must not exist) with SQLite's online
 * backup API: one consistent snapshot while other processes keep writing (WAL readers do not
 * block writers; busy moments are retried for up to 30 s). 1 copied, 0 src does not exist,
 * -1 with *error_r (caller frees). */
int backup_sqlite(const char *src, const char *dst, char **error_r);

/* backup_copy_file - copy the regular file src (not followed if a symlink) to dst (created
 * 0600, O_EXCL), keeping its modification time. 1 copied (bytes added to c), 0 src is gone
 * or not a regular file, -1 with *error_r. */
int backup_copy_file(const char *src, const char *dst, struct backup_counts *c, char **error_r);

/* backup_copy_dir - make dst (0700) and copy into it every regular file of the directory
 * src whose name does not start with '.' (not recursive). A missing src makes an empty dst.
 * 0, or -1 with *error_r. */
int backup_copy_dir(const char *src, const char *dst, struct backup_counts *c, char **error_r);

/* backup_db_finish - end the fix-up of a copied database: COMMIT when ok, else (or when the
 * commit fails) *error_r names path and SQLite's error; then finalize the n statements
 * (NULL ones too) and close db (NULL is fine). 0 or -1. */
struct sqlite3;
struct sqlite3_stmt;
int backup_db_finish(struct sqlite3 *db, int ok, const char *path, struct sqlite3_stmt **st,
		     int n, char **error_r);

#endif
