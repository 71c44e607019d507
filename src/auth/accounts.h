/* accounts - users and aliases in data_dir/tern.db (SQLite, WAL).
 * Addresses are stored and compared in lower case. Passwords are stored as yescrypt hashes
 * made with libxcrypt crypt_r; verification compares in constant time. */
#ifndef TERN_ACCOUNTS_H
#define TERN_ACCOUNTS_H
#include <stdbool.h>
#include <stddef.h>

struct accounts;

/* accounts_open - open the database at path, bringing its schema to this program's version
 * (a newer database is refused). Returns 0, or -1 with *error_r set (caller frees). */
int accounts_open(const char *path, struct accounts **accounts_r, char **error_r);
void accounts_close(struct accounts **accounts);

/* accounts_user_add - add a user with a password; -1 with *error_r when it exists or fails. */
int accounts_user_add(struct accounts *a, const char *address, const char *password, char **error_r);
int accounts_user_del(struct accounts *a, const char *address, char **error_r);
int accounts_user_passwd(struct accounts *a, const char *address, const char *password, char **error_r);
/* accounts_user_exists - 1 yes, 0 no, -1 error. */
int accounts_user_exists(struct accounts *a, const char *address);
/* accounts_user_list - call cb for each user address in order; 0 or -1. */
int accounts_user_list(struct accounts *a, void (*cb)(void *ctx, const char *address), void *ctx);
/* accounts_alias_exists - 1 yes, 0 no, -1 error. */
int accounts_alias_exists(struct accounts *a, const char *alias);

/* accounts_alias_add - alias -> targets (replaces an existing alias of that name). */
int accounts_alias_add(struct accounts *a, const char *alias, const char *const *targets,
		       size_t n_targets, char **error_r);
int accounts_alias_del(struct accounts *a, const char *alias, char **error_r);
/* accounts_alias_list - cb(alias, "t1 t2 …") for each alias in order. */
int accounts_alias_list(struct accounts *a,
			void (*cb)(void *ctx, const char *alias, const char *targets), void *ctx);

/* accounts_user_oldest - the user added first that still exists: 1 with *address_r (caller
 * frees), 0 when there is no user, -1 on error. */
int accounts_user_oldest(struct accounts *a, char **address_r);
/* accounts_user_senders - the other senders address may use ("" or space-separated
 * addresses and @domains): 1 with *senders_r (caller frees), 0 no such user, -1 error.
 * accounts_user_set_senders - replace them (n 0: none); -1 with *error_r. */
int accounts_user_senders(struct accounts *a, const char *address, char **senders_r);
int accounts_user_set_senders(struct accounts *a, const char *address,
			      const char *const *senders, size_t n, char **error_r);
/* accounts_sender_allowed - may the logged-in user use sender as MAIL FROM: its own address,
 * one of its senders (an address, or any address at an @domain listed), or a local alias
 * that resolves (is_local as in accounts_resolve) to it, among other targets or alone.
 * 1 yes, 0 no, -1 on a database error. */
int accounts_sender_allowed(struct accounts *a, const char *user, const char *sender,
			    bool (*is_local)(void *ctx, const char *domain), void *ctx);

/* accounts_verify - 1 when password matches address's hash, 0 when not (or no such user:
 * a dummy hash is still computed so timing does not reveal which), -1 on a database error. */
int accounts_verify(struct accounts *a, const char *address, const char *password);
/* accounts_verify in two halves, so that the slow one can run off the event loop:
 * accounts_password_hash - the stored hash of address (any case): 1 with *hash_r (caller
 * frees), 0 when there is no such user (*hash_r NULL), -1 on a database error.
 * accounts_hash_check - true when password matches stored; stored NULL (no such user) costs
 * the same yescrypt computation against a dummy hash and is false. Thread-safe. */
int accounts_password_hash(struct accounts *a, const char *address, char **hash_r);
bool accounts_hash_check(const char *password, const char *stored);

/* accounts_resolve - expand address through aliases (recursively, depth <= 8, loops cut)
 * into final addresses: local users and/or foreign addresses. is_local(domain) says which
 * domains are ours. Returns 1 with *targets_r (NULL-terminated array; free with
 * accounts_targets_free) and *n_r, 0 when a local address resolves to no user, -1 on error. */
int accounts_resolve(struct accounts *a, const char *address,
		     bool (*is_local)(void *ctx, const char *domain), void *ctx,
		     char ***targets_r, size_t *n_r);
void accounts_targets_free(char ***targets);

/* accounts_address_valid - true for a plain "local@domain" that users and aliases may have:
 * at most 254 bytes, one '@', a non-empty local part, a domain of non-empty dot-separated
 * labels, no spaces, control characters or any of <>()[],;:\" (no quoted local parts). */
bool accounts_address_valid(const char *address);

#endif
