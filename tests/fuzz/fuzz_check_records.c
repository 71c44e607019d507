/* fuzz_check_records - libFuzzer target for the MTA-STS and TLS-RPT record checks of `tern
 * check` (cli/check_records.c): TXT records as the DNS hands them over (cut at the first NUL).
 * A record either passes or fails with a reason; one that passes begins with its version and
 * holds its required field; a record that passes one check never passes the other. */
#include <string.h>

#include "cli/check_records.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *txt = malloc(size + 1);
	memcpy(txt, data, size);
	txt[size] = '\0';
	const char *err = NULL;
	int sts = mtasts_record_check(txt, &err);
	FUZZ_ASSERT(sts == 0 || (sts == -1 && err != NULL && err[0] != '\0'));
	if (sts == 0)
		FUZZ_ASSERT(mtasts_is_record(txt) && strstr(txt, "id=") != NULL);
	err = NULL;
	int rpt = tlsrpt_record_check(txt, &err);
	FUZZ_ASSERT(rpt == 0 || (rpt == -1 && err != NULL && err[0] != '\0'));
	if (rpt == 0)
		FUZZ_ASSERT(tlsrpt_is_record(txt) && strstr(txt, "rua=") != NULL);
	FUZZ_ASSERT(!(sts == 0 && rpt == 0));
	free(txt);
	return 0;
}
