/* SPDX-License-Identifier: MIT */
/*
 * Core maps: the [shards] keys resolved against hwloc's view of the machine
 * and the CPUs the process is allowed to use. The allowed set comes from the
 * process (affinity, cgroup cpuset, online CPUs), never from the list of CPUs
 * the machine has: a container or a systemd unit may give us fewer.
 */
#include <ctype.h>
#include <errno.h>
#include <hwloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cpulist.h"
#include "topology.h"

/* Per PU: its place, and its rank among the PUs of its core (0 = first). */
struct pu_info {
	struct vq_place p;
	int rank;
	bool present;
};

struct vq_topo {
	hwloc_topology_t h;
	struct pu_info pu[CPU_SETSIZE];
	cpu_set_t cpus;
	cpu_set_t nodes; /* NUMA node numbers, in a cpu_set_t for the list helpers */
	cpu_set_t node_cpus[64];
};

static int index_topology(struct vq_topo *t, char *err, size_t errlen)
{
	int npu = hwloc_get_nbobjs_by_type(t->h, HWLOC_OBJ_PU);
	int nnode = hwloc_get_nbobjs_by_type(t->h, HWLOC_OBJ_NUMANODE);

	CPU_ZERO(&t->cpus);
	CPU_ZERO(&t->nodes);
	for (int i = 0; i < npu; i++) {
		hwloc_obj_t pu = hwloc_get_obj_by_type(t->h, HWLOC_OBJ_PU, (unsigned)i);
		hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t->h, HWLOC_OBJ_CORE, pu);
		hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(t->h, HWLOC_OBJ_PACKAGE, pu);
		struct pu_info *pi;

		if (pu->os_index >= CPU_SETSIZE) {
			snprintf(err, errlen, "CPU %u is beyond the %d this build supports",
				 pu->os_index, CPU_SETSIZE);
			return -1;
		}
		pi = &t->pu[pu->os_index];
		pi->present = true;
		pi->p.cpu = (int)pu->os_index;
		/* A machine without core objects: each PU is its own core. */
		pi->p.core = core ? (int)core->logical_index : i;
		pi->p.package = pkg ? (int)pkg->logical_index : 0;
		pi->p.node = -1;
		pi->rank = 0;
		if (core)
			for (unsigned k = 0; k < core->arity && core->children[k] != pu; k++)
				if (core->children[k]->type == HWLOC_OBJ_PU)
					pi->rank++;
		CPU_SET((int)pu->os_index, &t->cpus);
	}
	for (int i = 0; i < nnode; i++) {
		hwloc_obj_t node = hwloc_get_obj_by_type(t->h, HWLOC_OBJ_NUMANODE, (unsigned)i);
		unsigned cpu;

		if (node->os_index >= 64)
			continue;
		CPU_SET((int)node->os_index, &t->nodes);
		CPU_ZERO(&t->node_cpus[node->os_index]);
		hwloc_bitmap_foreach_begin(cpu, node->cpuset)
		{
			if (cpu < CPU_SETSIZE && t->pu[cpu].present) {
				CPU_SET((int)cpu, &t->node_cpus[node->os_index]);
				if (t->pu[cpu].p.node < 0)
					t->pu[cpu].p.node = (int)node->os_index;
			}
		}
		hwloc_bitmap_foreach_end();
	}
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (t->pu[c].present && t->pu[c].p.node < 0)
			t->pu[c].p.node = 0; /* no NUMA information: one node */
	if (!CPU_COUNT(&t->cpus)) {
		snprintf(err, errlen, "the topology has no CPUs");
		return -1;
	}
	return 0;
}

int vq_topo_load(struct vq_topo **out, const char *source, char *err, size_t errlen)
{
	struct vq_topo *t = calloc(1, sizeof(*t));
	int ret = -1;

	*out = NULL;
	if (!t || hwloc_topology_init(&t->h)) {
		snprintf(err, errlen, "out of memory");
		free(t);
		return -1;
	}
	if (!source) {
		/* Keep PUs the cgroup forbids: "not allowed" must not read as "absent". */
		ret = hwloc_topology_set_flags(t->h, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
	} else if (!strncmp(source, "synthetic:", 10)) {
		ret = hwloc_topology_set_synthetic(t->h, source + 10);
	} else {
		ret = hwloc_topology_set_xml(t->h, source);
	}
	if (ret) {
		snprintf(err, errlen, "cannot use topology '%s': %s", source ? source : "(machine)",
			 strerror(errno));
		goto fail;
	}
	if (hwloc_topology_load(t->h)) {
		snprintf(err, errlen, "hwloc cannot load the topology '%s': %s",
			 source ? source : "(machine)", strerror(errno));
		goto fail;
	}
	if (index_topology(t, err, errlen)) {
		hwloc_topology_destroy(t->h);
		free(t);
		return -1;
	}
	*out = t;
	return 0;
fail:
	hwloc_topology_destroy(t->h);
	free(t);
	return -1;
}

void vq_topo_free(struct vq_topo *t)
{
	if (!t)
		return;
	hwloc_topology_destroy(t->h);
	free(t);
}

void vq_topo_cpus(const struct vq_topo *t, cpu_set_t *out)
{
	*out = t->cpus;
}

static int fail(struct vq_coremap *m, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct vq_coremap *m, const char *key, const char *fmt, ...)
{
	va_list ap;

	m->err_key = key;
	va_start(ap, fmt);
	vsnprintf(m->err, sizeof(m->err), fmt, ap);
	va_end(ap);
	free(m->place);
	m->place = NULL;
	m->n = 0;
	return -1;
}

static void warn(struct vq_coremap *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(struct vq_coremap *m, const char *fmt, ...)
{
	va_list ap;

	if (m->nwarn == VQ_COREMAP_WARN_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(m->warn[m->nwarn++], sizeof(m->warn[0]), fmt, ap);
	va_end(ap);
}

static bool is_empty_or(const char *v, const char *word)
{
	while (isspace((unsigned char)*v))
		v++;
	return !*v || !strcmp(v, word);
}

/* "auto" or a positive number; returns the bound, 0 = auto, -1 = malformed. */
static long parse_count(const char *v)
{
	char *end;
	long n;

	if (!strcmp(v, "auto"))
		return 0;
	if (!isdigit((unsigned char)*v))
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end || n < 1 || n > CPU_SETSIZE)
		return -1;
	return n;
}

int vq_coremap_resolve(const struct vq_topo *t, const struct vq_coremap_spec *spec,
		       struct vq_coremap *m)
{
	cpu_set_t allowed, cand, set, used, skipped;
	char a[256], b[256], perr[160];
	long limit;
	int maxrank = 0;

	memset(m, 0, sizeof(*m));
	CPU_AND(&allowed, &t->cpus, spec->allowed ? spec->allowed : &t->cpus);

	/* cpus: auto, or a list every member of which exists and is allowed. */
	if (!strcmp(spec->cpus, "auto")) {
		cand = allowed;
		if (!CPU_COUNT(&cand))
			return fail(m, "cpus", "auto finds no CPU this process may use (the "
				    "affinity mask, cgroup cpuset and online CPUs do not overlap)");
	} else {
		if (vq_cpulist_parse(spec->cpus, &cand, perr, sizeof(perr)))
			return fail(m, "cpus", "%s (use auto, or a list such as 0-3,8)", perr);
		for (int c = 0; c < CPU_SETSIZE; c++) {
			if (!CPU_ISSET(c, &cand))
				continue;
			if (!CPU_ISSET(c, &t->cpus))
				return fail(m, "cpus", "CPU %d does not exist (this machine has CPUs %s)",
					    c, vq_cpulist_format(&t->cpus, a, sizeof(a)));
			if (!CPU_ISSET(c, &allowed))
				return fail(m, "cpus",
					    "CPU %d is not one this process may use (allowed: %s; "
					    "widen taskset, CPUAffinity= or the cgroup cpuset, or "
					    "use cpus = auto)",
					    c, vq_cpulist_format(&allowed, a, sizeof(a)));
		}
	}

	if (!is_empty_or(spec->exclude, "none")) {
		if (vq_cpulist_parse(spec->exclude, &set, perr, sizeof(perr)))
			return fail(m, "exclude", "%s (leave it empty, or list CPUs such as 0,1)",
				    perr);
		CPU_AND(&set, &set, &cand);
		CPU_XOR(&cand, &cand, &set);
		if (!CPU_COUNT(&cand))
			return fail(m, "exclude",
				    "'%s' leaves no CPU for shards (shards.cpus gives %s; exclude "
				    "fewer CPUs)",
				    spec->exclude,
				    vq_cpulist_format(&set, a, sizeof(a)));
	}

	if (!is_empty_or(spec->numa_nodes, "all")) {
		cpu_set_t nodes, on;

		if (vq_cpulist_parse(spec->numa_nodes, &nodes, perr, sizeof(perr)))
			return fail(m, "numa_nodes", "%s (use all, or a node list such as 0-1)", perr);
		CPU_ZERO(&on);
		for (int n = 0; n < CPU_SETSIZE; n++) {
			if (!CPU_ISSET(n, &nodes))
				continue;
			if (n >= 64 || !CPU_ISSET(n, &t->nodes))
				return fail(m, "numa_nodes", "node %d does not exist (nodes: %s)", n,
					    vq_cpulist_format(&t->nodes, a, sizeof(a)));
			CPU_OR(&on, &on, &t->node_cpus[n]);
		}
		set = cand;
		CPU_AND(&cand, &cand, &on);
		if (!CPU_COUNT(&cand))
			return fail(m, "numa_nodes",
				    "no selected CPU is on node(s) %s (selected: %s; those nodes "
				    "have CPUs %s)",
				    spec->numa_nodes, vq_cpulist_format(&set, a, sizeof(a)),
				    vq_cpulist_format(&on, b, sizeof(b)));
	}

	limit = parse_count(spec->count);
	if (limit < 0)
		return fail(m, "count", "'%s' is not a number of shards (use auto, or 1 to %d)",
			    spec->count, CPU_SETSIZE);

	/*
	 * Shard order: hwloc's logical order of cores (package by package), first
	 * PUs of every core, then second PUs, and so on. "Rank" is a PU's place
	 * among the candidate PUs of its own core.
	 */
	m->place = calloc((size_t)CPU_COUNT(&cand), sizeof(*m->place));
	if (!m->place)
		return fail(m, "cpus", "out of memory");
	{
		int rank_of[CPU_SETSIZE], seen[CPU_SETSIZE];
		int ncores = hwloc_get_nbobjs_by_type(t->h, HWLOC_OBJ_PU); /* upper bound */

		memset(seen, 0, sizeof(int) * (size_t)(ncores + 1));
		for (int i = 0; i < ncores; i++) {
			hwloc_obj_t pu = hwloc_get_obj_by_type(t->h, HWLOC_OBJ_PU, (unsigned)i);
			int c = (int)pu->os_index, core = t->pu[c].p.core;

			rank_of[c] = -1;
			if (!CPU_ISSET(c, &cand))
				continue;
			rank_of[c] = seen[core]++;
			if (rank_of[c] > maxrank)
				maxrank = rank_of[c];
		}
		CPU_ZERO(&skipped);
		for (int r = 0; r <= maxrank; r++) {
			for (int i = 0; i < ncores; i++) {
				hwloc_obj_t pu = hwloc_get_obj_by_type(t->h, HWLOC_OBJ_PU, (unsigned)i);
				int c = (int)pu->os_index;

				if (!CPU_ISSET(c, &cand) || rank_of[c] != r)
					continue;
				if (r > 0 && spec->smt == VQ_SMT_ONE_PER_CORE) {
					CPU_SET(c, &skipped);
					continue;
				}
				if (limit && m->n == limit)
					continue;
				m->place[m->n++] = t->pu[c].p;
			}
		}
	}
	if (CPU_COUNT(&skipped) && strcmp(spec->cpus, "auto"))
		warn(m, "shards.smt = one-per-core: SMT siblings %s listed in shards.cpus get no "
		     "shard (set smt = all to use them)",
		     vq_cpulist_format(&skipped, a, sizeof(a)));

	if (spec->isolated && CPU_COUNT(spec->isolated)) {
		cpu_set_t iso, on_iso, idle;

		CPU_AND(&iso, spec->isolated, &t->cpus);
		CPU_ZERO(&used);
		for (int i = 0; i < m->n; i++)
			CPU_SET(m->place[i].cpu, &used);
		CPU_AND(&on_iso, &used, &iso);
		CPU_XOR(&idle, &iso, &on_iso);
		if (CPU_COUNT(&on_iso))
			warn(m, "shards run on isolated CPUs %s: the kernel does not balance load "
			     "there; that suits pinned shards if you reserved them for this service",
			     vq_cpulist_format(&on_iso, a, sizeof(a)));
		if (CPU_COUNT(&idle))
			warn(m, "isolated CPUs %s are left without a shard (to use them, allow "
			     "them with taskset or CPUAffinity= and name them in shards.cpus)",
			     vq_cpulist_format(&idle, a, sizeof(a)));
	}
	return 0;
}

void vq_coremap_free(struct vq_coremap *m)
{
	free(m->place);
	m->place = NULL;
	m->n = 0;
}

/* Read a one-line CPU list file under sysroot; returns 0 if it held a non-empty list. */
static int read_list(const char *sysroot, const char *path, cpu_set_t *set)
{
	char full[512], line[1024], err[160];
	FILE *f;
	int ret = -1;

	snprintf(full, sizeof(full), "%s%s", sysroot, path);
	f = fopen(full, "r");
	if (!f)
		return -1;
	if (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (line[0] && !vq_cpulist_parse(line, set, err, sizeof(err)))
			ret = 0;
	}
	fclose(f);
	return ret;
}

/* The cgroup's effective cpuset; -1 when there is none to read (no restriction). */
static int cgroup_cpus(const char *sysroot, cpu_set_t *set, char *src, size_t srclen)
{
	char full[512], line[1024], path[1024];
	FILE *f;
	int ret = -1;

	snprintf(full, sizeof(full), "%s/proc/self/cgroup", sysroot);
	f = fopen(full, "r");
	if (!f)
		return -1;
	while (ret && fgets(line, sizeof(line), f)) {
		char *rel = strrchr(line, ':');
		int id;

		if (!rel || sscanf(line, "%d:", &id) != 1)
			continue;
		rel[strcspn(rel, "\n")] = 0;
		rel++;
		if (!strcmp(rel, "/"))
			rel = "";
		if (id == 0 && strstr(line, "::")) /* v2: one unified hierarchy */
			snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpuset.cpus.effective", rel);
		else if (strstr(line, ":cpuset:")) /* v1 */
			snprintf(path, sizeof(path), "/sys/fs/cgroup/cpuset%s/cpuset.effective_cpus",
				 rel);
		else
			continue;
		if (!read_list(sysroot, path, set)) {
			snprintf(src, srclen, "%s", path);
			ret = 0;
		}
	}
	fclose(f);
	return ret;
}

int vq_allowed_cpus(const char *sysroot, cpu_set_t *out, char *why, size_t whylen)
{
	cpu_set_t set;
	char a[256], src[1100];
	size_t n;

	if (sched_getaffinity(0, sizeof(*out), out))
		return -errno;
	n = (size_t)snprintf(why, whylen, "affinity %s", vq_cpulist_format(out, a, sizeof(a)));
	if (!cgroup_cpus(sysroot, &set, src, sizeof(src))) {
		CPU_AND(out, out, &set);
		if (n < whylen)
			n += (size_t)snprintf(why + n, whylen - n, ", cgroup cpuset %s (%s)",
					      vq_cpulist_format(&set, a, sizeof(a)), src);
	}
	if (!read_list(sysroot, "/sys/devices/system/cpu/online", &set)) {
		CPU_AND(out, out, &set);
		if (n < whylen)
			snprintf(why + n, whylen - n, ", online %s",
				 vq_cpulist_format(&set, a, sizeof(a)));
	}
	return 0;
}

void vq_isolated_cpus(const char *sysroot, cpu_set_t *out)
{
	if (read_list(sysroot, "/sys/devices/system/cpu/isolated", out))
		CPU_ZERO(out);
}
