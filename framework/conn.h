/* SPDX-License-Identifier: MIT */
#ifndef VQ_CONN_H
#define VQ_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include "buf.h"
#include "op.h"
#include "timer.h"

struct vq_shard;

#define VQ_CONN_RX      (1u << 0) /* the multishot recv is armed */
#define VQ_CONN_TX      (1u << 1) /* a send is in flight (one per socket, in order) */
#define VQ_CONN_EOF     (1u << 2) /* the peer finished sending */
#define VQ_CONN_PAUSED  (1u << 3) /* reading stopped: too much output queued */
#define VQ_CONN_CLOSING (1u << 4) /* close once the output is flushed */
#define VQ_CONN_ABORT   (1u << 5) /* close now, dropping queued output */
#define VQ_CONN_CLOSED  (1u << 6) /* the close op is submitted */
#define VQ_CONN_HELD    (1u << 7) /* reading stopped by the app: vq_conn_hold_input */
#define VQ_CONN_REQUEUE (1u << 8) /* the close op found the SQ full: the timer retries it */
#define VQ_CONN_MIDREQ  (1u << 9) /* the app holds part of a request: vq_conn_mid_request */
#define VQ_CONN_RXRETRY (1u << 10) /* the recv found the SQ full: the timer re-arms it */
#define VQ_CONN_LINGER  (1u << 11) /* closing: FIN sent, input discarded until the peer has our output */
#define VQ_CONN_HEARD   (1u << 12) /* lingering: input arrived since the timer last looked */

/*
 * A TCP connection owned by one shard. The framework owns the read side (a
 * multishot recv into pool buffers feeds `in`) and the ordered write queue
 * `out`. An idle connection holds no buffer: the kernel picks one from the
 * shard's provided ring only when data arrives.
 */
struct vq_conn {
	struct vq_shard *shard;
	struct vq_conn *prev, *next;
	struct vq_bufq in;        /* received, not yet consumed by the app */
	struct vq_bufq out;       /* queued for sending, in order */
	struct vq_op rx;
	struct vq_op tx;
	struct vq_timer idle;
	uint64_t last_active_ns;
	int fd;
	uint32_t flags;
	uint32_t holds;           /* app replies still being produced: see vq_conn_hold */
	int error;                /* why it closed, -errno; 0 = orderly */
	uint64_t acked_seen;      /* bytes of ours the peer had acknowledged at the last look */
	_Alignas(16) unsigned char app[]; /* service.conn_size bytes of app state */
};

static inline void *vq_conn_app(struct vq_conn *c)
{
	return c->app;
}

/* Take the oldest input buffer; the caller owns it. NULL when none is queued. */
struct vq_buf *vq_conn_read(struct vq_conn *c);

/*
 * Give back a buffer taken with vq_conn_read, its unconsumed bytes still valid
 * (vq_buf_consume the used ones): it is read first next time. For an app that
 * stops taking requests part way through its input; see vq_conn_output_full.
 */
void vq_conn_unread(struct vq_conn *c, struct vq_buf *b);

/*
 * As much output is queued as the connection may hold (limits.max_output, less
 * when the pool runs low). An app that turns requests into replies should then
 * stop: leave the rest of the input queued (vq_conn_unread) and return from
 * on_data. Reading is paused meanwhile, and on_data runs again once the peer
 * has taken half of the output, whether or not input is queued. One input buffer of small requests can ask for
 * far more output than any buffer pool holds: this is what bounds it.
 */
bool vq_conn_output_full(struct vq_conn *c);

/*
 * The app holds queued input back for a reason of its own (e.g. replies owed
 * by other shards): stop reading from the peer (true) until it says so (false).
 * on_data is not called for the held input; the app resumes it itself.
 */
void vq_conn_hold_input(struct vq_conn *c, bool hold);
/*
 * The app has taken the first part of a request into memory of its own, so
 * the input queue no longer shows it (true), or has all of it (false). A
 * shutdown drain then waits for the rest, as for input still queued. It is the
 * peer's part to finish: an orderly close does not wait for it, and
 * limits.stall_timeout does not count it as work pending.
 */
static inline void vq_conn_mid_request(struct vq_conn *c, bool mid)
{
	c->flags = mid ? c->flags | VQ_CONN_MIDREQ : c->flags & ~VQ_CONN_MIDREQ;
}

/*
 * Queue buf's valid bytes for sending after everything queued before. The
 * connection takes ownership in every case and releases buf to its pool once
 * sent or dropped: even on -EPIPE (the connection is closing) buf is gone, so
 * never release it yourself. Returns 0 or -EPIPE.
 */
int vq_conn_write(struct vq_conn *c, struct vq_buf *buf);

/*
 * Copy n bytes into pool buffers and queue them. Returns 0, -EPIPE if closing,
 * or -ENOBUFS when the pool is empty (nothing is queued then).
 */
int vq_conn_write_copy(struct vq_conn *c, const void *data, size_t n);

/*
 * The app still owes replies that are not queued yet (e.g. waiting on another
 * shard). While holds are taken, an orderly close (peer EOF, vq_conn_close,
 * shutdown drain) waits; an abort does not. vq_conn_unhold drops one and moves
 * a closing connection on.
 */
static inline void vq_conn_hold(struct vq_conn *c)
{
	c->holds++;
}

void vq_conn_unhold(struct vq_conn *c);

/* Close after the queued output is sent. */
void vq_conn_close(struct vq_conn *c);

/* Close now: queued input and output are dropped. err (-errno) is kept in c->error. */
void vq_conn_abort(struct vq_conn *c, int err);

/*
 * Open an outbound TCP connection from shard s (the calling thread's) to addr.
 * It becomes a vq_conn like an accepted one (the service's on_data/on_close
 * apply; on_accept does not run). cb runs once on s: res 0 with the new
 * connection, which the callback may write to at once; or -errno (connect
 * failure, -ETIMEDOUT after timeout_ns if > 0, -EMFILE over
 * limits.max_connections) with c = NULL. Returns 0 or -errno (then cb never runs).
 */
typedef void (*vq_connect_fn)(void *ctx, int res, struct vq_conn *c);
int vq_conn_connect(struct vq_shard *s, const struct sockaddr *addr, socklen_t addrlen,
		    int64_t timeout_ns, vq_connect_fn cb, void *ctx);

/* Framework internals: accept a new fd on s; drain/close every connection. */
struct vq_conn *vq_conn_adopt(struct vq_shard *s, int fd); /* NULL: refused, fd closed */
void vq_conn_start(struct vq_conn *c);                     /* arm reading and the idle timer */
void vq_conn_accepted(struct vq_shard *s, int fd);
void vq_conn_drain_all(struct vq_shard *s);
void vq_conn_abort_all(struct vq_shard *s);
void vq_conn_timeouts_changed(struct vq_shard *s); /* a reload changed idle/stall_timeout */
/* The pool has run dry: close connections whose peer took none of their output for limit_ns. */
void vq_conn_shed_stalled(struct vq_shard *s, uint64_t limit_ns);

#endif
