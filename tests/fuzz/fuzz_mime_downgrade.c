/* fuzz_mime_downgrade - any message: 0/1/-1, and when 0 the output holds no 8-bit byte */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mime/downgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	if (fd < 0) {
		char path[] = "/tmp/fuzz-downgrade-XXXXXX";
		fd = mkstemp(path);
		unlink(path);
	}
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		abort();
	int r = mime_downgrade_7bit((const char *)data, size, fd);
	if (r < -1 || r > 1)
		abort();
	if (r == 0) {
		off_t n = lseek(fd, 0, SEEK_END);
		char *out = malloc((size_t)n + 1);
		if (pread(fd, out, (size_t)n, 0) != n)
			abort();
		for (off_t i = 0; i < n; i++)
			if ((unsigned char)out[i] >= 0x80)
				abort();
		free(out);
	}
	return 0;
}
