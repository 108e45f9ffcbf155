/* SPDX-License-Identifier: MIT */
#ifndef VQ_TOPOLOGY_H
#define VQ_TOPOLOGY_H

/*
 * The machine's topology (hwloc) and the core map: which CPU each shard runs
 * on, resolved from the [shards] keys against the CPUs the process may use.
 * Everything here runs on the launcher's thread before any shard starts.
 */

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>

struct vq_topo;

/*
 * Load a topology. source NULL: this machine (every PU, including ones the
 * cgroup forbids, so that errors can tell "absent" from "not allowed");
 * "synthetic:DESC": an hwloc synthetic description ("pack:2 [numa] core:8 pu:2");
 * anything else: the path of an hwloc XML export (lstopo --of xml).
 * Returns 0 and *out (free with vq_topo_free), or -1 with a reason in err.
 */
int vq_topo_load(struct vq_topo **out, const char *source, char *err, size_t errlen);
void vq_topo_free(struct vq_topo *t);

/* Every CPU (PU OS index) the topology has. */
void vq_topo_cpus(const struct vq_topo *t, cpu_set_t *out);

/* Where one shard runs. cpu and node are the kernel's numbers; core and package
 * are hwloc's logical indexes (0.. across the machine, unique). */
struct vq_place {
	int cpu;
	int core;
	int package;
	int node;
};

/* The [shards] keys, as text from the config file, plus the machine's state. */
struct vq_coremap_spec {
	const char *cpus;          /* "auto" or a CPU list */
	int smt;                   /* enum vq_smt */
	const char *exclude;       /* CPU list or "" */
	const char *numa_nodes;    /* node list, "" or "all" */
	const char *count;         /* "auto" or a positive number */
	const cpu_set_t *allowed;  /* CPUs the process may use; NULL = all of the topology */
	const cpu_set_t *isolated; /* isolated CPUs (warned about); NULL = none */
};

#define VQ_COREMAP_WARN_MAX 4

struct vq_coremap {
	int n;                       /* shards */
	struct vq_place *place;      /* n entries, shard order; malloc'd */
	int nwarn;
	char warn[VQ_COREMAP_WARN_MAX][320];
	/* On failure: the [shards] key at fault ("cpus") and "problem (hint)". */
	const char *err_key;
	char err[512];
};

/*
 * Resolve the core map. Candidate CPUs are cpus (auto = spec->allowed), minus
 * exclude, on numa_nodes; smt=one-per-core keeps the first candidate PU of each
 * core, smt=all keeps every one (first PUs of all cores, then second PUs, so a
 * count bound fills cores before siblings); count bounds the total. Returns 0
 * with m filled (release with vq_coremap_free), or -1 with m->err_key and
 * m->err set: a CPU that does not exist or is not allowed, a malformed list,
 * an unknown node, a bad count, or nothing left to run on.
 */
int vq_coremap_resolve(const struct vq_topo *t, const struct vq_coremap_spec *spec,
		       struct vq_coremap *m);
void vq_coremap_free(struct vq_coremap *m);

/*
 * The CPUs this process may use: sched_getaffinity (taskset, CPUAffinity=) ∩
 * the cgroup's cpuset (v2 cpuset.cpus.effective, or v1 cpuset.effective_cpus;
 * absent = no restriction) ∩ online CPUs. sysroot prefixes /proc and /sys
 * paths ("" for the real ones; tests point it at a fake tree). why gets a
 * one-line account of each source. Returns 0, or -errno if affinity fails.
 */
int vq_allowed_cpus(const char *sysroot, cpu_set_t *out, char *why, size_t whylen);

/* /sys/devices/system/cpu/isolated under sysroot; empty when absent. */
void vq_isolated_cpus(const char *sysroot, cpu_set_t *out);

#endif
