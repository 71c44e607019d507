/* metrics - per-process counters in shared memory, summed into Prometheus text format */
#include "lib/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>

/* One process's numbers. Only that process writes them, and only from its event loop's thread
 * (the login threads never count): so an add is a relaxed atomic load and store (add_to), not
 * a locked read-modify-write. The renderer, in another process, reads at any time and never
 * sees a torn value. The master clears the gauges once the process is gone. Aligned to a
 * cache line so that two processes never write the same line. */
struct metrics_slot {
	int32_t pid;		/* 0: free (its counters wait for the next process) */
	uint32_t unused;
	uint64_t counters[METRICS_COUNTERS];
	int64_t gauges[METRICS_GAUGES];
	struct {
		uint64_t buckets[METRICS_MAX_BUCKETS + 1];	/* not cumulative; last: +Inf */
		uint64_t sum_usec;
	} hist[METRICS_HISTOGRAMS];
} __attribute__((aligned(64)));

struct metrics_table {
	struct metrics_slot slots[METRICS_SLOTS];
};

static struct metrics_table *metrics_table;
static struct metrics_slot *metrics_self;

/* ---- what is rendered ---------------------------------------------------------------- */

static const char *const by_protocol[] = {
	"protocol=\"smtp\"", "protocol=\"submission\"", "protocol=\"pop3\"", "protocol=\"imap\"",
};
static const char *const by_protocol_result[] = {
	"protocol=\"smtp\",result=\"ok\"",
	"protocol=\"smtp\",result=\"failed\"",
	"protocol=\"smtp\",result=\"tempfail\"",
	"protocol=\"submission\",result=\"ok\"",
	"protocol=\"submission\",result=\"failed\"",
	"protocol=\"submission\",result=\"tempfail\"",
	"protocol=\"pop3\",result=\"ok\"",
	"protocol=\"pop3\",result=\"failed\"",
	"protocol=\"pop3\",result=\"tempfail\"",
	"protocol=\"imap\",result=\"ok\"",
	"protocol=\"imap\",result=\"failed\"",
	"protocol=\"imap\",result=\"tempfail\"",
};
static const char *const by_tls[] = {
	"direction=\"inbound\",result=\"ok\"", "direction=\"inbound\",result=\"failed\"",
	"direction=\"outbound\",result=\"ok\"", "direction=\"outbound\",result=\"failed\"",
};
static const char *const by_queue_state[] = {
	"state=\"queued\"", "state=\"deferred\"", "state=\"bounce\"",
};

enum family_type { FAMILY_COUNTER, FAMILY_GAUGE, FAMILY_HISTOGRAM, FAMILY_PROCESSES };

struct family {
	const char *name;
	const char *help;
	enum family_type type;
	unsigned first;			/* counter, gauge or histogram index */
	unsigned n;			/* series: indices first .. first + n - 1 */
	const char *const *labels;	/* one label set per series; NULL: one unlabelled */
};

#define N(a) (unsigned)(sizeof(a) / sizeof((a)[0]))

static const struct family families[] = {
	{ "tern_messages_received_total",
	  "Messages accepted (250 after DATA or BDAT), by the SMTP role they came in on.",
	  FAMILY_COUNTER, METRICS_RECEIVED, 2, by_protocol },
	{ "tern_recipients_delivered_local_total",
	  "Recipients delivered into a local mailbox (at SMTP time or by the queue runner).",
	  FAMILY_COUNTER, METRICS_DELIVERED_LOCAL, 1, NULL },
	{ "tern_recipients_relayed_total", "Recipients accepted by a remote server.",
	  FAMILY_COUNTER, METRICS_RELAYED, 1, NULL },
	{ "tern_recipients_deferred_total",
	  "Delivery attempts (per recipient) that failed temporarily and will be retried.",
	  FAMILY_COUNTER, METRICS_DEFERRED, 1, NULL },
	{ "tern_recipients_bounced_total",
	  "Recipients given up on: permanent failure, expired in the queue or bounced by the "
	  "administrator.",
	  FAMILY_COUNTER, METRICS_BOUNCED, 1, NULL },
	{ "tern_sessions_total", "Connections accepted, by protocol.", FAMILY_COUNTER,
	  METRICS_SESSIONS, METRICS_PROTOCOLS, by_protocol },
	{ "tern_logins_total",
	  "Password checks answered, by protocol and result (tempfail: try again later).",
	  FAMILY_COUNTER, METRICS_LOGINS, N(by_protocol_result), by_protocol_result },
	{ "tern_tls_handshakes_total",
	  "TLS handshakes, as a server (inbound) and as the queue's client (outbound).",
	  FAMILY_COUNTER, METRICS_TLS_IN_OK, N(by_tls), by_tls },
	{ "tern_connections", "Open sessions, by protocol.", FAMILY_GAUGE, METRICS_CONNECTIONS,
	  METRICS_PROTOCOLS, by_protocol },
	{ "tern_imap_idle_sessions", "IMAP sessions in IDLE.", FAMILY_GAUGE, METRICS_IMAP_IDLE,
	  1, NULL },
	{ "tern_queue_messages", "Messages in the outbound queue.", FAMILY_GAUGE,
	  METRICS_QUEUE_MESSAGES, 1, NULL },
	{ "tern_queue_recipients",
	  "Recipients in the outbound queue, by state (queued: not tried yet; deferred: "
	  "waiting for a retry; bounce: to be bounced).",
	  FAMILY_GAUGE, METRICS_QUEUE_QUEUED, N(by_queue_state), by_queue_state },
	{ "tern_queue_deliveries_active", "Delivery attempts in flight.", FAMILY_GAUGE,
	  METRICS_QUEUE_ACTIVE, 1, NULL },
	{ "tern_processes", "Server processes (workers, queue runner) counted now.",
	  FAMILY_PROCESSES, 0, 1, NULL },
	{ "tern_delivery_delay_seconds",
	  "Time from a message's arrival to a recipient's final delivery, relay or bounce.",
	  FAMILY_HISTOGRAM, METRICS_DELIVERY_DELAY, 1, NULL },
	{ "tern_smtp_transaction_seconds",
	  "Time from MAIL to the final reply of DATA or BDAT.", FAMILY_HISTOGRAM,
	  METRICS_SMTP_TRANSACTION, 1, NULL },
};

struct bucket {
	uint64_t usec;
	const char *le;
};

static const struct bucket delay_buckets[] = {
	{ 100000, "0.1" }, { 500000, "0.5" }, { 1000000, "1" }, { 5000000, "5" },
	{ 15000000, "15" }, { 60000000, "60" }, { 300000000, "300" }, { 900000000, "900" },
	{ 1800000000, "1800" }, { 3600000000, "3600" }, { 14400000000, "14400" },
	{ 43200000000, "43200" }, { 86400000000, "86400" }, { 432000000000, "432000" },
};
static const struct bucket txn_buckets[] = {
	{ 5000, "0.005" }, { 10000, "0.01" }, { 25000, "0.025" }, { 50000, "0.05" },
	{ 100000, "0.1" }, { 250000, "0.25" }, { 500000, "0.5" }, { 1000000, "1" },
	{ 2500000, "2.5" }, { 5000000, "5" }, { 10000000, "10" }, { 30000000, "30" },
	{ 60000000, "60" }, { 300000000, "300" },
};
static const struct {
	const struct bucket *b;
	unsigned n;
} hist_buckets[METRICS_HISTOGRAMS] = {
	[METRICS_DELIVERY_DELAY] = { delay_buckets, N(delay_buckets) },
	[METRICS_SMTP_TRANSACTION] = { txn_buckets, N(txn_buckets) },
};
_Static_assert(N(delay_buckets) <= METRICS_MAX_BUCKETS, "too many buckets");
_Static_assert(N(txn_buckets) <= METRICS_MAX_BUCKETS, "too many buckets");
_Static_assert(N(by_protocol) == METRICS_PROTOCOLS, "one label per protocol");
_Static_assert(N(by_protocol_result) == 3 * METRICS_PROTOCOLS, "three results a protocol");
_Static_assert(METRICS_TLS_OUT_FAILED - METRICS_TLS_IN_OK + 1 == N(by_tls), "tls series");
_Static_assert(METRICS_QUEUE_BOUNCE - METRICS_QUEUE_QUEUED + 1 == N(by_queue_state),
	       "queue states");

/* ---- the master ---------------------------------------------------------------------- */

int metrics_init(void)
{
	if (metrics_table != NULL) {
		munmap(metrics_table, sizeof(*metrics_table));
		metrics_table = NULL;
		metrics_self = NULL;
	}
	/* zero-filled by the kernel */
	void *p = mmap(NULL, sizeof(struct metrics_table), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	metrics_table = p;
	return 0;
}

/* slot_clear_gauges - what a process held open ends with it */
static void slot_clear_gauges(struct metrics_slot *s)
{
	for (size_t g = 0; g < METRICS_GAUGES; g++)
		__atomic_store_n(&s->gauges[g], 0, __ATOMIC_RELAXED);
}

void metrics_child_gone(pid_t pid)
{
	if (metrics_table == NULL || pid <= 0)
		return;
	for (size_t i = 0; i < METRICS_SLOTS; i++) {
		struct metrics_slot *s = &metrics_table->slots[i];
		if (__atomic_load_n(&s->pid, __ATOMIC_ACQUIRE) != (int32_t)pid)
			continue;
		slot_clear_gauges(s);
		/* release: the cleared gauges are seen before the slot can be claimed again */
		__atomic_store_n(&s->pid, 0, __ATOMIC_RELEASE);
		return;
	}
}

/* ---- a child ------------------------------------------------------------------------- */

int metrics_join_pid(pid_t pid)
{
	metrics_self = NULL;
	if (metrics_table == NULL)
		return -1;
	for (size_t i = 0; i < METRICS_SLOTS; i++)
		if (__atomic_load_n(&metrics_table->slots[i].pid, __ATOMIC_ACQUIRE) == (int32_t)pid) {
			metrics_self = &metrics_table->slots[i];	/* joined before */
			return 0;
		}
	for (size_t i = 0; i < METRICS_SLOTS; i++) {
		struct metrics_slot *s = &metrics_table->slots[i];
		int32_t zero = 0;
		if (__atomic_compare_exchange_n(&s->pid, &zero, (int32_t)pid, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			slot_clear_gauges(s);	/* the counters go on from where they were */
			metrics_self = s;
			return 0;
		}
	}
	return -1;
}

int metrics_join(void)
{
	return metrics_join_pid(getpid());
}

/* ---- counting ------------------------------------------------------------------------ */

/* add_to - v += n for the slot's one writer: a plain load and store, no lock prefix (on the
 * 2-core test machine about 6 ns against 22 ns for a locked add) */
static inline void add_to(uint64_t *v, uint64_t n)
{
	__atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

void metrics_count_n(enum metrics_counter c, uint64_t n)
{
	if (metrics_self != NULL && (unsigned)c < METRICS_COUNTERS)
		add_to(&metrics_self->counters[c], n);
}

void metrics_count(enum metrics_counter c)
{
	metrics_count_n(c, 1);
}

void metrics_gauge_add(enum metrics_gauge g, int64_t delta)
{
	if (metrics_self != NULL && (unsigned)g < METRICS_GAUGES)
		add_to((uint64_t *)&metrics_self->gauges[g], (uint64_t)delta);
}

void metrics_gauge_set(enum metrics_gauge g, int64_t value)
{
	if (metrics_self != NULL && (unsigned)g < METRICS_GAUGES)
		__atomic_store_n(&metrics_self->gauges[g], value, __ATOMIC_RELAXED);
}

void metrics_observe(enum metrics_histogram h, uint64_t usec)
{
	if (metrics_self == NULL || (unsigned)h >= METRICS_HISTOGRAMS)
		return;
	unsigned i = 0, n = hist_buckets[h].n;
	while (i < n && usec > hist_buckets[h].b[i].usec)
		i++;		/* "le": a value equal to a bound is in that bound's bucket */
	add_to(&metrics_self->hist[h].buckets[i], 1);
	add_to(&metrics_self->hist[h].sum_usec, usec);
}

uint64_t metrics_now_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t metrics_since_usec(uint64_t start)
{
	if (start == 0)
		return 0;
	uint64_t now = metrics_now_usec();
	return now > start ? now - start : 0;
}

/* ---- reading ------------------------------------------------------------------------- */

uint64_t metrics_counter_total(enum metrics_counter c)
{
	uint64_t v = 0;
	if (metrics_table == NULL || (unsigned)c >= METRICS_COUNTERS)
		return 0;
	for (size_t i = 0; i < METRICS_SLOTS; i++)
		v += __atomic_load_n(&metrics_table->slots[i].counters[c], __ATOMIC_RELAXED);
	return v;
}

int64_t metrics_gauge_total(enum metrics_gauge g)
{
	int64_t v = 0;
	if (metrics_table == NULL || (unsigned)g >= METRICS_GAUGES)
		return 0;
	for (size_t i = 0; i < METRICS_SLOTS; i++)
		v += __atomic_load_n(&metrics_table->slots[i].gauges[g], __ATOMIC_RELAXED);
	return v;
}

static unsigned processes_total(void)
{
	unsigned n = 0;
	for (size_t i = 0; metrics_table != NULL && i < METRICS_SLOTS; i++)
		if (__atomic_load_n(&metrics_table->slots[i].pid, __ATOMIC_RELAXED) != 0)
			n++;
	return n;
}

/* series_name - "name" or "name{labels}" */
static void series_name(struct evbuffer *out, const char *name, const char *labels)
{
	if (labels != NULL)
		evbuffer_add_printf(out, "%s{%s}", name, labels);
	else
		evbuffer_add_printf(out, "%s", name);
}

/* render_histogram - cumulative buckets; the count is the +Inf bucket, so that the two
 * always agree even while other processes add to them */
static void render_histogram(struct evbuffer *out, const char *name, enum metrics_histogram h)
{
	uint64_t b[METRICS_MAX_BUCKETS + 1] = { 0 };
	uint64_t sum = 0;
	unsigned n = hist_buckets[h].n;
	for (size_t i = 0; metrics_table != NULL && i < METRICS_SLOTS; i++) {
		const struct metrics_slot *s = &metrics_table->slots[i];
		for (unsigned k = 0; k <= n; k++)
			b[k] += __atomic_load_n(&s->hist[h].buckets[k], __ATOMIC_RELAXED);
		sum += __atomic_load_n(&s->hist[h].sum_usec, __ATOMIC_RELAXED);
	}
	uint64_t cum = 0;
	for (unsigned k = 0; k < n; k++) {
		cum += b[k];
		evbuffer_add_printf(out, "%s_bucket{le=\"%s\"} %llu\n", name, hist_buckets[h].b[k].le,
				    (unsigned long long)cum);
	}
	cum += b[n];
	evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	evbuffer_add_printf(out, "%s_sum %llu.%06llu\n", name, (unsigned long long)(sum / 1000000),
			    (unsigned long long)(sum % 1000000));
	evbuffer_add_printf(out, "%s_count %llu\n", name, (unsigned long long)cum);
}

void metrics_render(struct evbuffer *out)
{
	static const char *const type_names[] = {
		[FAMILY_COUNTER] = "counter", [FAMILY_GAUGE] = "gauge",
		[FAMILY_HISTOGRAM] = "histogram", [FAMILY_PROCESSES] = "gauge",
	};
	for (size_t f = 0; f < N(families); f++) {
		const struct family *fa = &families[f];
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fa->name, fa->help, fa->name,
				    type_names[fa->type]);
		for (unsigned k = 0; k < fa->n; k++) {
			const char *labels = fa->labels != NULL ? fa->labels[k] : NULL;
			switch (fa->type) {
			case FAMILY_COUNTER:
				series_name(out, fa->name, labels);
				evbuffer_add_printf(out, " %llu\n", (unsigned long long)
						    metrics_counter_total(fa->first + k));
				break;
			case FAMILY_GAUGE:
				series_name(out, fa->name, labels);
				evbuffer_add_printf(out, " %lld\n",
						    (long long)metrics_gauge_total(fa->first + k));
				break;
			case FAMILY_PROCESSES:
				evbuffer_add_printf(out, "%s %u\n", fa->name, processes_total());
				break;
			case FAMILY_HISTOGRAM:
				render_histogram(out, fa->name, fa->first + k);
				break;
			}
		}
	}
}
