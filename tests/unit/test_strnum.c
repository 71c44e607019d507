/* test_strnum - strict number parsing and the one hex-digit helper (lib/strnum) */
#include <limits.h>
#include <stdint.h>

#include "lib/strnum.h"
#include "test.h"

/* every byte value, as an unsigned char and as a (possibly negative) plain char: exactly the
 * 22 hex digits have a value, and it is theirs */
static void test_hexdigit_every_byte(void)
{
	static const char digits[] = "0123456789abcdef";
	for (int b = 0; b < 256; b++) {
		int want = -1;
		for (int v = 0; v < 16; v++)
			if (b == digits[v] || (v >= 10 && b == digits[v] - 'a' + 'A'))
				want = v;
		CHECK(strnum_hexdigit(b) == want);
		CHECK(strnum_hexdigit((char)b) == want);	/* signed char: 0x80-0xff are < 0 */
		CHECK(strnum_hexdigit((signed char)b) == want);
	}
}

/* neighbours of the ranges, NUL, and values no byte has */
static void test_hexdigit_edges(void)
{
	CHECK(strnum_hexdigit('\0') == -1);
	CHECK(strnum_hexdigit('/') == -1);	/* '0' - 1 */
	CHECK(strnum_hexdigit(':') == -1);	/* '9' + 1 */
	CHECK(strnum_hexdigit('@') == -1);	/* 'A' - 1 */
	CHECK(strnum_hexdigit('G') == -1);
	CHECK(strnum_hexdigit('`') == -1);	/* 'a' - 1 */
	CHECK(strnum_hexdigit('g') == -1);
	CHECK(strnum_hexdigit(' ') == -1);
	CHECK(strnum_hexdigit('x') == -1);
	CHECK(strnum_hexdigit('0' | 0x80) == -1);	/* a digit with the high bit set */
	CHECK(strnum_hexdigit('a' | 0x80) == -1);
	CHECK(strnum_hexdigit(-1) == -1);	/* EOF */
	CHECK(strnum_hexdigit(INT_MIN) == -1);
	CHECK(strnum_hexdigit(INT_MAX) == -1);
	CHECK(strnum_hexdigit('0' + 256) == -1);	/* no wrap-around to a byte */
	CHECK(strnum_hexdigit('F') == 15);
	CHECK(strnum_hexdigit('f') == 15);
	CHECK(strnum_hexdigit('9') == 9);
}

static void test_u64(void)
{
	uint64_t v = 7;
	CHECK(strnum_u64z("0", UINT64_MAX, &v) == 0 && v == 0);
	CHECK(strnum_u64z("18446744073709551615", UINT64_MAX, &v) == 0 && v == UINT64_MAX);
	CHECK(strnum_u64z("18446744073709551616", UINT64_MAX, &v) == -1);
	CHECK(strnum_u64z("000000000000000000001", UINT64_MAX, &v) == -1);	/* 21 digits */
	CHECK(strnum_u64z("", UINT64_MAX, &v) == -1);
	CHECK(strnum_u64z("+1", UINT64_MAX, &v) == -1);
	CHECK(strnum_u64z("-1", UINT64_MAX, &v) == -1);
	CHECK(strnum_u64z(" 1", UINT64_MAX, &v) == -1);
	CHECK(strnum_u64z("1 ", UINT64_MAX, &v) == -1);
	CHECK(strnum_u64z("0x10", UINT64_MAX, &v) == -1);
	CHECK(strnum_u64z("11", 10, &v) == -1);
	CHECK(strnum_u64z("10", 10, &v) == 0 && v == 10);
	CHECK(strnum_u64("12\0" "3", 4, UINT64_MAX, &v) == -1);	/* a NUL inside */
	CHECK(strnum_u64("123", 2, UINT64_MAX, &v) == 0 && v == 12);	/* only len bytes */
}

TEST_MAIN(TEST(test_hexdigit_every_byte), TEST(test_hexdigit_edges), TEST(test_u64))
