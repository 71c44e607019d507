/* fuzz_names - libFuzzer target for name escaping and matching: modified UTF-7 mailbox
 * names (imap/mutf7.c), LIST patterns (imap/listmatch.c) against a reference matcher,
 * IMAP quoted strings and literals (imap/write.c) read back by the IMAP parser, attachment
 * file names (client/filename.c), log text (lib/log.c log_sanitize), UTF-8 (lib/utf8.c)
 * against a reference decoder and mime_utf8_sanitize, strict numbers (lib/strnum.c).
 * Input: byte 0 (flags: the hierarchy delimiter, UTF-8 mode, sizes), then up to three
 * strings separated by NUL: a pattern/string, a name, a reference. */
#include <string.h>
#include <strings.h>

#include "client/filename.h"
#include "fuzz.h"
#include "imap/listmatch.h"
#include "imap/mutf7.h"
#include "imap/parser.h"
#include "imap/write.h"
#include "lib/log.h"
#include "lib/strnum.h"
#include "lib/utf8.h"
#include "mime/encword.h"

/* ref_match - the plain recursive definition of LIST matching, memoised (m: (pl+1)*(nl+1)
 * cells, -1 unknown) so that it stays polynomial */
static bool ref_match(const char *p, size_t pi, size_t pl, const char *n, size_t ni, size_t nl,
		      char delim, signed char *m)
{
	signed char *cell = &m[pi * (nl + 1) + ni];
	if (*cell >= 0)
		return *cell;
	bool r;
	if (pi == pl)
		r = ni == nl;
	else if (p[pi] == '*' || p[pi] == '%')
		r = ref_match(p, pi + 1, pl, n, ni, nl, delim, m) ||
		    (ni < nl && (p[pi] == '*' || n[ni] != delim) &&
		     ref_match(p, pi, pl, n, ni + 1, nl, delim, m));
	else
		r = ni < nl && p[pi] == n[ni] && ref_match(p, pi + 1, pl, n, ni + 1, nl, delim, m);
	*cell = r;
	return r;
}

static bool inbox_prefix(const char *s, char delim)
{
	return strncasecmp(s, "INBOX", 5) == 0 && (s[5] == '\0' || s[5] == delim);
}

static void check_listmatch(const char *pat, const char *name, const char *ref, char delim)
{
	size_t pl = strlen(pat), nl = strlen(name);
	bool got = imap_list_match(pat, name, delim);
	bool want = false;
	if (pl <= 2 * IMAP_LIST_MAX_PATTERN && nl <= IMAP_LIST_MAX_NAME) {
		/* INBOX in any case is INBOX: compare with both spelled the same */
		const char *p = pat, *n = name;
		if (inbox_prefix(pat, delim) && inbox_prefix(name, delim)) {
			p += 5;
			n += 5;
		}
		size_t ppl = strlen(p), nnl = strlen(n);
		signed char *m = malloc((ppl + 1) * (nnl + 1));
		memset(m, -1, (ppl + 1) * (nnl + 1));
		want = ref_match(p, 0, ppl, n, 0, nnl, delim, m);
		free(m);
	}
	FUZZ_ASSERT(got == want);
	/* a pattern without wildcards matches itself */
	if (strpbrk(pat, "*%") == NULL && pl <= IMAP_LIST_MAX_NAME)
		FUZZ_ASSERT(imap_list_match(pat, pat, delim));

	buf joined;
	buf_init(&joined, 0);
	imap_list_pattern(ref, pat, delim, &joined);
	FUZZ_ASSERT(joined.len == strlen(ref) + pl);
	if (!inbox_prefix(buf_cstr(&joined), delim))
		FUZZ_ASSERT(memcmp(joined.data, ref, strlen(ref)) == 0);
	else
		FUZZ_ASSERT(memcmp(joined.data, "INBOX", 5) == 0);
	struct imap_list_budget used = { 0, 0, 0 };
	const char *err = NULL;
	if (imap_list_pattern_check(buf_cstr(&joined), &used, &err) < 0)
		FUZZ_ASSERT(err != NULL);
	else
		FUZZ_ASSERT(used.bytes <= IMAP_LIST_MAX_PATTERN &&
			    used.wildcards <= IMAP_LIST_MAX_WILDCARDS && used.patterns == 1);
	buf_free(&joined);
}

static void check_mutf7(const char *s)
{
	buf u, m;
	buf_init(&u, 0);
	buf_init(&m, 0);
	if (imap_mutf7_to_utf8(s, &u) == 0) {
		FUZZ_ASSERT(utf8_valid(u.data ? u.data : "", u.len) && strlen(buf_cstr(&u)) == u.len);
		FUZZ_ASSERT(imap_utf8_to_mutf7(buf_cstr(&u), &m) == 0);
		FUZZ_ASSERT(strcmp(buf_cstr(&m), s) == 0);
	}
	buf_reset(&u);
	buf_reset(&m);
	if (imap_utf8_to_mutf7(s, &m) == 0) {
		FUZZ_ASSERT(utf8_valid(s, strlen(s)));
		for (size_t i = 0; i < m.len; i++)
			FUZZ_ASSERT(m.data[i] >= 0x20 && m.data[i] < 0x7f);
		FUZZ_ASSERT(imap_mutf7_to_utf8(buf_cstr(&m), &u) == 0);
		FUZZ_ASSERT(strcmp(buf_cstr(&u), s) == 0);
	} else {
		FUZZ_ASSERT(!utf8_valid(s, strlen(s)));
	}
	buf_free(&u);
	buf_free(&m);
}

/* check_imap_string - what imap_write_string makes, the IMAP parser reads back as the
 * same string (NUL-free; NULs become U+FFFD in a literal) */
static void check_imap_string(const char *s, size_t len, bool utf8)
{
	static const struct imap_parser_limits lim = {
		.max_line = 8192, .max_inline_literal = 8192, .max_literal_total = 65536,
		.max_literal = 65536, .max_depth = 4, .max_args = 8,
	};
	buf out;
	buf_init(&out, 0);
	buf_puts(&out, "a1 X ");
	FUZZ_ASSERT(imap_write_string(&out, s, len, utf8) == 0);
	bool literal = out.data[5] == '{';
	if (!utf8 && !literal)
		for (size_t i = 5; i < out.len; i++)
			FUZZ_ASSERT((unsigned char)out.data[i] < 0x80);
	buf_puts(&out, "\r\n");
	struct imap_parser *p = imap_parser_new(&lim);
	size_t pos = 0, used;
	enum imap_parse_result r;
	do {
		r = imap_parser_feed(p, out.data + pos, out.len - pos, &used);
		pos += used;
	} while (r == IMAP_PARSE_CONTINUE || (r == IMAP_PARSE_MORE && pos < out.len));
	FUZZ_ASSERT(r == IMAP_PARSE_COMMAND);
	const struct imap_command *c = imap_parser_command(p);
	FUZZ_ASSERT(c->n_args == 1 && c->args[0].type != IMAP_ARG_LIST);
	const struct imap_arg *a = &c->args[0];
	if (memchr(s, '\0', len) == NULL) {
		FUZZ_ASSERT(a->len == len && memcmp(a->str, s, len) == 0);
	} else {
		size_t nuls = 0;
		for (size_t i = 0; i < len; i++)
			nuls += s[i] == '\0';
		FUZZ_ASSERT(a->len == len + 2 * nuls && memchr(a->str, '\0', a->len) == NULL);
	}
	imap_parser_free(&p);

	/* astring: an atom only when it is one */
	if (memchr(s, '\0', len) == NULL) {
		char *z = malloc(len + 1);
		memcpy(z, s, len);
		z[len] = '\0';
		buf_reset(&out);
		FUZZ_ASSERT(imap_write_astring(&out, z, utf8) == 0);
		if (out.len > 0 && out.data[0] != '"' && out.data[0] != '{')
			FUZZ_ASSERT(strcasecmp(out.data, "NIL") != 0 && strcmp(out.data, z) == 0 &&
				    strpbrk(z, "(){%*\"\\] ") == NULL);
		free(z);
	}
	buf_free(&out);
}

static void check_filename(const char *s)
{
	buf out;
	buf_init(&out, 0);
	buf_puts(&out, "dir/");
	filename_sanitize(s, "attachment", &out);
	const char *f = out.data + 4;
	size_t n = out.len - 4;
	FUZZ_ASSERT(n > 0 && n <= FILENAME_MAX_BYTES && strlen(f) == n);
	FUZZ_ASSERT(utf8_valid(f, n));
	FUZZ_ASSERT(strcmp(f, ".") != 0 && strcmp(f, "..") != 0);
	FUZZ_ASSERT(f[0] != '.' && f[0] != ' ' && f[n - 1] != '.' && f[n - 1] != ' ');
	FUZZ_ASSERT(strstr(f, "..") == NULL);
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)f[i];
		uint32_t cp = 0;
		size_t l = utf8_decode((const unsigned char *)f + i, n - i, &cp);
		FUZZ_ASSERT(l > 0);
		FUZZ_ASSERT(c >= 0x20 && c != 0x7f && c != '/' && c != '\\');
		FUZZ_ASSERT(cp < 0x80 || cp >= 0xa0);
		i += l;
	}
	buf_free(&out);
}

static void check_log_sanitize(const char *s, size_t len, size_t outsz)
{
	char *out = malloc(outsz);
	FUZZ_ASSERT(log_sanitize(out, outsz, s, len) == out);
	if (outsz == 0) {
		free(out);
		return;
	}
	size_t n = strlen(out);
	FUZZ_ASSERT(n < outsz);
	for (size_t i = 0; i < n; i++)
		FUZZ_ASSERT(out[i] >= 0x20 && out[i] < 0x7f);
	/* when nothing was cut, \xNN decodes back to the input */
	if (n < 3 || strcmp(out + n - 3, "...") != 0) {
		size_t k = 0;
		for (size_t i = 0; i < n; k++) {
			FUZZ_ASSERT(k < len);
			if (out[i] == '\\') {
				FUZZ_ASSERT(out[i + 1] == 'x');
				unsigned v = (unsigned)strtoul((char[]){ out[i + 2], out[i + 3], 0 }, NULL, 16);
				FUZZ_ASSERT(v == (unsigned char)s[k]);
				i += 4;
			} else {
				FUZZ_ASSERT(out[i] == s[k]);
				i++;
			}
		}
		FUZZ_ASSERT(k == len || outsz < 9 || n + 8 >= outsz);
	}
	free(out);
}

/* ref_utf8 - RFC 3629's table: the length of the well-formed sequence at s, or 0 */
static size_t ref_utf8(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

static void check_utf8(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	bool valid = true;
	buf re;
	buf_init(&re, 0);
	for (size_t i = 0; i < len;) {
		uint32_t a = 0xffffffff, b = 0xffffffff;
		size_t la = utf8_decode(u + i, len - i, &a), lb = ref_utf8(u + i, len - i, &b);
		FUZZ_ASSERT(la == lb);
		if (la == 0) {
			valid = false;
			i++;
			continue;
		}
		FUZZ_ASSERT(a == b);
		FUZZ_ASSERT(utf8_append(&re, a) == 0);
		FUZZ_ASSERT(re.len >= la && memcmp(re.data + re.len - la, s + i, la) == 0);
		i += la;
	}
	FUZZ_ASSERT(utf8_valid(s, len) == valid);
	buf_reset(&re);
	FUZZ_ASSERT(mime_utf8_sanitize(s, len, &re) == 0);
	FUZZ_ASSERT(utf8_valid(re.data ? re.data : "", re.len) && memchr(re.data ? re.data : "", '\0', re.len) == NULL);
	if (valid && memchr(s, '\0', len) == NULL)
		FUZZ_ASSERT(re.len == len && (len == 0 || memcmp(re.data, s, len) == 0));
	buf_free(&re);
}

static void check_strnum(const char *s, size_t len)
{
	uint64_t max = len > 0 && s[0] == '1' ? UINT64_MAX : 4294967295u, v = 7;
	int r = strnum_u64(s, len, max, &v);
	bool digits = len > 0;
	for (size_t i = 0; i < len; i++)
		digits = digits && s[i] >= '0' && s[i] <= '9';
	if (!digits) {
		FUZZ_ASSERT(r == -1);
		return;
	}
	/* reference: with overflow checks */
	uint64_t ref = 0;
	bool over = false;
	for (size_t i = 0; i < len && !over; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (ref > (UINT64_MAX - d) / 10)
			over = true;
		else
			ref = ref * 10 + d;
	}
	if (over || ref > max || len > 20)	/* more than 20 digits: refused */
		FUZZ_ASSERT(r == -1);
	else
		FUZZ_ASSERT(r == 0 && v == ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned flags = data[0];
	char delim = flags & 1 ? '.' : '/';
	bool utf8 = flags & 2;
	const char *raw = (const char *)data + 1;
	size_t rawlen = size - 1;

	/* the strings */
	char *copy = malloc(rawlen + 1);
	memcpy(copy, raw, rawlen);
	copy[rawlen] = '\0';
	const char *a = copy;
	size_t al = strlen(a), boff = al + 1 < rawlen + 1 ? al + 1 : rawlen;
	const char *b = copy + boff;
	size_t bl = strlen(b), coff = boff + bl + 1 <= rawlen ? boff + bl + 1 : rawlen;
	const char *c = copy + coff;

	check_mutf7(a);
	check_listmatch(a, b, c, delim);
	if (rawlen <= 2000)
		check_imap_string(raw, rawlen, utf8);
	check_filename(a);
	check_log_sanitize(raw, rawlen, (size_t)(flags >> 2) * 4);
	check_utf8(raw, rawlen);
	check_strnum(raw, rawlen);
	free(copy);
	return 0;
}
