/* fuzz_smtp_session - libFuzzer target for a whole SMTP server session (smtp/server.c over
 * the session core, lib/conn.c, the line reader, smtp/parser.c, SASL and the login pool,
 * the spool, local delivery into the store and the queue), driven through a socketpair
 * in-process (tests/fuzz/fuzz_session.h). Input: byte 0 (bit 0: the peer is on loopback,
 * where AUTH is allowed without TLS; bit 1: the submission role instead of smtp), then
 * what the client sends. Local users: bob@ and alice@example.org (password "secret"),
 * alias team@example.org. No TLS (STARTTLS is not offered).
 * Checked: no crash, leak or hang; every reply line is "ddd" + SP or "-" + text + CRLF,
 * at most 1000 bytes with its CRLF, without NUL or stray CR; the first is the greeting. */
#include "fuzz_session.h"
#include "smtp/server.h"

static struct smtp_server smtp;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_env_init("smtp_max_auth_failures = 2\n");
	smtp_server_init(&smtp, fuzz_env.base, fuzz_env.cfg, NULL, fuzz_env.accounts,
			 fuzz_env.queue, fuzz_env.login);
	return 0;
}

static void start(int fd, const struct sockaddr *peer, socklen_t len, unsigned flags)
{
	smtp_session_start(&smtp, fd, peer, len, flags & 1 ? ROLE_SUBMISSION : ROLE_SMTP);
}

static unsigned alive(void)
{
	return smtp.sessions.n;
}

static void check_output(const char *out, size_t len, bool done)
{
	fuzz_check_lines(out, len, 1000);
	FUZZ_ASSERT(len >= 4 && memcmp(out, "220 ", 4) == 0);
	for (size_t start = 0; start < len;) {
		const char *lf = memchr(out + start, '\n', len - start);
		const char *l = out + start;
		FUZZ_ASSERT(l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' &&
			    l[2] >= '0' && l[2] <= '9' && (l[3] == ' ' || l[3] == '-'));
		start = (size_t)(lf - out) + 1;
	}
}

static const struct fuzz_proto proto = { start, alive, check_output };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_session_run(&proto, data, size);
	return 0;
}
