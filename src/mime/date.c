/* mime_date - RFC 5322 dates and common broken forms */
#include "mime/date.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* days_from_civil - days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

enum dtok_type { D_NUM, D_WORD, D_SIGN, D_COLON, D_OTHER, D_END };

struct dtok {
	enum dtok_type type;
	const char *p;
	size_t n;
	char sign;
};

struct dlex {
	const char *s;
	size_t len, i;
};

/* dlex_next - numbers, words, +/-, ':'; blanks, commas, dots and comments are separators. */
static struct dtok dlex_next(struct dlex *lx)
{
	struct dtok t = { D_END, NULL, 0, 0 };
	int depth = 0;
	while (lx->i < lx->len) {
		char c = lx->s[lx->i];
		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0 && c != ' ' && c != '\t' && c != ',' && c != '\r' && c != '\n' &&
			 c != '.')
			break;
		lx->i++;
	}
	if (lx->i >= lx->len)
		return t;
	t.p = lx->s + lx->i;
	char c = lx->s[lx->i];
	if (isdigit((unsigned char)c)) {
		t.type = D_NUM;
		while (lx->i < lx->len && isdigit((unsigned char)lx->s[lx->i]))
			lx->i++;
	} else if (isalpha((unsigned char)c)) {
		t.type = D_WORD;
		while (lx->i < lx->len && isalpha((unsigned char)lx->s[lx->i]))
			lx->i++;
	} else {
		t.type = c == '+' || c == '-' ? D_SIGN : c == ':' ? D_COLON : D_OTHER;
		t.sign = c;
		lx->i++;
	}
	t.n = (size_t)(lx->s + lx->i - t.p);
	return t;
}

static long num(const struct dtok *t)
{
	long v = 0;
	for (size_t i = 0; i < t->n && i < 9; i++)
		v = v * 10 + (t->p[i] - '0');
	return t->n > 9 ? 999999999 : v;
}

static int month_of(const struct dtok *t)
{
	static const char months[][4] = { "jan", "feb", "mar", "apr", "may", "jun",
					  "jul", "aug", "sep", "oct", "nov", "dec" };
	if (t->type != D_WORD || t->n < 3)
		return 0;
	for (int m = 0; m < 12; m++)
		if (strncasecmp(t->p, months[m], 3) == 0)
			return m + 1;
	return 0;
}

/* zone_of - an alphabetic zone's offset in minutes; false if the word is not one. */
static bool zone_of(const struct dtok *t, int *mins)
{
	static const struct {
		const char *name;
		int mins;
	} zones[] = {
		{ "UT", 0 },	    { "UTC", 0 },	{ "GMT", 0 },	    { "Z", 0 },
		{ "EST", -5 * 60 }, { "EDT", -4 * 60 }, { "CST", -6 * 60 }, { "CDT", -5 * 60 },
		{ "MST", -7 * 60 }, { "MDT", -6 * 60 }, { "PST", -8 * 60 }, { "PDT", -7 * 60 },
		{ "CET", 60 },	    { "CEST", 120 },	{ "BST", 60 },	    { "MET", 60 },
		{ "MEST", 120 },    { "EET", 120 },	{ "EEST", 180 },    { "JST", 540 },
		{ "IST", 330 },	    { "WET", 0 },	{ "WEST", 60 },
	};
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (t->n == strlen(zones[i].name) && strncasecmp(t->p, zones[i].name, t->n) == 0) {
			*mins = zones[i].mins;
			return true;
		}
	}
	/* military zones: RFC 5322 4.3 says their sign was botched, treat as +0000 */
	if (t->n == 1 && isalpha((unsigned char)t->p[0])) {
		*mins = 0;
		return true;
	}
	return false;
}

int mime_date_parse(const char *s, size_t len, time_t *time_r, int *tz_minutes_r)
{
	struct dlex lx = { s, len, 0 };
	struct dtok toks[32] = { 0 };
	size_t n = 0;
	for (;;) {
		struct dtok t = dlex_next(&lx);
		if (t.type == D_END || n == sizeof(toks) / sizeof(toks[0]))
			break;
		/* ISO 8601 "T" between date and time */
		if (t.type == D_WORD && t.n == 1 && (t.p[0] == 'T' || t.p[0] == 't') && n > 0 &&
		    toks[n - 1].type == D_NUM && lx.i < len && isdigit((unsigned char)s[lx.i]))
			continue;
		toks[n++] = t;
	}
	long day = -1, month = 0, year = -1, hh = -1, mm = -1, ss = 0;
	int tz = 0;
	bool have_tz = false;
	for (size_t i = 0; i < n; i++) {
		struct dtok *t = &toks[i];
		int m;
		if (t->type == D_NUM && hh < 0 && i + 2 < n && toks[i + 1].type == D_COLON &&
		    toks[i + 2].type == D_NUM) {
			/* hh:mm[:ss] */
			hh = num(t);
			mm = num(&toks[i + 2]);
			i += 2;
			if (i + 2 < n && toks[i + 1].type == D_COLON && toks[i + 2].type == D_NUM) {
				ss = num(&toks[i + 2]);
				i += 2;
			}
		} else if (t->type == D_NUM && t->n == 4 && year < 0 && month == 0 && day < 0 &&
			   i + 4 < n && toks[i + 1].type == D_SIGN && toks[i + 1].sign == '-' &&
			   toks[i + 2].type == D_NUM && toks[i + 3].type == D_SIGN &&
			   toks[i + 4].type == D_NUM) {
			/* ISO 8601 yyyy-mm-dd */
			year = num(t);
			month = num(&toks[i + 2]);
			day = num(&toks[i + 4]);
			i += 4;
		} else if ((m = month_of(t)) != 0 && month == 0) {
			month = m;
		} else if (t->type == D_SIGN && hh >= 0 && !have_tz && i + 1 < n &&
			   toks[i + 1].type == D_NUM && (toks[i + 1].n == 4 || toks[i + 1].n <= 2)) {
			long v = num(&toks[i + 1]);
			long mins = toks[i + 1].n == 4 ? (v / 100) * 60 + v % 100 : v * 60;
			if (v % 100 < 60 && mins <= 24 * 60) {
				tz = (int)(t->sign == '-' ? -mins : mins);
				have_tz = true;
			}
			i++;
		} else if (t->type == D_WORD && hh >= 0 && !have_tz && zone_of(t, &tz)) {
			have_tz = true;
			/* "GMT+0100": the offset that follows is the real one */
			if (i + 2 < n && toks[i + 1].type == D_SIGN && toks[i + 2].type == D_NUM &&
			    toks[i + 2].n == 4) {
				long v = num(&toks[i + 2]);
				if (v % 100 < 60 && v <= 2400) {
					long mins = (v / 100) * 60 + v % 100;
					tz = (int)(toks[i + 1].sign == '-' ? -mins : mins);
				}
				i += 2;
			}
		} else if (t->type == D_NUM) {
			if (day < 0 && t->n <= 2 && (month == 0 || year < 0))
				day = num(t);
			else if (year < 0)
				year = num(t), year = t->n <= 2 ? (year < 50 ? 2000 + year : 1900 + year)
					       : t->n == 3 ? 1900 + year : year;
		}
	}
	if (day < 1 || day > 31 || month < 1 || month > 12 || year < 1900 || year > 9999 ||
	    hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60)
		return -1;
	int64_t days = days_from_civil(year, (unsigned)month, (unsigned)day);
	int64_t t = days * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)tz * 60;
	*time_r = (time_t)t;
	if (tz_minutes_r)
		*tz_minutes_r = tz;
	return 0;
}
