/* sasl - server side of SASL PLAIN (RFC 4616) and LOGIN */
#include "auth/sasl.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base64.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"

/* Limits on what a client may send: RFC 4616 asks servers to accept at least 255 octets for
 * authzid, authcid and passwd; passwords get more room because pass phrases are long. */
#define SASL_MAX_ID 255
#define SASL_MAX_PASSWORD 1024
#define SASL_MAX_PLAIN (SASL_MAX_ID + 1 + SASL_MAX_ID + 1 + SASL_MAX_PASSWORD)
/* the longest base64 text that can decode to n bytes */
#define B64_LEN(n) (((n) + 2) / 3 * 4)

static const char challenge_empty[] = "";
static const char challenge_username[] = "VXNlcm5hbWU6";	/* "Username:" */
static const char challenge_password[] = "UGFzc3dvcmQ6";	/* "Password:" */

int sasl_mech_parse(const char *name, enum sasl_mech *mech_r)
{
	if (strcasecmp(name, "PLAIN") == 0) {
		*mech_r = SASL_PLAIN;
		return 0;
	}
	if (strcasecmp(name, "LOGIN") == 0) {
		*mech_r = SASL_LOGIN;
		return 0;
	}
	return -1;
}

void sasl_begin(struct sasl_state *s, enum sasl_mech mech)
{
	s->mech = mech;
	s->step = 0;
	s->authcid = NULL;
	s->password = NULL;
}

/* wipe_free - wipe a buffer's whole allocation (not only len: earlier contents may linger
 * beyond it) and release it. */
static void wipe_free(buf *b)
{
	if (b->data != NULL)
		explicit_bzero(b->data, b->cap);
	buf_free(b);
}

/* decode_response - base64 response text -> bytes in *out (at most max bytes).
 * The buffer is grown to its final size before decoding so that no realloc leaves a copy
 * of a password in freed memory. "=" is the empty response. 0 or -1 with *error_r. */
static int decode_response(const char *text, size_t max, buf *out, const char **error_r)
{
	size_t len = strlen(text);

	buf_init(out, max);
	if (len == 1 && text[0] == '=')
		return 0;
	/* refuse overlong text before decoding it: first a cheap bound, then the exact decoded
	 * length of a well-formed text (malformed text is left to base64_decode) */
	if (len > B64_LEN(max)) {
		*error_r = "response too long";
		return -1;
	}
	if (len >= 4 && len % 4 == 0) {
		size_t dlen = len / 4 * 3 - (text[len - 1] == '=') - (text[len - 2] == '=');
		if (dlen > max) {
			*error_r = "response too long";
			return -1;
		}
	}
	/* reserve max bytes once: append zeros, then drop them (buf_reset keeps the memory) */
	static const char zeros[256];
	for (size_t have = 0; have < max;) {
		size_t n = max - have < sizeof(zeros) ? max - have : sizeof(zeros);
		if (buf_append(out, zeros, n) < 0)
			break;
		have += n;
	}
	buf_reset(out);
	if (base64_decode(text, len, out) < 0) {
		*error_r = "invalid base64 in response";
		return -1;
	}
	return 0;
}

/* valid_id - an authentication identity: 1..SASL_MAX_ID bytes without control characters
 * (no NUL, CR, LF: the name is used as an address, in SQL parameters and in logs). */
static bool valid_id(const char *p, size_t len)
{
	if (len == 0 || len > SASL_MAX_ID)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* plain_parse - split a decoded PLAIN message "[authzid] NUL authcid NUL passwd" and keep
 * authcid and passwd. 1 or -1 with *error_r. */
static int plain_parse(struct sasl_state *s, const buf *msg, const char **error_r)
{
	const char *p = msg->data;
	size_t len = msg->len;
	const char *nul1, *nul2;

	if (len == 0 || (nul1 = memchr(p, '\0', len)) == NULL) {
		*error_r = "malformed PLAIN response";
		return -1;
	}
	size_t zlen = (size_t)(nul1 - p);
	const char *authcid = nul1 + 1;
	size_t rest = len - zlen - 1;
	if ((nul2 = memchr(authcid, '\0', rest)) == NULL) {
		*error_r = "malformed PLAIN response";
		return -1;
	}
	size_t clen = (size_t)(nul2 - authcid);
	const char *passwd = nul2 + 1;
	size_t plen = rest - clen - 1;

	if (zlen > SASL_MAX_ID || clen > SASL_MAX_ID || plen > SASL_MAX_PASSWORD) {
		*error_r = "PLAIN response too long";
		return -1;
	}
	if (!valid_id(authcid, clen)) {
		*error_r = "invalid user name";
		return -1;
	}
	/* RFC 4616: passwd = 1*SAFE, and SAFE excludes NUL; a third NUL is a malformed message */
	if (plen == 0 || memchr(passwd, '\0', plen) != NULL) {
		*error_r = "invalid password";
		return -1;
	}
	/* we do not support acting as another user (proxy authorization) */
	if (zlen != 0 && (zlen != clen || memcmp(p, authcid, clen) != 0)) {
		*error_r = "authorization identity differs from authentication identity";
		return -1;
	}
	s->authcid = xstrndup(authcid, clen);
	s->password = xstrndup(passwd, plen);
	return 1;
}

/* plain_step - PLAIN is one message; without an initial response we ask for it with an
 * empty challenge. */
static int plain_step(struct sasl_state *s, const char *response, const char **challenge_r,
		      const char **error_r)
{
	if (response == NULL) {
		if (s->step != 0) {
			*error_r = "missing response";
			return -1;
		}
		s->step = 1;
		*challenge_r = challenge_empty;
		return 0;
	}
	buf msg;
	if (decode_response(response, SASL_MAX_PLAIN, &msg, error_r) < 0) {
		wipe_free(&msg);
		return -1;
	}
	int r = plain_parse(s, &msg, error_r);
	wipe_free(&msg);
	s->step = 2;
	return r;
}

/* login_username - decode and keep the LOGIN user name. 0 or -1. */
static int login_username(struct sasl_state *s, const char *response, const char **error_r)
{
	buf name;
	int r = -1;

	if (decode_response(response, SASL_MAX_ID, &name, error_r) < 0)
		goto out;
	if (!valid_id(buf_cstr(&name), name.len)) {
		*error_r = "invalid user name";
		goto out;
	}
	s->authcid = xstrndup(name.data, name.len);
	r = 0;
out:
	wipe_free(&name);
	return r;
}

/* login_password - decode and keep the LOGIN password. 1 or -1. */
static int login_password(struct sasl_state *s, const char *response, const char **error_r)
{
	buf pw;
	int r = -1;

	if (decode_response(response, SASL_MAX_PASSWORD, &pw, error_r) < 0)
		goto out;
	if (pw.len == 0 || memchr(pw.data, '\0', pw.len) != NULL) {
		*error_r = "invalid password";
		goto out;
	}
	s->password = xstrndup(pw.data, pw.len);
	r = 1;
out:
	wipe_free(&pw);
	return r;
}

/* login_step - LOGIN asks "Username:" then "Password:". A client may send the user name as
 * an initial response (AUTH LOGIN <base64 user>), which skips the first challenge. */
static int login_step(struct sasl_state *s, const char *response, const char **challenge_r,
		      const char **error_r)
{
	if (s->step == 0 && response != NULL)
		s->step = 1;	/* the initial response is the user name */
	switch (s->step) {
	case 0:
		s->step = 1;
		*challenge_r = challenge_username;
		return 0;
	case 1:
		if (response == NULL) {
			*error_r = "missing response";
			return -1;
		}
		if (login_username(s, response, error_r) < 0) {
			s->step = 3;
			return -1;
		}
		s->step = 2;
		*challenge_r = challenge_password;
		return 0;
	case 2:
		if (response == NULL) {
			*error_r = "missing response";
			return -1;
		}
		s->step = 3;
		return login_password(s, response, error_r);
	default:
		*error_r = "authentication exchange already finished";
		return -1;
	}
}

/* sasl_step - the common checks (cancel, finished exchange), then the mechanism's step. */
int sasl_step(struct sasl_state *s, const char *response, const char **challenge_r,
	      const char **error_r)
{
	*challenge_r = NULL;
	*error_r = NULL;
	if (response != NULL && strcmp(response, "*") == 0) {
		*error_r = "authentication cancelled";
		return -2;
	}
	/* once a step succeeded or failed the exchange is over; a caller must begin again */
	if (s->password != NULL || (s->mech == SASL_PLAIN && s->step >= 2)) {
		*error_r = "authentication exchange already finished";
		return -1;
	}
	switch (s->mech) {
	case SASL_PLAIN:
		return plain_step(s, response, challenge_r, error_r);
	case SASL_LOGIN:
		return login_step(s, response, challenge_r, error_r);
	}
	*error_r = "unsupported mechanism";
	return -1;
}

/* sasl_free - wipe the password before its memory goes back to the allocator. */
void sasl_free(struct sasl_state *s)
{
	if (s->password != NULL) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
		s->password = NULL;
	}
	free(s->authcid);
	s->authcid = NULL;
	s->step = 0;
}
