/* runner - the queue runner process */
#include "queue/runner.h"

#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>

#include "lib/log.h"
#include "queue/queue.h"

static void runner_stop(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(arg);
}

int runner_main(const struct tern_config *cfg)
{
	char *err = NULL;
	log_init("queue");
	struct event_base *base = event_base_new();
	if (base == NULL)
		log_fatalx("event_base_new failed");
	struct queue *q;
	char *spool = config_path_in_data(cfg, "spool");
	if (queue_open(spool, &q, &err) < 0)
		log_fatalx("%s", err);
	free(spool);
	struct event *t = evsignal_new(base, SIGTERM, runner_stop, base);
	struct event *i = evsignal_new(base, SIGINT, runner_stop, base);
	event_add(t, NULL);
	event_add(i, NULL);
	event_base_dispatch(base);
	signal(SIGTERM, SIG_IGN);	/* a second SIGTERM (master and pkill) must not kill us */
	event_free(t);
	event_free(i);
	queue_close(&q);
	event_base_free(base);
	return 0;
}
