/* SPDX-License-Identifier: MIT */
#include "vq_check.h"
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "timer.h"

static int order[64], fired;

static void note(struct vq_timer *t)
{
	order[fired++] = (int)(t->when_ns / 10);
}

START_TEST(fires_in_deadline_order)
{
	struct vq_timer_heap h = { 0 };
	struct vq_timer t[40];
	const int when[] = { 50, 10, 30, 20, 40 };

	for (int i = 0; i < 40; i++) {
		t[i] = (struct vq_timer){ .fn = note };
		ck_assert_int_eq(vq_timer_heap_arm(&h, &t[i], (uint64_t)(when[i % 5] + 100 * (i / 5)) * 10), 0);
	}
	ck_assert_uint_eq(vq_timer_heap_next(&h), 100);
	fired = 0;
	ck_assert_uint_eq(vq_timer_heap_run(&h, 500), 5); /* only those due */
	ck_assert_uint_eq(vq_timer_heap_run(&h, UINT64_MAX), 35);
	for (int i = 1; i < fired; i++)
		ck_assert_int_le(order[i - 1], order[i]);
	ck_assert_uint_eq(vq_timer_heap_next(&h), UINT64_MAX);
	vq_timer_heap_free(&h);
}
END_TEST

START_TEST(disarm_and_rearm)
{
	struct vq_timer_heap h = { 0 };
	struct vq_timer a = { .fn = note }, b = { .fn = note }, c = { .fn = note };

	vq_timer_heap_arm(&h, &a, 10);
	vq_timer_heap_arm(&h, &b, 20);
	vq_timer_heap_arm(&h, &c, 30);
	vq_timer_heap_disarm(&h, &a);
	vq_timer_heap_disarm(&h, &a); /* twice is harmless */
	ck_assert_uint_eq(a.slot, 0);
	vq_timer_heap_arm(&h, &c, 5); /* moves earlier */
	ck_assert_uint_eq(vq_timer_heap_next(&h), 5);
	vq_timer_heap_arm(&h, &c, 50); /* and later */
	ck_assert_uint_eq(vq_timer_heap_next(&h), 20);
	fired = 0;
	ck_assert_uint_eq(vq_timer_heap_run(&h, 100), 2);
	vq_timer_heap_free(&h);
}
END_TEST

/* After a reserve for n, arming n timers never moves the heap's storage. */
START_TEST(reserve_then_arm_without_growing)
{
	struct vq_timer_heap h = { 0 };
	struct vq_timer t[300];
	struct vq_timer **items;

	ck_assert_int_eq(vq_timer_heap_reserve(&h, 300), 0);
	ck_assert_uint_ge(h.cap, 300);
	items = h.items;
	for (int i = 0; i < 300; i++) {
		t[i] = (struct vq_timer){ .fn = note };
		ck_assert_int_eq(vq_timer_heap_arm(&h, &t[i], (uint64_t)(300 - i)), 0);
	}
	ck_assert_ptr_eq(h.items, items);
	ck_assert_int_eq(vq_timer_heap_reserve(&h, 10), 0); /* never shrinks */
	ck_assert_ptr_eq(h.items, items);
	ck_assert_uint_eq(vq_timer_heap_next(&h), 1);
	fired = 0;
	ck_assert_uint_eq(vq_timer_heap_run(&h, 64), 64);
	vq_timer_heap_free(&h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("timer");
	TCase *tc = tcase_create("timer heap");

	tcase_add_test(tc, fires_in_deadline_order);
	tcase_add_test(tc, disarm_and_rearm);
	tcase_add_test(tc, reserve_then_arm_without_growing);
	suite_add_tcase(s, tc);
	return vq_check_run(s);
}
