/* SPDX-License-Identifier: MIT */
/*
 * vq_main(): the command line, the config, start-up checks, one pinned shard
 * thread per configured CPU, and signals. Signals are blocked in every thread
 * and read through shard 0's ring from a signalfd, so no code runs in an
 * async signal handler.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <numa.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cpulist.h"
#include "log.h"
#include "msg_internal.h"
#include "shard.h"
#include "vq_version.h"

#define MAX_OVERRIDES 64
#define FD_RESERVE    64 /* listeners, rings, eventfds, signalfd, logs */
#define MSG_POLL_NS   20000 /* see vq_mesh_set_poll; bench_msg shows the effect */

struct vq_runtime {
	const struct vq_service *svc;
	struct vq_config cfg;
	struct vq_shard *shards;
	struct vq_mesh *mesh;
	int nshards;
	int sigfd;
	struct vq_op sig_op;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int started;
	int failed;
};

static void usage(FILE *out, const char *prog, const struct vq_service *svc)
{
	fprintf(out,
		"usage: %s --config FILE [-o section.key=value]... [--check-config]\n"
		"\n"
		"veloq-%s: a sharded TCP service on the veloq framework.\n"
		"\n"
		"  -c, --config FILE     read settings from FILE (INI; see configs/%s.ini)\n"
		"  -o section.key=value  override one setting (repeatable; after the file)\n"
		"      --check-config    print the resolved shard map and settings, then exit\n"
		"  -h, --help            this text\n"
		"  -V, --version         print the version\n"
		"\n"
		"Signals: SIGTERM/SIGINT drain and stop; SIGHUP re-reads the log level.\n",
		prog, svc->name, svc->name);
}

static void stop_all(struct vq_runtime *rt)
{
	if (rt->mesh) {
		vq_mesh_stop(rt->mesh); /* safe against shards that are finishing meanwhile */
		return;
	}
	for (int i = 0; i < rt->nshards; i++)
		vq_shard_request_stop(&rt->shards[i]);
}

static void sig_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags);

static void arm_signals(struct vq_shard *s, struct vq_buf *b)
{
	struct vq_runtime *rt = s->rt;

	b->len = 0;
	vq_op_prep(&rt->sig_op, VQ_OP_READ, rt->sigfd, b, sig_done);
	rt->sig_op.off = (uint64_t)-1; /* a stream: no offset */
	if (vq_driver_submit(&s->drv, &rt->sig_op)) {
		vq_err("cannot watch signals; stopping");
		vq_buf_release(b);
		stop_all(rt);
	}
}

static const char *config_path;
static const char *overrides[MAX_OVERRIDES];
static size_t noverrides;

static int load(struct vq_runtime *rt, struct vq_config *cfg, void *app_cfg, char *err,
		size_t errlen);

struct reload_ctx {
	int changed;
};

static void note_change(const struct vq_cfg_key *k, void *arg)
{
	struct reload_ctx *ctx = arg;

	ctx->changed++;
	if (strcmp(k->section, "log") || strcmp(k->name, "level"))
		vq_notice("reload: %s.%s changed; it takes effect at the next restart", k->section,
			  k->name);
}

/* SIGHUP: re-read the file. A file that fails to load leaves everything as it was. */
static void reload(struct vq_runtime *rt)
{
	const struct vq_service *svc = rt->svc;
	struct vq_config *cfg = malloc(sizeof(*cfg));
	void *app_cfg = svc->config_size ? malloc(svc->config_size) : NULL;
	struct reload_ctx ctx = { 0 };
	char err[512];

	if (!cfg || (svc->config_size && !app_cfg)) {
		vq_err("reload: out of memory; keeping the running configuration");
	} else if (load(rt, cfg, app_cfg, err, sizeof(err))) {
		vq_err("reload failed, keeping the running configuration: %s", err);
	} else {
		struct vq_cfg_table old_t[2] = { vq_config_table(&rt->cfg),
						 { svc->keys, svc->nkeys, svc->config } };
		struct vq_cfg_table new_t[2] = { vq_config_table(cfg),
						 { svc->keys, svc->nkeys, app_cfg } };

		vq_config_diff(old_t, new_t, svc->config_size ? 2 : 1, note_change, &ctx);
		vq_log_set_level(cfg->log_level);
		vq_notice("reloaded %s: %d keys changed, log.level = %s", config_path ? config_path : "(defaults)",
			  ctx.changed, vq_log_level_name(cfg->log_level));
	}
	free(cfg);
	free(app_cfg);
}

static void sig_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct vq_shard *s = vq_shard_self();
	struct vq_runtime *rt = s->rt;
	const struct signalfd_siginfo *si = (const void *)vq_buf_bytes(b);

	if (res != (int)sizeof(*si) || s->state != VQ_SHARD_RUNNING) {
		vq_buf_release(b);
		return;
	}
	switch (si->ssi_signo) {
	case SIGHUP:
		reload(rt);
		arm_signals(s, b);
		return;
	default:
		vq_notice("%s: draining (up to %" PRIu64 " ms), then stopping",
			  strsignal((int)si->ssi_signo), rt->cfg.drain_timeout_ms);
		vq_buf_release(b);
		stop_all(rt);
	}
}

static void shard0_stopping(struct vq_shard *s)
{
	if (s->rt->sig_op.inflight)
		s->drv.ops->cancel(&s->drv, &s->rt->sig_op);
}

static void *shard_thread(void *arg)
{
	struct vq_shard *s = arg;
	struct vq_runtime *rt = s->rt;
	int ret = vq_shard_setup(s, true);

	if (!ret && s->id == 0) {
		struct vq_buf *b = vq_pool_alloc(&s->pool);

		s->stop_hook = shard0_stopping;
		if (b)
			arm_signals(s, b);
	}
	pthread_mutex_lock(&rt->mu);
	if (ret)
		rt->failed++;
	else
		rt->started++;
	pthread_cond_signal(&rt->cv);
	pthread_mutex_unlock(&rt->mu);
	if (ret) {
		vq_shard_teardown(s);
		s->exit_status = 1;
		return NULL;
	}
	vq_shard_run(s);
	return NULL;
}

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

/* Start-up checks: fail now with the fix, not later with an obscure errno. */
static int check_limits(const struct vq_config *cfg, int nshards)
{
	struct rlimit rl;
	uint64_t pool = cfg->buf_count * cfg->buf_size, need = pool * (uint64_t)nshards;
	rlim_t fds = (rlim_t)(cfg->max_connections * (uint64_t)nshards + FD_RESERVE);

	if (!getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < need && !has_cap_ipc_lock()) {
		vq_err("RLIMIT_MEMLOCK is %" PRIu64 " KiB but %d shards x %" PRIu64
		       " KiB of registered buffers need %" PRIu64 " KiB: raise it "
		       "(LimitMEMLOCK=%" PRIu64 "K in the systemd unit, or 'ulimit -l %" PRIu64 "'), "
		       "or lower buffers.count / buffers.size",
		       (uint64_t)rl.rlim_cur / 1024, nshards, pool / 1024, need / 1024,
		       need / 1024 + 1024, need / 1024 + 1024);
		return -1;
	}
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < fds) {
		struct rlimit want = { fds, rl.rlim_max > fds ? rl.rlim_max : fds };

		/* Raise the soft limit (and the hard one if we may) before giving up. */
		if (setrlimit(RLIMIT_NOFILE, &want) &&
		    (want.rlim_max = rl.rlim_max, want.rlim_cur = rl.rlim_max,
		     setrlimit(RLIMIT_NOFILE, &want) || rl.rlim_max < fds)) {
			vq_err("RLIMIT_NOFILE is %" PRIu64 " but limits.max_connections = %" PRIu64
			       " on %d shards needs %" PRIu64 ": raise it (LimitNOFILE= in the "
			       "unit, or 'ulimit -n') or lower limits.max_connections",
			       (uint64_t)rl.rlim_max, cfg->max_connections, nshards, (uint64_t)fds);
			return -1;
		}
	}
	return 0;
}

static int resolve_cpus(const struct vq_config *cfg, int *cpus, int max)
{
	cpu_set_t want, allowed;
	char err[256], list[256];
	int n = 0;

	if (vq_cpulist_parse(cfg->cpus, &want, err, sizeof(err))) {
		vq_err("shards.cpus: %s", err);
		return -1;
	}
	if (sched_getaffinity(0, sizeof(allowed), &allowed)) {
		vq_err("sched_getaffinity: %s", strerror(errno));
		return -1;
	}
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &want))
			continue;
		if (!CPU_ISSET(c, &allowed)) {
			vq_err("shards.cpus: CPU %d is not one this process may run on (allowed: %s; "
			       "see taskset, CPUAffinity= or the cgroup cpuset)",
			       c, vq_cpulist_format(&allowed, list, sizeof(list)));
			return -1;
		}
		if (n < max)
			cpus[n++] = c;
	}
	return n;
}

static int check_buffers(const struct vq_config *cfg)
{
	uint64_t p = cfg->buf_provided;

	if (p & (p - 1)) {
		vq_err("buffers.provided: %" PRIu64 " is not a power of two (try %" PRIu64 ")", p,
		       (uint64_t)1 << (63 - __builtin_clzll(p)));
		return -1;
	}
	if (p >= cfg->buf_count) {
		vq_err("buffers.provided: %" PRIu64 " must be below buffers.count (%" PRIu64
		       ") so that replies can allocate buffers", p, cfg->buf_count);
		return -1;
	}
	if (cfg->buf_size % 4096) {
		vq_err("buffers.size: %" PRIu64 " is not a multiple of 4096", cfg->buf_size);
		return -1;
	}
	return 0;
}

static int load(struct vq_runtime *rt, struct vq_config *cfg, void *app_cfg, char *err,
		size_t errlen)
{
	struct vq_cfg_table tables[2] = { vq_config_table(cfg),
					  { rt->svc->keys, rt->svc->nkeys, app_cfg } };

	return vq_config_load(tables, rt->svc->nkeys ? 2 : 1, config_path, overrides, noverrides,
			      err, errlen);
}

static int parse_args(int argc, char **argv, const struct vq_service *svc, bool *check_only)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:o:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			if (noverrides == MAX_OVERRIDES) {
				fprintf(stderr, "%s: more than %d -o options\n", argv[0],
					MAX_OVERRIDES);
				return 2;
			}
			overrides[noverrides++] = optarg;
			break;
		case 'C':
			*check_only = true;
			break;
		case 'h':
			usage(stdout, argv[0], svc);
			return 0;
		case 'V':
			printf("veloq-%s %s (veloq %s)\n", svc->name,
			       svc->version ? svc->version : VQ_VERSION, VQ_VERSION);
			return 0;
		default:
			usage(stderr, argv[0], svc);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		usage(stderr, argv[0], svc);
		return 2;
	}
	return -1;
}

static void print_map(const struct vq_runtime *rt, const int *cpus)
{
	printf("# shard  cpu  node  pool            ring  driver\n");
	for (int i = 0; i < rt->nshards; i++)
		printf("  %-5d  %-3d  %-4d  %4" PRIu64 " x %-6" PRIu64 "  %-4" PRIu64 "  uring\n", i,
		       cpus[i], numa_available() >= 0 ? numa_node_of_cpu(cpus[i]) : 0, rt->cfg.buf_count, rt->cfg.buf_size,
		       rt->cfg.sq_entries);
}

int vq_main(int argc, char **argv, const struct vq_service *svc)
{
	static struct vq_runtime runtime;
	struct vq_runtime *rt = &runtime;
	int cpus[CPU_SETSIZE];
	bool check_only = false;
	char err[512];
	sigset_t mask;
	int ret, status = 0;

	rt->svc = svc;
	ret = parse_args(argc, argv, svc, &check_only);
	if (ret >= 0)
		return ret;
	if (load(rt, &rt->cfg, svc->config, err, sizeof(err))) {
		vq_err("%s", err);
		return 1;
	}
	vq_log_set_level(rt->cfg.log_level);
	rt->nshards = resolve_cpus(&rt->cfg, cpus, CPU_SETSIZE);
	if (rt->nshards < 0 || check_buffers(&rt->cfg))
		return 1;
	if (check_only) {
		print_map(rt, cpus);
		printf("\n");
		struct vq_cfg_table tables[2] = { vq_config_table(&rt->cfg),
						  { svc->keys, svc->nkeys, svc->config } };
		vq_config_print(tables, svc->nkeys ? 2 : 1);
		return 0;
	}
	if (check_limits(&rt->cfg, rt->nshards))
		return 1;

	/* Block the signals we handle in every thread; shard 0 reads them from a signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	rt->sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (rt->sigfd < 0) {
		vq_err("signalfd: %s", strerror(errno));
		return 1;
	}

	rt->shards = calloc((size_t)rt->nshards, sizeof(*rt->shards));
	if (!rt->shards) {
		vq_err("out of memory");
		return 1;
	}
	for (int i = 0; i < rt->nshards; i++) {
		rt->shards[i].id = i;
		rt->shards[i].cpu = cpus[i];
	}
	/* The rings exist before any shard runs, so a shard may send from its first turn. */
	ret = vq_mesh_create(&rt->mesh, rt->shards, (unsigned)rt->nshards, 0);
	if (ret) {
		vq_err("message rings for %d shards: %s", rt->nshards, strerror(-ret));
		free(rt->shards);
		return 1;
	}
	/* A doorbell wakes a parked shard in tens of us (more on VMs): poll briefly after traffic. */
	vq_mesh_set_poll(rt->mesh, MSG_POLL_NS);
	pthread_mutex_init(&rt->mu, NULL);
	pthread_cond_init(&rt->cv, NULL);
	for (int i = 0; i < rt->nshards; i++) {
		struct vq_shard *s = &rt->shards[i];

		s->rt = rt;
		s->svc = svc;
		s->cfg = &rt->cfg;
		ret = pthread_create(&s->thread, NULL, shard_thread, s);
		if (ret) {
			vq_err("starting shard %d: %s", i, strerror(ret));
			/* The shards without a thread leave the mesh so the others can stop. */
			for (int j = i; j < rt->nshards; j++)
				vq_msg_shard_exit(&rt->shards[j]);
			rt->nshards = i;
			stop_all(rt);
			status = 1;
			break;
		}
	}
	pthread_mutex_lock(&rt->mu);
	while (rt->started + rt->failed < rt->nshards)
		pthread_cond_wait(&rt->cv, &rt->mu);
	pthread_mutex_unlock(&rt->mu);
	if (rt->failed) {
		for (int i = 0; i < rt->nshards; i++)
			if (rt->shards[i].error[0])
				vq_err("shard %d did not start: %s", i, rt->shards[i].error);
		stop_all(rt);
		status = 1;
	} else if (!status) {
		vq_notice("veloq-%s %s: %d shards listening on %s port %" PRIu64, svc->name,
			  VQ_VERSION, rt->nshards, rt->cfg.address, rt->cfg.port);
	}
	for (int i = 0; i < rt->nshards; i++) {
		pthread_join(rt->shards[i].thread, NULL);
		status |= rt->shards[i].exit_status;
	}
	close(rt->sigfd);
	vq_mesh_destroy(rt->mesh);
	free(rt->shards);
	if (!rt->failed)
		vq_notice("stopped %s", status ? "with errors (see above)" : "cleanly");
	return status;
}
