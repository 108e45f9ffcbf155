/* SPDX-License-Identifier: MIT */
/*
 * Connections: a multishot recv feeds the input queue, one send at a time
 * drains the ordered output queue, and every path to "closed" goes through
 * progress(), which closes the fd only once no op holds a buffer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include "conn.h"
#include "log.h"
#include "shard.h"

static void rx_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags);
static void progress(struct vq_conn *c);

#define conn_of(ptr, member) ((struct vq_conn *)((char *)(ptr) - offsetof(struct vq_conn, member)))

#define DRAIN_QUIET_NS 100000000ull /* a draining connection this long silent is done */
#define LINGER_TICK_NS 20000000ull  /* a lingering connection looks at its send queue this often */
#define LINGER_MAX_NS 30000000000ull /* its bound without progress when both timeouts are off */

static size_t queued_out(const struct vq_conn *c)
{
	return c->out.bytes + (c->flags & VQ_CONN_TX ? c->tx.buf->len : 0);
}

/*
 * Output a connection may queue before its reading pauses. limits.max_output
 * is per connection, but the pool is per shard, so a connection may also take
 * only an eighth of the buffers still free, and once users hold more buffers
 * than are left free, none: it gets its next reply only when the last one is
 * sent. So peers that never read cannot take the buffers everyone else needs.
 * (Counted against what is free, not the whole pool: the part lent to the
 * kernel for receiving is never free for output.) Peers that read nothing at
 * all still pin a buffer or two each, until limits.stall_timeout closes them.
 */
static size_t output_limit(const struct vq_conn *c)
{
	const struct vq_pool *p = &c->shard->pool;
	size_t limit = c->shard->cfg->max_output, share = (size_t)p->st.free * p->size / 8;

	if (vq_pool_short(p))
		return 0;
	return limit < share ? limit : share;
}

/*
 * Whether the peer has acknowledged more of our output since the last look,
 * and whether some is still in the kernel (unacknowledged or not yet sent).
 * Progress a completed send may not show for long: a zero-copy send completes
 * only once its bytes are acknowledged, behind a send buffer of megabytes, and
 * a slow reader's window opens in lumps. TCP_INFO's count only grows. known is
 * false where the kernel cannot tell (not TCP, a kernel before 4.6).
 */
struct intake {
	bool known, grew, out;
};

static struct intake peer_intake(struct vq_conn *c)
{
	struct intake in = { 0 };
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) ||
	    len < offsetof(struct tcp_info, tcpi_notsent_bytes) + sizeof(ti.tcpi_notsent_bytes))
		return in;
	in.known = true;
	in.grew = ti.tcpi_bytes_acked > c->acked_seen;
	in.out = ti.tcpi_unacked || ti.tcpi_notsent_bytes;
	c->acked_seen = ti.tcpi_bytes_acked;
	if (in.grew)
		c->last_active_ns = c->shard->now_ns;
	return in;
}

/*
 * The connection has work pending: make sure its timer fires within
 * limits.stall_timeout. Armed at most once per period, not per send; when it
 * fires, idle_fired looks at the connection as it is then, and at what the
 * peer acknowledged since now.
 */
static void watch_stall(struct vq_conn *c)
{
	struct vq_shard *s = c->shard;
	uint64_t stall = s->cfg->stall_timeout_ms * NS_PER_MS;

	if (stall && (!c->idle.slot || c->idle.when_ns > s->now_ns + stall)) {
		vq_timer_arm(s, &c->idle, stall);
		peer_intake(c);
	}
}

/* An op the SQ would not take (flag says which): the connection's timer retries it in 1 ms. */
static void retry_soon(struct vq_conn *c, uint32_t flag)
{
	c->flags |= flag;
	vq_timer_arm(c->shard, &c->idle, NS_PER_MS);
}

/*
 * A multishot recv, unless the pool runs short: then one buffer per recv, so a
 * connection that stops reading holds one input buffer, not the several a
 * multishot recv moves (the whole backlog, before the 6.17 byte cap), and a
 * pool of buffers.count serves fresh clients beside hundreds that pipeline
 * and never read. A submit per buffer costs more, so only while buffers are
 * scarce.
 */
static bool rx_one_at_a_time(const struct vq_conn *c)
{
	return vq_pool_short(&c->shard->pool);
}

static void arm_rx(struct vq_conn *c)
{
	int ret;

	vq_op_prep(&c->rx, VQ_OP_RECV, c->fd, NULL, rx_done);
	c->rx.flags = VQ_OPF_POOLED | (rx_one_at_a_time(c) ? 0 : VQ_OPF_MULTISHOT);
	ret = vq_driver_submit(&c->shard->drv, &c->rx);
	if (ret == -EBUSY) {
		/* A re-arm (after the recv cap, or a one-shot recv) can meet a full queue. */
		retry_soon(c, VQ_CONN_RXRETRY);
	} else if (ret) {
		vq_conn_abort(c, ret);
	} else {
		c->flags |= VQ_CONN_RX;
	}
}

/*
 * (Re)start reading unless something stops it: back-pressure, the app, the
 * peer's EOF, closing (but a lingering close reads on, to discard).
 */
static void resume_rx(struct vq_conn *c)
{
	uint32_t stops = VQ_CONN_RX | VQ_CONN_PAUSED | VQ_CONN_HELD | VQ_CONN_EOF |
			 VQ_CONN_ABORT | VQ_CONN_CLOSED;

	if (!(c->flags & stops) && (!(c->flags & VQ_CONN_CLOSING) || c->flags & VQ_CONN_LINGER))
		arm_rx(c);
}

static void stop_rx(struct vq_conn *c)
{
	if (c->flags & VQ_CONN_RX)
		c->shard->drv.ops->cancel(&c->shard->drv, &c->rx);
}

static void tx_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct vq_conn *c = conn_of(op, tx);
	c->flags &= ~VQ_CONN_TX;
	vq_buf_release(b);
	if (res < 0) {
		if (res != -ECANCELED)
			vq_conn_abort(c, res);
		progress(c);
		return;
	}
	c->shard->st.bytes_out += (uint64_t)res;
	c->last_active_ns = c->shard->now_ns;
	if (c->flags & VQ_CONN_PAUSED && queued_out(c) <= output_limit(c) / 2) {
		c->flags &= ~VQ_CONN_PAUSED;
		/* Work the app left when the output filled up (queued input, a reply it
		 * was part way through): its turn now. Reading resumes after, so only
		 * if that work did not fill the output again. */
		if (!(c->flags & VQ_CONN_ABORT))
			c->shard->svc->on_data(c);
		resume_rx(c);
	}
	progress(c);
}

static void start_tx(struct vq_conn *c)
{
	struct vq_buf *b;
	int ret;

	if (c->flags & (VQ_CONN_TX | VQ_CONN_ABORT | VQ_CONN_CLOSED) || !c->out.head)
		return;
	b = vq_bufq_pop(&c->out);
	vq_op_prep(&c->tx, VQ_OP_SEND, c->fd, b, tx_done);
	c->tx.flags = VQ_OPF_ALL;
	ret = vq_driver_submit(&c->shard->drv, &c->tx);
	if (ret) {
		vq_buf_release(b);
		vq_conn_abort(c, ret);
		return;
	}
	c->flags |= VQ_CONN_TX;
	watch_stall(c);
}

static void close_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct vq_conn *c = conn_of(op, rx);
	struct vq_shard *s = c->shard;

	if (s->svc->on_close)
		s->svc->on_close(c);
	vq_timer_disarm(s, &c->idle);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	s->st.closed++;
	free(c);
}

static void drop_queue(struct vq_bufq *q)
{
	struct vq_buf *b;

	while ((b = vq_bufq_pop(q)))
		vq_buf_release(b);
}

/* No op holds a buffer any more: drop the queues and close the socket through the ring. */
static void finish_close(struct vq_conn *c)
{
	drop_queue(&c->in);
	drop_queue(&c->out);
	vq_op_prep(&c->rx, VQ_OP_CLOSE, c->fd, NULL, close_done);
	if (vq_driver_submit(&c->shard->drv, &c->rx)) {
		retry_soon(c, VQ_CONN_REQUEUE);
		return;
	}
	c->flags = (c->flags & ~VQ_CONN_REQUEUE) | VQ_CONN_CLOSED;
}

/* Nothing in progress either way: draining may close it (after a quiet moment). */
static bool conn_idle(const struct vq_conn *c)
{
	return !c->in.bytes && !c->out.head && !(c->flags & (VQ_CONN_TX | VQ_CONN_MIDREQ)) &&
	       !c->holds;
}

/* Work on our side: output not taken, replies owed, requests held back. */
static bool owes_work(const struct vq_conn *c)
{
	return c->out.head || c->flags & VQ_CONN_TX || c->holds ||
	       (c->in.bytes && c->flags & (VQ_CONN_PAUSED | VQ_CONN_HELD));
}

/*
 * Draining closes a connection once it is idle. Bytes the peer already sent but
 * our recv has not yet delivered are part of a request in flight: an empty
 * queue between two segments of one large request is not the end of it.
 * One ioctl, only while draining.
 */
static bool conn_unread(const struct vq_conn *c)
{
	int n = 0;

	return !ioctl(c->fd, SIOCINQ, &n) && n > 0;
}

/*
 * A close with input unread, or input arriving after it, makes the kernel
 * reset the connection and drop whatever of our output the peer has not yet
 * acknowledged: a large reply, or the error reply that explains the close, is
 * lost to a peer still sending. So unless the peer has closed, or nothing of
 * ours is in flight and nothing is unread, the close lingers: our side is shut
 * for writing (the FIN follows the output), and input is read and discarded
 * until the peer closes, or has acknowledged all of our output and the FIN
 * and stopped sending, or stops taking our output (linger_tick). Returns true
 * while it lingers.
 */
static bool lingering(struct vq_conn *c)
{
	int outq = 0;

	if (c->flags & VQ_CONN_EOF)
		return false; /* the peer closed: nothing more comes */
	if (c->flags & VQ_CONN_LINGER)
		return true;
	if (ioctl(c->fd, SIOCOUTQ, &outq) || (!outq && !c->in.bytes && !conn_unread(c)) ||
	    shutdown(c->fd, SHUT_WR))
		return false; /* nothing of ours in flight, nothing unread: close now */
	c->flags = (c->flags | VQ_CONN_LINGER) & ~(VQ_CONN_PAUSED | VQ_CONN_HELD);
	c->last_active_ns = c->shard->now_ns;
	c->shard->st.lingered++;
	drop_queue(&c->in);
	resume_rx(c);
	vq_timer_arm(c->shard, &c->idle, LINGER_TICK_NS);
	return true;
}

/* No progress on work owed for the whole limit (the one *count counts): the connection goes. */
static void close_stalled(struct vq_conn *c, uint64_t *count, const char *why)
{
	struct vq_shard *s = c->shard;

	(*count)++;
	vq_debug("connection fd %d: %s for %llu ms", c->fd, why,
		 (unsigned long long)((s->now_ns - c->last_active_ns) / NS_PER_MS));
	vq_conn_abort(c, -ETIMEDOUT);
}

/*
 * The lingering connection's timer. It closes once the peer has acknowledged
 * all of our output and the FIN and has sent nothing for a tick (a close while
 * it still sends resets, and some stacks then drop what they have not read),
 * or once the socket has failed (the peer reset it), or when the peer has taken
 * none of our output for limits.stall_timeout (if that is 0, idle_timeout; if
 * both are, LINGER_MAX_NS): a close, once asked for, always happens.
 */
static void linger_tick(struct vq_conn *c)
{
	struct vq_shard *s = c->shard;
	uint64_t limit = (s->cfg->stall_timeout_ms ? s->cfg->stall_timeout_ms
						   : s->cfg->idle_timeout_ms) * NS_PER_MS;
	bool heard = c->flags & VQ_CONN_HEARD;
	int outq = 0, err = 0;
	socklen_t len = sizeof(err);

	c->flags &= ~VQ_CONN_HEARD;
	if (ioctl(c->fd, SIOCOUTQ, &outq) || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) ||
	    err) {
		vq_conn_abort(c, err ? -err : -errno);
		return;
	}
	if (!outq && !heard) {
		vq_conn_abort(c, 0); /* the peer has it all and is done: nothing to reset */
		return;
	}
	/* Nothing is added after our FIN: what the peer acknowledges is what it took. */
	if (!peer_intake(c).grew && s->now_ns - c->last_active_ns >= (limit ? limit : LINGER_MAX_NS)) {
		close_stalled(c, &s->st.stall_closed,
			      "closing, the peer takes none of the reply");
		return;
	}
	vq_timer_arm(s, &c->idle, LINGER_TICK_NS);
}

/* Move a connection on towards "closed" if it is closing; the last call in every handler. */
static void progress(struct vq_conn *c)
{
	struct vq_driver *d = &c->shard->drv;

	if (c->flags & VQ_CONN_CLOSED)
		return;
	if (!(c->flags & (VQ_CONN_CLOSING | VQ_CONN_ABORT)) &&
	    c->shard->state >= VQ_SHARD_DRAINING && conn_idle(c) &&
	    c->shard->now_ns - c->last_active_ns >= DRAIN_QUIET_NS && !conn_unread(c))
		c->flags |= VQ_CONN_CLOSING; /* draining: done with what it started */
	if (c->flags & VQ_CONN_ABORT) {
		if (c->flags & VQ_CONN_TX)
			d->ops->cancel(d, &c->tx);
	} else if (c->flags & VQ_CONN_CLOSING) {
		start_tx(c);
		if (c->out.head || c->flags & VQ_CONN_TX || c->holds)
			return; /* flush first, and wait for replies the app still owes */
		if (lingering(c))
			return;
	} else {
		start_tx(c);
		return;
	}
	if (c->flags & VQ_CONN_RX)
		d->ops->cancel(d, &c->rx);
	if (!(c->flags & (VQ_CONN_RX | VQ_CONN_TX)))
		finish_close(c);
}

static void rx_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct vq_conn *c = conn_of(op, rx);
	struct vq_shard *s = c->shard;
	bool deliver = false, rearm = false;

	if (b) {
		s->st.bytes_in += (uint64_t)res;
		if (c->flags & (VQ_CONN_ABORT | VQ_CONN_CLOSING)) {
			/* Closing: nobody will read it, and it is no progress on what is
			 * owed (a peer that sends and never reads still stalls). */
			vq_buf_release(b);
			if (c->flags & VQ_CONN_LINGER)
				c->flags |= VQ_CONN_HEARD;
		} else {
			c->last_active_ns = s->now_ns;
			watch_stall(c);
			vq_bufq_push(&c->in, b);
			deliver = true;
		}
	}
	if (flags & VQ_CQE_MORE) {
		if (rx_one_at_a_time(c))
			stop_rx(c); /* the pool ran short: re-armed one buffer at a time */
	} else {
		c->flags &= ~VQ_CONN_RX;
		if (res == 0 && !(c->flags & VQ_CONN_EOF)) {
			c->flags |= VQ_CONN_EOF;
			deliver = true;
		} else if (res == -ECANCELED || res > 0) {
			/* Paused, held, closing, or resumed before the cancel landed; or
			 * the recv took its fill (the driver's cap, or a one-shot recv):
			 * read on unless stopped by the time this input is handled. */
			rearm = true;
		} else if (res < 0) {
			vq_conn_abort(c, res);
		}
	}
	/*
	 * Unconsumed input beyond the limit is a request too large to take, unless
	 * the app holds it back while reading is stopped (output full, or its own
	 * reason): then it is whole requests, and only what was already on its way
	 * when reading stopped is added.
	 */
	if (c->in.bytes > s->cfg->max_input && !(c->flags & (VQ_CONN_PAUSED | VQ_CONN_HELD))) {
		s->st.input_overflows++;
		vq_debug("connection fd %d: %zu bytes of unconsumed input exceed limits.max_input",
			 c->fd, c->in.bytes);
		vq_conn_abort(c, -EMSGSIZE);
	} else if (deliver && !(c->flags & VQ_CONN_ABORT)) {
		s->svc->on_data(c);
	}
	/*
	 * The peer is done sending: close once the answers are out. Input the app
	 * left queued stays until then (it may be complete requests held back by
	 * back-pressure); the close drops whatever is still unconsumed.
	 */
	if (c->flags & VQ_CONN_EOF && !(c->flags & VQ_CONN_ABORT))
		c->flags |= VQ_CONN_CLOSING;
	if (rearm)
		resume_rx(c);
	progress(c);
}

/*
 * The connection's one timer: a close or a recv to retry, limits.idle_timeout and
 * limits.stall_timeout, whichever is due first.
 */
static void idle_fired(struct vq_timer *t)
{
	struct vq_conn *c = (struct vq_conn *)((char *)t - offsetof(struct vq_conn, idle));
	struct vq_shard *s = c->shard;
	uint64_t idle = s->cfg->idle_timeout_ms * NS_PER_MS;
	uint64_t stall = s->cfg->stall_timeout_ms * NS_PER_MS;
	uint64_t quiet = s->now_ns - c->last_active_ns, next = UINT64_MAX;

	if (c->flags & VQ_CONN_REQUEUE) {
		finish_close(c); /* a close that could not be queued before */
		return;
	}
	if (c->flags & (VQ_CONN_ABORT | VQ_CONN_CLOSED))
		return;
	if (c->flags & VQ_CONN_RXRETRY) {
		c->flags &= ~VQ_CONN_RXRETRY;
		resume_rx(c); /* a recv the SQ would not take before */
	}
	if (c->flags & VQ_CONN_LINGER) {
		linger_tick(c);
		return;
	}
	/*
	 * Work pending on our side (output not taken, replies owed, requests held
	 * back) and nothing received and no send finished for the whole limit: the
	 * peer stopped reading, or the connection waits on buffers that such peers
	 * hold. It goes, so stalled peers cannot keep the pool from everyone else.
	 * Also while closing: an orderly close waits for the output to drain. A
	 * request the peer has only half sent is the peer's to finish: only
	 * limits.idle_timeout applies to it.
	 */
	if (stall && owes_work(c)) {
		if (quiet >= stall && peer_intake(c).grew)
			quiet = 0; /* no send finished, but the peer took some of our output */
		if (quiet >= stall) {
			close_stalled(c, &s->st.stall_closed,
				      "nothing sent or received with work pending");
			return;
		}
		next = stall - quiet;
	}
	/* Nothing received and no send finished for the whole limit: idle. */
	if (idle && !(c->flags & VQ_CONN_CLOSING)) {
		if (quiet >= idle) {
			s->st.idle_closed++;
			vq_conn_abort(c, -ETIMEDOUT);
			return;
		}
		if (idle - quiet < next)
			next = idle - quiet;
	}
	if (next != UINT64_MAX)
		vq_timer_arm(s, &c->idle, next);
}

/*
 * A connection goes if it owes work, has output in the kernel, and the peer
 * has acknowledged none of it, received nothing new and finished no send for
 * the whole limit. Its buffers (the send the kernel cannot take, the reply
 * behind it, the requests it holds back) are what the others wait for. Not
 * judged here: connections whose output has not reached the kernel (a victim
 * waiting for a buffer, but also a newcomer that asked and does not read:
 * limits.stall_timeout covers those), and lingering ones (linger_tick).
 */
void vq_conn_shed_stalled(struct vq_shard *s, uint64_t limit_ns)
{
	struct vq_conn *c, *next;
	uint64_t before = s->st.pool_stall_closed, *closed = &s->st.pool_stall_closed;

	for (c = s->conns; c; c = next) {
		struct intake in;

		next = c->next;
		if (c->flags & (VQ_CONN_ABORT | VQ_CONN_CLOSED | VQ_CONN_LINGER) || !owes_work(c))
			continue;
		in = peer_intake(c);
		if (in.known && in.out && s->now_ns - c->last_active_ns >= limit_ns)
			close_stalled(c, closed, "the pool ran dry and the peer took none of its output");
	}
	/* At the first close and then every 256th: a sweep runs 4 times a limit. */
	if (*closed != before && (!before || before / 256 != *closed / 256))
		vq_warn("buffer pool dry: closing connections whose peers took no output for "
			"limits.pool_stall_timeout (%lu so far)", (unsigned long)*closed);
}

/*
 * A reload changed limits.idle_timeout or limits.stall_timeout: every
 * connection's timer fires now and re-arms under the new limits, so a lowered
 * limit applies at once and one turned on covers connections already stuck.
 */
void vq_conn_timeouts_changed(struct vq_shard *s)
{
	for (struct vq_conn *c = s->conns; c; c = c->next)
		vq_timer_arm(s, &c->idle, 0);
}

struct vq_conn *vq_conn_adopt(struct vq_shard *s, int fd)
{
	struct vq_conn *c;

	if (s->nconns >= s->cfg->max_connections || s->state != VQ_SHARD_RUNNING) {
		s->st.rejected++;
		if (s->st.rejected == 1 || !(s->st.rejected & 1023))
			vq_warn("connection refused: %u open, limits.max_connections = %lu "
				"(%lu refused so far)", s->nconns,
				(unsigned long)s->cfg->max_connections,
				(unsigned long)s->st.rejected);
		close(fd);
		return NULL;
	}
	/*
	 * Room in the timer heap for everything armed now plus every connection
	 * and the shard's own timers arming afresh: a connection's timer (idle,
	 * stall, close retry) must not fail to arm once it is accepted.
	 */
	if (vq_timer_heap_reserve(&s->timers, s->timers.len + s->nconns + 1 + VQ_SHARD_TIMERS))
		c = NULL;
	else
		c = calloc(1, sizeof(*c) + s->svc->conn_size);
	if (!c) {
		s->st.rejected++;
		close(fd);
		return NULL;
	}
	c->shard = s;
	c->fd = fd;
	c->last_active_ns = s->now_ns;
	c->idle.fn = idle_fired;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	return c;
}

void vq_conn_start(struct vq_conn *c)
{
	struct vq_shard *s = c->shard;

	if (c->flags & (VQ_CONN_ABORT | VQ_CONN_CLOSED)) {
		progress(c);
		return;
	}
	arm_rx(c);
	if (s->cfg->idle_timeout_ms)
		vq_timer_arm(s, &c->idle, s->cfg->idle_timeout_ms * NS_PER_MS);
	progress(c);
}

void vq_conn_accepted(struct vq_shard *s, int fd)
{
	struct vq_conn *c = vq_conn_adopt(s, fd);

	if (!c)
		return;
	s->st.accepted++;
	if (s->svc->on_accept) {
		int ret = s->svc->on_accept(c);

		if (ret) {
			vq_conn_abort(c, ret);
			return;
		}
	}
	vq_conn_start(c);
}

struct vq_buf *vq_conn_read(struct vq_conn *c)
{
	return vq_bufq_pop(&c->in);
}

int vq_conn_write(struct vq_conn *c, struct vq_buf *buf)
{
	if (c->flags & (VQ_CONN_ABORT | VQ_CONN_CLOSED)) {
		vq_buf_release(buf);
		return -EPIPE;
	}
	if (!buf->len) {
		vq_buf_release(buf);
		return 0;
	}
	vq_bufq_push(&c->out, buf);
	vq_conn_output_full(c);
	start_tx(c);
	return 0;
}

void vq_conn_unread(struct vq_conn *c, struct vq_buf *b)
{
	vq_bufq_push_front(&c->in, b);
}

bool vq_conn_output_full(struct vq_conn *c)
{
	if (queued_out(c) <= output_limit(c))
		return false;
	/*
	 * The peer reads slower than we write: stop reading until it catches up.
	 * Latched here, not only in vq_conn_write: the limit also drops when the
	 * pool runs low, and an app told "full" must be called again (tx_done).
	 */
	if (!(c->flags & VQ_CONN_PAUSED)) {
		c->flags |= VQ_CONN_PAUSED;
		c->shard->st.paused++;
		stop_rx(c);
	}
	return true;
}

void vq_conn_hold_input(struct vq_conn *c, bool hold)
{
	if (hold) {
		c->flags |= VQ_CONN_HELD;
		stop_rx(c);
	} else {
		c->flags &= ~VQ_CONN_HELD;
		resume_rx(c);
	}
}

int vq_conn_write_copy(struct vq_conn *c, const void *data, size_t n)
{
	struct vq_pool *pool = &c->shard->pool;
	struct vq_bufq q = { 0 };
	const unsigned char *p = data;
	struct vq_buf *b;

	if (c->flags & (VQ_CONN_ABORT | VQ_CONN_CLOSED))
		return -EPIPE;
	/* Fill the last queued buffer's room first: small replies coalesce into one send. */
	if (c->out.tail && vq_buf_room(c->out.tail) >= n) {
		b = c->out.tail;
		memcpy(vq_buf_bytes(b) + b->len, p, n);
		b->len += (uint32_t)n;
		c->out.bytes += n;
		start_tx(c);
		return 0;
	}
	while (n) {
		uint32_t chunk;

		b = vq_pool_alloc(pool);
		if (!b) {
			drop_queue(&q);
			return -ENOBUFS;
		}
		chunk = n < b->cap ? (uint32_t)n : b->cap;
		memcpy(b->data, p, chunk);
		b->len = chunk;
		vq_bufq_push(&q, b);
		p += chunk;
		n -= chunk;
	}
	while ((b = vq_bufq_pop(&q))) {
		int ret = vq_conn_write(c, b);

		if (ret) {
			drop_queue(&q);
			return ret;
		}
	}
	return 0;
}

void vq_conn_unhold(struct vq_conn *c)
{
	if (c->holds && !--c->holds)
		progress(c);
}

/* Both only mark the connection and move it on: the fd closes through the ring, later. */
void vq_conn_close(struct vq_conn *c)
{
	c->flags |= VQ_CONN_CLOSING;
	progress(c);
}

void vq_conn_abort(struct vq_conn *c, int err)
{
	if (!(c->flags & VQ_CONN_ABORT) && !c->error)
		c->error = err;
	c->flags |= VQ_CONN_ABORT;
	progress(c);
}

void vq_conn_drain_all(struct vq_shard *s)
{
	for (struct vq_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		progress(c);
	}
}

void vq_conn_abort_all(struct vq_shard *s)
{
	for (struct vq_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		vq_conn_abort(c, -ESHUTDOWN);
	}
}
