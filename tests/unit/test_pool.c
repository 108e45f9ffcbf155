/* SPDX-License-Identifier: MIT */
#include "vq_check.h"
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "pool.h"

static struct vq_pool pool;

static void setup(void)
{
	struct vq_pool_params p = { .count = 8, .size = 4096, .node = -1, .home = 0 };

	ck_assert_int_eq(vq_pool_init(&pool, &p), 0);
	vq_buf_set_thread_home(0);
}

static void teardown(void)
{
	vq_pool_fini(&pool);
	vq_buf_set_thread_home(-1);
}

START_TEST(alloc_and_release)
{
	struct vq_buf *b = vq_pool_alloc(&pool);

	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(b->state, VQ_BUF_USER);
	ck_assert_uint_eq(b->cap, 4096);
	ck_assert_uint_eq(b->len, 0);
	b->data[4095] = 1; /* the whole capacity is writable */
	ck_assert_uint_eq(pool.st.free, 7);
	ck_assert_uint_eq(pool.st.user, 1);
	vq_buf_release(b);
	ck_assert_uint_eq(pool.st.free, 8);
	ck_assert_uint_eq(pool.st.user, 0);
	ck_assert_uint_eq(vq_pool_fini(&pool), 0);
	setup(); /* teardown frees again */
}
END_TEST

START_TEST(exhaustion_is_backpressure)
{
	struct vq_buf *held[8];

	for (int i = 0; i < 8; i++) {
		held[i] = vq_pool_alloc(&pool);
		ck_assert_ptr_nonnull(held[i]);
	}
	errno = 0;
	ck_assert_ptr_null(vq_pool_alloc(&pool));
	ck_assert_int_eq(errno, ENOBUFS);
	ck_assert_uint_eq(pool.st.failures, 1);
	ck_assert_uint_eq(pool.st.high_water, 8);
	/* Distinct, non-overlapping buffers inside the region. */
	for (int i = 0; i < 8; i++)
		for (int j = i + 1; j < 8; j++)
			ck_assert_ptr_ne(held[i]->data, held[j]->data);
	for (int i = 0; i < 8; i++)
		vq_buf_release(held[i]);
	ck_assert_uint_eq(pool.st.free, 8);
}
END_TEST

static int woken;

static void on_free(void *ctx)
{
	(*(int *)ctx)++;
	woken++;
}

START_TEST(waiters_hear_about_released_buffers)
{
	struct vq_buf *held[8];
	struct vq_pool_waiter w = { .fn = on_free, .ctx = &(int){ 0 } };

	for (int i = 0; i < 8; i++)
		held[i] = vq_pool_alloc(&pool);
	woken = 0;
	vq_pool_wait(&pool, &w);
	vq_pool_run_waiters(&pool);
	ck_assert_int_eq(woken, 0); /* nothing free yet */
	vq_buf_release(held[0]);
	vq_pool_run_waiters(&pool);
	ck_assert_int_eq(woken, 1);
	vq_pool_run_waiters(&pool);
	ck_assert_int_eq(woken, 1); /* once only */
	for (int i = 1; i < 8; i++)
		vq_buf_release(held[i]);
}
END_TEST

START_TEST(kernel_accounting)
{
	struct vq_buf *k = vq_pool_take_for_kernel(&pool);
	struct vq_buf *u = vq_pool_alloc(&pool);

	ck_assert_uint_eq(pool.st.kernel, 1);
	ck_assert_uint_eq(pool.st.user, 1);
	vq_buf_to_kernel(u);
	ck_assert_uint_eq(pool.st.kernel, 2);
	ck_assert_uint_eq(pool.st.user, 0);
	vq_buf_from_kernel(u);
	vq_buf_from_kernel(k);
	ck_assert_uint_eq(pool.st.user, 2);
	vq_buf_release(u);
	vq_buf_release(k);
	ck_assert_uint_eq(pool.st.free + pool.st.user + pool.st.kernel, pool.count);
	ck_assert_uint_eq(pool.st.free, 8);
}
END_TEST

START_TEST(fini_reports_missing_buffers)
{
	ck_assert_ptr_nonnull(vq_pool_alloc(&pool));
	ck_assert_ptr_nonnull(vq_pool_alloc(&pool));
	ck_assert_uint_eq(vq_pool_fini(&pool), 2);
	setup();
}
END_TEST

START_TEST(bad_params)
{
	struct vq_pool p;
	struct vq_pool_params bad_size = { .count = 4, .size = 1000, .node = -1 };
	struct vq_pool_params none = { .count = 0, .size = 4096, .node = -1 };

	ck_assert_int_eq(vq_pool_init(&p, &bad_size), -EINVAL);
	ck_assert_int_eq(vq_pool_init(&p, &none), -EINVAL);
}
END_TEST

START_TEST(numa_bound_and_hugepage_fallback)
{
	struct vq_pool p;
	struct vq_pool_params params = { .count = 4, .size = 65536, .node = 0,
					 .huge = VQ_HUGE_TRY, .home = 0 };

	ck_assert_int_eq(vq_pool_init(&p, &params), 0);
	ck_assert_uint_ge(p.region_len, 4 * 65536);
	ck_assert_uint_eq(vq_pool_fini(&p), 0);
}
END_TEST

#ifndef NDEBUG
/* A buffer released on a shard other than its home trips the debug check. */
START_TEST(foreign_release_aborts)
{
	struct vq_buf *b = vq_pool_alloc(&pool);

	vq_buf_set_thread_home(1);
	vq_buf_release(b);
}
END_TEST
#endif

static Suite *suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool api");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, alloc_and_release);
	tcase_add_test(tc, exhaustion_is_backpressure);
	tcase_add_test(tc, waiters_hear_about_released_buffers);
	tcase_add_test(tc, kernel_accounting);
	tcase_add_test(tc, fini_reports_missing_buffers);
	tcase_add_test(tc, bad_params);
	tcase_add_test(tc, numa_bound_and_hugepage_fallback);
#ifndef NDEBUG
	tcase_add_test_raise_signal(tc, foreign_release_aborts, SIGABRT);
#endif
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return vq_check_run(suite());
}
