/* test_throttle - login throttling: no-op before init, growth, cap, success, decay, sharing */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/throttle.h"
#include "test.h"
#include "test_addr.h"

static time_t fake_now = 1000000;
static time_t fake_clock(void)
{
	return fake_now;
}

/* must run before throttle_init: everything is a no-op */
static void test_without_init(void)
{
	struct sockaddr_in ip = v4("192.0.2.1");
	for (int i = 0; i < 20; i++)
		throttle_failed(SA(ip), "bob");
	CHECK(throttle_delay_ms(SA(ip), "bob") == 0);
	CHECK(throttle_delay_ms(SA(ip), NULL) == 0);
	throttle_succeeded(SA(ip), "bob");
}

static void test_growth_and_cap(void)
{
	CHECK(throttle_init() == 0);
	throttle_set_clock(fake_clock);
	struct sockaddr_in ip = v4("192.0.2.10");
	static const unsigned want[] = { 0, 0, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000 };

	CHECK(throttle_delay_ms(SA(ip), "bob") == 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		throttle_failed(SA(ip), "bob@example.org");
		unsigned d = throttle_delay_ms(SA(ip), "bob@example.org");
		if (d < want[i])
			fprintf(stderr, "after %zu failures: %u ms, want at least %u\n", i + 1, d,
				want[i]);
		CHECK(d >= want[i]);
		CHECK(d <= 15000);
		/* the (IP, user) record dominates while the IP allowance lasts */
		if (i < 10)
			CHECK(d == want[i]);
	}
	/* the account name is compared without case */
	CHECK(throttle_delay_ms(SA(ip), "BOB@Example.ORG") == 15000);
	/* another address is not affected */
	struct sockaddr_in other = v4("192.0.2.11");
	CHECK(throttle_delay_ms(SA(other), "bob@example.org") == 0);
}

static void test_success_clears(void)
{
	CHECK(throttle_init() == 0);
	struct sockaddr_in ip = v4("198.51.100.7");
	for (int i = 0; i < 5; i++)
		throttle_failed(SA(ip), "alice");
	CHECK(throttle_delay_ms(SA(ip), "alice") == 2000);
	throttle_succeeded(SA(ip), "alice");
	CHECK(throttle_delay_ms(SA(ip), "alice") == 0);
	/* and counting starts again from nothing */
	throttle_failed(SA(ip), "alice");
	throttle_failed(SA(ip), "alice");
	CHECK(throttle_delay_ms(SA(ip), "alice") == 0);
	throttle_failed(SA(ip), "alice");
	CHECK(throttle_delay_ms(SA(ip), "alice") == 500);
}

/* test_ip_spraying - many accounts from one address: the IP record takes over after its
 * larger allowance, and a success with one account does not clear it. */
static void test_ip_spraying(void)
{
	CHECK(throttle_init() == 0);
	struct sockaddr_in ip = v4("203.0.113.5");
	char user[32];
	for (int i = 0; i < 10; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		throttle_failed(SA(ip), user);
	}
	CHECK(throttle_delay_ms(SA(ip), "fresh") == 0);
	throttle_failed(SA(ip), "user10");
	CHECK(throttle_delay_ms(SA(ip), "fresh") == 500);
	CHECK(throttle_delay_ms(SA(ip), NULL) == 500);
	throttle_succeeded(SA(ip), "fresh");
	CHECK(throttle_delay_ms(SA(ip), "fresh") == 500);
}

static void test_decay(void)
{
	CHECK(throttle_init() == 0);
	struct sockaddr_in ip = v4("192.0.2.99");
	for (int i = 0; i < 6; i++)
		throttle_failed(SA(ip), "carol");
	CHECK(throttle_delay_ms(SA(ip), "carol") == 4000);
	fake_now += 14 * 60;
	CHECK(throttle_delay_ms(SA(ip), "carol") == 4000);
	throttle_failed(SA(ip), "carol");	/* a failure restarts the 15 minutes */
	fake_now += 14 * 60;
	CHECK(throttle_delay_ms(SA(ip), "carol") == 8000);
	fake_now += 60;
	CHECK(throttle_delay_ms(SA(ip), "carol") == 0);
	/* after decay the count starts from one again */
	throttle_failed(SA(ip), "carol");
	throttle_failed(SA(ip), "carol");
	CHECK(throttle_delay_ms(SA(ip), "carol") == 0);
	throttle_failed(SA(ip), "carol");
	CHECK(throttle_delay_ms(SA(ip), "carol") == 500);
}

static void test_families(void)
{
	CHECK(throttle_init() == 0);
	/* IPv6: one /64 is one client */
	struct sockaddr_in6 a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9");
	struct sockaddr_in6 c = v6("2001:db8:1:3::1");
	for (int i = 0; i < 3; i++)
		throttle_failed(SA(a), "dave");
	CHECK(throttle_delay_ms(SA(a), "dave") == 500);
	CHECK(throttle_delay_ms(SA(b), "dave") == 500);
	CHECK(throttle_delay_ms(SA(c), "dave") == 0);

	/* an IPv4-mapped address is the IPv4 address */
	struct sockaddr_in four = v4("192.0.2.200");
	struct sockaddr_in6 mapped = v6("::ffff:192.0.2.200");
	for (int i = 0; i < 4; i++)
		throttle_failed(SA(mapped), "erin");
	CHECK(throttle_delay_ms(SA(four), "erin") == 1000);

	/* no address, or one without an IP: nothing to key on */
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	for (int i = 0; i < 5; i++) {
		throttle_failed(SA(un), "frank");
		throttle_failed(NULL, "frank");
	}
	CHECK(throttle_delay_ms(SA(un), "frank") == 0);
	CHECK(throttle_delay_ms(NULL, "frank") == 0);
	throttle_succeeded(NULL, "frank");
}

/* test_shared - a failure recorded in a child process is seen by the parent */
static void test_shared(void)
{
	CHECK(throttle_init() == 0);
	struct sockaddr_in ip = v4("192.0.2.77");
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		for (int i = 0; i < 4; i++)
			throttle_failed(SA(ip), "gina");
		_exit(0);
	}
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(throttle_delay_ms(SA(ip), "gina") == 1000);
}

/* test_full_table - far more clients than slots: no failure, recent clients still tracked */
static void test_full_table(void)
{
	CHECK(throttle_init() == 0);
	struct sockaddr_in ip;
	memset(&ip, 0, sizeof(ip));
	ip.sin_family = AF_INET;
	char user[32];
	for (uint32_t i = 0; i < 20000; i++) {
		ip.sin_addr.s_addr = htonl(0x0a000000u + i);
		snprintf(user, sizeof(user), "x%u", i);	/* one account each: no account delay */
		throttle_failed(SA(ip), user);
		fake_now += (i % 16 == 0);
	}
	/* the last client was just recorded; its IP record must exist */
	ip.sin_addr.s_addr = htonl(0x0a000000u + 19999);
	for (int i = 0; i < 2; i++)
		throttle_failed(SA(ip), user);
	CHECK(throttle_delay_ms(SA(ip), user) == 500);
	throttle_set_clock(NULL);
	CHECK(throttle_init() == 0);
	CHECK(throttle_delay_ms(SA(ip), user) == 0);
}

/* test_account_across_addresses - one account guessed from many addresses: after the
 * account's allowance every address gets the delay for it, other accounts do not, and a
 * success does not clear it */
static void test_account_across_addresses(void)
{
	CHECK(throttle_init() == 0);
	throttle_set_clock(fake_clock);
	throttle_set_limits(4, 256);
	struct sockaddr_in ip;
	memset(&ip, 0, sizeof(ip));
	ip.sin_family = AF_INET;
	static const unsigned want[] = { 0, 0, 0, 0, 500, 1000, 2000, 4000, 8000, 15000, 15000 };
	for (uint32_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ip.sin_addr.s_addr = htonl(0xc6336400u + i);	/* 198.51.100.i: one failure each */
		throttle_failed(SA(ip), "Carol@example.org");
		struct sockaddr_in fresh = ip;
		fresh.sin_addr.s_addr = htonl(0xcb007100u + i);	/* 203.0.113.i: never failed */
		CHECK(throttle_delay_ms(SA(fresh), "carol@example.org") == want[i]);
		CHECK(throttle_delay_ms(SA(fresh), "dave@example.org") == 0);
		CHECK(throttle_delay_ms(SA(ip), "dave@example.org") == 0);
	}
	throttle_succeeded(SA(ip), "carol@example.org");
	CHECK(throttle_delay_ms(SA(ip), "carol@example.org") == 15000);
	fake_now += 15 * 60;	/* records fade */
	CHECK(throttle_delay_ms(SA(ip), "carol@example.org") == 0);
	throttle_set_clock(NULL);
	throttle_set_limits(10, 256);
}

/* test_inflight - the cap over all workers, and a dead worker's counts cleared */
static void test_inflight(void)
{
	CHECK(throttle_init() == 0);
	/* not attached: never refused, never counted */
	CHECK(throttle_inflight_acquire());
	CHECK(throttle_inflight_total() == 0);
	throttle_set_limits(10, 3);
	CHECK(throttle_worker_attach() == 0);
	CHECK(throttle_inflight_acquire());
	pid_t pid = fork();
	if (pid == 0) {		/* another worker that takes two and dies with them */
		if (throttle_worker_attach() != 0 || !throttle_inflight_acquire() ||
		    !throttle_inflight_acquire() || throttle_inflight_acquire())
			_exit(1);
		_exit(throttle_inflight_total() == 3 ? 0 : 2);
	}
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(throttle_inflight_total() == 3);
	CHECK(!throttle_inflight_acquire());
	/* a new worker attaching clears the dead one's counter */
	CHECK(throttle_worker_attach() == 0);
	CHECK(throttle_inflight_total() == 0);
	CHECK(throttle_inflight_acquire() && throttle_inflight_acquire() &&
	      throttle_inflight_acquire());
	CHECK(!throttle_inflight_acquire());
	throttle_inflight_release();
	CHECK(throttle_inflight_total() == 2);
	CHECK(throttle_inflight_acquire());
	throttle_set_limits(10, 256);
	CHECK(throttle_init() == 0);	/* detaches */
}

TEST_MAIN(TEST(test_without_init), TEST(test_growth_and_cap), TEST(test_success_clears),
	  TEST(test_ip_spraying), TEST(test_decay), TEST(test_families), TEST(test_shared),
	  TEST(test_full_table), TEST(test_account_across_addresses), TEST(test_inflight))
