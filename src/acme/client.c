/* acme/client - the RFC 8555 protocol over libcurl: account, order, http-01, finalize,
 * download; run by the root child of the master (see acme.h) */
#include "acme/acme.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acme/cert.h"
#include "acme/jws.h"
#include "acme/resp.h"
#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define MAX_RESPONSE (1024 * 1024)	/* a certificate chain is a few KiB */
#define MAX_HEADER 2048
#define POLL_LIMIT 180			/* seconds one authorization or order may take */

struct http_resp {
	long status;
	buf body;
	char *nonce, *location, *retry_after;
};

struct acme {
	const struct tern_config *cfg;
	CURL *curl;
	char *ca_pem;			/* [tls] acme_ca_file's contents, or NULL */
	size_t ca_len;
	EVP_PKEY *account;
	char *kid;			/* the account URL */
	char *nonce;			/* the next Replay-Nonce to use */
	struct acme_directory dir;
	char *thumbprint;
	int challenge_dfd;
	char **tokens;			/* challenge files written, removed at the end */
	size_t n_tokens;
};

static void resp_free(struct http_resp *r)
{
	buf_free(&r->body);
	free(r->nonce);
	free(r->location);
	free(r->retry_after);
	memset(r, 0, sizeof(*r));
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ctx)
{
	struct http_resp *r = ctx;
	return buf_append(&r->body, p, size * nmemb) == 0 ? size * nmemb : 0;
}

/* header_value - when line is "Name: value", the trimmed value as a fresh string */
static char *header_value(const char *line, size_t len, const char *name)
{
	size_t nl = strlen(name);
	if (len <= nl + 1 || len > MAX_HEADER || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return NULL;
	const char *v = line + nl + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	for (const char *c = v; c < end; c++)
		if ((unsigned char)*c < 0x20)
			return NULL;
	return xstrndup(v, (size_t)(end - v));
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ctx)
{
	struct http_resp *r = ctx;
	size_t len = size * nmemb;
	char *v;
	if ((v = header_value(p, len, "Replay-Nonce")) != NULL) {
		free(r->nonce);
		r->nonce = v;
	} else if ((v = header_value(p, len, "Location")) != NULL) {
		free(r->location);
		r->location = v;
	} else if ((v = header_value(p, len, "Retry-After")) != NULL) {
		free(r->retry_after);
		r->retry_after = v;
	}
	return len;
}

/* http - one request: GET (post NULL), HEAD (head), or a JOSE POST. The response's nonce
 * becomes the next one to use. 0, or -1 with *error_r on a transport failure (any HTTP
 * status is a success here). */
static int http(struct acme *a, const char *url, const char *post, bool head,
		struct http_resp *r, char **error_r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->body, MAX_RESPONSE);
	CURL *c = a->curl;
	curl_easy_reset(c);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/jose+json");
	char errbuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "tern-acme/1");
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	if (a->ca_pem != NULL) {
		struct curl_blob blob = { a->ca_pem, a->ca_len, CURL_BLOB_COPY };
		curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
	}
	if (head)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (post != NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
	}
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		*error_r = xasprintf("%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		resp_free(r);
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->nonce != NULL) {
		free(a->nonce);
		a->nonce = xstrdup(r->nonce);
	}
	return 0;
}

/* http_error - "what: HTTP 400: TYPE: DETAIL" for a failed response */
static char *http_error(const char *what, struct http_resp *r)
{
	char *problem = acme_problem_text(r->body.data ? r->body.data : "", r->body.len);
	char *e = xasprintf("%s: HTTP %ld: %s", what, r->status, problem);
	free(problem);
	return e;
}

/* post - a signed POST (payload NULL: POST-as-GET) expecting a 2xx answer; on a badNonce
 * problem it is sent once more with the nonce that came with the refusal (RFC 8555 §6.5).
 * 0, or -1 with *error_r. */
static int post(struct acme *a, const char *what, const char *url, const char *payload,
		struct http_resp *r, char **error_r)
{
	for (int attempt = 0;; attempt++) {
		if (a->nonce == NULL) {
			struct http_resp nr;
			if (http(a, a->dir.new_nonce, NULL, true, &nr, error_r) < 0)
				return -1;
			resp_free(&nr);
			if (a->nonce == NULL) {
				*error_r = xasprintf("newNonce: no Replay-Nonce from %s", a->dir.new_nonce);
				return -1;
			}
		}
		char *nonce = a->nonce;
		a->nonce = NULL;	/* each nonce is used once */
		char *jws = acme_jws(a->account, a->kid, nonce, url, payload, error_r);
		free(nonce);
		if (jws == NULL)
			return -1;
		int rc = http(a, url, jws, false, r, error_r);
		free(jws);
		if (rc < 0)
			return -1;
		if (r->status >= 200 && r->status < 300)
			return 0;
		if (attempt == 0 && r->status == 400 &&
		    acme_problem_is(r->body.data ? r->body.data : "", r->body.len, "badNonce")) {
			log_info("acme: %s: the CA refused the nonce (badNonce): retrying once", what);
			resp_free(r);
			continue;
		}
		*error_r = http_error(what, r);
		resp_free(r);
		return -1;
	}
}

/* load_account - the account key [tls] dir/acme-account.pem, made (0600) on first use */
static EVP_PKEY *load_account(const struct tern_config *cfg, char **error_r)
{
	char *path = xasprintf("%s/acme-account.pem", cfg->tls_dir);
	EVP_PKEY *key = NULL;
	char *why = NULL;
	int fd = geteuid() == 0 ? fs_open_trusted(path, O_RDONLY, &why) : open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char *pem = NULL;
		size_t len = 0;
		if (fs_read_fd(fd, 64 * 1024, &pem, &len) == 0) {
			BIO *bio = BIO_new_mem_buf(pem, (int)len);
			key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
			BIO_free(bio);
			explicit_bzero(pem, len);
		}
		free(pem);
		close(fd);
		if (key == NULL)
			*error_r = xasprintf("%s: not a private key", path);
	} else if (errno == ENOENT || (why != NULL && access(path, F_OK) < 0 && errno == ENOENT)) {
		key = acme_new_p256();
		BIO *bio = BIO_new(BIO_s_mem());
		char *data = NULL;
		long len;
		if (key == NULL || bio == NULL ||
		    PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
		    (len = BIO_get_mem_data(bio, &data)) <= 0 ||
		    fs_write_file_atomic(path, data, (size_t)len, 0600) < 0) {
			*error_r = xasprintf("%s: cannot create the account key: %s", path,
					     strerror(errno));
			EVP_PKEY_free(key);
			key = NULL;
		} else {
			log_info("acme: new account key in %s", path);
		}
		BIO_free(bio);
	} else {
		*error_r = xasprintf("%s: %s", path, why != NULL ? why : strerror(errno));
	}
	free(why);
	free(path);
	return key;
}

/* write_pem_atomic - the key or chain in place of path: temp name, fsync, rename, fsync dir */
static int write_key(const char *path, EVP_PKEY *key, char **error_r)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data = NULL;
	long len;
	int r = 0;
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    (len = BIO_get_mem_data(bio, &data)) <= 0 ||
	    fs_write_file_atomic(path, data, (size_t)len, 0600) < 0) {
		*error_r = xasprintf("writing %s: %s", path, strerror(errno));
		r = -1;
	}
	if (data != NULL && r == 0)
		explicit_bzero(data, (size_t)len);
	BIO_free(bio);
	return r;
}

/* put_token - the challenge file TOKEN (0644, created exclusively) with the key
 * authorization, in the challenge directory */
static int put_token(struct acme *a, const char *token, char **error_r)
{
	char *keyauth = xasprintf("%s.%s", token, a->thumbprint);
	int fd = openat(a->challenge_dfd, token,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EEXIST && unlinkat(a->challenge_dfd, token, 0) == 0)
		fd = openat(a->challenge_dfd, token,
			    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	int r = -1;
	if (fd >= 0 && fchmod(fd, 0644) == 0 && fs_write_all(fd, keyauth, strlen(keyauth)) == 0 &&
	    fsync(fd) == 0)
		r = 0;
	if (r < 0)
		*error_r = xasprintf("%s/%s: %s", a->cfg->acme_challenge_dir, token, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (fd >= 0) {
		a->tokens = xreallocarray(a->tokens, a->n_tokens + 1, sizeof(char *));
		a->tokens[a->n_tokens++] = xstrdup(token);
	}
	free(keyauth);
	return r;
}

static void remove_tokens(struct acme *a)
{
	for (size_t i = 0; i < a->n_tokens; i++) {
		if (unlinkat(a->challenge_dfd, a->tokens[i], 0) < 0 && errno != ENOENT)
			log_warn("acme: removing challenge file %s", a->tokens[i]);
		free(a->tokens[i]);
	}
	free(a->tokens);
	a->tokens = NULL;
	a->n_tokens = 0;
}

/* wait_a_while - sleep for the Retry-After of r (1 to 10 s, default 1) */
static void wait_a_while(struct http_resp *r)
{
	unsigned s = acme_retry_after(r->retry_after, 1, 1, 10);
	struct timespec ts = { (time_t)s, 0 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* authorize - one authorization: done when valid; otherwise answer its http-01 challenge
 * (unless answered already) and, when wait, poll until it is valid. The order answers every
 * challenge first and then waits for each, so that the CA validates them all at once.
 * 0 or -1 with *error_r. */
static int authorize(struct acme *a, const char *url, bool answered, bool wait, char **error_r)
{
	struct http_resp r;
	struct acme_authz az;
	time_t deadline = time(NULL) + POLL_LIMIT;
	for (;;) {
		if (post(a, "authorization", url, NULL, &r, error_r) < 0)
			return -1;
		if (acme_parse_authz(r.body.data, r.body.len, &az, error_r) < 0) {
			resp_free(&r);
			return -1;
		}
		int rc = 1;
		if (strcmp(az.status, "valid") == 0) {
			if (answered)
				log_info("acme: %s: authorized (http-01)", az.identifier);
			rc = 0;
		} else if (strcmp(az.status, "pending") != 0) {
			*error_r = xasprintf("authorization of %s is %s%s%s", az.identifier, az.status,
					     az.challenge_error ? ": " : "",
					     az.challenge_error ? az.challenge_error : "");
			rc = -1;
		} else if (!answered) {
			struct http_resp cr;
			if (az.token == NULL) {
				*error_r = xasprintf("authorization of %s offers no http-01 challenge",
						     az.identifier);
				rc = -1;
			} else if (put_token(a, az.token, error_r) < 0 ||
				   post(a, "challenge", az.challenge_url, "{}", &cr, error_r) < 0) {
				rc = -1;
			} else {
				resp_free(&cr);
				answered = true;
				log_info("acme: %s: http-01 challenge ready, asked the CA to validate",
					 az.identifier);
				if (!wait)
					rc = 0;
			}
		} else if (time(NULL) > deadline) {
			*error_r = xasprintf("authorization of %s still pending after %d s",
					     az.identifier, POLL_LIMIT);
			rc = -1;
		}
		acme_authz_free(&az);
		if (rc <= 0) {
			resp_free(&r);
			return rc;
		}
		if (answered)
			wait_a_while(&r);
		resp_free(&r);
	}
}

/* poll_order - POST-as-GET the order until it leaves "processing" (or "ready" after
 * finalize); 0 with *o filled and valid, or -1 */
static int poll_order(struct acme *a, const char *url, struct acme_order *o, char **error_r)
{
	time_t deadline = time(NULL) + POLL_LIMIT;
	for (;;) {
		struct http_resp r;
		if (post(a, "order", url, NULL, &r, error_r) < 0)
			return -1;
		if (acme_parse_order(r.body.data, r.body.len, o, error_r) < 0) {
			resp_free(&r);
			return -1;
		}
		if (strcmp(o->status, "valid") == 0 && o->certificate != NULL) {
			resp_free(&r);
			return 0;
		}
		if (strcmp(o->status, "processing") != 0 && strcmp(o->status, "ready") != 0) {
			*error_r = xasprintf("order is %s", o->status);
			acme_order_free(o);
			resp_free(&r);
			return -1;
		}
		acme_order_free(o);
		if (time(NULL) > deadline) {
			*error_r = xasprintf("order still processing after %d s", POLL_LIMIT);
			resp_free(&r);
			return -1;
		}
		wait_a_while(&r);
		resp_free(&r);
	}
}

/* order - the whole issuance; on success the new key and chain are written. 0 or -1. */
static int order(struct acme *a, char **names, size_t n, const char *cert_path,
		 const char *key_path, char **error_r)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct http_resp r;
	int rc = -1;
	/* directory */
	if (http(a, a->cfg->acme_url, NULL, false, &r, error_r) < 0)
		return -1;
	if (r.status != 200) {
		*error_r = http_error("directory", &r);
		resp_free(&r);
		return -1;
	}
	int bad = acme_parse_directory(r.body.data, r.body.len, &a->dir, error_r);
	resp_free(&r);
	if (bad < 0)
		return -1;
	/* account: newAccount with the key finds the existing one (200) or makes it (201) */
	json_t *acct = json_pack("{s:b}", "termsOfServiceAgreed", 1);
	if (a->cfg->acme_email != NULL) {
		char *mailto = xasprintf("mailto:%s", a->cfg->acme_email);
		json_object_set_new(acct, "contact", json_pack("[s]", mailto));
		free(mailto);
	}
	char *payload = json_dumps(acct, JSON_COMPACT);
	json_decref(acct);
	bad = post(a, "newAccount", a->dir.new_account, payload, &r, error_r);
	free(payload);
	if (bad < 0)
		return -1;
	if (r.location == NULL || strncmp(r.location, "https://", 8) != 0) {
		*error_r = xstrdup("newAccount: no account URL (Location)");
		resp_free(&r);
		return -1;
	}
	a->kid = xstrdup(r.location);
	log_info("acme: account %s (%s)", a->kid, r.status == 201 ? "new" : "existing");
	resp_free(&r);

	/* order */
	json_t *ids = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value", names[i]));
	json_t *req = json_pack("{s:o}", "identifiers", ids);
	payload = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	bad = post(a, "newOrder", a->dir.new_order, payload, &r, error_r);
	free(payload);
	if (bad < 0)
		return -1;
	struct acme_order o;
	if (acme_parse_order(r.body.data, r.body.len, &o, error_r) < 0) {
		resp_free(&r);
		return -1;
	}
	char *order_url = r.location != NULL ? xstrdup(r.location) : NULL;
	resp_free(&r);
	EVP_PKEY *key = NULL;
	unsigned char *csr = NULL;
	if (order_url == NULL || strncmp(order_url, "https://", 8) != 0) {
		*error_r = xstrdup("newOrder: no order URL (Location)");
		goto out;
	}
	log_info("acme: order %s for %zu names, %zu authorizations", order_url, n, o.n_authz);
	for (size_t i = 0; i < o.n_authz; i++)
		if (authorize(a, o.authz[i], false, false, error_r) < 0)
			goto out;
	for (size_t i = 0; i < o.n_authz; i++)
		if (authorize(a, o.authz[i], true, true, error_r) < 0)
			goto out;

	/* finalize with a CSR for a fresh key, then wait for the certificate */
	key = acme_new_p256();
	size_t csr_len = 0;
	csr = key != NULL ? acme_make_csr(key, names, n, &csr_len) : NULL;
	if (csr == NULL) {
		*error_r = xstrdup("making the CSR failed");
		goto out;
	}
	char *csr64 = acme_b64url(csr, csr_len);
	req = json_pack("{s:s}", "csr", csr64);
	free(csr64);
	payload = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	bad = post(a, "finalize", o.finalize, payload, &r, error_r);
	free(payload);
	if (bad < 0)
		goto out;
	resp_free(&r);
	acme_order_free(&o);
	if (poll_order(a, order_url, &o, error_r) < 0)
		goto out;
	if (post(a, "certificate", o.certificate, NULL, &r, error_r) < 0)
		goto out;
	long not_after;
	char *serial;
	char *why = acme_check_chain(r.body.data ? r.body.data : "", r.body.len, key, names, n,
				     &not_after, &serial);
	if (why != NULL) {
		*error_r = xasprintf("the CA's certificate is unusable: %s", why);
		free(why);
		free(serial);
		resp_free(&r);
		goto out;
	}
	/* the key first: until the chain follows, a reload would fail the pair check and
	 * keep the old certificate rather than serve a mismatched one */
	if (write_key(key_path, key, error_r) == 0) {
		if (fs_write_file_atomic(cert_path, r.body.data, r.body.len, 0644) < 0) {
			*error_r = xasprintf("writing %s: %s", cert_path, strerror(errno));
		} else {
			char when[32];
			time_t t = (time_t)not_after;
			struct tm tm;
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
			clock_gettime(CLOCK_MONOTONIC, &t1);
			log_info("acme: new certificate serial=%s names=%zu not_after=%s in %s "
				 "(ordered in %.1f s)", serial, n, when, cert_path,
				 (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
			rc = 0;
		}
	}
	free(serial);
	resp_free(&r);
out:
	OPENSSL_free(csr);
	EVP_PKEY_free(key);
	free(order_url);
	acme_order_free(&o);
	return rc;
}

/* read_trusted - a file root reads: through root's directories only (fs_open_trusted) */
static int read_trusted(const char *path, size_t max, char **data_r, size_t *len_r,
			char **error_r)
{
	char *why = NULL;
	int fd = geteuid() == 0 ? fs_open_trusted(path, O_RDONLY, &why)
				: open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = xasprintf("%s: %s", path, why != NULL ? why : strerror(errno));
		free(why);
		return -1;
	}
	int r = fs_read_fd(fd, max, data_r, len_r);
	if (r < 0)
		*error_r = xasprintf("%s: %s", path, strerror(errno));
	close(fd);
	return r;
}

int acme_run(const struct tern_config *cfg, const char *cert_path, const char *key_path)
{
	size_t n;
	char **names = acme_names(cfg, &n);
	char *pem = NULL, *err = NULL;
	size_t len = 0;
	long not_after = 0;
	if (read_trusted(cert_path, 1024 * 1024, &pem, &len, &err) < 0) {
		free(err);
		err = NULL;
	}
	char *why = acme_cert_due(pem != NULL ? pem : "", len, names, n, cfg->acme_renew_days,
				  &not_after);
	free(pem);
	if (why == NULL) {
		char when[32];
		time_t t = (time_t)not_after;
		struct tm tm;
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
		log_info("acme: certificate good until %s for all %zu names; next check in %u s",
			 when, n, cfg->acme_check_interval);
		acme_names_free(names, n);
		return ACME_UP_TO_DATE;
	}
	log_info("acme: ordering a certificate for %zu names from %s: %s", n, cfg->acme_url, why);
	free(why);

	struct acme a;
	memset(&a, 0, sizeof(a));
	a.cfg = cfg;
	a.challenge_dfd = -1;
	int rc = -1;
	char *cwhy = NULL;
	if (cfg->acme_ca_file != NULL &&
	    read_trusted(cfg->acme_ca_file, 1024 * 1024, &a.ca_pem, &a.ca_len, &err) < 0)
		goto out;
	if ((a.account = load_account(cfg, &err)) == NULL)
		goto out;
	json_t *jwk = acme_jwk(a.account);
	a.thumbprint = jwk != NULL ? acme_jwk_thumbprint(jwk, &err) : NULL;
	json_decref(jwk);
	if (a.thumbprint == NULL) {
		if (err == NULL)
			err = xstrdup("the account key is not a P-256 key");
		goto out;
	}
	a.challenge_dfd = geteuid() == 0
				  ? fs_open_trusted(cfg->acme_challenge_dir, O_RDONLY | O_DIRECTORY, &cwhy)
				  : open(cfg->acme_challenge_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (a.challenge_dfd < 0) {
		err = xasprintf("[tls] acme_challenge_dir %s: %s", cfg->acme_challenge_dir,
				cwhy != NULL ? cwhy : strerror(errno));
		goto out;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (a.curl = curl_easy_init()) == NULL) {
		err = xstrdup("libcurl: initialisation failed");
		goto out;
	}
	rc = order(&a, names, n, cert_path, key_path, &err);
out:
	if (a.challenge_dfd >= 0) {
		remove_tokens(&a);
		close(a.challenge_dfd);
	}
	if (rc < 0)
		log_warnx("acme: no new certificate, keeping the current one: %s", err);
	free(cwhy);
	free(err);
	if (a.curl != NULL)
		curl_easy_cleanup(a.curl);
	EVP_PKEY_free(a.account);
	free(a.ca_pem);
	free(a.kid);
	free(a.nonce);
	free(a.thumbprint);
	acme_directory_free(&a.dir);
	acme_names_free(names, n);
	return rc == 0 ? ACME_RENEWED : ACME_FAILED;
}
