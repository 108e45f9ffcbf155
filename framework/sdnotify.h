/* SPDX-License-Identifier: MIT */
#ifndef VQ_SDNOTIFY_H
#define VQ_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct vq_shard;

/*
 * systemd's notification protocol, written out (it is documented as stable:
 * sd_notify(3)): one AF_UNIX datagram of "KEY=value" lines to the socket in
 * $NOTIFY_SOCKET, a path or, with a leading '@', an abstract name. No
 * libsystemd. Every function is a no-op returning 0 when the process is not
 * run by systemd (no NOTIFY_SOCKET).
 */

/*
 * Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and open the socket.
 * Call once from the main thread before any shard starts. Returns 0, or
 * -errno when NOTIFY_SOCKET is set but unusable (the service then runs
 * without notifications; the caller logs why).
 */
int vq_sd_init(void);
void vq_sd_fini(void);

/* True when vq_sd_init() found a usable NOTIFY_SOCKET. */
bool vq_sd_active(void);

/*
 * The watchdog interval systemd expects pings within (WATCHDOG_USEC, in ns),
 * or 0 when there is no watchdog or it is meant for another process
 * (WATCHDOG_PID names a different pid).
 */
uint64_t vq_sd_watchdog_ns(void);

/*
 * Send one datagram built from fmt: e.g. vq_sd_notifyf("READY=1\nSTATUS=%s", s).
 * Any thread (sendto on a datagram socket is atomic). Returns 0 if sent or
 * inactive, -errno if the send failed.
 */
int vq_sd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Send msg to the socket named by addr ("/path" or "@abstract"); for tests and init. */
int vq_sd_send_to(const char *addr, const char *msg);

/*
 * The supervisor: the launcher's main thread calls vq_sd_tick() between
 * waits once every shard is running. Each tick reads every shard's heartbeat
 * (bumped once per loop turn); a shard whose beat has not moved since the
 * previous tick is stalled, and while one is, no WATCHDOG=1 is sent, so
 * systemd's watchdog fires. It also refreshes STATUS= and, once stopping,
 * sends EXTEND_TIMEOUT_USEC= while the drain makes progress.
 */
struct vq_sd_watch {
	struct vq_shard *shards;
	int nshards;
	uint64_t *last;          /* beats seen at the previous tick */
	uint64_t tick_ns;        /* how often vq_sd_tick() wants to run */
	uint64_t watchdog_ns;    /* 0: no watchdog */
	uint64_t next_ping_ns;
	uint64_t stop_started_ns;
	uint64_t extend_limit_ns; /* stop extending the stop timeout after this long */
	int stalled;             /* the shard reported stalled, -1 none */
	uint64_t ticks;
	char status[256];
};

/* A beat value a shard publishes when its thread has ended: never "stalled". */
#define VQ_SD_BEAT_DONE UINT64_MAX

/*
 * Set up w for n shards. drain_ns bounds how long the stop timeout is
 * extended. Returns 0 or -ENOMEM. Main thread.
 */
int vq_sd_watch_init(struct vq_sd_watch *w, struct vq_shard *shards, int n, uint64_t drain_ns);
void vq_sd_watch_fini(struct vq_sd_watch *w);

/*
 * The longest a shard loop may sleep so that its heartbeat moves at least
 * twice per tick; 0 when no supervisor runs (wait forever).
 */
uint64_t vq_sd_max_wait_ns(void);

/* One supervisor turn at now_ns (CLOCK_MONOTONIC). Returns ns until the next one. */
uint64_t vq_sd_tick(struct vq_sd_watch *w, uint64_t now_ns);

/*
 * Compare beats[i] with last[i] for n shards and copy them over. Returns the
 * first shard whose beat has not advanced (and is not VQ_SD_BEAT_DONE), or -1.
 */
int vq_sd_beats_check(const uint64_t *beats, uint64_t *last, int n);

/* SIGTERM arrived: send STOPPING=1 and let the supervisor extend the stop timeout. */
void vq_sd_stopping(void);

#endif
