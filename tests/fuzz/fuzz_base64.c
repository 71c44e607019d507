/* fuzz_base64 - libFuzzer target for lib/base64.c.
 * The input is decoded as text: when the strict decoder accepts it, encoding the result
 * must give the text back (one accepted encoding per byte string). The input is encoded as
 * bytes: decoding that must give the bytes back, so the decoder accepts exactly what the
 * encoder makes. With an output buffer capped below what is needed (size taken from the
 * first byte), both must fail and leave what the buffer held untouched. */
#include <string.h>

#include "fuzz.h"
#include "lib/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	buf dec, enc, back;
	buf_init(&dec, 0);
	buf_init(&enc, 0);
	buf_init(&back, 0);

	/* decode -> encode: canonical */
	if (base64_decode(text, size, &dec) == 0) {
		FUZZ_ASSERT(size % 4 == 0);
		FUZZ_ASSERT(dec.len == size / 4 * 3 - (size > 0 && text[size - 1] == '=') -
						 (size > 1 && text[size - 2] == '='));
		FUZZ_ASSERT(base64_encode(dec.data, dec.len, &enc) == 0);
		FUZZ_ASSERT(enc.len == size && (size == 0 || memcmp(enc.data, text, size) == 0));
	} else {
		FUZZ_ASSERT(dec.len == 0);
	}

	/* encode -> decode: identity */
	buf_reset(&enc);
	FUZZ_ASSERT(base64_encode(data, size, &enc) == 0);
	FUZZ_ASSERT(enc.len == (size + 2) / 3 * 4);
	for (size_t i = 0; i < enc.len; i++)
		FUZZ_ASSERT(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
				   enc.data[i]) != NULL && enc.data[i] != '\0');
	FUZZ_ASSERT(base64_decode(enc.data != NULL ? enc.data : "", enc.len, &back) == 0);
	FUZZ_ASSERT(back.len == size && (size == 0 || memcmp(back.data, data, size) == 0));

	/* appending after existing contents, into a capped buffer */
	if (size > 0) {
		size_t cap = 3 + data[0] % 64;
		buf b;
		buf_init(&b, cap);
		FUZZ_ASSERT(buf_append(&b, "abc", 3) == 0);
		int r = base64_encode(data, size, &b);
		FUZZ_ASSERT(r == (3 + enc.len <= cap ? 0 : -1));
		if (r < 0)
			FUZZ_ASSERT(b.len == 3 && memcmp(b.data, "abc", 4) == 0);
		else
			FUZZ_ASSERT(b.len == 3 + enc.len && memcmp(b.data + 3, enc.data, enc.len) == 0);
		buf_free(&b);
		buf_init(&b, cap);
		FUZZ_ASSERT(buf_append(&b, "abc", 3) == 0);
		r = base64_decode(enc.data, enc.len, &b);
		FUZZ_ASSERT(r == (3 + size <= cap ? 0 : -1));
		if (r < 0)
			FUZZ_ASSERT(b.len == 3 && memcmp(b.data, "abc", 4) == 0);
		else
			FUZZ_ASSERT(b.len == 3 + size && memcmp(b.data + 3, data, size) == 0);
		buf_free(&b);
	}
	buf_free(&dec);
	buf_free(&enc);
	buf_free(&back);
	return 0;
}
