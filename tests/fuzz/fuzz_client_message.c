/* fuzz_client_message - libFuzzer target for what `tern read` makes of a hostile message:
 * client/message.c (the summary line, the shown header and body, attachments listed),
 * client/html.c (HTML bodies as text) and msg_print_clean.
 * Input: a message. Checked: what msg_show and msg_print_clean print holds no control
 * character but LF and TAB, neither C0, DEL nor C1 (U+0080..U+009F, and no lone byte
 * 0x80..0x9F either): a message must not drive the terminal; so do the summary fields
 * `tern read list` prints, each on one line without tabs (the list is tab-separated); html_to_text (given UTF-8, as
 * msg_show gives it) returns valid UTF-8 without NUL, no blank line at
 * either end, never two empty lines in a row (outside <pre>), and a final line end. */
#include <string.h>

#include "client/html.h"
#include "client/message.h"
#include "fuzz.h"
#include "lib/utf8.h"
#include "mime/encword.h"

/* check_terminal_safe - no C0 but LF/TAB, no DEL, no C1 (as UTF-8 or as a lone byte) */
static void check_terminal_safe(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		FUZZ_ASSERT(c >= 0x20 || c == '\n' || c == '\t');
		FUZZ_ASSERT(c != 0x7f);
		if (c >= 0x80) {
			uint32_t cp = 0;
			size_t l = utf8_decode((const unsigned char *)s + i, len - i, &cp);
			if (l == 0) {
				FUZZ_ASSERT(c >= 0xa0);	/* a lone byte, not a C1 control */
				continue;
			}
			FUZZ_ASSERT(cp >= 0xa0);
			i += l - 1;
		}
	}
}

static char *capture(void (*fn)(FILE *, const char *, size_t), const char *d, size_t n,
		     size_t *len_r)
{
	char *p = NULL;
	FILE *f = open_memstream(&p, len_r);
	FUZZ_ASSERT(f != NULL);
	fn(f, d, n);
	FUZZ_ASSERT(fclose(f) == 0);
	return p;
}

static void show(FILE *f, const char *d, size_t n)
{
	msg_show(d, n, f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data;
	size_t len;
	char *out = capture(show, d, size, &len);
	check_terminal_safe(out, len);
	free(out);
	out = capture(msg_print_clean, d, size, &len);
	check_terminal_safe(out, len);
	free(out);

	struct msg_summary s;
	msg_summarize(d, size, &s);
	const char *fields[] = { s.date, s.from, s.subject };
	for (size_t i = 0; i < 3; i++) {
		FUZZ_ASSERT(fields[i] != NULL);
		/* `tern read list` prints each through msg_print_clean */
		out = capture(msg_print_clean, fields[i], strlen(fields[i]), &len);
		check_terminal_safe(out, len);
		FUZZ_ASSERT(strpbrk(out, "\n\t") == NULL);
		free(out);
	}
	msg_summary_free(&s);

	/* html_to_text takes UTF-8, as msg_show gives it */
	buf u, t;
	buf_init(&u, 0);
	buf_init(&t, 0);
	FUZZ_ASSERT(mime_utf8_sanitize(d, size, &u) == 0);
	html_to_text(u.data ? u.data : "", u.len, &t);
	/* <pre> keeps its line ends, empty lines too */
	bool pre = u.len > 0 && strcasestr(u.data, "<pre") != NULL;
	buf_free(&u);
	if (t.len > 0) {
		const char *p = t.data;
		FUZZ_ASSERT(utf8_valid(p, t.len) && memchr(p, '\0', t.len) == NULL);
		FUZZ_ASSERT(p[t.len - 1] == '\n' && p[0] != '\n');
		FUZZ_ASSERT(t.len < 2 || p[t.len - 2] != '\n');
		FUZZ_ASSERT(pre || strstr(p, "\n\n\n") == NULL);
	}
	buf_free(&t);
	return 0;
}
