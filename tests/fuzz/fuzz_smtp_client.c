/* fuzz_smtp_client - libFuzzer target for smtp/client.c, the outbound SMTP client, facing a
 * hostile server. The input is everything the server says (greeting, EHLO extensions,
 * replies to MAIL, RCPT, DATA, the dot, QUIT), sent on a real loopback connection, then the
 * server side is shut. The client connects, runs one transaction (two when byte 0's bit 3
 * is set and the first left it usable) and quits; the event base runs until it is empty.
 * Byte 0 also picks an 8-bit body (bit 0), a non-ASCII recipient (bit 1), DSN parameters
 * (bit 2). No TLS. Checked: no crash, leak or hang; every outcome is a reply whose status
 * agrees with its code's class, whose text is one printable line and whose enhanced code is
 * empty or "c.s.d"; recipients accepted never outnumber those asked for. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "fuzz.h"
#include "smtp/client.h"

static struct event_base *base;
static int lfd, msgfd;
static struct sockaddr_in addr;

static const char msg7[] = "Subject: hi\r\n\r\nHello\r\n.dot\r\nbare\nlf\rcr";
static const char msg8[] = "Subject: \xc3\xa4\r\n\r\nGr\xc3\xbc\xc3\x9f\xc3\xa9\r\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	FUZZ_ASSERT(base != NULL);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(addr);
	FUZZ_ASSERT(lfd >= 0 && bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
		    listen(lfd, 16) == 0 && getsockname(lfd, (struct sockaddr *)&addr, &len) == 0);
	char path[] = "/tmp/fuzz-smtp-client-XXXXXX";
	msgfd = mkstemp(path);
	FUZZ_ASSERT(msgfd >= 0);
	unlink(path);
	FUZZ_ASSERT(write(msgfd, msg7, sizeof(msg7) - 1) == sizeof(msg7) - 1);
	FUZZ_ASSERT(write(msgfd, msg8, sizeof(msg8) - 1) == sizeof(msg8) - 1);
	return 0;
}

static void check_reply(const struct smtp_client_reply *r)
{
	FUZZ_ASSERT(r->text != NULL);
	for (const char *c = r->text; *c; c++)
		FUZZ_ASSERT((unsigned char)*c >= 0x20 && *c != 0x7f);
	if (r->code != 0) {
		FUZZ_ASSERT(r->code >= 200 && r->code <= 599);
		int cls = r->code / 100;
		FUZZ_ASSERT(r->status == (cls == 2 ? SMTP_CLIENT_OK :
					  cls == 5 ? SMTP_CLIENT_PERMFAIL : r->status));
		if (cls == 4)
			FUZZ_ASSERT(r->status == SMTP_CLIENT_TEMPFAIL);
	}
	size_t e = strlen(r->enhanced);
	FUZZ_ASSERT(e < sizeof(r->enhanced));
	if (e > 0)
		FUZZ_ASSERT(e >= 5 && r->enhanced[1] == '.' && strchr("245", r->enhanced[0]));
}

struct run {
	unsigned flags;
	int sends;
	struct smtp_client *c;
};

static void on_send(struct smtp_client *c, const struct smtp_client_result *r, void *ctx);

static void send_one(struct run *st)
{
	bool eight = st->flags & 1, utf8 = st->flags & 2, dsn = st->flags & 4;
	struct smtp_client_rcpt rcpts[2] = {
		{ "bob@example.org", dsn ? "SUCCESS,FAILURE" : NULL,
		  dsn ? "rfc822;bob@example.org" : NULL },
		{ utf8 ? "j\xc3\xb6rg@example.org" : "ann@example.org", NULL, NULL },
	};
	struct smtp_client_txn txn = {
		.sender = st->sends % 2 ? "" : "alice@example.net",
		.rcpts = rcpts,
		.n_rcpts = 2,
		.body_8bit = eight,
		.smtputf8 = utf8,
		.dsn_ret = dsn ? "HDRS" : NULL,
		.dsn_envid = dsn ? "QQ314159" : NULL,
		.fd = msgfd,
		.offset = eight ? (off_t)(sizeof(msg7) - 1) : 0,
		.size = eight ? sizeof(msg8) - 1 : sizeof(msg7) - 1,
	};
	st->sends++;
	if (smtp_client_send(st->c, &txn, on_send, st) < 0)
		smtp_client_quit(&st->c);
}

static void on_send(struct smtp_client *c, const struct smtp_client_result *r, void *ctx)
{
	struct run *st = ctx;
	check_reply(&r->mail);
	check_reply(&r->data);
	FUZZ_ASSERT(r->n_rcpts == 2 && r->n_accepted <= r->n_rcpts);
	for (size_t i = 0; i < r->n_rcpts; i++)
		check_reply(&r->rcpts[i]);
	if (r->data.status == SMTP_CLIENT_OK)
		FUZZ_ASSERT(r->n_accepted > 0);
	if ((st->flags & 8) && st->sends == 1 && r->usable && smtp_client_usable(c))
		send_one(st);
	else
		smtp_client_quit(&st->c);
}

static void on_connect(struct smtp_client *c, const struct smtp_client_reply *err, void *ctx)
{
	struct run *st = ctx;
	if (err != NULL) {
		check_reply(err);
		FUZZ_ASSERT(err->status != SMTP_CLIENT_OK);
		smtp_client_quit(&st->c);
		return;
	}
	const struct smtp_client_ext *x = smtp_client_extensions(c);
	FUZZ_ASSERT(x != NULL && !smtp_client_tls(c));
	send_one(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	struct run st = { .flags = data[0] };
	struct smtp_client_opts opts = {
		.helo_name = "mx.example.org",
		.timeouts = { .connect = 2000, .greeting = 2000, .ehlo = 2000, .mail = 2000,
			      .rcpt = 2000, .data_init = 2000, .data_block = 2000,
			      .data_done = 2000, .quit = 2000 },
	};
	st.c = smtp_client_connect(base, (struct sockaddr *)&addr, sizeof(addr), &opts,
				   on_connect, &st);
	int sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	FUZZ_ASSERT(sfd >= 0);
	/* the server says everything at once, then stops talking */
	size_t off = 1;
	while (off < size) {
		ssize_t n = write(sfd, data + off, size - off);
		FUZZ_ASSERT(n > 0);
		off += (size_t)n;
	}
	shutdown(sfd, SHUT_WR);
	event_base_dispatch(base);
	FUZZ_ASSERT(st.c == NULL);
	close(sfd);
	return 0;
}
