/* SPDX-License-Identifier: MIT */
/* Start-up checks: fail now with the fix, not later with an obscure errno. */
#include <inttypes.h>
#include <stdio.h>
#include <sys/resource.h>

#include "log.h"
#include "startup.h"

#define FD_RESERVE 64          /* listeners, rings, eventfds, signalfd, logs */
#define HUGE_2M    (2ull << 20) /* the pool maps MAP_HUGETLB pages of the default size */

static int has_cap_ipc_lock(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long caps = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			break;
	fclose(f);
	return (caps >> 14) & 1; /* CAP_IPC_LOCK */
}

/*
 * Locked memory one shard's rings need on kernels that charge them (6.x): the
 * SQEs (64 B), the CQEs (16 B, 8 per SQE), the provided ring (16 B an entry),
 * and 64 KiB for the ring headers and page rounding.
 */
static uint64_t ring_bytes(const struct vq_config *cfg)
{
	return cfg->sq_entries * (64 + 8 * 16) + cfg->buf_provided * 16 + (64 << 10);
}

int vq_check_memlock(const struct vq_config *cfg, int nshards)
{
	struct rlimit rl;
	uint64_t pool = cfg->buf_count * cfg->buf_size, ring = ring_bytes(cfg), need;

	/* A pool on explicit huge pages is rounded up to 2 MiB (pool.c); count it so. */
	if (cfg->hugepages != 0 /* off */)
		pool = (pool + HUGE_2M - 1) / HUGE_2M * HUGE_2M;
	need = (pool + ring) * (uint64_t)nshards;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= need || has_cap_ipc_lock())
		return 0;
	/* Only io_uring registers buffers: with io.driver = auto a low limit means epoll. */
	if (cfg->driver != VQ_DRIVER_URING) {
		vq_notice("RLIMIT_MEMLOCK is %" PRIu64 " KiB, below the %" PRIu64 " KiB that io_uring "
			  "needs: shards that cannot register their buffers will use epoll",
			  (uint64_t)rl.rlim_cur / 1024, need / 1024);
		return 0;
	}
	vq_err("RLIMIT_MEMLOCK is %" PRIu64 " KiB but %d shards x (%" PRIu64
	       " KiB of registered buffers + %" PRIu64 " KiB of ring) need %" PRIu64 " KiB: raise it "
	       "(LimitMEMLOCK=%" PRIu64 "K in the systemd unit, or 'ulimit -l %" PRIu64 "'), "
	       "or lower buffers.count / buffers.size",
	       (uint64_t)rl.rlim_cur / 1024, nshards, pool / 1024, ring / 1024, need / 1024,
	       need / 1024 + 1024, need / 1024 + 1024);
	return -1;
}

int vq_check_nofile(const struct vq_config *cfg, int nshards)
{
	struct rlimit rl, want;
	rlim_t fds = (rlim_t)(cfg->max_connections * (uint64_t)nshards + FD_RESERVE);

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= fds)
		return 0;
	/* Raise the soft limit, and the hard one if we are allowed to, before giving up. */
	want.rlim_cur = fds;
	want.rlim_max = rl.rlim_max > fds ? rl.rlim_max : fds;
	if (!setrlimit(RLIMIT_NOFILE, &want))
		return 0;
	vq_err("RLIMIT_NOFILE is %" PRIu64 " (hard limit %" PRIu64 ") but limits.max_connections"
	       " = %" PRIu64 " on %d shards needs %" PRIu64 " fds: raise it (LimitNOFILE=%" PRIu64
	       " in the systemd unit, or 'ulimit -n %" PRIu64 "') or lower limits.max_connections",
	       (uint64_t)rl.rlim_cur, (uint64_t)rl.rlim_max, cfg->max_connections, nshards,
	       (uint64_t)fds, (uint64_t)fds, (uint64_t)fds);
	return -1;
}

static long read_long(const char *sysroot, const char *fmt, int node)
{
	char path[512], rel[256];
	long v = -1;
	FILE *f;

	snprintf(rel, sizeof(rel), fmt, node);
	snprintf(path, sizeof(path), "%s%s", sysroot, rel);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

int vq_check_hugepages(const struct vq_config *cfg, const struct vq_place *place, int nshards,
		       const char *sysroot)
{
	uint64_t per_shard = (cfg->buf_count * cfg->buf_size + HUGE_2M - 1) / HUGE_2M;
	long total_free = read_long(sysroot,
				    "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", 0);

	if (cfg->hugepages != 2 /* on */)
		return 0;
	for (int i = 0; i < nshards; i++) {
		int node = place[i].node, on_node = 0, seen = 0;
		long avail;
		char where[32];

		for (int j = 0; j < nshards; j++) {
			on_node += place[j].node == node;
			seen += j < i && place[j].node == node;
		}
		if (seen)
			continue; /* that node was judged already */
		snprintf(where, sizeof(where), "node %d", node);
		avail = read_long(sysroot, "/sys/devices/system/node/node%d/hugepages/"
				  "hugepages-2048kB/free_hugepages", node);
		if (avail < 0) {
			avail = total_free; /* no per-node counts: judge by the machine's */
			snprintf(where, sizeof(where), "the machine");
		}
		if (avail < 0)
			avail = 0;
		if ((uint64_t)avail >= per_shard * (uint64_t)on_node)
			continue;
		vq_err("buffers.hugepages = on, but %s has %ld free 2 MiB huge pages and %d "
		       "shards there need %" PRIu64 ": reserve them (echo %" PRIu64 " > /sys/devices/"
		       "system/node/node%d/hugepages/hugepages-2048kB/nr_hugepages, or the "
		       "vm.nr_hugepages sysctl) or set buffers.hugepages = try",
		       where, avail, on_node, per_shard * (uint64_t)on_node,
		       per_shard * (uint64_t)on_node, node);
		return -1;
	}
	return 0;
}
