/* dkim_keys - the key store: dkim_dir/<domain>/<selector>.pem, root-only */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkim/dkim.h"
#include "dkim/parse.h"
#include "lib/base64.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define KEY_FILE_MAX (64 * 1024)
#define RING_MAX 256

/* name_ok - a domain or selector we put in a path and a DNS name: [a-z0-9._-], no leading
 * dot, at most 253 bytes */
static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '.' && c != '-' && c != '_')
			return false;
		if (c == '.' && s[i + 1] == '.')
			return false;
	}
	return true;
}

/* owner_ok - when we are root, what holds keys must be root's and not writable by others:
 * otherwise the run user could put its own key (or a symlink) in place */
static bool owner_ok(const struct stat *st)
{
	if (geteuid() != 0)
		return true;
	return st->st_uid == 0 && (st->st_mode & 022) == 0;
}

/* read_key_file - the PEM private key in dirfd/name */
static EVP_PKEY *read_key_file(int dirfd, const char *name, long *mtime_r, char **error_r)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		*error_r = xasprintf("open: %s", strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX ||
	    !owner_ok(&st)) {
		*error_r = xstrdup("not a regular root-owned file of at most 64 KiB");
		close(fd);
		return NULL;
	}
	char *data = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	BIO *bio = BIO_new_mem_buf(data, (int)got);
	EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	explicit_bzero(data, got);
	free(data);
	if (pk == NULL)
		*error_r = xstrdup("not a PEM private key");
	*mtime_r = (long)st.st_mtime;
	return pk;
}

static int key_type_of(EVP_PKEY *pk, enum dkim_key_type *t)
{
	int id = EVP_PKEY_get_base_id(pk);
	if (id == EVP_PKEY_RSA) {
		*t = DKIM_KEYTYPE_RSA;
		return EVP_PKEY_get_bits(pk) >= 1024 ? 0 : -1;
	}
	if (id == EVP_PKEY_ED25519) {
		*t = DKIM_KEYTYPE_ED25519;
		return 0;
	}
	return -1;
}

/* load_domain - the keys of one domain directory */
static void load_domain(struct dkim_keyring *r, int topfd, const char *dom, const char *dir)
{
	int dfd = openat(topfd, dom, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return;
	struct stat st;
	if (fstat(dfd, &st) < 0 || !owner_ok(&st)) {
		log_warnx("dkim: %s/%s: not root's or writable by others: skipped", dir, dom);
		close(dfd);
		return;
	}
	DIR *d = fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL && r->n < RING_MAX) {
		size_t nl = strlen(e->d_name);
		if (e->d_name[0] == '.' || nl < 5 || strcmp(e->d_name + nl - 4, ".pem") != 0)
			continue;
		char *sel = xstrndup(e->d_name, nl - 4);
		char *err = NULL;
		long mtime = 0;
		EVP_PKEY *pk = name_ok(sel) ? read_key_file(dirfd(d), e->d_name, &mtime, &err) : NULL;
		enum dkim_key_type t;
		if (pk == NULL || key_type_of(pk, &t) < 0) {
			log_warnx("dkim: %s/%s/%s: %s: skipped", dir, dom, e->d_name,
				  err ? err : "not an RSA (>= 1024 bits) or Ed25519 key");
			EVP_PKEY_free(pk);
			free(sel);
			free(err);
			continue;
		}
		r->keys = xreallocarray(r->keys, r->n + 1, sizeof(*r->keys));
		struct dkim_key *k = &r->keys[r->n++];
		k->domain = xstrdup(dom);
		for (char *p = k->domain; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		k->selector = sel;
		k->type = t;
		k->pkey = pk;
		k->mtime = mtime;
	}
	closedir(d);
}

int dkim_keyring_load(const char *dir, struct dkim_keyring **ring_r, char **error_r)
{
	struct dkim_keyring *r = xcalloc(1, sizeof(*r));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			*ring_r = r;
			return 0;
		}
		*error_r = xasprintf("%s: %s", dir, strerror(errno));
		free(r);
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !owner_ok(&st)) {
		*error_r = xasprintf("%s: must belong to root and not be writable by others", dir);
		close(fd);
		free(r);
		return -1;
	}
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		*error_r = xasprintf("%s: %s", dir, strerror(errno));
		close(fd);
		free(r);
		return -1;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && name_ok(e->d_name))
			load_domain(r, dirfd(d), e->d_name, dir);
	closedir(d);
	*ring_r = r;
	return 0;
}

static void key_clear(struct dkim_key *k)
{
	free(k->domain);
	free(k->selector);
	EVP_PKEY_free(k->pkey);
}

void dkim_keyring_free(struct dkim_keyring **rp)
{
	struct dkim_keyring *r = *rp;
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		key_clear(&r->keys[i]);
	free(r->keys);
	free(r);
	*rp = NULL;
}

void dkim_key_free(struct dkim_key **kp)
{
	if (*kp == NULL)
		return;
	key_clear(*kp);
	free(*kp);
	*kp = NULL;
}

size_t dkim_keyring_pick(const struct dkim_keyring *ring, const char *domain,
			 const struct dkim_key **out, size_t max)
{
	const struct dkim_key *best[2] = { NULL, NULL };
	if (ring == NULL)
		return 0;
	for (size_t i = 0; i < ring->n; i++) {
		const struct dkim_key *k = &ring->keys[i];
		if (strcasecmp(k->domain, domain) != 0)
			continue;
		const struct dkim_key **b = &best[k->type == DKIM_KEYTYPE_RSA ? 0 : 1];
		if (*b == NULL || strcmp(k->selector, (*b)->selector) > 0)
			*b = k;
	}
	size_t n = 0;
	for (int t = 0; t < 2; t++)
		if (best[t] != NULL && n < max)
			out[n++] = best[t];
	return n;
}

char *dkim_key_record(const struct dkim_key *k)
{
	buf p;
	buf_init(&p, 0);
	if (k->type == DKIM_KEYTYPE_ED25519) {
		unsigned char raw[32];
		size_t rl = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &rl) == 1)
			base64_encode(raw, rl, &p);
	} else {
		unsigned char *der = NULL;
		int dl = i2d_PUBKEY(k->pkey, &der);
		if (dl > 0)
			base64_encode(der, (size_t)dl, &p);
		OPENSSL_free(der);
	}
	char *rec = xasprintf("v=DKIM1; k=%s; p=%s",
			      k->type == DKIM_KEYTYPE_ED25519 ? "ed25519" : "rsa", buf_cstr(&p));
	buf_free(&p);
	return rec;
}

char *dkim_key_zone_line(const struct dkim_key *k)
{
	char *rec = dkim_key_record(k);
	size_t len = strlen(rec);
	buf line;
	buf_init(&line, 0);
	buf_printf(&line, "%s._domainkey.%s. IN TXT", k->selector, k->domain);
	for (size_t i = 0; i < len; i += 255)
		buf_printf(&line, " \"%.*s\"", (int)(len - i < 255 ? len - i : 255), rec + i);
	free(rec);
	char *out = xstrdup(buf_cstr(&line));
	buf_free(&line);
	return out;
}

bool dkim_key_published(const struct dkim_key *k, const char *const *txts, size_t n)
{
	char *rec = dkim_key_record(k);
	struct dkim_keyrec want, got;
	const char *err;
	bool ok = false;
	dkim_keyrec_parse(rec, strlen(rec), &want, &err);
	for (size_t i = 0; i < n && !ok; i++) {
		if (dkim_keyrec_parse(txts[i], strlen(txts[i]), &got, &err) == 0 &&
		    got.k == want.k && got.p.len == want.p.len &&
		    memcmp(got.p.data, want.p.data, got.p.len) == 0)
			ok = true;
		dkim_keyrec_free(&got);
	}
	dkim_keyrec_free(&want);
	free(rec);
	return ok;
}

/* open_dir_at - mkdirat (0700) where missing and open without following a symlink; when
 * root, the directory must be root's and not writable by others */
static int open_dir_at(int at, const char *name, char **error_r)
{
	if (mkdirat(at, name, 0700) < 0 && errno != EEXIST) {
		*error_r = xasprintf("%s: mkdir: %s", name, strerror(errno));
		return -1;
	}
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		*error_r = xasprintf("%s: %s", name, errno == ELOOP || errno == ENOTDIR
						       ? "not a directory (a symlink?)" : strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !owner_ok(&st)) {
		*error_r = xasprintf("%s: must belong to root and not be writable by others", name);
		close(fd);
		return -1;
	}
	return fd;
}

static EVP_PKEY *keygen(enum dkim_key_type type)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(type == DKIM_KEYTYPE_RSA ? EVP_PKEY_RSA
								       : EVP_PKEY_ED25519, NULL);
	EVP_PKEY *pk = NULL;
	if (c != NULL && EVP_PKEY_keygen_init(c) == 1 &&
	    (type != DKIM_KEYTYPE_RSA || EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048) == 1))
		EVP_PKEY_keygen(c, &pk);
	EVP_PKEY_CTX_free(c);
	return pk;
}

int dkim_key_generate(const char *dkim_dir, const char *domain, const char *selector,
		      enum dkim_key_type type, struct dkim_key **key_r, char **error_r)
{
	char dom[254];
	snprintf(dom, sizeof(dom), "%s", domain);
	for (char *p = dom; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!name_ok(dom) || strlen(domain) >= sizeof(dom) || !name_ok(selector)) {
		*error_r = xstrdup("bad domain or selector (letters, digits, '.', '-', '_')");
		return -1;
	}
	/* dkim_dir itself: its parent is the config directory, root's */
	int top = open_dir_at(AT_FDCWD, dkim_dir, error_r);
	if (top < 0)
		return -1;
	int dfd = open_dir_at(top, dom, error_r);
	close(top);
	if (dfd < 0)
		return -1;
	char final[300], tmp[320];
	snprintf(final, sizeof(final), "%s.pem", selector);
	snprintf(tmp, sizeof(tmp), ".%s.%ld.tmp", selector, (long)getpid());
	if (faccessat(dfd, final, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		*error_r = xasprintf("%s/%s/%s exists: choose another selector", dkim_dir, dom, final);
		close(dfd);
		return -1;
	}
	EVP_PKEY *pk = keygen(type);
	if (pk == NULL) {
		*error_r = xstrdup("key generation failed");
		close(dfd);
		return -1;
	}
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long pl = 0;
	int ok = fd >= 0 && bio != NULL && PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) == 1 &&
		 (pl = BIO_get_mem_data(bio, &pem)) > 0;
	size_t off = 0;
	while (ok && off < (size_t)pl) {
		ssize_t n = write(fd, pem + off, (size_t)pl - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			ok = 0;
		else
			off += (size_t)n;
	}
	int saved = errno;
	ok = ok && fsync(fd) == 0;
	if (fd >= 0 && close(fd) < 0)
		ok = 0;
	ok = ok && linkat(dfd, tmp, dfd, final, 0) == 0;
	if (!ok)
		saved = errno;
	if (fd >= 0)
		unlinkat(dfd, tmp, 0);
	if (ok)
		fsync(dfd);
	BIO_free(bio);
	close(dfd);
	if (!ok) {
		*error_r = xasprintf("%s/%s/%s: %s", dkim_dir, dom, final, strerror(saved));
		EVP_PKEY_free(pk);
		return -1;
	}
	struct dkim_key *k = xcalloc(1, sizeof(*k));
	k->domain = xstrdup(dom);
	k->selector = xstrdup(selector);
	k->type = type;
	k->pkey = pk;
	*key_r = k;
	return 0;
}
