/* fuzz_sasl - libFuzzer target for auth/sasl.c (PLAIN, LOGIN) and its mechanism names.
 * Input: byte 0 picks the mechanism (bit 0: PLAIN or LOGIN), whether the first response is
 * the initial one (bit 1: else the exchange starts without one, response NULL) and whether
 * the responses are given raw and base64-encoded here (bit 2: reaches the parsers behind
 * base64 with any bytes, NULs included). The rest is the client's responses, one a line.
 * Checked: results are -2..1 with the promised challenge or error; a success gives exactly
 * the credentials a reference split of the decoded responses gives, within RFC 4616's
 * limits and without control characters in the user name; once an exchange is over every
 * further step fails. The line (up to a space) also goes through sasl_mech_parse. */
#include <string.h>
#include <strings.h>

#include "auth/sasl.h"
#include "fuzz.h"
#include "lib/base64.h"

/* decoded - what a response decodes to; false when it is not base64 */
static bool decoded(const char *resp, buf *out)
{
	buf_reset(out);
	if (strcmp(resp, "=") == 0)
		return true;
	return base64_decode(resp, strlen(resp), out) == 0;
}

static bool valid_user(const char *u)
{
	size_t n = strlen(u);
	if (n == 0 || n > 255)
		return false;
	for (const unsigned char *c = (const unsigned char *)u; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			return false;
	return true;
}

/* check_plain - the credentials are what the message "[authzid] NUL authcid NUL passwd" says */
static void check_plain(const struct sasl_state *s, const char *resp)
{
	buf m;
	buf_init(&m, 0);
	FUZZ_ASSERT(decoded(resp, &m) && m.len > 0);
	const char *p = m.data, *end = m.data + m.len;
	const char *n1 = memchr(p, '\0', m.len);
	FUZZ_ASSERT(n1 != NULL);
	const char *n2 = memchr(n1 + 1, '\0', (size_t)(end - n1 - 1));
	FUZZ_ASSERT(n2 != NULL);
	size_t zlen = (size_t)(n1 - p), clen = (size_t)(n2 - n1 - 1), plen = (size_t)(end - n2 - 1);
	FUZZ_ASSERT(zlen == 0 || (zlen == clen && memcmp(p, n1 + 1, clen) == 0));
	FUZZ_ASSERT(strlen(s->authcid) == clen && memcmp(s->authcid, n1 + 1, clen) == 0);
	FUZZ_ASSERT(strlen(s->password) == plen && memcmp(s->password, n2 + 1, plen) == 0);
	buf_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned mode = data[0];
	enum sasl_mech mech = mode & 1 ? SASL_LOGIN : SASL_PLAIN;
	bool initial = mode & 2, encode = mode & 4;
	struct sasl_state s;
	sasl_begin(&s, mech);

	buf resp, dec;
	buf_init(&resp, 0);
	buf_init(&dec, 0);
	char *user = NULL;	/* LOGIN: the name a step accepted */
	bool over = false, first = true;
	size_t pos = 1;
	int steps = 0;
	while (steps++ < 16) {
		const char *r = NULL;
		if (first && !initial) {
			r = NULL;
		} else {
			if (pos > size)
				break;
			const uint8_t *nl = memchr(data + pos, '\n', size - pos);
			size_t end = nl ? (size_t)(nl - data) : size;
			buf_reset(&resp);
			if (encode && !(end - pos == 1 && data[pos] == '*')) {
				if (end == pos)
					buf_putc(&resp, '=');
				else
					FUZZ_ASSERT(base64_encode(data + pos, end - pos, &resp) == 0);
			} else {
				buf_append(&resp, data + pos, end - pos);
			}
			pos = end + 1;
			/* a NUL cuts the response short, as the protocol line does */
			r = buf_cstr(&resp);
			enum sasl_mech m;
			if (sasl_mech_parse(r, &m) == 0)
				FUZZ_ASSERT(strcasecmp(r, m == SASL_PLAIN ? "PLAIN" : "LOGIN") == 0);
		}
		first = false;
		const char *challenge = (const char *)1, *err = (const char *)1;
		int ret = sasl_step(&s, r, &challenge, &err);
		FUZZ_ASSERT(ret >= -2 && ret <= 1);
		if (over)
			FUZZ_ASSERT(ret < 0);
		switch (ret) {
		case 0:
			FUZZ_ASSERT(challenge != NULL && err == NULL);
			FUZZ_ASSERT(strcmp(challenge, "") == 0 || strcmp(challenge, "VXNlcm5hbWU6") == 0 ||
				    strcmp(challenge, "UGFzc3dvcmQ6") == 0);
			if (mech == SASL_PLAIN)
				FUZZ_ASSERT(r == NULL && challenge[0] == '\0');
			if (mech == SASL_LOGIN && strcmp(challenge, "UGFzc3dvcmQ6") == 0) {
				/* the user name was accepted */
				FUZZ_ASSERT(r != NULL && decoded(r, &dec) && valid_user(buf_cstr(&dec)) &&
					    strlen(buf_cstr(&dec)) == dec.len);
				FUZZ_ASSERT(s.authcid != NULL && strcmp(s.authcid, dec.data) == 0);
				free(user);
				user = strdup(s.authcid);
			}
			break;
		case 1:
			FUZZ_ASSERT(err == NULL && r != NULL);
			FUZZ_ASSERT(s.authcid != NULL && s.password != NULL);
			FUZZ_ASSERT(valid_user(s.authcid));
			FUZZ_ASSERT(s.password[0] != '\0' && strlen(s.password) <= 1024);
			if (mech == SASL_PLAIN) {
				check_plain(&s, r);
			} else {
				FUZZ_ASSERT(user != NULL && strcmp(user, s.authcid) == 0);
				FUZZ_ASSERT(decoded(r, &dec) && dec.len == strlen(s.password) &&
					    memcmp(dec.data, s.password, dec.len) == 0);
			}
			over = true;
			break;
		case -1:
		case -2:
			FUZZ_ASSERT(err != NULL && err[0] != '\0' && challenge == NULL);
			if (ret == -2)
				FUZZ_ASSERT(r != NULL && strcmp(r, "*") == 0);
			/* the protocols end the exchange on any failure (login_sasl_feed frees it) */
			goto out;
		}
	}
out:
	free(user);
	sasl_free(&s);
	FUZZ_ASSERT(s.password == NULL && s.authcid == NULL);
	buf_free(&resp);
	buf_free(&dec);
	return 0;
}
