/* srs - SRS0 rewriting and reversal with an HMAC-SHA256 hash (see srs.h) */
#include "auth/srs.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#define SRS_HASH_LEN 8	/* base32 characters: 40 bits */
#define SRS_DAY 86400
#define SRS_TT_MOD 1024

/* srs_hash - HHHHHHHH of the lower-cased "tt=domain=local" */
static void srs_hash(const unsigned char *key, size_t key_len, const char *tt, const char *domain,
		     const char *local, size_t local_len, char out[SRS_HASH_LEN + 1])
{
	char *msg = xasprintf("%s=%s=%.*s", tt, domain, (int)local_len, local);
	for (char *p = msg; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), mac,
	     &mac_len);
	free(msg);
	/* 40 bits = the first 5 bytes, 8 groups of 5 bits */
	uint64_t v = 0;
	for (int i = 0; i < 5; i++)
		v = v << 8 | mac[i];
	for (int i = 0; i < SRS_HASH_LEN; i++)
		out[i] = b32[(v >> (35 - 5 * i)) & 31];
	out[SRS_HASH_LEN] = '\0';
	OPENSSL_cleanse(mac, sizeof(mac));
}

static void srs_tt(unsigned day, char out[3])
{
	out[0] = b32[(day >> 5) & 31];
	out[1] = b32[day & 31];
	out[2] = '\0';
}

char *srs_forward(const unsigned char *key, size_t key_len, const char *sender,
		  const char *srs_domain, time_t now)
{
	const char *at = strrchr(sender, '@');
	if (*sender == '\0' || at == NULL || at == sender || at[1] == '\0' ||
	    strcasecmp(at + 1, srs_domain) == 0)
		return NULL;
	char tt[3], hh[SRS_HASH_LEN + 1];
	srs_tt((unsigned)((uint64_t)now / SRS_DAY % SRS_TT_MOD), tt);
	srs_hash(key, key_len, tt, at + 1, sender, (size_t)(at - sender), hh);
	return xasprintf("SRS0=%s=%s=%s=%.*s@%s", hh, tt, at + 1, (int)(at - sender), sender,
			 srs_domain);
}

static int b32_value(char c)
{
	const char *p = strchr(b32, toupper((unsigned char)c));
	return c != '\0' && p != NULL ? (int)(p - b32) : -1;
}

enum srs_status srs_reverse(const unsigned char *key, size_t key_len, const char *address,
			    unsigned max_age_days, time_t now, char **orig_r)
{
	if (strncasecmp(address, "SRS0=", 5) != 0 && strncasecmp(address, "SRS0+", 5) != 0 &&
	    strncasecmp(address, "SRS0-", 5) != 0)
		return SRS_NOT_SRS;
	const char *at = strrchr(address, '@');
	const char *end = at != NULL ? at : address + strlen(address);
	const char *h = address + 5;
	const char *e1 = memchr(h, '=', (size_t)(end - h));
	if (e1 == NULL || e1 - h != SRS_HASH_LEN)
		return SRS_FORGED;
	const char *t = e1 + 1;
	if (end - t < 3 || t[2] != '=')
		return SRS_FORGED;
	const char *d = t + 3;
	const char *e3 = memchr(d, '=', (size_t)(end - d));
	if (e3 == NULL || e3 == d || e3 + 1 >= end)
		return SRS_FORGED;
	const char *l = e3 + 1;
	int t0 = b32_value(t[0]), t1 = b32_value(t[1]);
	if (t0 < 0 || t1 < 0)
		return SRS_FORGED;
	char tt[3] = { (char)toupper((unsigned char)t[0]), (char)toupper((unsigned char)t[1]), 0 };
	char *domain = xstrndup(d, (size_t)(e3 - d));
	char hh[SRS_HASH_LEN + 1], given[SRS_HASH_LEN];
	srs_hash(key, key_len, tt, domain, l, (size_t)(end - l), hh);
	for (int i = 0; i < SRS_HASH_LEN; i++)
		given[i] = (char)toupper((unsigned char)h[i]);
	if (CRYPTO_memcmp(hh, given, SRS_HASH_LEN) != 0) {
		free(domain);
		return SRS_FORGED;
	}
	/* the age in days, modulo the timestamp's period */
	unsigned today = (unsigned)((uint64_t)now / SRS_DAY % SRS_TT_MOD);
	unsigned then = (unsigned)(t0 << 5 | t1);
	unsigned age = (today + SRS_TT_MOD - then) % SRS_TT_MOD;
	if (age > max_age_days) {
		free(domain);
		return SRS_EXPIRED;
	}
	*orig_r = xasprintf("%.*s@%s", (int)(end - l), l, domain);
	free(domain);
	return SRS_OK;
}

int srs_key_load(int fd, const char *path, unsigned char key[SRS_KEY_LEN], char **error_r)
{
	if (fd >= 0) {
		unsigned char buf[SRS_KEY_LEN];
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n != (ssize_t)sizeof(buf)) {
			OPENSSL_cleanse(buf, sizeof(buf));
			*error_r = xasprintf("%s: %s", path,
					     n < 0 ? strerror(errno) : "too short for an SRS key");
			return -1;
		}
		memcpy(key, buf, SRS_KEY_LEN);
		OPENSSL_cleanse(buf, sizeof(buf));
		return 0;
	}
	if (getrandom(key, SRS_KEY_LEN, 0) != SRS_KEY_LEN ||
	    fs_write_file_atomic(path, key, SRS_KEY_LEN, 0600) < 0) {
		*error_r = xasprintf("%s: cannot create the SRS key: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

void srs_key_from_secret(struct tern_config *cfg)
{
	unsigned int n = 0;
	EVP_Digest(cfg->srs_secret, strlen(cfg->srs_secret), cfg->srs_key, &n, EVP_sha256(), NULL);
	cfg->srs_key_ready = true;
}
