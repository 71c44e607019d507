/* check_records - MTA-STS and TLS-RPT TXT record syntax (see check_records.h) */
#include "cli/check_records.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* is_version - txt begins with version, then WSP, ';' or the end */
static bool is_version(const char *txt, const char *version)
{
	size_t n = strlen(version);
	if (strncmp(txt, version, n) != 0)
		return false;
	char c = txt[n];
	return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

bool mtasts_is_record(const char *txt)
{
	return is_version(txt, "v=STSv1");
}

bool tlsrpt_is_record(const char *txt)
{
	return is_version(txt, "v=TLSRPTv1");
}

/* value_char - %x21-3A / %x3C / %x3E-7E: visible, not '=' or ';' */
static bool value_char(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && c != '=' && c != ';';
}

/* check_id - sts-id's value: 1*32(ALPHA / DIGIT) */
static bool check_id(const char *v, size_t n)
{
	if (n < 1 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]))
			return false;
	return true;
}

/* check_uri - one TLS-RPT reporting URI: "mailto:" with an '@' in what follows, or
 * "https://" with a host; visible characters other than ',' and ';' */
static bool check_uri(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!value_char((unsigned char)v[i]) && v[i] != '=')
			return false;
	if (n > 7 && strncasecmp(v, "mailto:", 7) == 0)
		return memchr(v + 7, '@', n - 7) != NULL && v[7] != '@' && v[n - 1] != '@';
	return n > 8 && strncasecmp(v, "https://", 8) == 0 && v[8] != '/';
}

/* check_rua - tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri) */
static bool check_rua(const char *v, size_t n)
{
	size_t i = 0;
	for (;;) {
		size_t start = i;
		while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
			i++;
		if (!check_uri(v + start, i - start))
			return false;
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i == n)
			return true;
		if (v[i] != ',')
			return false;
		i++;
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
	}
}

/* check_fields - "VERSION" 1*(delim field) [delim], delim = *WSP ";" *WSP; the field
 * named required must appear exactly once with a value value_ok accepts; other fields are
 * extensions: name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."), value = 1*value_char.
 * rua's value may hold WSP around its commas, so a required field's value runs to the next
 * ';' (trailing WSP dropped). */
static int check_fields(const char *txt, const char *version, const char *required,
			bool (*value_ok)(const char *, size_t), const char *bad_value,
			const char **error_r)
{
	size_t vlen = strlen(version);
	if (!is_version(txt, version)) {
		*error_r = "the record does not begin with the version field";
		return -1;
	}
	const char *p = txt + vlen;
	unsigned seen = 0, fields = 0;
	size_t rlen = strlen(required);
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		if (*p != ';') {
			*error_r = "fields must be separated by ';'";
			return -1;
		}
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;	/* a trailing delimiter */
		const char *name = p;
		if (!isalnum((unsigned char)*p)) {
			*error_r = "a field name must begin with a letter or digit";
			return -1;
		}
		while (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.')
			p++;
		size_t nlen = (size_t)(p - name);
		if (nlen > 32) {
			*error_r = "a field name is longer than 32 characters";
			return -1;
		}
		if (*p != '=') {
			*error_r = "a field has no '=' after its name";
			return -1;
		}
		p++;
		const char *val = p;
		fields++;
		if (nlen == rlen && strncmp(name, required, rlen) == 0) {
			while (*p != '\0' && *p != ';')
				p++;
			size_t n = (size_t)(p - val);
			while (n > 0 && (val[n - 1] == ' ' || val[n - 1] == '\t'))
				n--;
			if (!value_ok(val, n)) {
				*error_r = bad_value;
				return -1;
			}
			if (++seen > 1) {
				*error_r = "the required field appears more than once";
				return -1;
			}
			continue;
		}
		if (nlen == 1 && name[0] == 'v') {
			*error_r = "the version field appears more than once";
			return -1;
		}
		while (value_char((unsigned char)*p))
			p++;
		if (p == val) {
			*error_r = "a field has an empty or invalid value";
			return -1;
		}
		if (*p != '\0' && *p != ';' && *p != ' ' && *p != '\t') {
			*error_r = "a field value holds a character that is not allowed";
			return -1;
		}
	}
	if (fields == 0 || seen == 0) {
		*error_r = "the required field is missing";
		return -1;
	}
	return 0;
}

int mtasts_record_check(const char *txt, const char **error_r)
{
	int r = check_fields(txt, "v=STSv1", "id", check_id,
			     "id= must be 1 to 32 letters and digits", error_r);
	if (r < 0 && strcmp(*error_r, "the required field is missing") == 0)
		*error_r = "id= is missing";
	return r;
}

int tlsrpt_record_check(const char *txt, const char **error_r)
{
	int r = check_fields(txt, "v=TLSRPTv1", "rua", check_rua,
			     "rua= must be mailto: or https:// URIs separated by ','", error_r);
	if (r < 0 && strcmp(*error_r, "the required field is missing") == 0)
		*error_r = "rua= is missing";
	return r;
}
