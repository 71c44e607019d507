/* test_addr.h - socket addresses from text, for unit tests of per-client tables */
#ifndef TERN_TEST_ADDR_H
#define TERN_TEST_ADDR_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static inline struct sockaddr_in v4(const char *text)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, text, &sin.sin_addr);
	return sin;
}

static inline struct sockaddr_in6 v6(const char *text)
{
	struct sockaddr_in6 sin6;
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, text, &sin6.sin6_addr);
	return sin6;
}

#define SA(x) ((const struct sockaddr *)&(x))

#endif
