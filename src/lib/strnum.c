/* strnum - strict number parsing */
#include "lib/strnum.h"

#include <string.h>

int strnum_u64(const char *s, size_t len, uint64_t max, uint64_t *r)
{
	uint64_t v = 0;
	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v > max)
		return -1;
	*r = v;
	return 0;
}

int strnum_u64z(const char *s, uint64_t max, uint64_t *r)
{
	return strnum_u64(s, strlen(s), max, r);
}

int strnum_hexdigit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
