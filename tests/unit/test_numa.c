/* SPDX-License-Identifier: MIT */
/*
 * A shard's memory lives on its own NUMA node: ask the kernel, not our own
 * bookkeeping. The shard is real (pinned thread, ring, registered pool); the
 * kernel reports the node of every pool page (move_pages with no target) and
 * the policy the region is bound with (get_mempolicy MPOL_F_ADDR).
 */
#include "vq_check.h"
#include <check.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "shard.h"

static const struct vq_service svc = { .name = "numa-test" };

struct result {
	int setup, node, cpu, misplaced, absent, npages, region_mode, region_node_ok;
	int thread_mode, thread_node_ok;
};

static void *run_shard(void *arg)
{
	struct result *r = arg;
	static struct vq_config cfg;
	struct vq_cfg_table t = vq_config_table(&cfg);
	struct vq_shard *s = calloc(1, sizeof(*s));
	unsigned long mask[16];
	char err[256];

	ck_assert(!vq_config_load(&t, 1, NULL, NULL, 0, err, sizeof(err)));
	cfg.buf_count = 256;
	cfg.buf_provided = 64;
	cfg.hugepages = 0; /* 4K pages: one status per buffer page */
	s->cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
	s->svc = &svc;
	s->cfg = &cfg;
	r->setup = vq_shard_setup(s, false);
	if (r->setup)
		return NULL;
	r->node = s->node;
	r->cpu = sched_getcpu();
	{
		size_t n = s->pool.region_len / 4096;
		void **pages = calloc(n, sizeof(*pages));
		int *status = calloc(n, sizeof(*status));

		for (size_t i = 0; i < n; i++)
			pages[i] = s->pool.region + i * 4096;
		ck_assert_int_eq(move_pages(0, n, pages, NULL, status, 0), 0);
		r->npages = (int)n;
		for (size_t i = 0; i < n; i++) {
			if (status[i] < 0)
				r->absent++; /* not faulted in: the pool should be pre-faulted */
			else if (status[i] != s->node)
				r->misplaced++;
		}
		free(pages);
		free(status);
	}
	memset(mask, 0, sizeof(mask));
	ck_assert(!get_mempolicy(&r->region_mode, mask, sizeof(mask) * 8, s->pool.region,
				 MPOL_F_ADDR));
	r->region_node_ok = mask[0] == 1ul << s->node;
	memset(mask, 0, sizeof(mask));
	ck_assert(!get_mempolicy(&r->thread_mode, mask, sizeof(mask) * 8, NULL, 0));
	r->thread_node_ok = mask[0] == 1ul << s->node;
	vq_shard_teardown(s);
	free(s);
	return NULL;
}

START_TEST(pool_pages_on_shard_node)
{
	struct result r = { 0 };
	pthread_t th;

	if (numa_available() < 0)
		ck_abort_msg("libnuma reports no NUMA support: cannot check placement");
	ck_assert(!pthread_create(&th, NULL, run_shard, &r));
	pthread_join(th, NULL);
	ck_assert_int_eq(r.setup, 0);
	ck_assert_int_eq(r.cpu, (int)sysconf(_SC_NPROCESSORS_ONLN) - 1);
	ck_assert_int_eq(r.node, numa_node_of_cpu(r.cpu));
	ck_assert_int_gt(r.npages, 0);
	ck_assert_int_eq(r.absent, 0);
	ck_assert_int_eq(r.misplaced, 0);
	ck_assert_int_eq(r.region_mode, MPOL_BIND);
	ck_assert(r.region_node_ok);
	ck_assert_int_eq(r.thread_mode, MPOL_PREFERRED);
	ck_assert(r.thread_node_ok);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("numa");
	TCase *tc = tcase_create("placement");

	tcase_add_test(tc, pool_pages_on_shard_node);
	suite_add_tcase(s, tc);
	return vq_check_run(s);
}
