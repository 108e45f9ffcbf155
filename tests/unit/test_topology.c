/* SPDX-License-Identifier: MIT */
/*
 * Core-map resolution against machines this one is not: hwloc XML exports
 * under tests/data/ (1 socket x 2 cores; 2 sockets x 2 nodes x 8 cores x 2 PUs
 * numbered the way Linux numbers Intel siblings; an asymmetric one) and a
 * synthetic description. Plus the allowed-CPU sources read from a fake /proc
 * and /sys tree.
 */
#include "vq_check.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "cpulist.h"
#include "topology.h"

#define DATA VQ_SOURCE_DIR "/tests/data/"

static struct vq_topo *load(const char *src)
{
	struct vq_topo *t;
	char err[256];

	ck_assert_msg(!vq_topo_load(&t, src, err, sizeof(err)), "%s: %s", src ? src : "this machine",
		      err);
	return t;
}

static cpu_set_t list(const char *text)
{
	cpu_set_t set;
	char err[128];

	ck_assert(!vq_cpulist_parse(text, &set, err, sizeof(err)));
	return set;
}

/* Resolve with defaults overridden by the arguments; returns 0 or -1 like resolve. */
static int resolve(const char *src, const char *cpus, int smt, const char *exclude,
		   const char *nodes, const char *count, const cpu_set_t *allowed,
		   const cpu_set_t *isolated, struct vq_coremap *m)
{
	struct vq_topo *t = load(src);
	struct vq_coremap_spec spec = { cpus, smt, exclude, nodes, count, allowed, isolated };
	int ret = vq_coremap_resolve(t, &spec, m);

	vq_topo_free(t);
	return ret;
}

/* The shards' CPUs in shard order, "0,16,1" style. */
static const char *cpus_of(const struct vq_coremap *m)
{
	static char out[512];
	size_t n = 0;

	out[0] = 0;
	for (int i = 0; i < m->n; i++)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%d", i ? "," : "", m->place[i].cpu);
	return out;
}

static void expect(const struct vq_coremap *m, const char *want)
{
	ck_assert_str_eq(cpus_of(m), want);
}

static void expect_error(int ret, const struct vq_coremap *m, const char *key, const char *text)
{
	ck_assert_int_eq(ret, -1);
	ck_assert_str_eq(m->err_key, key);
	ck_assert_msg(strstr(m->err, text), "'%s' not in '%s'", text, m->err);
	ck_assert_ptr_null(m->place);
}

#define ONE  DATA "topo-1s1n2c.xml"
#define TWO  DATA "topo-2s2n8c2t.xml"
#define ASYM DATA "topo-asym.xml"

START_TEST(one_socket)
{
	struct vq_coremap m;

	ck_assert(!resolve(ONE, "auto", VQ_SMT_ONE_PER_CORE, "", "all", "auto", NULL, NULL, &m));
	expect(&m, "0,1");
	ck_assert_int_eq(m.place[1].core, 1);
	ck_assert_int_eq(m.place[1].package, 0);
	ck_assert_int_eq(m.place[1].node, 0);
	ck_assert_int_eq(m.nwarn, 0);
	vq_coremap_free(&m);
	ck_assert(!resolve(ONE, "1", VQ_SMT_ALL, "", "", "auto", NULL, NULL, &m));
	expect(&m, "1");
	vq_coremap_free(&m);
	ck_assert(!resolve(ONE, "auto", VQ_SMT_ONE_PER_CORE, "", "0", "1", NULL, NULL, &m));
	expect(&m, "0");
	vq_coremap_free(&m);
	/* Leaving CPU 0 for interrupts. */
	ck_assert(!resolve(ONE, "auto", VQ_SMT_ONE_PER_CORE, "0", "all", "auto", NULL, NULL, &m));
	expect(&m, "1");
	vq_coremap_free(&m);
}
END_TEST

START_TEST(synthetic_matches_xml)
{
	struct vq_coremap m;

	ck_assert(!resolve("synthetic:pack:1 [numa] core:2 pu:1", "auto", 0, "", "", "auto", NULL,
			   NULL, &m));
	expect(&m, "0,1");
	vq_coremap_free(&m);
}
END_TEST

START_TEST(two_sockets_smt)
{
	struct vq_coremap m;

	/* One per core: the first PUs, package 0 then 1. */
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ONE_PER_CORE, "", "all", "auto", NULL, NULL, &m));
	expect(&m, "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15");
	ck_assert_int_eq(m.place[7].node, 0);
	ck_assert_int_eq(m.place[8].node, 1);
	ck_assert_int_eq(m.place[8].package, 1);
	ck_assert_int_eq(m.place[8].core, 8);
	vq_coremap_free(&m);

	/* All PUs: every core's first PU, then the siblings, each on its core. */
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ALL, "", "all", "auto", NULL, NULL, &m));
	ck_assert_int_eq(m.n, 32);
	ck_assert_int_eq(m.place[16].cpu, 16);
	ck_assert_int_eq(m.place[16].core, 0);
	ck_assert_int_eq(m.place[31].cpu, 31);
	ck_assert_int_eq(m.place[31].node, 1);
	vq_coremap_free(&m);

	/* count bounds it, filling cores before siblings. */
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ALL, "", "all", "20", NULL, NULL, &m));
	ck_assert_int_eq(m.n, 20);
	ck_assert_int_eq(m.place[15].cpu, 15);
	ck_assert_int_eq(m.place[16].cpu, 16);
	vq_coremap_free(&m);
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ONE_PER_CORE, "", "all", "4", NULL, NULL, &m));
	expect(&m, "0,1,2,3");
	vq_coremap_free(&m);
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ONE_PER_CORE, "", "all", "100", NULL, NULL, &m));
	ck_assert_int_eq(m.n, 16);
	vq_coremap_free(&m);
}
END_TEST

START_TEST(two_sockets_keys)
{
	struct vq_coremap m;

	/* numa_nodes. */
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ONE_PER_CORE, "", "1", "auto", NULL, NULL, &m));
	expect(&m, "8,9,10,11,12,13,14,15");
	for (int i = 0; i < m.n; i++)
		ck_assert_int_eq(m.place[i].node, 1);
	vq_coremap_free(&m);

	/* An explicit list with siblings: one-per-core drops them and says so. */
	ck_assert(!resolve(TWO, "0-3,16-19", VQ_SMT_ONE_PER_CORE, "", "", "auto", NULL, NULL, &m));
	expect(&m, "0,1,2,3");
	ck_assert_int_eq(m.nwarn, 1);
	ck_assert_msg(strstr(m.warn[0], "16-19") && strstr(m.warn[0], "smt = all"), "%s",
		      m.warn[0]);
	vq_coremap_free(&m);
	ck_assert(!resolve(TWO, "0-3,16-19", VQ_SMT_ALL, "", "", "auto", NULL, NULL, &m));
	expect(&m, "0,1,2,3,16,17,18,19");
	vq_coremap_free(&m);

	/* exclude CPU 0 only: core 0 keeps a shard on its sibling 16; excluding both frees it. */
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ONE_PER_CORE, "0", "0", "auto", NULL, NULL, &m));
	expect(&m, "16,1,2,3,4,5,6,7");
	vq_coremap_free(&m);
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ONE_PER_CORE, "0,16", "0", "auto", NULL, NULL, &m));
	expect(&m, "1,2,3,4,5,6,7");
	vq_coremap_free(&m);
}
END_TEST

START_TEST(auto_follows_affinity)
{
	cpu_set_t allowed = list("8-11,24-27");
	struct vq_coremap m;

	ck_assert(!resolve(TWO, "auto", VQ_SMT_ONE_PER_CORE, "", "", "auto", &allowed, NULL, &m));
	expect(&m, "8,9,10,11");
	vq_coremap_free(&m);
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ALL, "", "", "auto", &allowed, NULL, &m));
	expect(&m, "8,9,10,11,24,25,26,27");
	vq_coremap_free(&m);
	/* Only siblings allowed: one-per-core still finds a PU on each core. */
	allowed = list("20-21");
	ck_assert(!resolve(TWO, "auto", VQ_SMT_ONE_PER_CORE, "", "", "auto", &allowed, NULL, &m));
	expect(&m, "20,21");
	vq_coremap_free(&m);
}
END_TEST

START_TEST(asymmetric)
{
	struct vq_coremap m;

	/* Package 0: 4 cores x 2 PUs (0-7, node 0); package 1: 3 cores x 1 PU (8,10,12, node 1). */
	ck_assert(!resolve(ASYM, "auto", VQ_SMT_ONE_PER_CORE, "", "", "auto", NULL, NULL, &m));
	expect(&m, "0,2,4,6,8,10,12");
	ck_assert_int_eq(m.place[6].node, 1);
	ck_assert_int_eq(m.place[6].core, 6);
	vq_coremap_free(&m);
	ck_assert(!resolve(ASYM, "auto", VQ_SMT_ALL, "", "", "auto", NULL, NULL, &m));
	expect(&m, "0,2,4,6,8,10,12,1,3,5,7");
	vq_coremap_free(&m);
	ck_assert(!resolve(ASYM, "auto", VQ_SMT_ALL, "", "1", "auto", NULL, NULL, &m));
	expect(&m, "8,10,12");
	vq_coremap_free(&m);
}
END_TEST

START_TEST(isolated_warnings)
{
	cpu_set_t iso = list("2-3");
	struct vq_coremap m;

	ck_assert(!resolve(ASYM, "0,1,2", VQ_SMT_ALL, "", "", "auto", NULL, &iso, &m));
	ck_assert_int_eq(m.nwarn, 2);
	ck_assert_msg(strstr(m.warn[0], "isolated CPUs 2:") && strstr(m.warn[0], "run on"), "%s",
		      m.warn[0]);
	ck_assert_msg(strstr(m.warn[1], "isolated CPUs 3 ") && strstr(m.warn[1], "left"), "%s",
		      m.warn[1]);
	vq_coremap_free(&m);
	ck_assert(!resolve(ASYM, "4", VQ_SMT_ALL, "", "", "auto", NULL, &iso, &m));
	ck_assert_int_eq(m.nwarn, 1);
	ck_assert_msg(strstr(m.warn[0], "2-3 are left"), "%s", m.warn[0]);
	vq_coremap_free(&m);
}
END_TEST

START_TEST(errors)
{
	cpu_set_t allowed = list("0-3");
	cpu_set_t none;
	struct vq_coremap m;

	CPU_ZERO(&none);
	expect_error(resolve(TWO, "zero", 0, "", "", "auto", NULL, NULL, &m), &m, "cpus",
		     "is not a CPU list");
	expect_error(resolve(TWO, "", 0, "", "", "auto", NULL, NULL, &m), &m, "cpus",
		     "empty CPU list");
	expect_error(resolve(TWO, "3-1", 0, "", "", "auto", NULL, NULL, &m), &m, "cpus",
		     "reversed range");
	expect_error(resolve(ASYM, "9", 0, "", "", "auto", NULL, NULL, &m), &m, "cpus",
		     "CPU 9 does not exist (this machine has CPUs 0-8,10,12)");
	expect_error(resolve(TWO, "2-5", 0, "", "", "auto", &allowed, NULL, &m), &m, "cpus",
		     "CPU 4 is not one this process may use (allowed: 0-3;");
	expect_error(resolve(TWO, "auto", 0, "", "", "auto", &none, NULL, &m), &m, "cpus",
		     "auto finds no CPU");
	expect_error(resolve(TWO, "auto", 0, "1-", "", "auto", NULL, NULL, &m), &m, "exclude",
		     "is not a CPU list");
	expect_error(resolve(TWO, "0-3", 0, "0-7", "", "auto", NULL, NULL, &m), &m, "exclude",
		     "leaves no CPU");
	expect_error(resolve(TWO, "auto", 0, "", "x", "auto", NULL, NULL, &m), &m, "numa_nodes",
		     "is not a CPU list");
	expect_error(resolve(TWO, "auto", 0, "", "2", "auto", NULL, NULL, &m), &m, "numa_nodes",
		     "node 2 does not exist (nodes: 0-1)");
	expect_error(resolve(TWO, "0-3", 0, "", "1", "auto", NULL, NULL, &m), &m, "numa_nodes",
		     "no selected CPU is on node(s) 1 (selected: 0-3; those nodes have CPUs "
		     "8-15,24-31)");
	expect_error(resolve(TWO, "auto", 0, "", "", "0", NULL, NULL, &m), &m, "count",
		     "'0' is not a number of shards (use auto");
	expect_error(resolve(TWO, "auto", 0, "", "", "many", NULL, NULL, &m), &m, "count",
		     "'many' is not a number");
}
END_TEST

START_TEST(bad_topology_source)
{
	struct vq_topo *t;
	char err[256];

	ck_assert_int_eq(vq_topo_load(&t, DATA "no-such.xml", err, sizeof(err)), -1);
	ck_assert_ptr_null(t);
	ck_assert_msg(strstr(err, "no-such.xml"), "%s", err);
	ck_assert_int_eq(vq_topo_load(&t, "synthetic:pack:x", err, sizeof(err)), -1);
}
END_TEST

START_TEST(this_machine)
{
	struct vq_topo *t = load(NULL);
	cpu_set_t all;

	vq_topo_cpus(t, &all);
	ck_assert_int_eq(CPU_COUNT(&all), (int)sysconf(_SC_NPROCESSORS_CONF));
	vq_topo_free(t);
}
END_TEST

/* A fake /proc and /sys under a temporary directory. */
static char root[64];

static void put(const char *rel, const char *text)
{
	char path[256], cmd[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s%s", root, rel);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
	ck_assert(!system(cmd));
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static void make_root(void)
{
	strcpy(root, "/tmp/vq-topo-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
}

static void drop_root(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert(!system(cmd));
}

START_TEST(allowed_sources)
{
	cpu_set_t aff, got, mine = list("0");
	char why[512], a[64];

	ck_assert(!sched_getaffinity(0, sizeof(aff), &aff));
	make_root();
	/* Nothing to read: the affinity mask alone. */
	ck_assert(!vq_allowed_cpus(root, &got, why, sizeof(why)));
	ck_assert(CPU_EQUAL(&got, &aff));
	/* cgroup v2 restricts to CPU 1; online is 0-1. */
	put("/proc/self/cgroup", "0::/svc.slice/a.service\n");
	put("/sys/fs/cgroup/svc.slice/a.service/cpuset.cpus.effective", "1\n");
	put("/sys/devices/system/cpu/online", "0-1\n");
	ck_assert(!vq_allowed_cpus(root, &got, why, sizeof(why)));
	ck_assert_str_eq(vq_cpulist_format(&got, a, sizeof(a)), CPU_ISSET(1, &aff) ? "1" : "");
	ck_assert_msg(strstr(why, "cgroup cpuset 1"), "%s", why);
	/* cgroup v1. */
	put("/proc/self/cgroup", "4:memory:/x\n3:cpuset:/box\n0::/\n");
	put("/sys/fs/cgroup/cpuset/box/cpuset.effective_cpus", "0\n");
	ck_assert(!vq_allowed_cpus(root, &got, why, sizeof(why)));
	ck_assert_str_eq(vq_cpulist_format(&got, a, sizeof(a)), "0");
	/* The affinity mask (taskset) restricts too. */
	put("/proc/self/cgroup", "0::/\n");
	put("/sys/fs/cgroup/cpuset.cpus.effective", "0-1\n");
	ck_assert(!sched_setaffinity(0, sizeof(mine), &mine));
	ck_assert(!vq_allowed_cpus(root, &got, why, sizeof(why)));
	ck_assert_str_eq(vq_cpulist_format(&got, a, sizeof(a)), "0");
	ck_assert(!sched_setaffinity(0, sizeof(aff), &aff));
	/* Isolated CPUs. */
	vq_isolated_cpus(root, &got);
	ck_assert_int_eq(CPU_COUNT(&got), 0);
	put("/sys/devices/system/cpu/isolated", "1\n");
	vq_isolated_cpus(root, &got);
	ck_assert_str_eq(vq_cpulist_format(&got, a, sizeof(a)), "1");
	put("/sys/devices/system/cpu/isolated", "\n");
	vq_isolated_cpus(root, &got);
	ck_assert_int_eq(CPU_COUNT(&got), 0);
	drop_root();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("topology");
	TCase *maps = tcase_create("core maps"), *sys = tcase_create("process and machine");

	tcase_add_test(maps, one_socket);
	tcase_add_test(maps, synthetic_matches_xml);
	tcase_add_test(maps, two_sockets_smt);
	tcase_add_test(maps, two_sockets_keys);
	tcase_add_test(maps, auto_follows_affinity);
	tcase_add_test(maps, asymmetric);
	tcase_add_test(maps, isolated_warnings);
	tcase_add_test(maps, errors);
	tcase_add_test(sys, bad_topology_source);
	tcase_add_test(sys, this_machine);
	tcase_add_test(sys, allowed_sources);
	suite_add_tcase(s, maps);
	suite_add_tcase(s, sys);
	return vq_check_run(s);
}
