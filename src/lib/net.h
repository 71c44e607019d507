/* net - socket addresses and listening sockets */
#ifndef TERN_NET_H
#define TERN_NET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* net_split_hostport - "host:port", "[v6]:port" -> host (caller frees) and port.
 * 0 or -1 (no port, bad port, empty host). */
int net_split_hostport(const char *s, char **host_r, uint16_t *port_r);
/* net_parse_addrport - numeric "a.b.c.d:port" or "[v6]:port" into ss. 0 or -1. */
int net_parse_addrport(const char *s, struct sockaddr_storage *ss, socklen_t *len_r);
/* net_listen - bound, listening, non-blocking, close-on-exec socket with SO_REUSEADDR;
 * -1 with errno. */
int net_listen(const struct sockaddr *sa, socklen_t len, int backlog);
/* net_ntop - "1.2.3.4" / "::1" into out. */
const char *net_ntop(const struct sockaddr *sa, char *out, size_t outsz);
/* net_is_loopback - 127.0.0.0/8 or ::1 (or v4-mapped loopback). */
bool net_is_loopback(const struct sockaddr *sa);

#endif
