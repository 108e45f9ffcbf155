/* SPDX-License-Identifier: MIT */
#ifndef VQ_CHECK_H
#define VQ_CHECK_H

#include <check.h>

/* Every unit test's main(): run the suite, exit non-zero if any check failed. */
static inline int vq_check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif
