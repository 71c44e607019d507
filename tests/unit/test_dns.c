/* test_dns - MX and host lookups against a real dnsmasq on 127.0.0.1 (MX order, addresses and
 * ports, implicit MX, null MX, NXDOMAIN, caps), failures against fake servers in-process
 * (SERVFAIL, refused, timeout), address literals, deferred callbacks, dns_free. */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "outbound/dns.h"
#include "test.h"

/* ---- dnsmasq as a child process ---------------------------------------------------------- */

static const char *const zone[] = {
	"mx-host=multi.test,mx1.multi.test,10",
	"mx-host=multi.test,mx2.multi.test,20",
	"host-record=mx1.multi.test,127.0.0.2",
	"host-record=mx2.multi.test,127.0.0.3,::1",
	"host-record=implicit.test,127.0.0.4",
	"mx-host=nullmx.test,.,0",
	"mx-host=mixed.test,.,0",
	"mx-host=mixed.test,mx1.multi.test,10",
	"mx-host=partial.test,gone.test,5",
	"mx-host=partial.test,mx2.multi.test,10",
	"mx-host=noaddr.test,gone.test,5",
	"mx-host=noaddr.test,gone2.test,10",
	"txt-record=txtonly.test,no addresses here",
	"txt-record=split.txt.test,\"v=spf1 \",\"ip4:127.0.0.1 \",\"-all\"",
	"txt-record=two.txt.test,first",
	"txt-record=two.txt.test,second",
	"cname=alias.test,implicit.test",
	"mx-host=eq.test,a.eq.test,5",
	"mx-host=eq.test,b.eq.test,5",
	"host-record=a.eq.test,127.0.3.1",
	"host-record=b.eq.test,127.0.3.2",
};

static pid_t dnsmasq_pid = -1;
static char dnsmasq_servers[64];	/* "127.0.0.1:PORT" once it answers */
static char tmpdir[64];
static const char *skip_reason;

/* free_port - a port free on 127.0.0.1 for both UDP and TCP right now. */
static int free_port(void)
{
	for (int tries = 0; tries < 20; tries++) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		if (u < 0 || bind(u, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		    getsockname(u, (struct sockaddr *)&sin, &len) < 0) {
			if (u >= 0)
				close(u);
			continue;
		}
		int t = socket(AF_INET, SOCK_STREAM, 0);
		int ok = t >= 0 && bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		if (t >= 0)
			close(t);
		close(u);
		if (ok)
			return ntohs(sin.sin_port);
	}
	return -1;
}

/* dns_probe - one raw A query for implicit.test to port; true when any answer comes back. */
static bool dns_probe(int port)
{
	static const unsigned char q[] = {
		0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		8, 'i', 'm', 'p', 'l', 'i', 'c', 'i', 't', 4, 't', 'e', 's', 't', 0,
		0, 1, 0, 1,
	};
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return false;
	bool ok = false;
	ssize_t sent = sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sin, sizeof(sin));
	if (sent == (ssize_t)sizeof(q)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		unsigned char ans[512];
		if (poll(&p, 1, 100) == 1 && recv(fd, ans, sizeof(ans), 0) >= 12 &&
		    ans[0] == 0x12 && ans[1] == 0x34)
			ok = true;
	}
	close(fd);
	return ok;
}

/* find_dnsmasq - the dnsmasq binary, or NULL. */
static const char *find_dnsmasq(void)
{
	static const char *const paths[] = { "/usr/sbin/dnsmasq", "/usr/bin/dnsmasq",
					     "/usr/local/sbin/dnsmasq" };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	}
	return NULL;
}

static void stop_dnsmasq_now(void)
{
	if (dnsmasq_pid > 0) {
		kill(dnsmasq_pid, SIGTERM);
		waitpid(dnsmasq_pid, NULL, 0);
		dnsmasq_pid = -1;
	}
}

/* start_dnsmasq_on - write the zone, start dnsmasq on port; true once it answers. */
static bool start_dnsmasq_on(const char *bin, int port)
{
	char conf[128], log[128], portarg[32], confarg[160], logarg[160];
	snprintf(conf, sizeof(conf), "%s/dnsmasq.conf", tmpdir);
	snprintf(log, sizeof(log), "%s/dnsmasq.log", tmpdir);
	FILE *f = fopen(conf, "w");
	if (f == NULL)
		return false;
	fputs("no-resolv\nno-hosts\nlocal=/test/\n", f);
	for (size_t i = 0; i < sizeof(zone) / sizeof(zone[0]); i++)
		fprintf(f, "%s\n", zone[i]);
	/* twelve MX hosts (cap 10) and one host with ten A records (cap 8) */
	for (int i = 1; i <= 12; i++) {
		fprintf(f, "mx-host=many.test,mx%d.many.test,%d\n", i, i);
		fprintf(f, "host-record=mx%d.many.test,127.0.4.%d\n", i, i);
	}
	for (int i = 1; i <= 10; i++)
		fprintf(f, "address=/addrs.test/127.0.5.%d\n", i);
	if (fclose(f) != 0)
		return false;
	snprintf(portarg, sizeof(portarg), "--port=%d", port);
	snprintf(confarg, sizeof(confarg), "--conf-file=%s", conf);
	snprintf(logarg, sizeof(logarg), "--log-facility=%s", log);

	const char *argv[16];
	int n = 0;
	argv[n++] = bin;
	argv[n++] = "--keep-in-foreground";
	argv[n++] = confarg;
	argv[n++] = portarg;
	argv[n++] = "--listen-address=127.0.0.1";
	argv[n++] = "--bind-interfaces";
	argv[n++] = "--pid-file=";
	argv[n++] = logarg;
	argv[n++] = "--log-queries";
	if (geteuid() == 0)
		argv[n++] = "--user=root";	/* no need for a "dnsmasq" account */
	argv[n] = NULL;

	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);	/* dies with us even if we crash */
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	dnsmasq_pid = pid;
	/* ready when it answers, not after a sleep; give up after about 5 s */
	for (int i = 0; i < 50; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			dnsmasq_pid = -1;
			return false;
		}
		if (dns_probe(port)) {
			snprintf(dnsmasq_servers, sizeof(dnsmasq_servers), "127.0.0.1:%d", port);
			return true;
		}
	}
	stop_dnsmasq_now();
	return false;
}

/* start_dnsmasq - the first test: bring the server up (or decide to skip). */
static void start_dnsmasq(void)
{
	const char *bin = find_dnsmasq();
	if (bin == NULL) {
		skip_reason = "dnsmasq is not installed (scripts/deps.sh installs it)";
		return;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tern-test-dns.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		skip_reason = "cannot create a temporary directory";
		return;
	}
	for (int attempt = 0; attempt < 5; attempt++) {
		int port = free_port();
		if (port > 0 && start_dnsmasq_on(bin, port))
			return;
	}
	skip_reason = "dnsmasq did not start or answer";
	char log[128];
	snprintf(log, sizeof(log), "%s/dnsmasq.log", tmpdir);
	fprintf(stderr, "test_dns: dnsmasq failed; its log is %s\n", log);
}

/* stop_dnsmasq - the last test: kill the server, remove its files. */
static void stop_dnsmasq(void)
{
	char path[128];
	stop_dnsmasq_now();
	if (tmpdir[0] == '\0')
		return;
	snprintf(path, sizeof(path), "%s/dnsmasq.conf", tmpdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/dnsmasq.log", tmpdir);
	unlink(path);
	rmdir(tmpdir);
}

/* need_dnsmasq - false (with one "skipped" line) when dnsmasq could not be used. */
static bool need_dnsmasq(const char *test)
{
	if (skip_reason == NULL)
		return true;
	printf("skipped: %s: %s\n", test, skip_reason);
	return false;
}

/* ---- collecting results ------------------------------------------------------------------ */

#define MAX_RESULTS 64

/* A copy of one callback's result. */
struct got {
	int calls;
	double at;	/* CLOCK_MONOTONIC seconds of the call */
	enum dns_status status;
	char error[256];
	size_t n_hosts;
	char names[10][64];
	unsigned prefs[10];
	size_t n_addrs[10];
	char addrs[10][8][64];	/* "1.2.3.4:25" / "[::1]:25" */
};

static int total_calls;

/* got_cb - copy the result into the struct got ctx points at. */
static void got_cb(void *ctx, const struct dns_mx_result *r)
{
	struct got *g = ctx;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	g->at = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	g->calls++;
	total_calls++;
	g->status = r->status;
	snprintf(g->error, sizeof(g->error), "%s", r->error != NULL ? r->error : "");
	g->n_hosts = r->n_hosts;
	for (size_t i = 0; i < r->n_hosts && i < 10; i++) {
		const struct dns_host *h = &r->hosts[i];
		snprintf(g->names[i], sizeof(g->names[i]), "%s", h->name);
		g->prefs[i] = h->preference;
		g->n_addrs[i] = h->n_addrs;
		for (size_t j = 0; j < h->n_addrs && j < 8; j++) {
			char a[INET6_ADDRSTRLEN];
			const struct sockaddr_storage *ss = &h->addrs[j];
			if (ss->ss_family == AF_INET) {
				const struct sockaddr_in *sin = (const void *)ss;
				inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
				snprintf(g->addrs[i][j], sizeof(g->addrs[i][j]), "%s:%u%s", a,
					 ntohs(sin->sin_port),
					 h->addrlens[j] == sizeof(*sin) ? "" : " (bad len)");
			} else if (ss->ss_family == AF_INET6) {
				const struct sockaddr_in6 *sin6 = (const void *)ss;
				inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
				snprintf(g->addrs[i][j], sizeof(g->addrs[i][j]), "[%s]:%u%s", a,
					 ntohs(sin6->sin6_port),
					 h->addrlens[j] == sizeof(*sin6) ? "" : " (bad len)");
			} else {
				snprintf(g->addrs[i][j], sizeof(g->addrs[i][j]), "family %d",
					 ss->ss_family);
			}
		}
	}
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* run_until - run base until total_calls reaches want or secs pass; the elapsed seconds. */
static double run_until(struct event_base *base, int want, int secs)
{
	bool expired = false;
	struct timespec t0, t1;
	struct timeval tv = { secs, 0 };
	struct event *deadline = evtimer_new(base, deadline_cb, &expired);
	evtimer_add(deadline, &tv);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (total_calls < want && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	event_free(deadline);
	CHECK(!expired);
	return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

/* ---- the tests --------------------------------------------------------------------------- */

struct fixture {
	struct event_base *base;
	struct dns *dns;
};

/* fixture_open - a base and a resolver on servers; false (after a CHECK) on failure. */
static bool fixture_open(struct fixture *fx, const char *servers)
{
	char *error = NULL;
	fx->base = event_base_new();
	fx->dns = NULL;
	total_calls = 0;
	CHECK(fx->base != NULL);
	int r = dns_init(fx->base, servers, &fx->dns, &error);
	CHECK(r == 0);
	if (r != 0) {
		fprintf(stderr, "dns_init: %s\n", error);
		free(error);
		return false;
	}
	return true;
}

static void fixture_close(struct fixture *fx)
{
	dns_free(&fx->dns);
	CHECK(fx->dns == NULL);
	event_base_free(fx->base);
}

static void test_init_errors(void)
{
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	char *error = NULL;
	CHECK(dns_init(base, "not an address", &d, &error) == -1);
	CHECK(d == NULL && error != NULL && strstr(error, "not an address") != NULL);
	free(error);
	error = NULL;
	CHECK(dns_init(base, "", &d, &error) == -1);
	free(error);
	error = NULL;
	/* the system's resolv.conf: must at least initialise */
	CHECK(dns_init(base, NULL, &d, &error) == 0 && d != NULL);
	dns_free(&d);
	CHECK(d == NULL);
	dns_free(&d);	/* NULL is a no-op */
	CHECK(dns_init(base, "127.0.0.1:53,[::1]:5353", &d, &error) == 0);
	dns_free(&d);
	event_base_free(base);
}

static void test_mx_order_addresses_ports(void)
{
	struct fixture fx;
	struct got g = { 0 };
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	dns_lookup_mx(fx.dns, "multi.test", 2525, got_cb, &g);
	CHECK(g.calls == 0);	/* never synchronously */
	run_until(fx.base, 1, 20);
	CHECK(g.calls == 1);
	CHECK(g.status == DNS_OK);
	CHECK_STREQ(g.error, "");
	CHECK(g.n_hosts == 2);
	CHECK_STREQ(g.names[0], "mx1.multi.test");
	CHECK(g.prefs[0] == 10);
	CHECK(g.n_addrs[0] == 1);
	CHECK_STREQ(g.addrs[0][0], "127.0.0.2:2525");
	CHECK_STREQ(g.names[1], "mx2.multi.test");
	CHECK(g.prefs[1] == 20);
	CHECK(g.n_addrs[1] == 2);
	CHECK_STREQ(g.addrs[1][0], "127.0.0.3:2525");	/* IPv4 first */
	CHECK_STREQ(g.addrs[1][1], "[::1]:2525");
	fixture_close(&fx);
}

static void test_implicit_mx(void)
{
	struct fixture fx;
	struct got g = { 0 }, alias = { 0 };
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	dns_lookup_mx(fx.dns, "implicit.test", 25, got_cb, &g);
	dns_lookup_mx(fx.dns, "alias.test", 25, got_cb, &alias);	/* CNAME to implicit.test */
	CHECK(g.calls == 0 && alias.calls == 0);
	run_until(fx.base, 2, 20);
	CHECK(g.calls == 1);
	CHECK(g.status == DNS_OK);
	CHECK(g.n_hosts == 1);
	CHECK_STREQ(g.names[0], "implicit.test");
	CHECK(g.prefs[0] == 0);
	CHECK(g.n_addrs[0] == 1);
	CHECK_STREQ(g.addrs[0][0], "127.0.0.4:25");
	CHECK(alias.calls == 1);
	if (alias.status != DNS_OK)
		fprintf(stderr, "alias: %d %s\n", alias.status, alias.error);
	CHECK(alias.status == DNS_OK);
	CHECK(alias.n_hosts == 1);
	CHECK_STREQ(alias.names[0], "alias.test");
	CHECK_STREQ(alias.addrs[0][0], "127.0.0.4:25");
	fixture_close(&fx);
}

static void test_null_mx_and_nxdomain(void)
{
	struct fixture fx;
	struct got null = { 0 }, mixed = { 0 }, nx = { 0 }, bad = { 0 };
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	dns_lookup_mx(fx.dns, "nullmx.test", 25, got_cb, &null);
	dns_lookup_mx(fx.dns, "mixed.test", 25, got_cb, &mixed);
	dns_lookup_mx(fx.dns, "nx.test", 25, got_cb, &nx);
	/* a label longer than 63 octets cannot be sent at all */
	dns_lookup_mx(fx.dns,
		      "a234567890123456789012345678901234567890123456789012345678901234.test", 25,
		      got_cb, &bad);
	CHECK(total_calls == 0);
	run_until(fx.base, 4, 20);
	CHECK(null.calls == 1);
	CHECK(null.status == DNS_NULL_MX);
	CHECK(null.n_hosts == 0);
	CHECK(strstr(null.error, "null MX") != NULL);
	/* a "." next to a real MX is ignored */
	CHECK(mixed.status == DNS_OK);
	CHECK(mixed.n_hosts == 1);
	CHECK_STREQ(mixed.names[0], "mx1.multi.test");
	CHECK(nx.calls == 1);
	CHECK(nx.status == DNS_NXDOMAIN);
	CHECK(nx.n_hosts == 0);
	CHECK(strstr(nx.error, "nx.test") != NULL);
	CHECK(bad.calls == 1);
	CHECK(bad.status == DNS_NXDOMAIN);
	fixture_close(&fx);
}

static void test_no_address(void)
{
	struct fixture fx;
	struct got partial = { 0 }, noaddr = { 0 }, txtonly = { 0 };
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	dns_lookup_mx(fx.dns, "partial.test", 25, got_cb, &partial);
	dns_lookup_mx(fx.dns, "noaddr.test", 25, got_cb, &noaddr);
	dns_lookup_mx(fx.dns, "txtonly.test", 25, got_cb, &txtonly);
	run_until(fx.base, 3, 20);
	/* the MX host without an address is left out, the other one kept */
	CHECK(partial.status == DNS_OK);
	CHECK(partial.n_hosts == 1);
	CHECK_STREQ(partial.names[0], "mx2.multi.test");
	CHECK(partial.prefs[0] == 10);
	/* every MX host NXDOMAIN: permanent */
	CHECK(noaddr.status == DNS_NO_ADDRESS);
	CHECK(noaddr.n_hosts == 0);
	CHECK(strstr(noaddr.error, "noaddr.test") != NULL);
	/* the domain exists (TXT) without MX or address: implicit MX unusable */
	CHECK(txtonly.status == DNS_NO_ADDRESS);
	CHECK(strstr(txtonly.error, "no MX") != NULL);
	fixture_close(&fx);
}

static void test_caps(void)
{
	struct fixture fx;
	struct got many = { 0 }, addrs = { 0 };
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	dns_lookup_mx(fx.dns, "many.test", 25, got_cb, &many);
	dns_lookup_host(fx.dns, "addrs.test", 587, got_cb, &addrs);
	run_until(fx.base, 2, 20);
	CHECK(many.status == DNS_OK);
	CHECK(many.n_hosts == 10);
	for (size_t i = 0; i < 10; i++) {
		char want[32];
		snprintf(want, sizeof(want), "mx%zu.many.test", i + 1);
		CHECK_STREQ(many.names[i], want);
		CHECK(many.prefs[i] == i + 1);
		snprintf(want, sizeof(want), "127.0.4.%zu:25", i + 1);
		CHECK_STREQ(many.addrs[i][0], want);
	}
	CHECK(addrs.status == DNS_OK);
	CHECK(addrs.n_hosts == 1);
	CHECK(addrs.n_addrs[0] == 8);
	CHECK(strncmp(addrs.addrs[0][7], "127.0.5.", 8) == 0);
	fixture_close(&fx);
}

/* equal preferences come in both orders over many lookups (each order has p = 1/2) */
static void test_equal_preference_shuffled(void)
{
	struct fixture fx;
	static struct got g[24];
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	memset(g, 0, sizeof(g));
	for (size_t i = 0; i < 24; i++)
		dns_lookup_mx(fx.dns, "eq.test", 25, got_cb, &g[i]);
	run_until(fx.base, 24, 20);
	int a_first = 0, b_first = 0;
	for (size_t i = 0; i < 24; i++) {
		CHECK(g[i].status == DNS_OK && g[i].n_hosts == 2);
		CHECK(g[i].prefs[0] == 5 && g[i].prefs[1] == 5);
		if (strcmp(g[i].names[0], "a.eq.test") == 0 &&
		    strcmp(g[i].names[1], "b.eq.test") == 0)
			a_first++;
		else if (strcmp(g[i].names[0], "b.eq.test") == 0 &&
			 strcmp(g[i].names[1], "a.eq.test") == 0)
			b_first++;
	}
	CHECK(a_first + b_first == 24);
	CHECK(a_first > 0 && b_first > 0);
	fixture_close(&fx);
}

static void test_lookup_host(void)
{
	struct fixture fx;
	struct got both = { 0 }, nx = { 0 }, none = { 0 }, lit4 = { 0 }, lit6 = { 0 };
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	dns_lookup_host(fx.dns, "mx2.multi.test", 10025, got_cb, &both);
	dns_lookup_host(fx.dns, "nx.test", 25, got_cb, &nx);
	dns_lookup_host(fx.dns, "txtonly.test", 25, got_cb, &none);
	dns_lookup_host(fx.dns, "127.0.0.9", 2526, got_cb, &lit4);
	dns_lookup_host(fx.dns, "[::1]", 2527, got_cb, &lit6);
	CHECK(total_calls == 0);
	run_until(fx.base, 5, 20);
	CHECK(both.status == DNS_OK && both.n_hosts == 1);
	CHECK_STREQ(both.names[0], "mx2.multi.test");
	CHECK(both.prefs[0] == 0);
	CHECK(both.n_addrs[0] == 2);
	CHECK_STREQ(both.addrs[0][0], "127.0.0.3:10025");
	CHECK_STREQ(both.addrs[0][1], "[::1]:10025");
	CHECK(nx.status == DNS_NXDOMAIN);
	CHECK(none.status == DNS_NO_ADDRESS);
	CHECK(lit4.status == DNS_OK && lit4.n_hosts == 1 && lit4.n_addrs[0] == 1);
	CHECK_STREQ(lit4.names[0], "127.0.0.9");
	CHECK_STREQ(lit4.addrs[0][0], "127.0.0.9:2526");
	CHECK(lit6.status == DNS_OK && lit6.n_addrs[0] == 1);
	CHECK_STREQ(lit6.addrs[0][0], "[::1]:2527");
	fixture_close(&fx);
}

/* literals need no server at all: the resolver points at a port where nothing listens */
static void test_address_literals(void)
{
	struct fixture fx;
	struct got v4 = { 0 }, v6 = { 0 }, v6b = { 0 }, bad = { 0 }, bad6 = { 0 }, empty = { 0 };
	if (!fixture_open(&fx, "127.0.0.1:1"))
		return;
	dns_lookup_mx(fx.dns, "[192.0.2.7]", 25, got_cb, &v4);
	dns_lookup_mx(fx.dns, "[IPv6:2001:db8::1]", 465, got_cb, &v6);
	dns_lookup_mx(fx.dns, "[ipv6:::1]", 26, got_cb, &v6b);
	dns_lookup_mx(fx.dns, "[not.an.address]", 25, got_cb, &bad);
	dns_lookup_mx(fx.dns, "[IPv6:192.0.2.7]", 25, got_cb, &bad6);
	dns_lookup_mx(fx.dns, "", 25, got_cb, &empty);
	CHECK(total_calls == 0);	/* even a literal is answered from the loop */
	run_until(fx.base, 6, 5);
	CHECK(v4.status == DNS_OK && v4.n_hosts == 1 && v4.n_addrs[0] == 1);
	CHECK_STREQ(v4.names[0], "192.0.2.7");
	CHECK_STREQ(v4.addrs[0][0], "192.0.2.7:25");
	CHECK(v6.status == DNS_OK && v6.n_hosts == 1);
	CHECK_STREQ(v6.names[0], "2001:db8::1");
	CHECK_STREQ(v6.addrs[0][0], "[2001:db8::1]:465");
	CHECK(v6b.status == DNS_OK);
	CHECK_STREQ(v6b.addrs[0][0], "[::1]:26");
	CHECK(bad.status == DNS_NXDOMAIN && bad.n_hosts == 0);
	CHECK(strstr(bad.error, "literal") != NULL);
	CHECK(bad6.status == DNS_NXDOMAIN);
	CHECK(empty.status == DNS_NXDOMAIN);
	fixture_close(&fx);
}

/* fake_servfail - an in-process DNS server that answers every query with SERVFAIL. */
static void fake_servfail(evutil_socket_t fd, short what, void *arg)
{
	unsigned char pkt[512];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	(void)what;
	(void)arg;
	ssize_t n = recvfrom(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&from, &fromlen);
	if (n < 12)
		return;
	pkt[2] = (unsigned char)((pkt[2] & 0x79) | 0x80);	/* QR, keep opcode and RD */
	pkt[3] = 0x82;						/* RA, rcode 2 SERVFAIL */
	(void)sendto(fd, pkt, (size_t)n, 0, (struct sockaddr *)&from, fromlen);
}

/* udp_socket - a UDP socket bound to a free port on 127.0.0.1; its port in *port_r. */
static int udp_socket(int *port_r)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port_r = ntohs(sin.sin_port);
	return fd;
}

/* SERVFAIL, refused (ICMP port unreachable) and silence all end in DNS_TEMPFAIL; the
 * three run side by side so the test costs one timeout (3 s + 6 s in c-ares' rounds). */
static void test_tempfail(void)
{
	struct fixture sf, rf, to;
	struct got servfail = { 0 }, servfail_host = { 0 }, refused = { 0 }, timeout = { 0 };
	char servers[64];
	int sf_port, silent_port, closed_port;
	int sf_fd = udp_socket(&sf_port);
	int silent_fd = udp_socket(&silent_port);	/* bound, never read: no answer */
	int closed_fd = udp_socket(&closed_port);
	CHECK(sf_fd >= 0 && silent_fd >= 0 && closed_fd >= 0);
	if (sf_fd < 0 || silent_fd < 0 || closed_fd < 0)
		return;
	close(closed_fd);	/* now nothing listens there */

	snprintf(servers, sizeof(servers), "127.0.0.1:%d", sf_port);
	if (!fixture_open(&sf, servers))
		return;
	struct event *fake = event_new(sf.base, sf_fd, EV_READ | EV_PERSIST, fake_servfail, NULL);
	event_add(fake, NULL);
	/* the other two resolvers share sf's base so one loop drives all three */
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", closed_port);
	char *error = NULL;
	rf.base = to.base = NULL;
	CHECK(dns_init(sf.base, servers, &rf.dns, &error) == 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", silent_port);
	CHECK(dns_init(sf.base, servers, &to.dns, &error) == 0);

	dns_lookup_mx(sf.dns, "example.test", 25, got_cb, &servfail);
	dns_lookup_host(sf.dns, "host.example.test", 25, got_cb, &servfail_host);
	dns_lookup_mx(rf.dns, "example.test", 25, got_cb, &refused);
	dns_lookup_mx(to.dns, "example.test", 25, got_cb, &timeout);
	CHECK(total_calls == 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	double start = (double)t0.tv_sec + (double)t0.tv_nsec / 1e9;
	double secs = run_until(sf.base, 4, 30);
	/* an answer, even a refusal, ends the lookup at once; only silence takes the timeout */
	CHECK(servfail.at - start < 2.0);
	CHECK(servfail_host.at - start < 2.0);
	CHECK(refused.at - start < 2.0);
	/* c-ares 1.18 reports a SERVFAIL it retried as ARES_ECONNREFUSED ("Could not contact
	 * DNS servers"), so the text cannot tell SERVFAIL from refused; the status is right */
	CHECK(strstr(servfail.error, "failed") != NULL);
	CHECK(servfail.status == DNS_TEMPFAIL && servfail.n_hosts == 0);
	CHECK(strstr(servfail.error, "example.test") != NULL);
	CHECK(servfail_host.status == DNS_TEMPFAIL);
	CHECK(refused.status == DNS_TEMPFAIL);
	CHECK(timeout.calls == 1 && timeout.status == DNS_TEMPFAIL);
	CHECK(secs >= 5.0 && secs < 15.0);	/* about 3 s + 6 s */
	printf("test_dns: SERVFAIL: %s\n", servfail.error);
	printf("test_dns: refused: %s\n", refused.error);
	printf("test_dns: timeout after %.1f s: %s\n", secs, timeout.error);

	dns_free(&rf.dns);
	dns_free(&to.dns);
	event_free(fake);
	close(sf_fd);
	close(silent_fd);
	fixture_close(&sf);
}

/* open_silent - a fixture whose server never answers; its socket, or -1 (after a CHECK). */
static int open_silent(struct fixture *fx)
{
	int port;
	int silent_fd = udp_socket(&port);
	char servers[64];
	CHECK(silent_fd >= 0);
	if (silent_fd < 0)
		return -1;
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
	if (!fixture_open(fx, servers)) {
		close(silent_fd);
		return -1;
	}
	return silent_fd;
}

/* dns_free with lookups in flight: the pending one is cancelled, the finished-but-undelivered
 * one gets its result, both from inside dns_free */
static void test_free_pending(void)
{
	struct fixture fx;
	struct got pending = { 0 }, host = { 0 }, literal = { 0 };
	int silent_fd = open_silent(&fx);
	if (silent_fd < 0)
		return;
	dns_lookup_mx(fx.dns, "example.test", 25, got_cb, &pending);
	dns_lookup_host(fx.dns, "mx.example.test", 25, got_cb, &host);
	dns_lookup_mx(fx.dns, "[192.0.2.1]", 25, got_cb, &literal);
	CHECK(total_calls == 0);	/* the queries went out; nothing answers */
	dns_free(&fx.dns);
	CHECK(fx.dns == NULL);
	CHECK(pending.calls == 1 && pending.status == DNS_TEMPFAIL);
	CHECK_STREQ(pending.error, "cancelled");
	CHECK(host.calls == 1 && host.status == DNS_TEMPFAIL);
	CHECK(literal.calls == 1 && literal.status == DNS_OK && literal.n_hosts == 1);
	/* nothing of the resolver is left in the base */
	CHECK(event_base_loop(fx.base, EVLOOP_NONBLOCK) == 1);
	event_base_free(fx.base);
	close(silent_fd);
}

struct free_inside {
	struct dns **dns;
	struct got *other;
	int calls;
	int other_calls_seen;
};

/* free_in_cb - a callback that frees the resolver it was called from. */
static void free_in_cb(void *ctx, const struct dns_mx_result *r)
{
	struct free_inside *fi = ctx;
	fi->calls++;
	total_calls++;
	CHECK(r->status == DNS_OK);
	dns_free(fi->dns);
	fi->other_calls_seen = fi->other->calls;
}

static void test_free_from_callback(void)
{
	struct fixture fx;
	struct got pending = { 0 };
	int silent_fd = open_silent(&fx);
	if (silent_fd < 0)
		return;
	struct free_inside fi = { &fx.dns, &pending, 0, 0 };
	dns_lookup_mx(fx.dns, "example.test", 25, got_cb, &pending);
	dns_lookup_mx(fx.dns, "[192.0.2.1]", 25, free_in_cb, &fi);
	run_until(fx.base, 2, 5);
	CHECK(fi.calls == 1);
	CHECK(fi.other_calls_seen == 1);	/* cancelled from inside dns_free */
	CHECK(pending.calls == 1 && pending.status == DNS_TEMPFAIL);
	CHECK(fx.dns == NULL);
	/* the base is empty: dispatch returns at once */
	CHECK(event_base_dispatch(fx.base) == 1);
	event_base_free(fx.base);
	close(silent_fd);
}

/* the callback may start a new lookup on the same resolver (delivery is deferred) */
struct chain {
	struct dns *dns;
	struct got second;
	int calls;
};

static void chain_cb(void *ctx, const struct dns_mx_result *r)
{
	struct chain *c = ctx;
	c->calls++;
	total_calls++;
	CHECK(r->status == DNS_OK);
	dns_lookup_mx(c->dns, "multi.test", 25, got_cb, &c->second);
	CHECK(c->second.calls == 0);
}

static void test_lookup_from_callback(void)
{
	struct fixture fx;
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	struct chain c;
	memset(&c, 0, sizeof(c));
	c.dns = fx.dns;
	dns_lookup_mx(fx.dns, "implicit.test", 25, chain_cb, &c);
	run_until(fx.base, 2, 20);
	CHECK(c.calls == 1);
	CHECK(c.second.calls == 1 && c.second.status == DNS_OK && c.second.n_hosts == 2);
	fixture_close(&fx);
}

/* ---- dns_query and dns_lookup_txt ---- */

#define TXT_MAX 4
struct got_txt {
	int calls;
	enum dns_answer_status status;
	size_t n;
	char txts[TXT_MAX][128];
};

static void got_txt_cb(void *ctx, const struct dns_txt_result *r)
{
	struct got_txt *g = ctx;
	g->calls++;
	total_calls++;
	g->status = r->status;
	g->n = r->n;
	CHECK((r->status == DNS_ANSWER_OK) == (r->error == NULL));
	for (size_t i = 0; i < r->n && i < TXT_MAX; i++)
		snprintf(g->txts[i], sizeof(g->txts[i]), "%s", r->txts[i]);
}

struct got_answer {
	int calls;
	enum dns_answer_status status;
	char addr[64];
};

static void got_answer_cb(void *ctx, const struct dns_answer *a)
{
	struct got_answer *g = ctx;
	g->calls++;
	total_calls++;
	g->status = a->status;
	struct hostent *he = NULL;
	if (a->status == DNS_ANSWER_OK && ares_parse_a_reply(a->abuf, a->alen, &he, NULL, NULL) ==
						       ARES_SUCCESS) {
		inet_ntop(AF_INET, he->h_addr_list[0], g->addr, sizeof(g->addr));
		ares_free_hostent(he);
	}
}

/* TXT: strings of one record joined, several records, NODATA, NXDOMAIN; a raw A query */
static void test_txt_and_query(void)
{
	struct fixture fx;
	struct got_txt one = { 0 }, split = { 0 }, two = { 0 }, nodata = { 0 }, nx = { 0 },
		       empty = { 0 };
	struct got_answer a = { 0 };
	if (!need_dnsmasq(__func__) || !fixture_open(&fx, dnsmasq_servers))
		return;
	dns_lookup_txt(fx.dns, "txtonly.test", got_txt_cb, &one);
	dns_lookup_txt(fx.dns, "split.txt.test", got_txt_cb, &split);
	dns_lookup_txt(fx.dns, "two.txt.test", got_txt_cb, &two);
	dns_lookup_txt(fx.dns, "implicit.test", got_txt_cb, &nodata);
	dns_lookup_txt(fx.dns, "nothing.test", got_txt_cb, &nx);
	dns_lookup_txt(fx.dns, "", got_txt_cb, &empty);
	dns_query(fx.dns, "implicit.test", ns_t_a, got_answer_cb, &a);
	CHECK(total_calls == 0);	/* never synchronously */
	run_until(fx.base, 7, 20);
	CHECK(one.calls == 1 && one.status == DNS_ANSWER_OK && one.n == 1);
	CHECK_STREQ(one.txts[0], "no addresses here");
	CHECK(split.calls == 1 && split.status == DNS_ANSWER_OK && split.n == 1);
	CHECK_STREQ(split.txts[0], "v=spf1 ip4:127.0.0.1 -all");
	CHECK(two.calls == 1 && two.status == DNS_ANSWER_OK && two.n == 2);
	CHECK((strcmp(two.txts[0], "first") == 0 && strcmp(two.txts[1], "second") == 0) ||
	      (strcmp(two.txts[0], "second") == 0 && strcmp(two.txts[1], "first") == 0));
	CHECK(nodata.calls == 1 && nodata.status == DNS_ANSWER_NODATA && nodata.n == 0);
	CHECK(nx.calls == 1 && nx.status == DNS_ANSWER_NXDOMAIN && nx.n == 0);
	CHECK(empty.calls == 1 && empty.status == DNS_ANSWER_NXDOMAIN);
	CHECK(a.calls == 1 && a.status == DNS_ANSWER_OK);
	CHECK_STREQ(a.addr, "127.0.0.4");
	fixture_close(&fx);
}

/* a TXT lookup in flight when the resolver is freed: cancelled, from inside dns_free */
static void test_txt_cancelled(void)
{
	struct fixture fx;
	struct got_txt t = { 0 };
	int silent_fd = open_silent(&fx);
	if (silent_fd < 0)
		return;
	dns_lookup_txt(fx.dns, "example.test", got_txt_cb, &t);
	dns_free(&fx.dns);
	CHECK(t.calls == 1 && t.status == DNS_ANSWER_TEMPFAIL && t.n == 0);
	event_base_free(fx.base);
	close(silent_fd);
}

TEST_MAIN(TEST(start_dnsmasq), TEST(test_init_errors), TEST(test_mx_order_addresses_ports),
	  TEST(test_implicit_mx), TEST(test_null_mx_and_nxdomain), TEST(test_no_address),
	  TEST(test_caps), TEST(test_equal_preference_shuffled), TEST(test_lookup_host),
	  TEST(test_address_literals), TEST(test_tempfail), TEST(test_free_pending),
	  TEST(test_free_from_callback), TEST(test_lookup_from_callback), TEST(test_txt_and_query),
	  TEST(test_txt_cancelled), TEST(stop_dnsmasq))
