/* test_conn_compress - conn_compress (COMPRESS=DEFLATE under a protocol): both directions
 * round-trip, output is flushed at the end of a burst, input the client sent before the
 * switch is inflated, deflate fed one byte at a time, a bomb never holds more than max_input
 * inflated, a corrupt stream ends the conn through on_event, close-after-flush sends
 * everything, the idle timeout still works, a second conn_compress and a STARTTLS after it
 * are refused. The conn runs over
 * a socketpair; the test is its client, with its own zlib streams. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/conn.h"
#include "test.h"

#define RIG_MAX_INPUT 4096
#define RIG_GOT_MAX (2 << 20)

struct rig {
	struct event_base *base;
	struct conn *c;
	int client;
	z_stream zc;			/* client -> server */
	z_stream zs;			/* server -> client */
	unsigned inputs;
	bool eat;			/* on_input reads (all but a few bytes) */
	size_t eaten, peak;
	int event;			/* -1: none */
	bool closed;
	unsigned char *got;		/* inflated from the server */
	size_t got_len;
};

/* on_input - like a session: reads what it can (libevent calls again and again while
 * the input stays at its watermark unread). Leaves up to 1000 bytes, as a parser waiting
 * for the rest of a line would. */
static void on_input(void *ctx)
{
	struct rig *r = ctx;
	r->inputs++;
	if (!r->eat)
		return;
	struct evbuffer *in = conn_input(r->c);
	size_t n = evbuffer_get_length(in);
	if (n > r->peak)
		r->peak = n;
	size_t take = n > 1000 ? n - 1000 : 0;
	evbuffer_drain(in, take);
	r->eaten += take;
}

static void on_event(void *ctx, enum conn_event ev)
{
	struct rig *r = ctx;
	r->event = (int)ev;
	conn_free(&r->c);	/* as a session does */
}

static void on_closed(void *ctx)
{
	struct rig *r = ctx;
	r->closed = true;
}

static const struct conn_ops ops = { on_input, on_event, on_closed };

static void rig_start(struct rig *r)
{
	int sv[2];
	memset(r, 0, sizeof(*r));
	r->event = -1;
	r->got = malloc(RIG_GOT_MAX);
	r->base = event_base_new();
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	r->client = sv[1];
	struct sockaddr_in peer = { .sin_family = AF_INET };
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->c = conn_new(r->base, sv[0], (struct sockaddr *)&peer, sizeof(peer), NULL, RIG_MAX_INPUT,
			10, &ops, r);
	CHECK(deflateInit2(&r->zc, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	CHECK(inflateInit2(&r->zs, -15) == Z_OK);
}

static void rig_stop(struct rig *r)
{
	conn_free(&r->c);
	close(r->client);
	deflateEnd(&r->zc);
	inflateEnd(&r->zs);
	free(r->got);
	/* let libevent finalise the freed bufferevents (and the filter's context) */
	for (int i = 0; i < 5; i++)
		event_base_loop(r->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	event_base_free(r->base);
}

/* rig_run - a few turns of the loop, reading (and inflating) what the server sent */
static void rig_run(struct rig *r, int turns)
{
	for (int i = 0; i < turns; i++) {
		event_base_loop(r->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		unsigned char wire[16384];
		ssize_t n;
		while ((n = read(r->client, wire, sizeof(wire))) > 0) {
			r->zs.next_in = wire;
			r->zs.avail_in = (uInt)n;
			do {
				r->zs.next_out = r->got + r->got_len;
				r->zs.avail_out = (uInt)(RIG_GOT_MAX - r->got_len);
				int z = inflate(&r->zs, Z_SYNC_FLUSH);
				CHECK(z == Z_OK || z == Z_BUF_ERROR);
				r->got_len = RIG_GOT_MAX - r->zs.avail_out;
			} while (r->zs.avail_in > 0 && r->zs.avail_out > 0);
		}
		usleep(500);
	}
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w > 0) {
			s += w;
			n -= (size_t)w;
		} else {
			usleep(1000);
		}
	}
}

/* client_send - deflate p with flush (Z_SYNC_FLUSH, Z_NO_FLUSH ...) and write it */
static void client_send(struct rig *r, const void *p, size_t n, int flush)
{
	unsigned char out[65536];
	r->zc.next_in = (unsigned char *)p;
	r->zc.avail_in = (uInt)n;
	do {
		r->zc.next_out = out;
		r->zc.avail_out = sizeof(out);
		CHECK(deflate(&r->zc, flush) != Z_STREAM_ERROR);
		send_all(r->client, out, sizeof(out) - r->zc.avail_out);
	} while (r->zc.avail_out == 0);
}

/* input_is - the conn's input holds exactly s (drained after the check) */
static bool input_is(struct rig *r, const char *s)
{
	struct evbuffer *in = conn_input(r->c);
	size_t n = evbuffer_get_length(in);
	bool same = n == strlen(s) && memcmp(evbuffer_pullup(in, -1), s, n) == 0;
	evbuffer_drain(in, n);
	return same;
}

static void test_round_trip(void)
{
	struct rig r;
	rig_start(&r);
	CHECK(!conn_is_compressed(r.c));
	CHECK(conn_compress(r.c) == 0);
	CHECK(conn_is_compressed(r.c));
	client_send(&r, "a NOOP\r\n", 8, Z_SYNC_FLUSH);
	rig_run(&r, 10);
	CHECK(r.inputs > 0);
	CHECK(input_is(&r, "a NOOP\r\n"));
	/* several writes in one burst, then the loop: all of it arrives (sync flush) */
	r.got_len = 0;
	conn_printf(r.c, "* one\r\n");
	conn_write(r.c, "* two\r\n", 7);
	conn_printf(r.c, "a OK %s\r\n", "done");
	rig_run(&r, 10);
	CHECK(r.got_len == 25 && memcmp(r.got, "* one\r\n* two\r\na OK done\r\n", 25) == 0);
	CHECK(conn_output_pending(r.c) == 0);
	CHECK(conn_compress(r.c) == -1);		/* once */
	CHECK(conn_starttls(r.c, NULL) == -1);		/* never over compression */
	rig_stop(&r);
}

static void test_clear_then_compressed(void)
{
	struct rig r;
	rig_start(&r);
	conn_printf(r.c, "t OK go\r\n");
	CHECK(conn_compress(r.c) == 0);
	conn_printf(r.c, "after\r\n");
	unsigned char wire[256];
	size_t n = 0;
	for (int i = 0; i < 50 && n < 9 + 5; i++) {
		event_base_loop(r.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		ssize_t got = read(r.client, wire + n, sizeof(wire) - n);
		if (got > 0)
			n += (size_t)got;
		usleep(500);
	}
	CHECK(n > 9 && memcmp(wire, "t OK go\r\n", 9) == 0);
	unsigned char plain[64];
	r.zs.next_in = wire + 9;
	r.zs.avail_in = (uInt)(n - 9);
	r.zs.next_out = plain;
	r.zs.avail_out = sizeof(plain);
	CHECK(inflate(&r.zs, Z_SYNC_FLUSH) == Z_OK);
	CHECK(sizeof(plain) - r.zs.avail_out == 7 && memcmp(plain, "after\r\n", 7) == 0);
	rig_stop(&r);
}

static void test_pipelined_before_switch(void)
{
	struct rig r;
	rig_start(&r);
	/* "z COMPRESS" in clear and, in the same write, a compressed command behind it */
	unsigned char out[256];
	memcpy(out, "z COMPRESS DEFLATE\r\n", 20);
	r.zc.next_in = (unsigned char *)"y NOOP\r\n";
	r.zc.avail_in = 8;
	r.zc.next_out = out + 20;
	r.zc.avail_out = sizeof(out) - 20;
	CHECK(deflate(&r.zc, Z_SYNC_FLUSH) == Z_OK);
	send_all(r.client, out, sizeof(out) - r.zc.avail_out);
	for (int i = 0; i < 50 && evbuffer_get_length(conn_input(r.c)) < 28; i++)
		rig_run(&r, 1);
	struct evbuffer *in = conn_input(r.c);
	CHECK(evbuffer_get_length(in) > 20);
	CHECK(memcmp(evbuffer_pullup(in, 20), "z COMPRESS DEFLATE\r\n", 20) == 0);
	evbuffer_drain(in, 20);		/* the session took its command */
	unsigned before = r.inputs;
	CHECK(conn_compress(r.c) == 0);
	rig_run(&r, 5);
	CHECK(r.inputs > before);		/* told, though the socket had nothing new */
	CHECK(input_is(&r, "y NOOP\r\n"));
	rig_stop(&r);
}

static void test_byte_at_a_time(void)
{
	struct rig r;
	rig_start(&r);
	CHECK(conn_compress(r.c) == 0);
	const char *cmd = "b LOGIN \"someone\" \"secret\"\r\n";
	unsigned char out[256];
	r.zc.next_in = (unsigned char *)cmd;
	r.zc.avail_in = (uInt)strlen(cmd);
	r.zc.next_out = out;
	r.zc.avail_out = sizeof(out);
	CHECK(deflate(&r.zc, Z_PARTIAL_FLUSH) == Z_OK);	/* some clients flush so */
	size_t n = sizeof(out) - r.zc.avail_out;
	for (size_t i = 0; i < n; i++) {
		send_all(r.client, out + i, 1);
		rig_run(&r, 2);
	}
	rig_run(&r, 5);
	CHECK(input_is(&r, cmd));
	CHECK(r.event == -1);
	rig_stop(&r);
}

static void test_bomb_stays_under_max_input(void)
{
	struct rig r;
	rig_start(&r);
	r.eat = true;
	CHECK(conn_compress(r.c) == 0);
	size_t total = 8 * 1024 * 1024;
	unsigned char *zeros = calloc(1, 1024 * 1024);
	for (int i = 0; i < 8; i++)
		client_send(&r, zeros, 1024 * 1024, i == 7 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
	free(zeros);
	CHECK(r.zc.total_out < 16 * 1024);		/* 8 MB in a few KB */
	for (int i = 0; i < 20000 && r.eaten + 1000 < total; i++)
		rig_run(&r, 1);
	size_t left = evbuffer_get_length(conn_input(r.c));
	CHECK(r.eaten + left == total);
	CHECK(r.peak > 0 && r.peak <= RIG_MAX_INPUT);
	CHECK(r.event == -1);
	rig_stop(&r);
}

static void test_corrupt_stream_ends_conn(void)
{
	struct rig r;
	rig_start(&r);
	CHECK(conn_compress(r.c) == 0);
	client_send(&r, "c NOOP\r\n", 8, Z_SYNC_FLUSH);
	rig_run(&r, 5);
	CHECK(input_is(&r, "c NOOP\r\n"));
	send_all(r.client, "\xff\xff\xff\xff", 4);	/* a block of the reserved type 3 */
	for (int i = 0; i < 100 && r.c != NULL; i++)
		rig_run(&r, 1);
	CHECK(r.c == NULL);
	CHECK(r.event == CONN_ERROR);
	rig_stop(&r);
}

static void test_close_after_flush_sends_all(void)
{
	struct rig r;
	rig_start(&r);
	CHECK(conn_compress(r.c) == 0);
	/* more than the output watermark, barely compressible, in one piece larger than what
	 * deflate is given at a time */
	static unsigned char data[1536 * 1024];
	unsigned x = 1;
	for (size_t i = 0; i < sizeof(data); i++) {
		x = x * 1103515245 + 12345;
		data[i] = (unsigned char)(x >> 16);
	}
	conn_write(r.c, data, sizeof(data));
	CHECK(conn_output_full(r.c));
	conn_printf(r.c, "* BYE\r\n");
	conn_close_after_flush(r.c);
	for (int i = 0; i < 2000 && !r.closed; i++)
		rig_run(&r, 1);
	rig_run(&r, 3);
	CHECK(r.closed);
	CHECK(r.got_len == sizeof(data) + 7);
	CHECK(memcmp(r.got, data, sizeof(data)) == 0);
	CHECK(memcmp(r.got + sizeof(data), "* BYE\r\n", 7) == 0);
	rig_stop(&r);
}

static void test_timeout_still_counts_below(void)
{
	struct rig r;
	rig_start(&r);
	r.eat = true;
	conn_set_timeout(r.c, 1);
	CHECK(conn_compress(r.c) == 0);
	/* a client that talks keeps the conn */
	for (int i = 0; i < 6; i++) {
		client_send(&r, "n NOOP\r\n", 8, Z_SYNC_FLUSH);
		for (int j = 0; j < 600; j++)	/* 0.3 s */
			rig_run(&r, 1);
	}
	CHECK(r.event == -1 && r.c != NULL);
	/* a silent one does not */
	for (int j = 0; j < 4000 && r.c != NULL; j++)
		rig_run(&r, 1);
	CHECK(r.event == CONN_TIMEOUT);
	rig_stop(&r);
}

TEST_MAIN(TEST(test_round_trip), TEST(test_clear_then_compressed),
	  TEST(test_pipelined_before_switch), TEST(test_byte_at_a_time),
	  TEST(test_bomb_stays_under_max_input), TEST(test_corrupt_stream_ends_conn),
	  TEST(test_close_after_flush_sends_all), TEST(test_timeout_still_counts_below))
