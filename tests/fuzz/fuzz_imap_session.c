/* fuzz_imap_session - libFuzzer target for a whole IMAP server session (imap/server.c and
 * its command families cmd_*.c over the session core, lib/conn.c, imap/parser.c, literals,
 * SASL, the login pool and the store), driven through a socketpair in-process
 * (tests/fuzz/fuzz_session.h). Input: byte 0 (bit 0: the peer is on loopback, where LOGIN
 * and AUTHENTICATE are allowed without TLS), then what the client sends. bob@example.org
 * (password "secret") starts with three messages in INBOX. The account is shared by the
 * runs: what one run creates, appends or expunges the next one sees (mailboxes are capped
 * by the store's limits); a crash that depends on that state may need the inputs before it.
 * Checked: no crash, leak or hang; the output starts with the "* OK" greeting and ends with
 * a complete line. */
#include "fuzz_session.h"
#include "imap/server.h"

static struct imap_server imap;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_env_init("imap_max_bad_commands = 10\n");
	imap_server_init(&imap, fuzz_env.base, fuzz_env.cfg, NULL, fuzz_env.accounts,
			 fuzz_env.login);
	fuzz_seed_inbox();
	return 0;
}

static void start(int fd, const struct sockaddr *peer, socklen_t len, unsigned flags)
{
	imap_session_start(&imap, fd, peer, len, ROLE_IMAP);
}

static unsigned alive(void)
{
	return imap.sessions.n;
}

static void check_output(const char *out, size_t len, bool done)
{
	FUZZ_ASSERT(len >= 4 && memcmp(out, "* OK", 4) == 0);
	FUZZ_ASSERT(out[len - 2] == '\r' && out[len - 1] == '\n');
}

static const struct fuzz_proto proto = { start, alive, check_output };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_session_run(&proto, data, size);
	return 0;
}
