/* check_records - syntax checks of the DNS records `tern check` reads that no other module
 * parses: the MTA-STS TXT record (RFC 8461 §3.1) and the TLS-RPT TXT record (RFC 8460 §3).
 * Both are "v=VERSION" then ";"-separated "name=value" fields (WSP around the ";", an
 * optional trailing ";"); each has one required field (id=, rua=) and allows extensions. */
#ifndef TERN_CLI_CHECK_RECORDS_H
#define TERN_CLI_CHECK_RECORDS_H
#include <stdbool.h>

/* mtasts_is_record - true when txt begins with "v=STSv1" followed by WSP, ";" or the end:
 * the records a sender keeps before counting them (RFC 8461 §3.1 discards the others). */
bool mtasts_is_record(const char *txt);

/* mtasts_record_check - 0 when txt is a valid MTA-STS record (v=STSv1 first, exactly one
 * id= of 1-32 letters and digits, extensions name=value), else -1 with *error_r (a static
 * string, never freed) saying what is wrong. */
int mtasts_record_check(const char *txt, const char **error_r);

/* tlsrpt_is_record - true when txt begins with "v=TLSRPTv1" followed by WSP, ";" or the end */
bool tlsrpt_is_record(const char *txt);

/* tlsrpt_record_check - 0 when txt is a valid TLS-RPT record (v=TLSRPTv1 first, exactly one
 * rua= holding one or more ","-separated "mailto:" (with an "@") or "https://" URIs, made
 * of visible characters other than "," and ";"), else -1 with *error_r (static). */
int tlsrpt_record_check(const char *txt, const char **error_r);

#endif
