/* fuzz_config - the config reader on arbitrary bytes: loads or reports FILE:LINE, never crashes */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	char *err = NULL;
	struct tern_config *c = config_load_string("fuzz.conf", text, &err);
	if (c == NULL && (err == NULL || strncmp(err, "fuzz.conf", 9) != 0))
		abort();
	config_free(&c);
	free(err);
	free(text);
	return 0;
}
