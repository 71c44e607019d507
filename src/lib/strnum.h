/* strnum - strict number parsing: no sign, no spaces, no trailing junk, no overflow. */
#ifndef TERN_STRNUM_H
#define TERN_STRNUM_H
#include <stddef.h>
#include <stdint.h>

/* strnum_u64 - parse decimal digits in s[0..len) into *r; 0 or -1 (empty, junk, > max, or
 * more than 20 digits, even when the extra ones are leading zeros). */
int strnum_u64(const char *s, size_t len, uint64_t max, uint64_t *r);
/* strnum_u64z - the same for a NUL-terminated string. */
int strnum_u64z(const char *s, uint64_t max, uint64_t *r);
/* strnum_hexdigit - the value of one hexadecimal digit (0-9, a-f, A-F), or -1 for any other
 * byte, NUL and bytes >= 0x80 included (plain char may be signed: any value is safe). */
int strnum_hexdigit(int c);

#endif
