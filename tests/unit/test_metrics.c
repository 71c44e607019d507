/* test_metrics - shared-memory slots, summing, a dead process's counters, histogram buckets
 * and the Prometheus text format of metrics_render */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <event2/buffer.h>

#include "lib/metrics.h"
#include "test.h"

/* render - metrics_render into a NUL-terminated string (caller frees) */
static char *render(void)
{
	struct evbuffer *b = evbuffer_new();
	metrics_render(b);
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

/* value - the value of the series line "series value", or -1 when absent */
static double value(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

/* name_ok - [a-zA-Z_:][a-zA-Z0-9_:]* */
static bool name_ok(const char *p, size_t n)
{
	if (n == 0 || isdigit((unsigned char)p[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != ':')
			return false;
	return true;
}

/* check_format - every line a "# HELP", "# TYPE" or "name[{labels}] value" line of text
 * format 0.0.4; a family's HELP and TYPE come before its samples; counters end in _total;
 * histogram samples are _bucket (with le), _sum and _count; the text ends with a newline */
static void check_format(const char *text)
{
	char family[128] = "", type[16] = "";
	bool help_seen = false;
	size_t len = strlen(text);
	CHECK(len > 0 && text[len - 1] == '\n');
	for (const char *p = text; *p != '\0';) {
		const char *e = strchr(p, '\n');
		if (e == NULL)
			break;
		char line[512];
		size_t n = (size_t)(e - p);
		CHECK(n < sizeof(line));
		if (n >= sizeof(line))
			return;
		memcpy(line, p, n);
		line[n] = '\0';
		p = e + 1;
		if (strncmp(line, "# HELP ", 7) == 0) {
			const char *sp = strchr(line + 7, ' ');
			CHECK(sp != NULL && sp[1] != '\0');
			if (sp == NULL)
				return;
			CHECK(name_ok(line + 7, (size_t)(sp - (line + 7))));
			snprintf(family, sizeof(family), "%.*s", (int)(sp - (line + 7)), line + 7);
			help_seen = true;
			type[0] = '\0';
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			size_t fl = strlen(family);
			CHECK(help_seen && strncmp(line + 7, family, fl) == 0 && line[7 + fl] == ' ');
			snprintf(type, sizeof(type), "%s", line + 8 + fl);
			CHECK(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
			      strcmp(type, "histogram") == 0);
			if (strcmp(type, "counter") == 0) {
				CHECK(fl > 6 && strcmp(family + fl - 6, "_total") == 0);
			} else {
				CHECK(fl <= 6 || strcmp(family + fl - 6, "_total") != 0);
			}
			continue;
		}
		CHECK(line[0] != '#' && type[0] != '\0');
		/* a sample of the current family */
		size_t nl = strcspn(line, "{ ");
		CHECK(name_ok(line, nl));
		size_t fl = strlen(family);
		CHECK(strncmp(line, family, fl) == 0);
		const char *suffix = line + fl;
		if (strcmp(type, "histogram") == 0) {
			CHECK(strncmp(suffix, "_bucket{le=\"", 12) == 0 || strncmp(suffix, "_sum ", 5) == 0 ||
			      strncmp(suffix, "_count ", 7) == 0);
		} else {
			CHECK(*suffix == ' ' || *suffix == '{');
		}
		const char *v = line + nl;
		if (*v == '{') {
			/* label="value"(,label="value")* } */
			const char *q = v + 1;
			for (;;) {
				size_t ln = strcspn(q, "=");
				CHECK(name_ok(q, ln) && q[ln] == '=' && q[ln + 1] == '"');
				q += ln + 2;
				const char *close = strchr(q, '"');
				CHECK(close != NULL);
				if (close == NULL)
					return;
				q = close + 1;
				if (*q == ',') {
					q++;
					continue;
				}
				CHECK(*q == '}');
				break;
			}
			v = q + 1;
		}
		CHECK(*v == ' ');
		char *end;
		strtod(v + 1, &end);
		CHECK(end != v + 1 && *end == '\0');
	}
}

/* before metrics_init (or in a process that did not join): calls are no-ops, the text is
 * complete with zeros */
static void test_no_table(void)
{
	metrics_count(METRICS_RELAYED);
	metrics_gauge_add(METRICS_IMAP_IDLE, 3);
	metrics_observe(METRICS_DELIVERY_DELAY, 10);
	CHECK(metrics_join() == -1);
	char *t = render();
	check_format(t);
	CHECK(value(t, "tern_recipients_relayed_total") == 0);
	CHECK(value(t, "tern_imap_idle_sessions") == 0);
	CHECK(value(t, "tern_delivery_delay_seconds_count") == 0);
	CHECK(value(t, "tern_processes") == 0);
	free(t);
}

/* a joined process that never counted: all there, all zero, and the format holds */
static void test_format(void)
{
	CHECK(metrics_init() == 0);
	metrics_count(METRICS_RELAYED);		/* not joined yet: nothing */
	CHECK(metrics_join() == 0);
	char *t = render();
	check_format(t);
	CHECK(strstr(t, "# HELP tern_sessions_total ") != NULL);
	CHECK(strstr(t, "# TYPE tern_sessions_total counter\n") != NULL);
	CHECK(strstr(t, "# TYPE tern_connections gauge\n") != NULL);
	CHECK(strstr(t, "# TYPE tern_delivery_delay_seconds histogram\n") != NULL);
	CHECK(value(t, "tern_sessions_total{protocol=\"imap\"}") == 0);
	CHECK(value(t, "tern_logins_total{protocol=\"pop3\",result=\"failed\"}") == 0);
	CHECK(value(t, "tern_tls_handshakes_total{direction=\"inbound\",result=\"ok\"}") == 0);
	CHECK(value(t, "tern_queue_recipients{state=\"deferred\"}") == 0);
	CHECK(value(t, "tern_smtp_transaction_seconds_bucket{le=\"+Inf\"}") == 0);
	CHECK(value(t, "tern_smtp_transaction_seconds_sum") == 0);
	CHECK(value(t, "tern_recipients_relayed_total") == 0);
	CHECK(value(t, "tern_processes") == 1);
	/* messages come in on SMTP roles only: no pop3/imap series */
	CHECK(value(t, "tern_messages_received_total{protocol=\"submission\"}") == 0);
	CHECK(value(t, "tern_messages_received_total{protocol=\"imap\"}") == -1);
	free(t);
}

/* every slot counts; the text shows the sums; labels pick the right series */
static void test_sum_over_slots(void)
{
	CHECK(metrics_init() == 0);
	CHECK(metrics_join_pid(1001) == 0);
	metrics_count(METRICS_SESSIONS + METRICS_IMAP);
	metrics_count(METRICS_SESSIONS + METRICS_IMAP);
	metrics_count(METRICS_LOGINS + 3 * METRICS_POP3 + METRICS_LOGIN_FAILED);
	metrics_gauge_add(METRICS_CONNECTIONS + METRICS_IMAP, 2);
	metrics_gauge_add(METRICS_CONNECTIONS + METRICS_IMAP, -1);
	CHECK(metrics_join_pid(1002) == 0);
	metrics_count(METRICS_SESSIONS + METRICS_IMAP);
	metrics_count_n(METRICS_RELAYED, 40);
	metrics_count(METRICS_RECEIVED + METRICS_SUBMISSION);
	metrics_gauge_add(METRICS_CONNECTIONS + METRICS_IMAP, 5);
	metrics_gauge_set(METRICS_QUEUE_DEFERRED, 7);
	metrics_count(METRICS_TLS_OUT_FAILED);
	CHECK(metrics_counter_total(METRICS_SESSIONS + METRICS_IMAP) == 3);
	char *t = render();
	check_format(t);
	CHECK(value(t, "tern_sessions_total{protocol=\"imap\"}") == 3);
	CHECK(value(t, "tern_sessions_total{protocol=\"pop3\"}") == 0);
	CHECK(value(t, "tern_logins_total{protocol=\"pop3\",result=\"failed\"}") == 1);
	CHECK(value(t, "tern_logins_total{protocol=\"pop3\",result=\"ok\"}") == 0);
	CHECK(value(t, "tern_logins_total{protocol=\"imap\",result=\"failed\"}") == 0);
	CHECK(value(t, "tern_recipients_relayed_total") == 40);
	CHECK(value(t, "tern_messages_received_total{protocol=\"submission\"}") == 1);
	CHECK(value(t, "tern_messages_received_total{protocol=\"smtp\"}") == 0);
	CHECK(value(t, "tern_connections{protocol=\"imap\"}") == 6);
	CHECK(value(t, "tern_queue_recipients{state=\"deferred\"}") == 7);
	CHECK(value(t, "tern_tls_handshakes_total{direction=\"outbound\",result=\"failed\"}") == 1);
	CHECK(value(t, "tern_tls_handshakes_total{direction=\"outbound\",result=\"ok\"}") == 0);
	CHECK(value(t, "tern_processes") == 2);
	free(t);
}

/* a process that dies: its gauges go, its counters stay and the next process of the slot
 * goes on from them; a process that joins twice keeps its slot */
static void test_dead_process(void)
{
	CHECK(metrics_init() == 0);
	CHECK(metrics_join_pid(2001) == 0);
	metrics_count_n(METRICS_DELIVERED_LOCAL, 5);
	metrics_gauge_add(METRICS_IMAP_IDLE, 4);
	metrics_observe(METRICS_SMTP_TRANSACTION, 1000);
	CHECK(metrics_join_pid(2002) == 0);
	metrics_count_n(METRICS_DELIVERED_LOCAL, 2);
	metrics_gauge_add(METRICS_IMAP_IDLE, 1);
	CHECK(metrics_gauge_total(METRICS_IMAP_IDLE) == 5);

	metrics_child_gone(2001);	/* SIGKILL: the master reaps it */
	metrics_child_gone(9999);	/* held no slot: nothing */
	CHECK(metrics_gauge_total(METRICS_IMAP_IDLE) == 1);
	CHECK(metrics_counter_total(METRICS_DELIVERED_LOCAL) == 7);
	char *t = render();
	CHECK(value(t, "tern_processes") == 1);
	CHECK(value(t, "tern_smtp_transaction_seconds_count") == 1);
	free(t);

	/* the replacement takes the first free slot (2001's) and its counters go on */
	CHECK(metrics_join_pid(2003) == 0);
	metrics_count(METRICS_DELIVERED_LOCAL);
	metrics_gauge_add(METRICS_IMAP_IDLE, 1);
	CHECK(metrics_counter_total(METRICS_DELIVERED_LOCAL) == 8);
	CHECK(metrics_gauge_total(METRICS_IMAP_IDLE) == 2);
	/* joining again with the same pid is the same slot */
	CHECK(metrics_join_pid(2002) == 0);
	metrics_gauge_add(METRICS_IMAP_IDLE, 1);
	metrics_child_gone(2002);
	CHECK(metrics_gauge_total(METRICS_IMAP_IDLE) == 1);
	CHECK(metrics_counter_total(METRICS_DELIVERED_LOCAL) == 8);
	t = render();
	check_format(t);
	CHECK(value(t, "tern_recipients_delivered_local_total") == 8);
	CHECK(value(t, "tern_imap_idle_sessions") == 1);
	CHECK(value(t, "tern_processes") == 1);
	free(t);
}

/* buckets are "less or equal", cumulative; +Inf and _count are every observation; _sum in
 * seconds */
static void test_histogram(void)
{
	CHECK(metrics_init() == 0);
	CHECK(metrics_join_pid(3001) == 0);
	metrics_observe(METRICS_SMTP_TRANSACTION, 0);		/* le 0.005 */
	metrics_observe(METRICS_SMTP_TRANSACTION, 5000);	/* exactly 0.005: le 0.005 */
	metrics_observe(METRICS_SMTP_TRANSACTION, 5001);	/* le 0.01 */
	metrics_observe(METRICS_SMTP_TRANSACTION, 2000000);	/* le 2.5 */
	CHECK(metrics_join_pid(3002) == 0);
	metrics_observe(METRICS_SMTP_TRANSACTION, 400000000);	/* 400 s: +Inf only */
	metrics_observe(METRICS_DELIVERY_DELAY, 90000000);	/* 90 s: le 300 */
	char *t = render();
	check_format(t);
	const char *h = "tern_smtp_transaction_seconds";
	char k[128];
#define B(le) (snprintf(k, sizeof(k), "%s_bucket{le=\"%s\"}", h, le), value(t, k))
	CHECK(B("0.005") == 2);
	CHECK(B("0.01") == 3);
	CHECK(B("1") == 3);
	CHECK(B("2.5") == 4);
	CHECK(B("300") == 4);
	CHECK(B("+Inf") == 5);
	snprintf(k, sizeof(k), "%s_count", h);
	CHECK(value(t, k) == 5);
	snprintf(k, sizeof(k), "%s_sum", h);
	CHECK(strstr(t, "tern_smtp_transaction_seconds_sum 402.010001\n") != NULL);
	h = "tern_delivery_delay_seconds";
	CHECK(B("60") == 0);
	CHECK(B("300") == 1);
	CHECK(B("432000") == 1);
	CHECK(B("+Inf") == 1);
	CHECK(strstr(t, "tern_delivery_delay_seconds_sum 90.000000\n") != NULL);
#undef B
	/* the buckets of a family are in increasing order of le, +Inf last */
	const char *p = strstr(t, "tern_delivery_delay_seconds_bucket");
	double last = -1;
	while (p != NULL && strncmp(p, "tern_delivery_delay_seconds_bucket", 34) == 0) {
		const char *le = p + strlen("tern_delivery_delay_seconds_bucket{le=\"");
		double v = strncmp(le, "+Inf", 4) == 0 ? 1e300 : strtod(le, NULL);
		CHECK(v > last);
		last = v;
		p = strchr(p, '\n') + 1;
	}
	CHECK(last == 1e300);
	free(t);
}

/* real processes: children count into the region made before fork; one that exits keeps
 * its counts; the slots run out at METRICS_SLOTS */
static void test_fork(void)
{
	CHECK(metrics_init() == 0);
	pid_t kids[3];
	for (int i = 0; i < 3; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			if (metrics_join() < 0)
				_exit(2);
			for (int j = 0; j < 1000; j++)
				metrics_count(METRICS_SESSIONS + METRICS_SMTP);
			metrics_gauge_add(METRICS_CONNECTIONS + METRICS_SMTP, 1);
			_exit(0);
		}
	}
	for (int i = 0; i < 3; i++) {
		int st;
		CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	CHECK(metrics_counter_total(METRICS_SESSIONS + METRICS_SMTP) == 3000);
	CHECK(metrics_gauge_total(METRICS_CONNECTIONS + METRICS_SMTP) == 3);
	for (int i = 0; i < 3; i++)
		metrics_child_gone(kids[i]);
	CHECK(metrics_gauge_total(METRICS_CONNECTIONS + METRICS_SMTP) == 0);
	CHECK(metrics_counter_total(METRICS_SESSIONS + METRICS_SMTP) == 3000);

	for (int i = 0; i < METRICS_SLOTS; i++)
		CHECK(metrics_join_pid(100000 + i) == 0);
	CHECK(metrics_join_pid(99) == -1);
	metrics_count(METRICS_BOUNCED);		/* not counted: no slot */
	CHECK(metrics_counter_total(METRICS_BOUNCED) == 0);
	metrics_child_gone(100007);
	CHECK(metrics_join_pid(99) == 0);
	metrics_count(METRICS_BOUNCED);
	CHECK(metrics_counter_total(METRICS_BOUNCED) == 1);
	CHECK(metrics_counter_total(METRICS_SESSIONS + METRICS_SMTP) == 3000);
}

static void test_since(void)
{
	CHECK(metrics_since_usec(0) == 0);
	uint64_t now = metrics_now_usec();
	CHECK(now > 0);
	CHECK(metrics_since_usec(now + 10000000) == 0);
	CHECK(metrics_since_usec(now) < 10000000);
}

TEST_MAIN(TEST(test_no_table), TEST(test_format), TEST(test_sum_over_slots),
	  TEST(test_dead_process), TEST(test_histogram), TEST(test_fork), TEST(test_since))
