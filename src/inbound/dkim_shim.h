/* dkim_shim - the DKIM verification API of branch `dkim` (src/dkim/dkim.h), declared here so
 * that the inbound pipeline builds on this branch. At the merge this file goes and
 * inbound.c includes "dkim/dkim.h" instead; authcheck_dkim_start's body becomes
 * `return dkim_verify_start(d, msg, len, cb, ctx);` (see inbound.c). */
#ifndef TERN_INBOUND_DKIM_SHIM_H
#define TERN_INBOUND_DKIM_SHIM_H
#include <stddef.h>

struct dkim_sig_result {
	const char *result;	/* "pass" "fail" "neutral" "policy" "temperror" "permerror" */
	const char *domain;	/* d= */
	const char *selector;
	const char *algorithm;
	const char *b;		/* first 8 chars of b= */
	const char *reason;
};
struct dkim_verify_result {
	size_t n;		/* 0: dkim=none */
	const struct dkim_sig_result *sigs;
};
typedef void dkim_verify_cb(void *ctx, const struct dkim_verify_result *r);
struct dkim_verify;

#endif
