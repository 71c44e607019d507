/* metrics - counters, gauges and histograms of every process of the server, rendered in
 * Prometheus's text exposition format (0.0.4) for the `/metrics` route.
 *
 * Where they live: one anonymous MAP_SHARED region that the master makes before it forks
 * (metrics_init), holding METRICS_SLOTS slots. Each child (worker, queue runner) claims a
 * slot after fork (metrics_join) and writes only that slot, with relaxed atomic adds: no
 * lock, no syscall on the hot path. metrics_render sums the slots. The master frees the slot
 * of a child it reaped (metrics_child_gone): the gauges (what the dead process held open)
 * drop to 0, the counters and histograms stay, and the next process that claims the slot
 * continues them, so a crashed or restarted worker never makes a total go down.
 *
 * Every metric is named here (an enum value) and described in metrics.c's table; the calls
 * below are no-ops in a process that did not join (the CLI, unit tests of other modules,
 * fuzz targets). Durations are microseconds. */
#ifndef TERN_METRICS_H
#define TERN_METRICS_H
#include <stdint.h>
#include <sys/types.h>

struct evbuffer;

#define METRICS_SLOTS 256	/* processes counted at once (workers of up to 3 generations,
				   the runner; above that a process is not counted) */

/* The protocol label of sessions, logins and received messages. */
enum metrics_protocol {
	METRICS_SMTP,		/* role smtp (MX) */
	METRICS_SUBMISSION,	/* roles submission and submissions */
	METRICS_POP3,		/* pop3, pop3s */
	METRICS_IMAP,		/* imap, imaps */
	METRICS_PROTOCOLS
};

enum metrics_login_result { METRICS_LOGIN_OK, METRICS_LOGIN_FAILED, METRICS_LOGIN_TEMPFAIL };

/* Counters. Families with a label take one value per label value, from the first. */
enum metrics_counter {
	METRICS_RECEIVED,	/* + protocol: messages answered 250 after DATA/BDAT */
	METRICS_SESSIONS = METRICS_RECEIVED + METRICS_PROTOCOLS,	/* + protocol */
	METRICS_LOGINS = METRICS_SESSIONS + METRICS_PROTOCOLS,	/* + 3 * protocol + result */
	METRICS_DELIVERED_LOCAL = METRICS_LOGINS + 3 * METRICS_PROTOCOLS, /* recipients */
	METRICS_RELAYED,	/* recipients a remote server accepted */
	METRICS_DEFERRED,	/* recipient attempts that failed temporarily */
	METRICS_BOUNCED,	/* recipients given up on (failed, expired, bounced by the admin) */
	METRICS_TLS_IN_OK,	/* server handshakes (implicit TLS, STARTTLS, STLS) */
	METRICS_TLS_IN_FAILED,
	METRICS_TLS_OUT_OK,	/* the queue's client handshakes */
	METRICS_TLS_OUT_FAILED,
	METRICS_COUNTERS
};

/* Gauges: summed over the slots; a process's part goes to 0 when it dies. */
enum metrics_gauge {
	METRICS_CONNECTIONS,	/* + protocol: open sessions */
	METRICS_IMAP_IDLE = METRICS_CONNECTIONS + METRICS_PROTOCOLS,	/* sessions in IDLE */
	METRICS_QUEUE_MESSAGES,	/* set by the queue runner */
	METRICS_QUEUE_QUEUED,	/* recipients by state: never tried yet */
	METRICS_QUEUE_DEFERRED,	/* waiting for a retry */
	METRICS_QUEUE_BOUNCE,	/* to be bounced (tern queue bounce) */
	METRICS_QUEUE_ACTIVE,	/* delivery attempts in flight */
	METRICS_GAUGES
};

enum metrics_histogram {
	METRICS_DELIVERY_DELAY,	/* arrival to delivered, relayed or bounced, per recipient */
	METRICS_SMTP_TRANSACTION, /* MAIL to the final reply of DATA/BDAT */
	METRICS_HISTOGRAMS
};
#define METRICS_MAX_BUCKETS 16	/* finite upper bounds of a histogram, +Inf not counted */

/* ---- the master ---------------------------------------------------------------------- */

/* metrics_init - make the shared slots (before fork; again: a fresh, empty region). 0 or -1
 * (errno). */
int metrics_init(void);
/* metrics_child_gone - the master reaped pid: free its slot (gauges to 0, counters kept for
 * the next process that claims it). Nothing when pid held none. */
void metrics_child_gone(pid_t pid);

/* ---- a child ------------------------------------------------------------------------- */

/* metrics_join - after fork: claim a free slot for this process (a slot a dead process left
 * is free, its counters continue here). -1: no table, or every slot is taken (this process
 * is then not counted). */
int metrics_join(void);
/* metrics_join_pid - the same for a given pid (tests: several "processes" in one). */
int metrics_join_pid(pid_t pid);

/* ---- counting (any process; no-ops without a slot) ----------------------------------- */

void metrics_count(enum metrics_counter c);
void metrics_count_n(enum metrics_counter c, uint64_t n);
void metrics_gauge_add(enum metrics_gauge g, int64_t delta);
void metrics_gauge_set(enum metrics_gauge g, int64_t value);
/* metrics_observe - one observation of usec microseconds */
void metrics_observe(enum metrics_histogram h, uint64_t usec);
/* metrics_now_usec - CLOCK_MONOTONIC in microseconds (vDSO: no syscall), for durations. */
uint64_t metrics_now_usec(void);
/* metrics_since_usec - microseconds from start (a metrics_now_usec value) to now; 0 when
 * start is 0 (not set) or in the future */
uint64_t metrics_since_usec(uint64_t start);

/* ---- reading ------------------------------------------------------------------------- */

/* metrics_render - every metric, summed over the slots, in Prometheus text format 0.0.4
 * (# HELP and # TYPE lines; histograms as _bucket{le=...}, _sum, _count). Without
 * metrics_init the values are all 0. */
void metrics_render(struct evbuffer *out);
/* metrics_counter_total / metrics_gauge_total - one value summed over the slots (tests). */
uint64_t metrics_counter_total(enum metrics_counter c);
int64_t metrics_gauge_total(enum metrics_gauge g);

#endif
