/* SPDX-License-Identifier: MIT */
/*
 * sd_notify written out, and the supervisor that decides when systemd may
 * be told "alive". The supervisor runs on the launcher's main thread, not
 * on a shard: the question it answers is whether *every* shard still turns
 * its loop, and a checker that lives inside one of the shards cannot see its
 * own stall (shard 0 stuck in a long callback would stop its own timer, and
 * with it the check of everyone else). The main thread has nothing else to
 * do and is never blocked by a shard.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sdnotify.h"
#include "shard.h"

#define NS_PER_US      1000ull
#define TICK_MAX_NS    (1000 * NS_PER_MS) /* STATUS= and stop progress at least this often */
#define MAX_WAIT_NS    (250 * NS_PER_MS)  /* an idle shard loop still turns this often */
#define EXTEND_TICKS   3                  /* each extension covers the next 3 ticks */
#define EXTEND_GRACE   (5000 * NS_PER_MS) /* past drain_timeout: closing and reaping */

static int sd_fd = -1;
static struct sockaddr_un sd_addr;
static socklen_t sd_addrlen;
static uint64_t sd_watchdog_ns;
static _Atomic int sd_stopping;

/* Fill *sa from "/path" or "@abstract"; returns the address length or -EINVAL. */
static int make_addr(const char *name, struct sockaddr_un *sa)
{
	size_t len = strlen(name);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if ((name[0] != '/' && name[0] != '@') || len < 2 || len > sizeof(sa->sun_path))
		return -EINVAL;
	memcpy(sa->sun_path, name, len);
	if (name[0] == '@')
		sa->sun_path[0] = 0; /* abstract: the length, not a NUL, ends the name */
	else if (len == sizeof(sa->sun_path))
		return -EINVAL; /* no room for the terminating NUL */
	return (int)(offsetof(struct sockaddr_un, sun_path) + len);
}

static int send_msg(int fd, const struct sockaddr_un *sa, socklen_t salen, const char *msg)
{
	ssize_t n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (const struct sockaddr *)sa, salen);

	return n < 0 ? -errno : 0;
}

int vq_sd_send_to(const char *addr, const char *msg)
{
	struct sockaddr_un sa;
	int len = make_addr(addr, &sa), fd, ret;

	if (len < 0)
		return len;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = send_msg(fd, &sa, (socklen_t)len, msg);
	close(fd);
	return ret;
}

int vq_sd_init(void)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	const char *usec = getenv("WATCHDOG_USEC");
	const char *wpid = getenv("WATCHDOG_PID");
	int len;

	vq_sd_fini();
	if (usec && (!wpid || strtol(wpid, NULL, 10) == (long)getpid())) {
		char *end;
		unsigned long long us = strtoull(usec, &end, 10);

		if (!*end && us)
			sd_watchdog_ns = us * NS_PER_US;
	}
	if (!sock || !*sock)
		return 0;
	len = make_addr(sock, &sd_addr);
	if (len < 0)
		return len;
	sd_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sd_fd < 0)
		return -errno;
	sd_addrlen = (socklen_t)len;
	return 0;
}

void vq_sd_fini(void)
{
	if (sd_fd >= 0)
		close(sd_fd);
	sd_fd = -1;
	sd_watchdog_ns = 0;
	atomic_store(&sd_stopping, 0);
}

bool vq_sd_active(void)
{
	return sd_fd >= 0;
}

uint64_t vq_sd_watchdog_ns(void)
{
	return sd_fd >= 0 ? sd_watchdog_ns : 0;
}

int vq_sd_notifyf(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (sd_fd < 0)
		return 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return send_msg(sd_fd, &sd_addr, sd_addrlen, msg);
}

void vq_sd_stopping(void)
{
	atomic_store(&sd_stopping, 1);
	vq_sd_notifyf("STOPPING=1\nSTATUS=draining connections, then stopping");
}

/*
 * A quarter of the watchdog interval: pings are due every two ticks, so one
 * tick that misjudges a shard (a thread preempted on a busy host) delays a
 * ping to 3/4 of the interval instead of letting systemd fire.
 */
static uint64_t tick_ns(void)
{
	return sd_watchdog_ns && sd_watchdog_ns / 4 < TICK_MAX_NS ? sd_watchdog_ns / 4 : TICK_MAX_NS;
}

uint64_t vq_sd_max_wait_ns(void)
{
	uint64_t tick = tick_ns();

	if (sd_fd < 0)
		return 0;
	/* Two turns per tick at least, so an idle shard is never mistaken for a stalled one. */
	return tick / 2 < MAX_WAIT_NS ? tick / 2 : MAX_WAIT_NS;
}

int vq_sd_beats_check(const uint64_t *beats, uint64_t *last, int n)
{
	int stalled = -1;

	for (int i = 0; i < n; i++) {
		if (beats[i] != VQ_SD_BEAT_DONE && beats[i] == last[i] && stalled < 0)
			stalled = i;
		last[i] = beats[i];
	}
	return stalled;
}

int vq_sd_watch_init(struct vq_sd_watch *w, struct vq_shard *shards, int n, uint64_t drain_ns)
{
	memset(w, 0, sizeof(*w));
	w->last = calloc((size_t)n, sizeof(*w->last));
	if (!w->last)
		return -ENOMEM;
	w->shards = shards;
	w->nshards = n;
	w->watchdog_ns = vq_sd_watchdog_ns();
	w->tick_ns = tick_ns();
	w->extend_limit_ns = drain_ns + EXTEND_GRACE;
	w->stalled = -1;
	return 0;
}

void vq_sd_watch_fini(struct vq_sd_watch *w)
{
	free(w->last);
	w->last = NULL;
}

/* "2 shards, 17 connections, driver uring (sq=256 ...)": what `systemctl status` shows. */
static void update_status(struct vq_sd_watch *w)
{
	char status[sizeof(w->status)];
	uint64_t conns = 0;
	const struct vq_driver *d = &w->shards[0].drv;

	for (int i = 0; i < w->nshards; i++)
		conns += atomic_load_explicit(&w->shards[i].live_conns, memory_order_relaxed);
	snprintf(status, sizeof(status), "%s%d shards, %" PRIu64 " connections, driver %s (%s)",
		 atomic_load(&sd_stopping) ? "stopping: " : "", w->nshards, conns,
		 d->ops ? d->ops->name : "?", d->features);
	if (!strcmp(status, w->status))
		return;
	memcpy(w->status, status, sizeof(status));
	vq_debug("status: %s", status);
	vq_sd_notifyf("STATUS=%s", status);
}

uint64_t vq_sd_tick(struct vq_sd_watch *w, uint64_t now_ns)
{
	uint64_t beats[w->nshards];
	int stalled;

	if (sd_fd < 0)
		return UINT64_MAX;
	for (int i = 0; i < w->nshards; i++)
		beats[i] = atomic_load_explicit(&w->shards[i].heartbeat, memory_order_relaxed);
	stalled = vq_sd_beats_check(beats, w->last, w->nshards);
	if (!w->ticks++)
		stalled = -1; /* the first tick only takes the starting beats */
	if (stalled >= 0 && w->stalled < 0)
		vq_err("shard %d has not turned its loop for %" PRIu64 " ms: withholding the "
		       "systemd watchdog ping", stalled, (uint64_t)(w->tick_ns / NS_PER_MS));
	else if (stalled < 0 && w->stalled >= 0)
		vq_notice("shard %d turns its loop again", w->stalled);
	w->stalled = stalled;

	update_status(w);
	/* Every half interval; half a tick early rather than a tick late. */
	if (stalled < 0 && w->watchdog_ns && now_ns + w->tick_ns / 2 >= w->next_ping_ns) {
		vq_sd_notifyf("WATCHDOG=1");
		w->next_ping_ns = now_ns + w->watchdog_ns / 2;
	}
	if (atomic_load(&sd_stopping)) {
		if (!w->stop_started_ns)
			w->stop_started_ns = now_ns;
		/* Only while the drain moves, and never past drain_timeout + grace. */
		if (stalled < 0 && now_ns - w->stop_started_ns < w->extend_limit_ns)
			vq_sd_notifyf("EXTEND_TIMEOUT_USEC=%" PRIu64,
				      (uint64_t)(EXTEND_TICKS * w->tick_ns / NS_PER_US));
	}
	return w->tick_ns;
}
