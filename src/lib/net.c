/* net - socket addresses and listening sockets */
#include "lib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/strnum.h"
#include "lib/xmalloc.h"

int net_split_hostport(const char *s, char **host_r, uint16_t *port_r)
{
	const char *colon, *hs, *he;
	if (*s == '[') {
		he = strchr(s, ']');
		if (he == NULL || he[1] != ':')
			return -1;
		hs = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hs = s;
		he = colon;
		if (memchr(hs, ':', (size_t)(he - hs)) != NULL)
			return -1;	/* a bare v6 address needs brackets */
	}
	uint64_t port;
	if (he == hs || strnum_u64z(colon + 1, 65535, &port) < 0 || port == 0)
		return -1;
	*host_r = xstrndup(hs, (size_t)(he - hs));
	*port_r = (uint16_t)port;
	return 0;
}

int net_parse_addrport(const char *s, struct sockaddr_storage *ss, socklen_t *len_r)
{
	char *host;
	uint16_t port;
	if (net_split_hostport(s, &host, &port) < 0)
		return -1;
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	int r = 0;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len_r = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len_r = sizeof(*sin6);
	} else {
		r = -1;
	}
	free(host);
	return r;
}

int net_listen(const struct sockaddr *sa, socklen_t len, int backlog)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

const char *net_ntop(const struct sockaddr *sa, char *out, size_t outsz)
{
	const void *a = NULL;
	if (sa->sa_family == AF_INET)
		a = &((const struct sockaddr_in *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (a == NULL || inet_ntop(sa->sa_family, a, out, (socklen_t)outsz) == NULL)
		snprintf(out, outsz, "unknown");
	return out;
}

bool net_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
		return (a >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}
