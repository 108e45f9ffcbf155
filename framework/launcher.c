/* SPDX-License-Identifier: MIT */
/*
 * vq_main(): the command line, the config, the core map, start-up checks, one
 * pinned shard thread per mapped CPU, and signals. Signals are blocked in
 * every thread and read through shard 0's ring from a signalfd, so no code
 * runs in an async signal handler. A SIGHUP reload publishes a new config
 * snapshot (cfgpub.h) that every shard adopts at the top of its next turn.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <numa.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cfgpub.h"
#include "listener.h"
#include "log.h"
#include "msg_internal.h"
#include "sdnotify.h"
#include "shard.h"
#include "startup.h"
#include "topology.h"
#include "vq_version.h"

#define MAX_OVERRIDES 64

struct vq_runtime {
	const struct vq_service *svc;
	struct vq_config cfg;          /* the running config; shard 0 (reloads) owns it */
	struct vq_cfg_origin *origins[2]; /* where each key came from: framework, app */
	struct vq_cfg_pub pub;         /* the snapshots shards read */
	struct vq_coremap map;
	struct vq_shard *shards;
	struct vq_mesh *mesh;
	int nshards;
	int sigfd;
	struct vq_op sig_op;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int started;
	int failed;
	int exited;  /* shard threads that have returned; the main thread waits for all */
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
		"      --topology SRC    with --check-config: resolve against an hwloc XML export\n"
		"                        or 'synthetic:DESC' instead of this machine\n"
		"  -h, --help            this text\n"
		"  -V, --version         print the version\n"
		"\n"
		"Signals: SIGTERM/SIGINT drain and stop; SIGHUP re-reads the file and applies\n"
		"the reloadable keys (log level, limits, timeouts) on every shard.\n",
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

static int load(struct vq_runtime *rt, struct vq_config *cfg, void *app_cfg,
		struct vq_cfg_origin **origins, char *err, size_t errlen);

struct reload_ctx {
	char applied[512], ignored[512];
	size_t na, ni;
	const struct vq_cfg_key *fw_keys; /* the framework table: its reloadable keys apply */
};

static void note_change(const struct vq_cfg_key *k, void *arg)
{
	struct reload_ctx *ctx = arg;
	bool apply = k->reloadable && k >= ctx->fw_keys &&
		     k < ctx->fw_keys + vq_config_table(NULL).count;

	/* App keys are read by the app in place; they change only with a restart. */
	if (apply && ctx->na < sizeof(ctx->applied))
		ctx->na += (size_t)snprintf(ctx->applied + ctx->na, sizeof(ctx->applied) - ctx->na,
					    "%s%s.%s", ctx->na ? ", " : "", k->section, k->name);
	else if (!apply && ctx->ni < sizeof(ctx->ignored))
		ctx->ni += (size_t)snprintf(ctx->ignored + ctx->ni, sizeof(ctx->ignored) - ctx->ni,
					    "%s%s.%s", ctx->ni ? ", " : "", k->section, k->name);
}

/*
 * SIGHUP, on shard 0: re-read the file. A file that fails to load leaves
 * everything as it was. Otherwise the reloadable framework keys are copied into
 * the running config, which is published as a new snapshot; every other shard
 * is woken so that it adopts it now rather than at its next event.
 */
static void reload(struct vq_runtime *rt)
{
	const struct vq_service *svc = rt->svc;
	struct vq_config *cfg = malloc(sizeof(*cfg));
	void *app_cfg = svc->config_size ? malloc(svc->config_size) : NULL;
	struct reload_ctx ctx = { .fw_keys = vq_config_table(NULL).keys };
	struct vq_shard *me = vq_shard_self();
	char err[512];
	uint64_t gen;

	/* MONOTONIC_USEC lets newer systemd (253+, Type=notify-reload) pair it with the signal. */
	vq_sd_notifyf("RELOADING=1\nMONOTONIC_USEC=%" PRIu64, vq_clock_ns() / 1000);
	if (!cfg || (svc->config_size && !app_cfg)) {
		vq_err("reload: out of memory; keeping the running configuration");
		goto out;
	}
	if (load(rt, cfg, app_cfg, NULL, err, sizeof(err))) {
		vq_err("reload failed, keeping the running configuration: %s", err);
		goto out;
	}
	{
		struct vq_cfg_table old_t[2] = { vq_config_table(&rt->cfg),
						 { svc->keys, svc->nkeys, svc->config, NULL } };
		struct vq_cfg_table new_t[2] = { vq_config_table(cfg),
						 { svc->keys, svc->nkeys, app_cfg, NULL } };

		vq_config_diff(old_t, new_t, svc->config_size ? 2 : 1, note_change, &ctx);
		vq_config_copy_reloadable(old_t, new_t, 1);
	}
	vq_log_set_level(rt->cfg.log_level);
	gen = vq_cfg_pub_publish(&rt->pub, &rt->cfg);
	if (!gen) {
		vq_err("reload: out of memory; shards keep the previous limits");
		goto out;
	}
	vq_msg_wake_all(me, rt->mesh); /* only shards that are up: their rings exist */
	vq_notice("reloaded %s as generation %lu: applied: %s", config_path ? config_path : "(defaults)",
		  (unsigned long)gen, ctx.na ? ctx.applied : "nothing changed");
	if (ctx.ni)
		vq_warn("reload: %s changed in the file but cannot change while running; "
			"ignored until restart", ctx.ignored);
out:
	free(cfg);
	free(app_cfg);
	vq_sd_notifyf("READY=1"); /* serving again, with the new settings or the old ones */
}

/* debug.stall_on_signal: SIGUSR2 hangs the last shard (sigqueue's value picks another). */
static void stall_shard(struct vq_shard *s, const struct signalfd_siginfo *si)
{
	struct vq_runtime *rt = s->rt;
	int n = si->ssi_code == SI_QUEUE ? si->ssi_int : rt->nshards - 1;

	if (n < 0 || n >= rt->nshards) {
		vq_warn("SIGUSR2: no shard %d to stall", n);
		return;
	}
	vq_warn("SIGUSR2: stalling shard %d on purpose (debug.stall_on_signal = yes)", n);
	atomic_store(&rt->shards[n].debug_stall, 1);
	vq_msg_wake_all(s, rt->mesh);
}

static void sig_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct vq_shard *s = vq_shard_self();
	struct vq_runtime *rt = s->rt;
	const struct signalfd_siginfo *si = (const void *)vq_buf_bytes(b);

	if (s->state != VQ_SHARD_RUNNING || res == -ECANCELED) {
		vq_buf_release(b);
		return;
	}
	if (res != (int)sizeof(*si)) {
		/* A transient failure: read again, or SIGTERM would go unheard for good. */
		vq_warn("reading signals: %s; retrying", res < 0 ? strerror(-res) : "short read");
		arm_signals(s, b);
		return;
	}
	switch (si->ssi_signo) {
	case SIGHUP:
		reload(rt);
		arm_signals(s, b);
		return;
	case SIGUSR2:
		stall_shard(s, si);
		arm_signals(s, b);
		return;
	default:
		vq_sd_stopping();
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
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "vq-shard-%d", s->id);
	pthread_setname_np(pthread_self(), name); /* ps -L, /proc/PID/task/TID/comm */
	vq_cfg_pub_pick(&rt->pub, s->id, &s->cfg);
	ret = vq_shard_setup(s, true);
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
	} else {
		vq_shard_run(s);
	}
	atomic_store(&s->heartbeat, VQ_SD_BEAT_DONE); /* ended, not stalled */
	pthread_mutex_lock(&rt->mu);
	rt->exited++;
	pthread_cond_signal(&rt->cv);
	pthread_mutex_unlock(&rt->mu);
	return NULL;
}

/* One supervisor turn; returns when the next is due (UINT64_MAX: never). */
static uint64_t tick(struct vq_sd_watch *w)
{
	uint64_t now = vq_clock_ns(), wait = vq_sd_tick(w, now);

	return wait == UINT64_MAX ? UINT64_MAX : now + wait;
}

/*
 * The main thread's job once the shards run: the systemd supervisor
 * (sdnotify.c) every tick, until every shard thread has returned.
 */
static void supervise(struct vq_runtime *rt)
{
	struct vq_sd_watch w;
	uint64_t next = UINT64_MAX;
	bool watching = !vq_sd_watch_init(&w, rt->shards, rt->nshards,
					  rt->cfg.drain_timeout_ms * NS_PER_MS);

	if (watching)
		next = tick(&w);
	pthread_mutex_lock(&rt->mu);
	while (rt->exited < rt->nshards) {
		struct timespec ts;

		if (next == UINT64_MAX) {
			pthread_cond_wait(&rt->cv, &rt->mu);
			continue;
		}
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		if (pthread_cond_timedwait(&rt->cv, &rt->mu, &ts) != ETIMEDOUT)
			continue; /* a shard ended: tick on schedule only, or the beats look stalled */
		pthread_mutex_unlock(&rt->mu);
		next = tick(&w);
		pthread_mutex_lock(&rt->mu);
	}
	pthread_mutex_unlock(&rt->mu);
	if (watching)
		vq_sd_watch_fini(&w);
}

/* A semantic error found after parsing: "echo.ini:12: shards.cpus: problem (hint)". */
static void cfg_error(struct vq_runtime *rt, const char *section, const char *name,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void cfg_error(struct vq_runtime *rt, const char *section, const char *name,
		      const char *fmt, ...)
{
	const struct vq_service *svc = rt->svc;
	struct vq_cfg_table tables[2] = { vq_config_table(&rt->cfg),
					  { svc->keys, svc->nkeys, svc->config, rt->origins[1] } };
	char where[VQ_CFG_STR_MAX + 16], msg[768];
	va_list ap;

	tables[0].origins = rt->origins[0];
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vq_err("%s: %s.%s: %s",
	       vq_config_where(tables, svc->nkeys ? 2 : 1, section, name, where, sizeof(where)),
	       section, name, msg);
}

/*
 * The core map from [shards]: against this machine and the CPUs the process
 * may use, or (for --check-config --topology) against another machine's
 * topology, all of whose CPUs count as allowed.
 */
static int resolve_map(struct vq_runtime *rt, const char *topo_src)
{
	const struct vq_config *cfg = &rt->cfg;
	struct vq_coremap_spec spec = { .cpus = cfg->cpus, .smt = cfg->smt,
					.exclude = cfg->exclude, .numa_nodes = cfg->numa_nodes,
					.count = cfg->count };
	cpu_set_t allowed, isolated;
	struct vq_topo *topo;
	char err[512], why[1400];
	int ret;

	if (vq_topo_load(&topo, topo_src, err, sizeof(err))) {
		vq_err("topology: %s", err);
		return -1;
	}
	if (!topo_src) {
		ret = vq_allowed_cpus("", &allowed, why, sizeof(why));
		if (ret) {
			vq_err("sched_getaffinity: %s", strerror(-ret));
			vq_topo_free(topo);
			return -1;
		}
		vq_debug("allowed CPUs: %s", why);
		vq_isolated_cpus("", &isolated);
		spec.allowed = &allowed;
		spec.isolated = &isolated;
	}
	ret = vq_coremap_resolve(topo, &spec, &rt->map);
	vq_topo_free(topo);
	if (ret) {
		cfg_error(rt, "shards", rt->map.err_key, "%s", rt->map.err);
		return -1;
	}
	for (int i = 0; i < rt->map.nwarn; i++)
		vq_warn("%s", rt->map.warn[i]);
	return rt->map.n;
}

static int check_buffers(struct vq_runtime *rt)
{
	const struct vq_config *cfg = &rt->cfg;
	uint64_t p = cfg->buf_provided;

	if (p & (p - 1)) {
		cfg_error(rt, "buffers", "provided", "%" PRIu64 " is not a power of two (try %" PRIu64
			  ")", p, (uint64_t)1 << (63 - __builtin_clzll(p)));
		return -1;
	}
	if (p >= cfg->buf_count) {
		cfg_error(rt, "buffers", "provided", "%" PRIu64 " must be below buffers.count (%"
			  PRIu64 ") so that replies can allocate buffers", p, cfg->buf_count);
		return -1;
	}
	if (cfg->buf_size % 4096) {
		cfg_error(rt, "buffers", "size", "%" PRIu64 " is not a multiple of 4096 (try %" PRIu64
			  "K)", cfg->buf_size, (cfg->buf_size + 4095) / 4096 * 4);
		return -1;
	}
	return 0;
}

static int load(struct vq_runtime *rt, struct vq_config *cfg, void *app_cfg,
		struct vq_cfg_origin **origins, char *err, size_t errlen)
{
	struct vq_cfg_table tables[2] = { vq_config_table(cfg),
					  { rt->svc->keys, rt->svc->nkeys, app_cfg,
					    origins ? origins[1] : NULL } };

	tables[0].origins = origins ? origins[0] : NULL;

	return vq_config_load(tables, rt->svc->nkeys ? 2 : 1, config_path, overrides, noverrides,
			      err, errlen);
}

static int parse_args(int argc, char **argv, const struct vq_service *svc, bool *check_only,
		      const char **topo_src)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "topology", required_argument, NULL, 'T' },
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
		case 'T':
			*topo_src = optarg;
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
	if (*topo_src && !*check_only) {
		fprintf(stderr, "%s: --topology describes another machine; it needs --check-config\n",
			argv[0]);
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		usage(stderr, argv[0], svc);
		return 2;
	}
	return -1;
}

/* One row per shard; printed by --check-config and logged at start-up. */
static void map_rows(const struct vq_runtime *rt, void (*out)(const char *line, void *ctx),
		     void *ctx)
{
	const struct vq_config *cfg = &rt->cfg;
	char line[160], pool[48];

	out("shard  cpu  core  package  node  pool              ring  driver", ctx);
	for (int i = 0; i < rt->map.n; i++) {
		const struct vq_place *p = &rt->map.place[i];

		snprintf(pool, sizeof(pool), "%" PRIu64 " x %" PRIu64 "K", cfg->buf_count,
			 cfg->buf_size / 1024);
		snprintf(line, sizeof(line), "%-5d  %-3d  %-4d  %-7d  %-4d  %-16s  %-4" PRIu64 "  %s",
			 i, p->cpu, p->core, p->package, p->node, pool, cfg->sq_entries,
			 vq_driver_choice_name(cfg->driver));
		out(line, ctx);
	}
	if (cfg->pin == VQ_PIN_NODE)
		out("shards.pin = node: a shard may run on any CPU above on its own node", ctx);
}

static void row_to_stdout(const char *line, void *ctx)
{
	printf("%s%s\n", ctx ? "# " : "  ", line);
}

static void row_to_log(const char *line, void *ctx)
{
	vq_info("core map: %s", line);
}

int vq_main(int argc, char **argv, const struct vq_service *svc)
{
	static struct vq_runtime runtime;
	struct vq_runtime *rt = &runtime;
	const char *topo_src = NULL;
	bool check_only = false;
	char err[512];
	sigset_t mask;
	int ret, status = 0;

	rt->svc = svc;
	ret = parse_args(argc, argv, svc, &check_only, &topo_src);
	if (ret >= 0)
		return ret;
	rt->origins[0] = calloc(vq_config_table(NULL).count, sizeof(struct vq_cfg_origin));
	rt->origins[1] = calloc(svc->nkeys + 1, sizeof(struct vq_cfg_origin));
	if (!rt->origins[0] || !rt->origins[1]) {
		vq_err("out of memory");
		return 1;
	}
	if (load(rt, &rt->cfg, svc->config, rt->origins, err, sizeof(err))) {
		vq_err("%s", err);
		return 1;
	}
	vq_log_set_level(rt->cfg.log_level);
	rt->nshards = resolve_map(rt, topo_src);
	if (rt->nshards < 0 || check_buffers(rt))
		return 1;
	if (check_only) {
		struct vq_cfg_table tables[2] = { vq_config_table(&rt->cfg),
						  { svc->keys, svc->nkeys, svc->config, NULL } };

		map_rows(rt, row_to_stdout, NULL);
		printf("\n");
		vq_config_print(tables, svc->nkeys ? 2 : 1);
		return 0;
	}
	map_rows(rt, row_to_log, NULL);
	if (vq_listener_probe(&rt->cfg, err, sizeof(err))) {
		vq_err("%s", err);
		return 1;
	}
	if (vq_check_memlock(&rt->cfg, rt->nshards) || vq_check_nofile(&rt->cfg, rt->nshards) ||
	    vq_check_hugepages(&rt->cfg, rt->map.place, rt->nshards, ""))
		return 1;
	ret = vq_sd_init();
	if (ret)
		vq_warn("NOTIFY_SOCKET=%s: %s; running without systemd notifications",
			getenv("NOTIFY_SOCKET"), strerror(-ret));

	/* Block the signals we handle in every thread; shard 0 reads them from a signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	if (rt->cfg.debug_stall_on_signal)
		sigaddset(&mask, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	rt->sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (rt->sigfd < 0) {
		vq_err("signalfd: %s", strerror(errno));
		return 1;
	}

	rt->shards = calloc((size_t)rt->nshards, sizeof(*rt->shards));
	if (!rt->shards || vq_cfg_pub_init(&rt->pub, &rt->cfg, rt->nshards)) {
		vq_err("out of memory");
		return 1;
	}
	for (int i = 0; i < rt->nshards; i++) {
		rt->shards[i].id = i;
		rt->shards[i].cpu = rt->map.place[i].cpu;
		/*
		 * shards.pin = node: the scheduler may move the thread off a CPU another
		 * process is busy on, but only within the core map and the NUMA node,
		 * so the shard's memory stays local.
		 */
		for (int j = 0; rt->cfg.pin == VQ_PIN_NODE && j < rt->nshards; j++)
			if (rt->map.place[j].node == rt->map.place[i].node)
				CPU_SET(rt->map.place[j].cpu, &rt->shards[i].run_on);
	}
	/* The rings exist before any shard runs, so a shard may send from its first turn. */
	ret = vq_mesh_create(&rt->mesh, rt->shards, (unsigned)rt->nshards, 0);
	if (ret) {
		vq_err("message rings for %d shards: %s", rt->nshards, strerror(-ret));
		free(rt->shards);
		return 1;
	}
	/* A doorbell wakes a parked shard in tens of us (more on VMs): poll briefly after traffic. */
	vq_mesh_set_poll(rt->mesh, rt->cfg.msg_poll_us * 1000); /* io.msg_poll_us */
	pthread_mutex_init(&rt->mu, NULL);
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the supervisor's ticks: vq_clock_ns() */
	pthread_cond_init(&rt->cv, &ca);
	pthread_condattr_destroy(&ca);
	/*
	 * libnuma fills its node-to-CPUs cache lazily and without a lock: shard
	 * threads racing through numa_node_of_cpu() leak (or worse). Fill it here.
	 */
	if (numa_available() >= 0)
		for (int i = 0; i < rt->nshards; i++)
			numa_node_of_cpu(rt->map.place[i].cpu);
	for (int i = 0; i < rt->nshards; i++) {
		struct vq_shard *s = &rt->shards[i];

		s->rt = rt;
		s->svc = svc;
		s->cfg_pub = &rt->pub; /* the thread picks its snapshot before set-up */
		s->max_wait_ns = vq_sd_max_wait_ns();
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
		vq_sd_notifyf("READY=1");
	}
	supervise(rt);
	for (int i = 0; i < rt->nshards; i++) {
		pthread_join(rt->shards[i].thread, NULL);
		status |= rt->shards[i].exit_status;
	}
	close(rt->sigfd);
	vq_mesh_destroy(rt->mesh);
	free(rt->shards);
	vq_cfg_pub_fini(&rt->pub);
	vq_coremap_free(&rt->map);
	free(rt->origins[0]);
	free(rt->origins[1]);
	vq_sd_fini();
	if (!rt->failed)
		vq_notice("stopped %s", status ? "with errors (see above)" : "cleanly");
	return status;
}
