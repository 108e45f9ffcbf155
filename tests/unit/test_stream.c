/* SPDX-License-Identifier: MIT */
/* The framed readers on a queue of real pool buffers: boundaries, limits, release. */
#include "vq_check.h"
#include <check.h>
#include <errno.h>
#include <string.h>

#include "pool.h"
#include "stream.h"

static struct vq_pool pool;

static void setup(void)
{
	struct vq_pool_params pp = { .count = 16, .size = 4096, .node = -1, .huge = VQ_HUGE_OFF };

	vq_buf_set_thread_home(0);
	ck_assert_int_eq(vq_pool_init(&pool, &pp), 0);
}

static void teardown(void)
{
	ck_assert_uint_eq(vq_pool_fini(&pool), 0);
}

/* Queue s split into pieces of the given sizes, one buffer each. */
static void queue(struct vq_bufq *q, const char *s, const int *sizes)
{
	for (; *s; sizes++) {
		struct vq_buf *b = vq_pool_alloc(&pool);
		size_t n = strlen(s) < (size_t)*sizes ? strlen(s) : (size_t)*sizes;

		b->off = 7; /* not at the start of the buffer, as after a partial consume */
		memcpy(vq_buf_bytes(b), s, n);
		b->len = (uint32_t)n;
		vq_bufq_push(q, b);
		s += n;
	}
}

static void drain(struct vq_bufq *q)
{
	struct vq_buf *b;

	while ((b = vq_bufq_pop(q)))
		vq_buf_release(b);
}

START_TEST(lines_across_boundaries)
{
	struct vq_bufq q = { 0 };
	static const int sizes[] = { 3, 1, 5, 2, 100 };
	char out[32];
	uint32_t used;

	queue(&q, "ab\ncdef\ng\nhij", sizes);
	used = pool.st.user;
	ck_assert_int_eq(vq_bufq_read_until(&q, '\n', out, sizeof(out)), 3);
	ck_assert_int_eq(memcmp(out, "ab\n", 3), 0);
	ck_assert_int_eq(vq_bufq_read_until(&q, '\n', out, sizeof(out)), 5);
	ck_assert_int_eq(memcmp(out, "cdef\n", 5), 0);
	ck_assert_int_eq(vq_bufq_read_until(&q, '\n', out, sizeof(out)), 2);
	/* Incomplete: nothing consumed. */
	ck_assert_int_eq(vq_bufq_read_until(&q, '\n', out, sizeof(out)), -EAGAIN);
	ck_assert_uint_eq(q.bytes, 3);
	/* Emptied buffers went back to the pool as they were consumed. */
	ck_assert_uint_lt(pool.st.user, used);
	ck_assert_uint_eq(vq_bufq_read_copy(&q, out, sizeof(out)), 3);
	ck_assert_int_eq(memcmp(out, "hij", 3), 0);
	ck_assert_ptr_null(q.head);
}
END_TEST

START_TEST(oversized_is_an_error)
{
	struct vq_bufq q = { 0 };
	static const int sizes[] = { 4, 4, 4, 4 };
	char out[8];

	queue(&q, "0123456789abcdef", sizes);
	/* No delimiter in the first 8 bytes and 16 queued: an error, not growth. */
	ck_assert_int_eq(vq_bufq_read_until(&q, '\n', out, sizeof(out)), -EMSGSIZE);
	ck_assert_uint_eq(q.bytes, 16);
	/* A delimiter just past the limit is still too far. */
	ck_assert_int_eq(vq_bufq_read_until(&q, '8', out, 8), -EMSGSIZE);
	ck_assert_int_eq(vq_bufq_read_until(&q, '7', out, 8), 8);
	ck_assert_int_eq(vq_bufq_read_exact(&q, out, 9, 8), -EMSGSIZE);
	ck_assert_int_eq(vq_bufq_read_exact(&q, out, 8, 8), 8);
	ck_assert_int_eq(memcmp(out, "89abcdef", 8), 0);
	ck_assert_int_eq(vq_bufq_read_exact(&q, out, 1, 8), -EAGAIN);
	drain(&q);
}
END_TEST

START_TEST(exact_across_boundaries)
{
	struct vq_bufq q = { 0 };
	static const int sizes[] = { 1, 2, 3, 4 };
	char out[16];

	queue(&q, "abcdefghij", sizes);
	ck_assert_int_eq(vq_bufq_read_exact(&q, out, 4, 16), 4);
	ck_assert_int_eq(memcmp(out, "abcd", 4), 0);
	ck_assert_int_eq(vq_bufq_read_exact(&q, out, 7, 16), -EAGAIN);
	ck_assert_int_eq(vq_bufq_read_exact(&q, out, 6, 16), 6);
	ck_assert_int_eq(memcmp(out, "efghij", 6), 0);
	ck_assert_ptr_null(q.head);
	ck_assert_uint_eq(pool.st.user, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("readers");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, lines_across_boundaries);
	tcase_add_test(tc, oversized_is_an_error);
	tcase_add_test(tc, exact_across_boundaries);
	suite_add_tcase(s, tc);
	return vq_check_run(s);
}
