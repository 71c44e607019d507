/* fuzz_spf_record - libFuzzer target for the SPF record parser and macro expansion
 * (spf/spf.c). The input is a TXT record (cut at the first NUL, as dns_lookup_txt does).
 * A record that parses must obey the contract: qualifiers from "+-~?", CIDR lengths in
 * range, every domain-spec expandable (IPv4 and IPv6 contexts) into at most 253 octets when
 * it has a dot to cut at, the result printable. The input is also expanded as a macro-string
 * directly. Any violation aborts. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spf/spf.h"

#define FUZZ_ASSERT(cond)                                                               \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                 \
			abort();                                                        \
		}                                                                       \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void expand(const char *spec, const struct spf_macro_ctx *c, bool exp, bool domain)
{
	char *out = NULL, *err = NULL;
	if (strlen(spec) > 4096)
		return;		/* expansion is linear; keep runs fast */
	if (spf_macro_expand(spec, c, exp, domain, &out, &err) == 0) {
		FUZZ_ASSERT(out != NULL && err == NULL);
		/* §7.3: cut from the left while over 253 octets and a label can go */
		if (domain)
			FUZZ_ASSERT(strlen(out) <= 253 || strchr(out, '.') == NULL);
		free(out);
	} else {
		FUZZ_ASSERT(err != NULL && out == NULL);
		free(err);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *txt = malloc(size + 1);
	memcpy(txt, data, size);
	txt[size] = '\0';
	struct spf_macro_ctx c4 = { .sender = "strong-bad@email.example.com",
				    .domain = "email.example.com", .helo = "mx.example.org",
				    .receiver = "mx.example.net", .family = AF_INET, .now = 1 };
	inet_pton(AF_INET, "192.0.2.3", c4.ip);
	struct spf_macro_ctx c6 = c4;
	c6.family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::cb01", c6.ip);

	struct spf_record r;
	char *err = NULL;
	if (spf_record_parse(txt, &r, &err) == 0) {
		FUZZ_ASSERT(err == NULL);
		FUZZ_ASSERT(spf_record_is_spf(txt));
		for (size_t i = 0; i < r.n_mechs; i++) {
			const struct spf_mech *m = &r.mechs[i];
			FUZZ_ASSERT(strchr("+-~?", m->qualifier) != NULL && m->qualifier != '\0');
			FUZZ_ASSERT(m->cidr4 >= 0 && m->cidr4 <= 32);
			FUZZ_ASSERT(m->cidr6 >= 0 && m->cidr6 <= 128);
			FUZZ_ASSERT((m->type == SPF_INCLUDE || m->type == SPF_EXISTS) ==
					    (m->domain_spec != NULL) ||
				    m->type == SPF_A || m->type == SPF_MX || m->type == SPF_PTR);
			if (m->domain_spec != NULL) {
				expand(m->domain_spec, &c4, false, true);
				expand(m->domain_spec, &c6, false, true);
			}
		}
		if (r.redirect)
			expand(r.redirect, &c4, false, true);
		if (r.exp)
			expand(r.exp, &c6, false, true);
		spf_record_free(&r);
	} else {
		FUZZ_ASSERT(err != NULL);
		free(err);
	}
	expand(txt, &c4, true, false);
	expand(txt, &c6, false, true);
	free(txt);
	return 0;
}
