/* accounts - users and aliases in data_dir/tern.db (SQLite, WAL) */
#include "auth/accounts.h"

#include <crypt.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dbschema.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define ALIAS_MAX_DEPTH 8
#define RESOLVE_MAX_TARGETS 1000	/* a runaway alias set stops growing here */
#define ADDRESS_MAX 254			/* RFC 5321 path limit minus the angle brackets */

/* A yescrypt hash with the same parameters as the ones we make (crypt_gensalt "$y$", count
 * 0), of a password nobody knows. Unknown users are checked against it so that a failed
 * login costs the same time whether or not the account exists. */
static const char dummy_hash[] =
	"$y$j9T$ox9jpiupCVf3wVUhTZC58/$qlmqwVxlgtuFUkW/XS5la.qAdvjWbtNP9CNLEjXPvx4";

enum stmt_id {
	ST_USER_INSERT,
	ST_USER_DELETE,
	ST_USER_UPDATE,
	ST_USER_HASH,
	ST_USER_LIST,
	ST_ALIAS_SET,
	ST_ALIAS_DELETE,
	ST_ALIAS_GET,
	ST_ALIAS_LIST,
	ST_USER_OLDEST,
	ST_SENDERS_GET,
	ST_SENDERS_SET,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_USER_INSERT] = "INSERT INTO users(address, hash) VALUES (?1, ?2)",
	[ST_USER_DELETE] = "DELETE FROM users WHERE address = ?1",
	[ST_USER_UPDATE] = "UPDATE users SET hash = ?2 WHERE address = ?1",
	[ST_USER_HASH] = "SELECT hash FROM users WHERE address = ?1",
	[ST_USER_LIST] = "SELECT address FROM users ORDER BY address",
	[ST_ALIAS_SET] = "INSERT OR REPLACE INTO aliases(alias, targets) VALUES (?1, ?2)",
	[ST_ALIAS_DELETE] = "DELETE FROM aliases WHERE alias = ?1",
	[ST_ALIAS_GET] = "SELECT targets FROM aliases WHERE alias = ?1",
	[ST_ALIAS_LIST] = "SELECT alias, targets FROM aliases ORDER BY alias",
	/* ?1 only so that text_lookup can run it: the user added first that still exists */
	[ST_USER_OLDEST] = "SELECT address FROM users WHERE ?1 = ?1 ORDER BY rowid LIMIT 1",
	[ST_SENDERS_GET] = "SELECT senders FROM users WHERE address = ?1",
	[ST_SENDERS_SET] = "UPDATE users SET senders = ?2 WHERE address = ?1",
};

/* tern.db's schema versions (lib/dbschema): steps are never edited once released. Version
 * 1 is the schema from before versioning, which such a database adopts as it is. */
static const char *const schema_steps[] = {
	"CREATE TABLE IF NOT EXISTS users (address TEXT PRIMARY KEY, hash TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS aliases (alias TEXT PRIMARY KEY, targets TEXT NOT NULL);",
	/* 2: the other senders a user may use in MAIL FROM (space-separated addresses and
	 * @domains), set with tern user senders */
	"ALTER TABLE users ADD COLUMN senders TEXT NOT NULL DEFAULT '';",
};

struct accounts {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[ST_COUNT];
};

/* db_error - "path: what: sqlite message" for *error_r. */
static char *db_error(struct accounts *a, const char *what)
{
	return xasprintf("%s: %s: %s", a->path, what, sqlite3_errmsg(a->db));
}

/* stmt_get - a prepared statement, reset and with no bindings, ready to bind. */
static sqlite3_stmt *stmt_get(struct accounts *a, enum stmt_id id)
{
	sqlite3_stmt *st = a->stmt[id];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* stmt_done - reset after use so the statement holds no read transaction open. */
static void stmt_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

int accounts_open(const char *path, struct accounts **accounts_r, char **error_r)
{
	struct accounts *a = xcalloc(1, sizeof(*a));
	a->path = xstrdup(path);
	*accounts_r = NULL;

	/* NOFOLLOW: root runs the tern CLI on a data dir the run user owns; a tern.db that is
	 * a symlink (to a file root would then create or write) is refused */
	int rc = sqlite3_open_v2(path, &a->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW, NULL);
	if (rc != SQLITE_OK) {
		if (a->db == NULL)
			*error_r = xasprintf("%s: cannot open database: %s", path,
					     sqlite3_errstr(rc));
		else
			*error_r = db_error(a, "cannot open database");
		goto fail;
	}
	/* several worker processes and the CLI use the file at once: wait for locks rather
	 * than failing; WAL lets readers go on while one writes; FULL makes a commit durable */
	sqlite3_busy_timeout(a->db, 5000);
	if (dbschema_wal(a->db, 5000) < 0 ||
	    sqlite3_exec(a->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK) {
		*error_r = db_error(a, "cannot configure database");
		goto fail;
	}
	if (dbschema_migrate(a->db, a->path, schema_steps,
			     sizeof(schema_steps) / sizeof(schema_steps[0]), error_r) < 0)
		goto fail;
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(a->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &a->stmt[i], NULL) != SQLITE_OK) {
			*error_r = db_error(a, "cannot prepare statement");
			goto fail;
		}
	}
	*accounts_r = a;
	return 0;
fail:
	accounts_close(&a);
	return -1;
}

void accounts_close(struct accounts **ap)
{
	struct accounts *a = *ap;
	if (a == NULL)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(a->stmt[i]);
	if (a->db != NULL && sqlite3_close(a->db) != SQLITE_OK)
		log_warnx("%s: close: %s", a->path, sqlite3_errmsg(a->db));
	free(a->path);
	free(a);
	*ap = NULL;
}

/* addr_lower - a lower-cased copy (ASCII only: UTF-8 bytes stay as they are). */
static char *addr_lower(const char *s)
{
	char *p = xstrdup(s);
	for (char *q = p; *q != '\0'; q++) {
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	}
	return p;
}

bool accounts_address_valid(const char *address)
{
	size_t len = strlen(address);
	const char *at = strchr(address, '@');

	if (len == 0 || len > ADDRESS_MAX || at == NULL || at == address ||
	    strchr(at + 1, '@') != NULL)
		return false;
	for (const char *p = address; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c == 0x7f || strchr("<>()[],;:\\\"", c) != NULL)
			return false;
	}
	/* domain: labels separated by single dots, none empty */
	const char *d = at + 1;
	if (*d == '\0' || *d == '.' || d[strlen(d) - 1] == '.' || strstr(d, "..") != NULL)
		return false;
	return true;
}

/* normalize - validate and lower-case an address for storage; NULL with *error_r. */
static char *normalize(const char *address, char **error_r)
{
	if (!accounts_address_valid(address)) {
		*error_r = xasprintf("%s: not a valid address", address);
		return NULL;
	}
	return addr_lower(address);
}

/* ct_equal - compare two strings in time that depends only on their lengths. */
static bool ct_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return false;
	volatile unsigned char diff = 0;
	for (size_t i = 0; i < la; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

/* hash_password - a fresh yescrypt hash of password; NULL with *error_r. */
static char *hash_password(const char *password, char **error_r)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	size_t len = strlen(password);

	if (len == 0) {
		*error_r = xstrdup("empty password");
		return NULL;
	}
	if (len >= CRYPT_MAX_PASSPHRASE_SIZE) {
		*error_r = xasprintf("password too long (at most %d bytes)",
				     CRYPT_MAX_PASSPHRASE_SIZE - 1);
		return NULL;
	}
	/* NULL rbytes: libxcrypt takes the salt from the kernel's random source */
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, (int)sizeof(setting)) == NULL) {
		*error_r = xasprintf("cannot make a password salt: %s", strerror(errno));
		return NULL;
	}
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_rn(password, setting, cd, (int)sizeof(*cd));
	char *out = NULL;
	if (h == NULL || h[0] == '*')
		*error_r = xasprintf("cannot hash password: %s", strerror(errno));
	else
		out = xstrdup(h);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return out;
}

/* text_lookup - run a one-column SELECT keyed by key: 1 with *value_r (caller frees; may be
 * NULL when the caller only wants to know), 0 for no row, -1 on error. */
static int text_lookup(struct accounts *a, enum stmt_id id, const char *key, char **value_r)
{
	sqlite3_stmt *st = stmt_get(a, id);
	int ret;

	if (value_r != NULL)
		*value_r = NULL;
	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT) != SQLITE_OK) {
		ret = -1;
		goto out;
	}
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(st, 0);
		if (value_r != NULL)
			*value_r = xstrdup(v != NULL ? (const char *)v : "");
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = -1;
	}
out:
	if (ret < 0)
		log_warnx("%s: lookup: %s", a->path, sqlite3_errmsg(a->db));
	stmt_done(st);
	return ret;
}

/* exec_write - run a statement bound to (key, value or NULL): the number of rows changed,
 * or -1 (SQLITE_CONSTRAINT is reported as -2 so callers can say "exists"). */
static int exec_write(struct accounts *a, enum stmt_id id, const char *key, const char *value)
{
	sqlite3_stmt *st = stmt_get(a, id);
	int ret;

	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    (value != NULL && sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT) != SQLITE_OK)) {
		ret = -1;
	} else {
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			ret = sqlite3_changes(a->db);
		else if ((rc & 0xff) == SQLITE_CONSTRAINT)
			ret = -2;
		else
			ret = -1;
	}
	stmt_done(st);
	return ret;
}

int accounts_user_exists(struct accounts *a, const char *address)
{
	char *addr = addr_lower(address);
	int r = text_lookup(a, ST_USER_HASH, addr, NULL);
	free(addr);
	return r;
}

int accounts_alias_exists(struct accounts *a, const char *alias)
{
	char *addr = addr_lower(alias);
	int r = text_lookup(a, ST_ALIAS_GET, addr, NULL);
	free(addr);
	return r;
}

/* accounts_user_add - check for the user first so that "exists" does not cost a hash; the
 * primary key still catches a concurrent add. */
int accounts_user_add(struct accounts *a, const char *address, const char *password,
		      char **error_r)
{
	char *addr = normalize(address, error_r), *hash = NULL;
	int ret = -1;

	if (addr == NULL)
		return -1;
	int ex = text_lookup(a, ST_USER_HASH, addr, NULL);
	if (ex < 0) {
		*error_r = db_error(a, "lookup");
		goto out;
	}
	if (ex > 0) {
		*error_r = xasprintf("%s: user exists", addr);
		goto out;
	}
	if ((hash = hash_password(password, error_r)) == NULL)
		goto out;
	int r = exec_write(a, ST_USER_INSERT, addr, hash);
	if (r == -2)
		*error_r = xasprintf("%s: user exists", addr);
	else if (r < 0)
		*error_r = db_error(a, "add user");
	else
		ret = 0;
out:
	free(hash);
	free(addr);
	return ret;
}

int accounts_user_del(struct accounts *a, const char *address, char **error_r)
{
	char *addr = addr_lower(address);
	int ret = -1;
	int r = exec_write(a, ST_USER_DELETE, addr, NULL);
	if (r < 0)
		*error_r = db_error(a, "delete user");
	else if (r == 0)
		*error_r = xasprintf("%s: no such user", addr);
	else
		ret = 0;
	free(addr);
	return ret;
}

int accounts_user_passwd(struct accounts *a, const char *address, const char *password,
			 char **error_r)
{
	char *addr = addr_lower(address), *hash = NULL;
	int ret = -1;

	int ex = text_lookup(a, ST_USER_HASH, addr, NULL);
	if (ex < 0) {
		*error_r = db_error(a, "lookup");
		goto out;
	}
	if (ex == 0) {
		*error_r = xasprintf("%s: no such user", addr);
		goto out;
	}
	if ((hash = hash_password(password, error_r)) == NULL)
		goto out;
	int r = exec_write(a, ST_USER_UPDATE, addr, hash);
	if (r < 0)
		*error_r = db_error(a, "change password");
	else if (r == 0)
		*error_r = xasprintf("%s: no such user", addr);
	else
		ret = 0;
out:
	free(hash);
	free(addr);
	return ret;
}

/* list_rows - call cb with the text columns of each row of a listing statement. */
static int list_rows(struct accounts *a, enum stmt_id id,
		     void (*cb)(void *ctx, const char *c0, const char *c1), void *ctx)
{
	sqlite3_stmt *st = stmt_get(a, id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *c0 = sqlite3_column_text(st, 0);
		const unsigned char *c1 = sqlite3_column_count(st) > 1 ? sqlite3_column_text(st, 1)
									: NULL;
		cb(ctx, c0 != NULL ? (const char *)c0 : "", c1 != NULL ? (const char *)c1 : "");
	}
	if (rc != SQLITE_DONE)
		log_warnx("%s: list: %s", a->path, sqlite3_errmsg(a->db));
	stmt_done(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

struct user_list_ctx {
	void (*cb)(void *ctx, const char *address);
	void *ctx;
};

static void user_list_row(void *ctx, const char *c0, const char *c1)
{
	struct user_list_ctx *u = ctx;
	(void)c1;
	u->cb(u->ctx, c0);
}

int accounts_user_list(struct accounts *a, void (*cb)(void *ctx, const char *address), void *ctx)
{
	struct user_list_ctx u = { cb, ctx };
	return list_rows(a, ST_USER_LIST, user_list_row, &u);
}

/* join_normalized - items validated (addresses, and "@domain" when domains), lower-cased,
 * de-duplicated and joined with single spaces (valid addresses contain none): "" for no
 * items. NULL with *error_r. */
static char *join_normalized(const char *const *items, size_t n_items, bool domains,
			     char **error_r)
{
	char **norm = xcalloc(n_items + 1, sizeof(*norm));
	size_t n = 0, total = 1;
	char *joined = NULL;

	for (size_t i = 0; i < n_items; i++) {
		char *t;
		if (domains && items[i][0] == '@') {
			/* "@domain": the same checks as an address's domain */
			char *probe = xasprintf("x%s", items[i]);
			bool ok = accounts_address_valid(probe);
			free(probe);
			if (!ok) {
				*error_r = xasprintf("%s: not a valid address or @domain", items[i]);
				goto out;
			}
			t = addr_lower(items[i]);
		} else {
			t = normalize(items[i], error_r);
		}
		if (t == NULL)
			goto out;
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(norm[j], t) == 0;
		if (dup) {
			free(t);
			continue;
		}
		norm[n++] = t;
		total += strlen(t) + 1;
	}
	joined = xmalloc(total);
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(norm[i]);
		memcpy(joined + off, norm[i], l);
		off += l;
		if (i + 1 < n)
			joined[off++] = ' ';
	}
	joined[off] = '\0';
out:
	for (size_t i = 0; i < n; i++)
		free(norm[i]);
	free(norm);
	return joined;
}

/* accounts_alias_add - targets are validated, lower-cased, de-duplicated and stored
 * space-separated. */
int accounts_alias_add(struct accounts *a, const char *alias, const char *const *targets,
		       size_t n_targets, char **error_r)
{
	char *name = normalize(alias, error_r);
	int ret = -1;

	if (name == NULL)
		return -1;
	if (n_targets == 0) {
		*error_r = xasprintf("%s: an alias needs at least one target", name);
		free(name);
		return -1;
	}
	char *joined = join_normalized(targets, n_targets, false, error_r);
	if (joined != NULL) {
		if (exec_write(a, ST_ALIAS_SET, name, joined) < 0)
			*error_r = db_error(a, "add alias");
		else
			ret = 0;
	}
	free(joined);
	free(name);
	return ret;
}

int accounts_user_oldest(struct accounts *a, char **address_r)
{
	return text_lookup(a, ST_USER_OLDEST, "", address_r);
}

int accounts_user_senders(struct accounts *a, const char *address, char **senders_r)
{
	char *addr = addr_lower(address);
	int r = text_lookup(a, ST_SENDERS_GET, addr, senders_r);
	free(addr);
	return r;
}

int accounts_user_set_senders(struct accounts *a, const char *address,
			      const char *const *senders, size_t n, char **error_r)
{
	char *addr = addr_lower(address);
	int ret = -1;
	char *joined = join_normalized(senders, n, true, error_r);
	if (joined != NULL) {
		int r = exec_write(a, ST_SENDERS_SET, addr, joined);
		if (r < 0)
			*error_r = db_error(a, "set senders");
		else if (r == 0)
			*error_r = xasprintf("%s: no such user", addr);
		else
			ret = 0;
	}
	free(joined);
	free(addr);
	return ret;
}

/* list_has - true when the space-separated list holds word, or "@domain" of an address */
static bool list_has(const char *list, const char *address)
{
	const char *at = strrchr(address, '@');
	size_t al = strlen(address), dl = at != NULL ? strlen(at) : 0;
	for (const char *p = list; *p != '\0';) {
		size_t l = strcspn(p, " ");
		if ((l == al && memcmp(p, address, l) == 0) ||
		    (l == dl && dl > 1 && p[0] == '@' && memcmp(p, at, l) == 0))
			return true;
		p += l;
		while (*p == ' ')
			p++;
	}
	return false;
}

int accounts_sender_allowed(struct accounts *a, const char *user, const char *sender,
			    bool (*is_local)(void *ctx, const char *domain), void *ctx)
{
	char *u = addr_lower(user), *snd = addr_lower(sender), *list = NULL;
	char **targets = NULL;
	size_t n = 0;
	int ret = 0;

	if (strcmp(u, snd) == 0) {
		ret = 1;
		goto out;
	}
	int r = text_lookup(a, ST_SENDERS_GET, u, &list);
	if (r < 0 || (r == 1 && list_has(list, snd))) {
		ret = r < 0 ? -1 : 1;
		goto out;
	}
	/* an alias that delivers to the user (also one among other targets: a shared role
	 * address); a user's own address resolves to itself, a foreign one to itself */
	const char *at = strrchr(snd, '@');
	if (at == NULL || !is_local(ctx, at + 1) || accounts_alias_exists(a, snd) != 1)
		goto out;
	r = accounts_resolve(a, snd, is_local, ctx, &targets, &n);
	if (r < 0)
		ret = -1;
	for (size_t i = 0; r > 0 && i < n && ret == 0; i++)
		ret = strcmp(targets[i], u) == 0;
	accounts_targets_free(&targets);
out:
	free(list);
	free(u);
	free(snd);
	return ret;
}

int accounts_alias_del(struct accounts *a, const char *alias, char **error_r)
{
	char *name = addr_lower(alias);
	int ret = -1;
	int r = exec_write(a, ST_ALIAS_DELETE, name, NULL);
	if (r < 0)
		*error_r = db_error(a, "delete alias");
	else if (r == 0)
		*error_r = xasprintf("%s: no such alias", name);
	else
		ret = 0;
	free(name);
	return ret;
}

int accounts_alias_list(struct accounts *a,
			void (*cb)(void *ctx, const char *alias, const char *targets), void *ctx)
{
	return list_rows(a, ST_ALIAS_LIST, cb, ctx);
}

int accounts_password_hash(struct accounts *a, const char *address, char **hash_r)
{
	char *addr = addr_lower(address);
	int r = text_lookup(a, ST_USER_HASH, addr, hash_r);
	free(addr);
	return r;
}

/* accounts_hash_check - exactly one yescrypt computation, against the stored hash or the
 * dummy one, and a constant-time compare. Touches nothing shared: safe in any thread. */
bool accounts_hash_check(const char *password, const char *stored)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_rn(password, stored != NULL ? stored : dummy_hash, cd,
				 (int)sizeof(*cd));
	/* crypt_rn returns NULL for a disabled hash ("!", "*") or an overlong password */
	bool ok = stored != NULL && h != NULL && h[0] != '*' && ct_equal(h, stored);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

int accounts_verify(struct accounts *a, const char *address, const char *password)
{
	char *stored = NULL;
	if (accounts_password_hash(a, address, &stored) < 0)
		return -1;
	int ok = accounts_hash_check(password, stored) ? 1 : 0;
	free(stored);
	return ok;
}

/* Resolution state: the addresses found so far and the aliases seen, each with a flag that
 * says whether it is on the current expansion path (a loop) or was finished (a diamond). */
struct seen {
	char *addr;
	bool in_path;
};

struct resolve {
	struct accounts *a;
	bool (*is_local)(void *ctx, const char *domain);
	void *ctx;
	char **out;
	size_t n_out, cap_out;
	struct seen *seen;
	size_t n_seen, cap_seen;
	bool warned_full;
};

/* resolve_add - append a final address unless it is there already. */
static void resolve_add(struct resolve *r, const char *addr)
{
	for (size_t i = 0; i < r->n_out; i++) {
		if (strcmp(r->out[i], addr) == 0)
			return;
	}
	if (r->n_out >= RESOLVE_MAX_TARGETS) {
		if (!r->warned_full)
			log_warnx("alias expansion stopped at %d addresses", RESOLVE_MAX_TARGETS);
		r->warned_full = true;
		return;
	}
	if (r->n_out + 2 > r->cap_out) {
		r->cap_out = r->cap_out ? r->cap_out * 2 : 8;
		r->out = xreallocarray(r->out, r->cap_out, sizeof(*r->out));
	}
	r->out[r->n_out++] = xstrdup(addr);
	r->out[r->n_out] = NULL;
}

static struct seen *resolve_seen(struct resolve *r, const char *addr)
{
	for (size_t i = 0; i < r->n_seen; i++) {
		if (strcmp(r->seen[i].addr, addr) == 0)
			return &r->seen[i];
	}
	return NULL;
}

/* addr_is_local - whether the address's domain is ours; one without a domain cannot leave
 * the server, so it counts as local. */
static bool addr_is_local(struct resolve *r, const char *addr)
{
	const char *at = strrchr(addr, '@');
	if (at == NULL || r->is_local == NULL)
		return true;
	return r->is_local(r->ctx, at + 1);
}

/* resolve_final - an address that is not expanded further: a user or a foreign address is
 * kept; a local address that is neither is dropped, logged with why_dropped unless NULL.
 * 0 or -1. */
static int resolve_final(struct resolve *r, const char *addr, const char *why_dropped)
{
	int u = text_lookup(r->a, ST_USER_HASH, addr, NULL);
	if (u < 0)
		return -1;
	if (u > 0 || !addr_is_local(r, addr)) {
		resolve_add(r, addr);
	} else if (why_dropped != NULL) {
		char safe[128];
		log_warnx("alias target %s %s; skipped",
			  log_sanitize(safe, sizeof(safe), addr, strlen(addr)), why_dropped);
	}
	return 0;
}

/* resolve_one - expand addr (lower case) found at depth. An alias is expanded once: met again
 * on its own path (a loop, or "a -> a, b" keeping a copy) it is a final address, met again
 * elsewhere (two aliases sharing a target alias) it is skipped. 0 or -1. */
static int resolve_one(struct resolve *r, const char *addr, int depth)
{
	struct seen *s = resolve_seen(r, addr);
	if (s != NULL)
		return s->in_path ? resolve_final(r, addr, "makes an alias loop") : 0;

	char *targets = NULL;
	int isalias = text_lookup(r->a, ST_ALIAS_GET, addr, &targets);
	if (isalias < 0)
		return -1;
	if (isalias == 0)
		return resolve_final(r, addr, depth == 0 ? NULL : "is not a user or alias");
	if (depth >= ALIAS_MAX_DEPTH) {
		char safe[128];
		log_warnx("alias %s nested deeper than %d; not expanded",
			  log_sanitize(safe, sizeof(safe), addr, strlen(addr)), ALIAS_MAX_DEPTH);
		free(targets);
		return resolve_final(r, addr, NULL);
	}

	if (r->n_seen == r->cap_seen) {
		r->cap_seen = r->cap_seen ? r->cap_seen * 2 : 8;
		r->seen = xreallocarray(r->seen, r->cap_seen, sizeof(*r->seen));
	}
	size_t idx = r->n_seen++;
	r->seen[idx].addr = xstrdup(addr);
	r->seen[idx].in_path = true;

	int ret = 0;
	char *save = NULL;
	for (char *t = strtok_r(targets, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		char *lt = addr_lower(t);	/* stored lower case; be safe with hand edits */
		ret = resolve_one(r, lt, depth + 1);
		free(lt);
		if (ret < 0)
			break;
	}
	/* index, not pointer: the recursion may have moved the array */
	r->seen[idx].in_path = false;
	free(targets);
	return ret;
}

int accounts_resolve(struct accounts *a, const char *address,
		     bool (*is_local)(void *ctx, const char *domain), void *ctx,
		     char ***targets_r, size_t *n_r)
{
	struct resolve r = { .a = a, .is_local = is_local, .ctx = ctx };
	char *addr = addr_lower(address);
	int rc = resolve_one(&r, addr, 0);
	free(addr);
	for (size_t i = 0; i < r.n_seen; i++)
		free(r.seen[i].addr);
	free(r.seen);

	*targets_r = NULL;
	*n_r = 0;
	if (rc < 0 || r.n_out == 0) {
		accounts_targets_free(&r.out);
		return rc < 0 ? -1 : 0;
	}
	*targets_r = r.out;
	*n_r = r.n_out;
	return 1;
}

void accounts_targets_free(char ***targets)
{
	if (*targets == NULL)
		return;
	for (char **t = *targets; *t != NULL; t++)
		free(*t);
	free(*targets);
	*targets = NULL;
}
