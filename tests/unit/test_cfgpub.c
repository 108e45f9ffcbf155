/* SPDX-License-Identifier: MIT */
/*
 * Config snapshots under real concurrency: readers on their own threads pick
 * up snapshots while the publisher publishes thousands; every snapshot a
 * reader sees must be whole (its fields agree), generations only move
 * forward, and retired snapshots are freed once every reader moved past
 * them (the ASan build catches a reader touching a freed one).
 */
#include "vq_check.h"
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cfgpub.h"

#define READERS 2
#define ROUNDS  20000

static struct vq_cfg_pub pub;
static _Atomic int done;

struct reader {
	int id;
	uint64_t picks, torn, backwards;
};

static void *reader(void *arg)
{
	struct reader *r = arg;
	const struct vq_config *cfg = NULL;
	uint64_t last = 0;

	while (!atomic_load(&done) || vq_cfg_pub_acked(&pub, r->id) != vq_cfg_pub_gen(&pub)) {
		if (!vq_cfg_pub_pick(&pub, r->id, &cfg))
			continue;
		r->picks++;
		/* The publisher writes port = gen and max_connections = 2 * gen. */
		if (cfg->max_connections != 2 * cfg->port)
			r->torn++;
		if (cfg->port < last)
			r->backwards++;
		last = cfg->port;
	}
	return NULL;
}

START_TEST(readers_see_whole_snapshots)
{
	struct vq_config cfg = { .port = 1, .max_connections = 2 };
	struct reader rs[READERS];
	pthread_t th[READERS];
	int left;

	ck_assert(!vq_cfg_pub_init(&pub, &cfg, READERS));
	for (int i = 0; i < READERS; i++) {
		rs[i] = (struct reader){ .id = i };
		ck_assert(!pthread_create(&th[i], NULL, reader, &rs[i]));
	}
	for (uint64_t g = 2; g <= ROUNDS; g++) {
		cfg.port = g;
		cfg.max_connections = 2 * g;
		ck_assert_uint_eq(vq_cfg_pub_publish(&pub, &cfg), g);
	}
	atomic_store(&done, 1);
	for (int i = 0; i < READERS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_gt(rs[i].picks, 0);
		ck_assert_uint_eq(rs[i].torn, 0);
		ck_assert_uint_eq(rs[i].backwards, 0);
		ck_assert_uint_eq(vq_cfg_pub_acked(&pub, i), ROUNDS);
	}
	/* Every reader is on the newest: nothing retired is still needed. */
	left = vq_cfg_pub_reclaim(&pub);
	ck_assert_int_eq(left, 0);
	vq_cfg_pub_fini(&pub);
}
END_TEST

START_TEST(slow_reader_holds_its_snapshot)
{
	struct vq_config cfg = { .port = 1 };
	const struct vq_config *mine = NULL;

	ck_assert(!vq_cfg_pub_init(&pub, &cfg, 2));
	ck_assert(vq_cfg_pub_pick(&pub, 0, &mine));
	ck_assert(!vq_cfg_pub_pick(&pub, 0, &mine)); /* nothing new */
	cfg.port = 2;
	vq_cfg_pub_publish(&pub, &cfg);
	cfg.port = 3;
	vq_cfg_pub_publish(&pub, &cfg);
	/* Reader 1 never picked (gen 0), reader 0 is on gen 1: both retired ones stay. */
	ck_assert_int_eq(vq_cfg_pub_reclaim(&pub), 2);
	ck_assert_uint_eq(mine->port, 1); /* still readable */
	ck_assert(vq_cfg_pub_pick(&pub, 0, &mine));
	ck_assert_uint_eq(mine->port, 3);
	ck_assert_int_eq(vq_cfg_pub_reclaim(&pub), 2); /* reader 1 still on 0 */
	ck_assert(vq_cfg_pub_pick(&pub, 1, &mine));
	ck_assert_int_eq(vq_cfg_pub_reclaim(&pub), 0);
	vq_cfg_pub_fini(&pub);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cfgpub");
	TCase *tc = tcase_create("snapshots");

	tcase_add_test(tc, readers_see_whole_snapshots);
	tcase_add_test(tc, slow_reader_holds_its_snapshot);
	suite_add_tcase(s, tc);
	return vq_check_run(s);
}
