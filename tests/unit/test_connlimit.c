/* test_connlimit - connections per client: keyed hash, IPv6 /64 sharing, the total */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/connlimit.h"
#include "lib/siphash.h"
#include "test.h"
#include "test_addr.h"

static struct sockaddr_in v4n(uint32_t host_order)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(host_order);
	return sin;
}

static const uint64_t key_a[2] = { 0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL };
static const uint64_t key_b[2] = { 0x1122334455667788ULL, 0x99aabbccddeeff00ULL };

/* the reference vector of the SipHash paper: key 00..0f, message 00..0e */
static void test_siphash_vector(void)
{
	unsigned char msg[15];
	for (int i = 0; i < 15; i++)
		msg[i] = (unsigned char)i;
	CHECK(siphash24(key_a, msg, 15) == 0xa129ca6149be45e5ULL);
	CHECK(siphash24(key_a, msg, 0) == 0x726fdb47dd0e0e31ULL);
}

static void test_before_init(void)
{
	struct sockaddr_in ip = v4n(0xc0000201);
	for (int i = 0; i < 10; i++)
		CHECK(connlimit_acquire(SA(ip), 1));
	CHECK(connlimit_count(SA(ip)) == 0);
	CHECK(connlimit_total() == 0);
}

/* every address of one /64 is one client; the next /64 is another */
static void test_v6_per_64(void)
{
	CHECK(connlimit_init() == 0);
	struct sockaddr_in6 a = v6("2001:db8:1:2::1");
	struct sockaddr_in6 b = v6("2001:db8:1:2:ffff:ffff:ffff:fffe");
	struct sockaddr_in6 c = v6("2001:db8:1:2:1234::99");
	struct sockaddr_in6 other = v6("2001:db8:1:3::1");
	CHECK(connlimit_slot(SA(a)) == connlimit_slot(SA(b)));
	CHECK(connlimit_acquire(SA(a), 3));
	CHECK(connlimit_acquire(SA(b), 3));
	CHECK(connlimit_acquire(SA(c), 3));
	CHECK(connlimit_count(SA(a)) == 3);
	CHECK(!connlimit_acquire(SA(b), 3));	/* the /64 has its 3 */
	CHECK(connlimit_count(SA(c)) == 3);	/* a refusal counts nothing */
	if (connlimit_slot(SA(other)) != connlimit_slot(SA(a)))
		CHECK(connlimit_acquire(SA(other), 3));
	connlimit_release(SA(a));
	CHECK(connlimit_acquire(SA(c), 3));
	connlimit_release(SA(a));
	connlimit_release(SA(b));
	connlimit_release(SA(c));
	CHECK(connlimit_count(SA(a)) == 0);
	/* a v4-mapped client is its IPv4 address */
	struct sockaddr_in6 mapped = v6("::ffff:192.0.2.7");
	struct sockaddr_in plain = v4n(0xc0000207);
	CHECK(connlimit_slot(SA(mapped)) == connlimit_slot(SA(plain)));
}

/* find_collision - two IPv4 addresses in one slot under the key in use */
static void find_collision(uint32_t *x_r, uint32_t *y_r)
{
	static uint32_t seen[CONNLIMIT_SLOTS];
	memset(seen, 0, sizeof(seen));
	for (uint32_t i = 1;; i++) {
		struct sockaddr_in ip = v4n(0x0a000000u + i);
		size_t s = connlimit_slot(SA(ip));
		if (seen[s] != 0) {
			*x_r = seen[s];
			*y_r = 0x0a000000u + i;
			return;
		}
		seen[s] = 0x0a000000u + i;
	}
}

/* addresses that an attacker found to collide under one key (the old unkeyed hash was
 * such a fixed key) fall apart under another: a random key per start hides the slots */
static void test_keyed_collisions(void)
{
	CHECK(connlimit_init() == 0);
	connlimit_set_key(key_a);
	uint32_t x, y;
	find_collision(&x, &y);
	struct sockaddr_in ax = v4n(x), ay = v4n(y);
	CHECK(x != y);
	CHECK(connlimit_slot(SA(ax)) == connlimit_slot(SA(ay)));
	/* under key a, x's connections lock y out */
	CHECK(connlimit_acquire(SA(ax), 2));
	CHECK(connlimit_acquire(SA(ax), 2));
	CHECK(!connlimit_acquire(SA(ay), 2));
	connlimit_release(SA(ax));
	connlimit_release(SA(ax));

	connlimit_set_key(key_b);
	CHECK(connlimit_slot(SA(ax)) != connlimit_slot(SA(ay)));
	CHECK(connlimit_acquire(SA(ax), 2));
	CHECK(connlimit_acquire(SA(ax), 2));
	CHECK(connlimit_acquire(SA(ay), 2));	/* y keeps its own counter */
	connlimit_release(SA(ax));
	connlimit_release(SA(ax));
	connlimit_release(SA(ay));

	/* and connlimit_init picks a key of its own (not zero, not the same twice) */
	uint32_t cx, cy;
	find_collision(&cx, &cy);
	CHECK(connlimit_init() == 0);
	struct sockaddr_in bx = v4n(cx), by = v4n(cy);
	size_t sx = connlimit_slot(SA(bx)), sy = connlimit_slot(SA(by));
	CHECK(connlimit_init() == 0);
	/* one fresh key may collide them by chance (1 in 8192); two in a row will not */
	CHECK(sx != sy || connlimit_slot(SA(bx)) != connlimit_slot(SA(by)));
}

/* the total: one counter per worker, shared; a dead worker's count is dropped */
static void test_total(void)
{
	CHECK(connlimit_init() == 0);
	int ready[2], done[2];
	CHECK(pipe(ready) == 0 && pipe(done) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		char ch;
		if (connlimit_worker_join() < 0)
			_exit(1);
		connlimit_worker_add(5);
		(void)!write(ready[1], "x", 1);
		(void)!read(done[0], &ch, 1);
		_exit(0);	/* dies without releasing: as a crash would */
	}
	char ch;
	CHECK(read(ready[0], &ch, 1) == 1);
	CHECK(connlimit_worker_join() == 0);
	connlimit_worker_add(2);
	CHECK(connlimit_total() == 7);
	(void)!write(done[1], "x", 1);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(connlimit_total() == 7);		/* not noticed yet */
	CHECK(connlimit_worker_join() == 0);	/* a new worker sweeps the dead one */
	CHECK(connlimit_total() == 0);		/* ... and this join started at 0 */
	connlimit_worker_add(1);
	CHECK(connlimit_total() == 1);
}

TEST_MAIN(TEST(test_siphash_vector), TEST(test_before_init), TEST(test_v6_per_64),
	  TEST(test_keyed_collisions), TEST(test_total))
