/* fuzz_pop3_session - libFuzzer target for a whole POP3 server session (pop3/server.c over
 * the session core, lib/conn.c, the line reader, pop3/parser.c, SASL, the login pool and
 * the store: the maildrop snapshot, RETR/TOP streaming, DELE and the expunge at QUIT),
 * driven through a socketpair in-process (tests/fuzz/fuzz_session.h). Input: byte 0
 * (bit 0: the peer is on loopback, where USER/PASS and AUTH are allowed without TLS), then
 * what the client sends. bob@example.org (password "secret") has three messages; when a run
 * may have deleted some (it sent DELE), they are delivered again. No TLS.
 * Checked: no crash, leak or hang; every line out ends in CRLF, holds no NUL or stray CR
 * and is at most 1000 bytes long; the first is "+OK". */
#include <strings.h>

#include "fuzz_session.h"
#include "pop3/server.h"

static struct pop3_server pop3;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_env_init("pop3_max_auth_failures = 2\n");
	pop3_server_init(&pop3, fuzz_env.base, fuzz_env.cfg, NULL, fuzz_env.accounts,
			 fuzz_env.login);
	fuzz_seed_inbox();
	return 0;
}

static void start(int fd, const struct sockaddr *peer, socklen_t len, unsigned flags)
{
	pop3_session_start(&pop3, fd, peer, len, ROLE_POP3);
}

static unsigned alive(void)
{
	return pop3.sessions.n;
}

static void check_output(const char *out, size_t len, bool done)
{
	fuzz_check_lines(out, len, 1000);
	FUZZ_ASSERT(len >= 3 && memcmp(out, "+OK", 3) == 0);
}

static const struct fuzz_proto proto = { start, alive, check_output };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_session_run(&proto, data, size);
	/* DELE then QUIT empties the maildrop: fill it again */
	bool dele = false;
	for (size_t i = 0; i + 4 <= size && !dele; i++)
		dele = strncasecmp((const char *)data + i, "DELE", 4) == 0;
	if (dele) {
		struct store *st;
		struct store_mailbox *mb;
		const struct store_msg *msgs;
		size_t n = 0;
		char *err = NULL;
		if (store_open(fuzz_env.cfg->data_dir, "bob@example.org", &st, &err) == 0) {
			if (store_mailbox_open(st, "INBOX", &mb, &err) == 0) {
				store_mailbox_messages(mb, &msgs, &n, &err);
				store_mailbox_close(&mb);
			}
			store_close(&st);
		}
		free(err);
		if (n < 3)
			fuzz_seed_inbox();
	}
	return 0;
}
