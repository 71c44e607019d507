/* fuzz_dmarc_record - libFuzzer target for the DMARC record parser (dmarc/dmarc.c). The input
 * is a TXT record (cut at the first NUL). A record that parses must have v=DMARC1 first,
 * policies in range, pct 0..100, and decide consistently for every alignment case. The
 * organisational domain of the input (as a domain) must be a suffix of it. Any violation
 * aborts. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmarc/dmarc.h"

#define FUZZ_ASSERT(cond)                                                               \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                 \
			abort();                                                        \
		}                                                                       \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *txt = malloc(size + 1);
	memcpy(txt, data, size);
	txt[size] = '\0';
	struct dmarc_record r;
	char *err = NULL;
	if (dmarc_record_parse(txt, &r, &err) == 0) {
		FUZZ_ASSERT(err == NULL);
		FUZZ_ASSERT(strstr(txt, "DMARC1") != NULL);
		FUZZ_ASSERT(r.p <= DMARC_POLICY_REJECT && r.sp <= DMARC_POLICY_REJECT);
		FUZZ_ASSERT(r.pct <= 100);
		const char *pass[] = { "example.com" };
		struct dmarc_input in = { .from_domain = "example.com", .spf_pass = false,
					  .spf_domain = "other.org", .dkim_pass_domains = pass,
					  .n_dkim = 1 };
		enum dmarc_result res;
		enum dmarc_policy pub, dis;
		dmarc_decide(&in, &r, false, 99, &res, &pub, &dis);
		FUZZ_ASSERT(res == DMARC_PASS && dis == DMARC_POLICY_NONE);
		in.n_dkim = 0;
		dmarc_decide(&in, &r, true, 0, &res, &pub, &dis);
		FUZZ_ASSERT(res == DMARC_FAIL && pub == r.sp && dis <= pub);
		FUZZ_ASSERT(r.pct == 0 ? dis < pub || pub == DMARC_POLICY_NONE : dis == pub);
	} else {
		FUZZ_ASSERT(err != NULL);
		free(err);
	}
	/* the input as a domain name (short, no NUL): its organisational domain ends it */
	if (size > 0 && size < 256) {
		char *org = dmarc_org_domain(txt);
		size_t tl = strlen(txt), ol = strlen(org);
		if (tl > 0 && txt[tl - 1] == '.')
			tl--;
		FUZZ_ASSERT(ol <= tl);
		for (size_t i = 0; i < ol; i++)
			FUZZ_ASSERT(org[ol - 1 - i] == (char)tolower((unsigned char)txt[tl - 1 - i]));
		free(org);
	}
	free(txt);
	return 0;
}
