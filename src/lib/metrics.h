/* metrics - the Prometheus text exposition of tern's counters (served by src/http on the
 * metrics listener). This is the HTTP branch's stand-in: the metrics branch's per-worker
 * shared-memory counters replace it at merge. */
#ifndef TERN_METRICS_H
#define TERN_METRICS_H
#include <event2/buffer.h>

/* metrics_render - append the exposition (text format 0.0.4) to out. */
void metrics_render(struct evbuffer *out);

#endif
