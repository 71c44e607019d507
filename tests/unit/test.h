/* test.h - a tiny unit test harness: CHECK records a failure and goes on; main is generated
 * by TEST_MAIN from a list of test functions. Prints "N passed, N failed". */
#ifndef TERN_TEST_H
#define TERN_TEST_H
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static int test_failed_checks;
static int test_current_failed;

#define CHECK(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failed_checks++;                                    \
			test_current_failed = 1;                                 \
		}                                                                \
	} while (0)

#define CHECK_STREQ(a, b)                                                        \
	do {                                                                     \
		const char *a_ = (a), *b_ = (b);                                  \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {            \
			fprintf(stderr, "%s:%d: CHECK_STREQ failed: \"%s\" != \"%s\"\n", __FILE__, \
				__LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)");     \
			test_failed_checks++;                                    \
			test_current_failed = 1;                                 \
		}                                                                \
	} while (0)

static inline int test_rm_entry(const char *p, const struct stat *st, int flag,
				struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* test_rmtree - remove dir and everything under it (a test's temp dir); 0 or -1 */
static inline int test_rmtree(const char *dir)
{
	return nftw(dir, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

typedef void test_fn(void);
struct test_case {
	const char *name;
	test_fn *fn;
};
#define TEST(f) { #f, f }

static inline int test_run(const struct test_case *cases, size_t n)
{
	int pass = 0, fail = 0;
	/* as the servers do: a write to a peer that closed is an EPIPE to check, not a death */
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < n; i++) {
		test_current_failed = 0;
		cases[i].fn();
		if (test_current_failed) {
			fprintf(stderr, "FAIL %s\n", cases[i].name);
			fail++;
		} else {
			pass++;
		}
	}
	printf("%d passed, %d failed\n", pass, fail);
	return fail ? 1 : 0;
}

#define TEST_MAIN(...)                                                            \
	int main(void)                                                           \
	{                                                                        \
		static const struct test_case cases_[] = { __VA_ARGS__ };        \
		return test_run(cases_, sizeof(cases_) / sizeof(cases_[0]));     \
	}
#endif
