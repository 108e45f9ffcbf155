/* SPDX-License-Identifier: MIT */
/*
 * The io_uring driver. One ring per shard, created on the shard's pinned thread
 * with SINGLE_ISSUER|DEFER_TASKRUN (6.1+), so completions run only inside our own
 * io_uring_enter and one submit-and-wait per loop iteration does all the work.
 *
 * user_data is the vq_op pointer; two small values are reserved for the driver.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <liburing.h>

#include "driver.h"
#include "uring_compat.h"

#define UD_IGNORE 0ull /* results of cancel requests and doorbell sends */
#define UD_WAKE   1ull /* a MSG_RING doorbell from another shard */
/* Our own MSG_RING's failure CQE: (target's eventfd << 32) | 2. Ops are 8-aligned. */
#define UD_BELL_TAG  2ull
#define UD_IS_BELL(ud) (((ud) & 7) == UD_BELL_TAG)
#define BGID      0    /* the shard's one provided-buffer group */
#define CQ_FACTOR 8    /* multishot ops post many CQEs per SQE */
#define ZC_PENDING 1u  /* vq_op.state: a zero-copy send's notification CQE is still due */
#define SPLICE_POLL 2u /* vq_op.state: a splice waits for its fd (op->res) to be ready */
#define SPLICE_OUT  4u /* ... for writing (the output end), not for reading */
#define PARK_TIMER  8u /* vq_op.state: a parked op's deadline is armed as a plain timeout */
#define UD_PARK     1ull /* user_data = op | UD_PARK: that timeout (ops are 8-byte aligned) */

struct uring {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	size_t br_len;
	uint32_t br_entries;
	uint32_t br_count;        /* buffers currently in the provided ring */
	uint16_t br_tail;         /* ring position of the next buffer added */
	uint16_t *slot_bid;       /* bundles: buffer id at each ring slot (position & mask) */
	uint16_t *bid_pos;        /* bundles: ring position each buffer id was added at */
	bool bundle;              /* multishot recvs ask for bundles (6.10) */
	bool recv_cap;            /* multishot recvs end after RECV_CAP_BUFS buffers' worth (6.17) */
	bool bufs_registered;
	unsigned ring_features;   /* io_uring_params.features from setup */
	struct vq_op *parked;     /* pooled recvs that ran out of buffers (ENOBUFS) */
	struct vq_op *local;      /* ops completed without a CQE, delivered in wait() */
	int wake_fd;              /* eventfd for doorbells from non-shard threads */
	struct vq_op wake_op;     /* the driver's read on wake_fd */
	bool wake_rearm;          /* wake_op lost its re-arm to a full SQ */
	uint64_t wake_val;
};

/*
 * Bytes one multishot recv may take before it ends, in pool buffers. Without a
 * cap the kernel empties a socket's whole backlog (megabytes from a peer that
 * sent far ahead) into provided buffers before the owner can stop it; with it,
 * an owner that stopped reading holds at most this much, and one that reads on
 * re-arms (a submit per 64 KiB at the default buffer size).
 */
#define RECV_CAP_BUFS 4

static inline struct uring *U(struct vq_driver *d)
{
	return d->impl;
}

static struct io_uring_sqe *get_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		/* SQ full: hand what we have to the kernel (no waiting) and retry. */
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

/* A TIMEOUT's delay shares its field with the deadline other ops may carry. */
static bool has_deadline(const struct vq_op *op)
{
	return op->opcode != VQ_OP_TIMEOUT && op->deadline_ns > 0;
}

/* Fill and queue the SQE for op's current step. Called for first submits and re-arms. */
static int queue_op(struct vq_driver *d, struct vq_op *op)
{
	struct uring *u = U(d);
	struct io_uring_sqe *sqe;
	struct vq_buf *b = op->buf;
	struct __kernel_timespec *ts;
	bool linked = has_deadline(op);
	bool fixed = u->bufs_registered && b && b->pool == d->pool;
	unsigned n;

	/* An op and its linked timeout must reach the kernel in the same submission. */
	if (linked && io_uring_sq_space_left(&u->ring) < 2)
		io_uring_submit(&u->ring);
	sqe = get_sqe(u);
	if (!sqe)
		return -EBUSY;
	switch (op->opcode) {
	case VQ_OP_NOP:
		io_uring_prep_nop(sqe);
		break;
	case VQ_OP_ACCEPT:
		if (op->flags & VQ_OPF_MULTISHOT)
			io_uring_prep_multishot_accept(sqe, op->fd, NULL, NULL, SOCK_CLOEXEC);
		else
			io_uring_prep_accept(sqe, op->fd, NULL, NULL, SOCK_CLOEXEC);
		break;
	case VQ_OP_RECV:
		if (op->flags & VQ_OPF_POOLED) {
			if (op->flags & VQ_OPF_MULTISHOT) {
				io_uring_prep_recv_multishot(sqe, op->fd, NULL, 0, 0);
				if (u->bundle)
					sqe->ioprio |= IORING_RECVSEND_BUNDLE;
				if (u->recv_cap)
					vq_sqe_set_recv_cap(sqe, RECV_CAP_BUFS * d->pool->size);
			} else {
				io_uring_prep_recv(sqe, op->fd, NULL, 0, 0);
			}
			sqe->flags |= IOSQE_BUFFER_SELECT;
			sqe->buf_group = BGID;
		} else {
			io_uring_prep_recv(sqe, op->fd, vq_buf_bytes(b) + b->len, vq_buf_room(b), 0);
		}
		break;
	case VQ_OP_SEND:
		io_uring_prep_send(sqe, op->fd, vq_buf_bytes(b) + op->progress,
				   b->len - op->progress, MSG_NOSIGNAL);
		break;
	case VQ_OP_READ:
		if (u->bufs_registered && b->pool == d->pool)
			io_uring_prep_read_fixed(sqe, op->fd, vq_buf_bytes(b) + b->len,
						 vq_buf_room(b), op->off, (int)b->index);
		else
			io_uring_prep_read(sqe, op->fd, vq_buf_bytes(b) + b->len, vq_buf_room(b),
					   op->off);
		break;
	case VQ_OP_WRITE:
		if (u->bufs_registered && b->pool == d->pool)
			io_uring_prep_write_fixed(sqe, op->fd, vq_buf_bytes(b) + op->progress,
						  b->len - op->progress, op->off + op->progress,
						  (int)b->index);
		else
			io_uring_prep_write(sqe, op->fd, vq_buf_bytes(b) + op->progress,
					    b->len - op->progress, op->off + op->progress);
		break;
	case VQ_OP_CLOSE:
		io_uring_prep_close(sqe, op->fd);
		break;
	case VQ_OP_TIMEOUT:
		ts = (struct __kernel_timespec *)op->scratch;
		ts->tv_sec = op->timeout_ns / 1000000000;
		ts->tv_nsec = op->timeout_ns % 1000000000;
		io_uring_prep_timeout(sqe, ts, 0, 0);
		break;
	case VQ_OP_CONNECT:
		io_uring_prep_connect(sqe, op->fd, op->addr, op->addrlen);
		break;
	case VQ_OP_READV:
		n = vq_op_iov_fill(op, false);
		io_uring_prep_readv(sqe, op->fd, op->iov, n, op->off);
		break;
	case VQ_OP_WRITEV:
		n = vq_op_iov_fill(op, true);
		io_uring_prep_writev(sqe, op->fd, op->iov, n,
				     op->off == VQ_OFF_CUR ? op->off : op->off + op->progress);
		break;
	case VQ_OP_SPLICE:
		if (op->state & SPLICE_POLL)
			io_uring_prep_poll_add(sqe, op->res, op->state & SPLICE_OUT ? POLLOUT : POLLIN);
		else
			io_uring_prep_splice(sqe, op->fd,
					     op->off == VQ_OFF_CUR ? -1 : (int64_t)op->off,
					     op->fd_out, -1, op->len, 0);
		break;
	case VQ_OP_SEND_ZC:
		/*
		 * Zero copy pays only when pinning pages and the extra notification CQE
		 * cost less than the copy; below the threshold a plain send is cheaper.
		 */
		op->state = fixed && b->len - op->progress >= d->zc_min ? ZC_PENDING : 0;
		if (op->state & ZC_PENDING)
			io_uring_prep_send_zc_fixed(sqe, op->fd, vq_buf_bytes(b) + op->progress,
						    b->len - op->progress, MSG_NOSIGNAL, 0,
						    b->index);
		else
			io_uring_prep_send(sqe, op->fd, vq_buf_bytes(b) + op->progress,
					   b->len - op->progress, MSG_NOSIGNAL);
		break;
	default:
		return -EINVAL;
	}
	io_uring_sqe_set_data(sqe, op);
	if (linked) {
		/* The deadline is absolute (set at submit), so re-arms keep the original one. */
		sqe->flags |= IOSQE_IO_LINK;
		sqe = get_sqe(u);
		io_uring_prep_link_timeout(sqe, (struct __kernel_timespec *)op->scratch,
					   IORING_TIMEOUT_ABS);
		io_uring_sqe_set_data64(sqe, UD_IGNORE);
	}
	return 0;
}

static bool needs_buf(const struct vq_op *op)
{
	switch (op->opcode) {
	case VQ_OP_RECV:
		return !(op->flags & VQ_OPF_POOLED);
	case VQ_OP_SEND:
	case VQ_OP_SEND_ZC:
	case VQ_OP_READ:
	case VQ_OP_WRITE:
	case VQ_OP_READV:
	case VQ_OP_WRITEV:
		return true;
	default:
		return false;
	}
}

static int uring_submit(struct vq_driver *d, struct vq_op *op)
{
	int ret;

	if (op->inflight)
		return -EBUSY;
	if (needs_buf(op) != (op->buf != NULL))
		return -EINVAL;
	if (op->flags & VQ_OPF_POOLED && !U(d)->br)
		return -ENOBUFS;
	ret = vq_op_check(op);
	if (ret)
		return ret;
	op->progress = 0;
	op->cancelled = 0;
	op->state = 0;
	if (has_deadline(op)) {
		/* The linked timeout's absolute time; TIMEOUT keeps its own timespec here. */
		struct timespec now;
		struct __kernel_timespec *ts = (struct __kernel_timespec *)op->scratch;
		uint64_t at;

		clock_gettime(CLOCK_MONOTONIC, &now);
		at = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec +
		     (uint64_t)op->deadline_ns;
		ts->tv_sec = (int64_t)(at / 1000000000ull);
		ts->tv_nsec = (long long)(at % 1000000000ull);
	}
	ret = queue_op(d, op);
	if (ret)
		return ret;
	vq_op_bufs_to_kernel(op);
	op->inflight = 1;
	d->inflight++;
	d->st.submitted++;
	return 0;
}

/* Final completion: the op ends and its buffer goes back to the caller. */
static void finish(struct vq_driver *d, struct vq_op *op, int res)
{
	struct vq_buf *b = op->buf;

	if (res == -ECANCELED && has_deadline(op) && !op->cancelled) {
		res = -ETIMEDOUT; /* the linked timeout fired, not a cancel */
		d->st.timeouts++;
	}
	if (res > 0 && (op->opcode == VQ_OP_READV || op->opcode == VQ_OP_READ ||
			(op->opcode == VQ_OP_RECV && !(op->flags & VQ_OPF_POOLED))))
		vq_op_iov_spread(op, (uint32_t)res); /* the bytes read become valid */
	vq_op_bufs_from_kernel(op);
	op->buf = NULL;
	op->inflight = 0;
	d->inflight--;
	d->st.completions++;
	op->done(op, res, b, 0);
}

static void complete_locally(struct uring *u, struct vq_op *op, int res)
{
	op->res = res;
	op->next = u->local;
	u->local = op;
}

/*
 * A parked op has no SQE in the kernel, so no linked timeout either: its
 * deadline becomes a plain absolute timeout tagged op | UD_PARK, removed when
 * the op leaves the parked list.
 */
static void park(struct vq_driver *d, struct vq_op *op)
{
	struct uring *u = U(d);
	struct io_uring_sqe *sqe;

	d->st.nobufs++;
	op->next = u->parked;
	u->parked = op;
	if (!has_deadline(op) || op->state & PARK_TIMER || !(sqe = get_sqe(u)))
		return;
	io_uring_prep_timeout(sqe, (struct __kernel_timespec *)op->scratch, 0, IORING_TIMEOUT_ABS);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | UD_PARK);
	op->state |= PARK_TIMER;
}

static void park_timer_off(struct uring *u, struct vq_op *op)
{
	struct io_uring_sqe *sqe;

	if (!(op->state & PARK_TIMER))
		return;
	op->state &= (uint8_t)~PARK_TIMER;
	sqe = get_sqe(u);
	if (!sqe)
		return; /* it fires later and finds the op no longer parked */
	io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)op | UD_PARK, 0);
	io_uring_sqe_set_data64(sqe, UD_IGNORE);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

static bool unpark(struct uring *u, struct vq_op *op)
{
	for (struct vq_op **pp = &u->parked; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			park_timer_off(u, op);
			return true;
		}
	}
	return false;
}

static int uring_cancel(struct vq_driver *d, struct vq_op *op)
{
	struct uring *u = U(d);
	struct io_uring_sqe *sqe;

	if (!op->inflight || op->cancelled)
		return op->inflight ? 0 : -ENOENT;
	if (unpark(u, op)) {
		op->cancelled = 1;
		complete_locally(u, op, -ECANCELED);
		return 0;
	}
	sqe = get_sqe(u);
	if (!sqe)
		return -EBUSY; /* not marked: a later cancel tries again */
	op->cancelled = 1;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
	io_uring_sqe_set_data64(sqe, UD_IGNORE);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	return 0;
}

static int uring_cancel_fd(struct vq_driver *d, int fd)
{
	struct uring *u = U(d);
	struct io_uring_sqe *sqe;
	struct vq_op **pp = &u->parked;

	while (*pp) {
		struct vq_op *op = *pp;

		if (op->fd == fd) {
			*pp = op->next;
			park_timer_off(u, op);
			op->cancelled = 1;
			complete_locally(u, op, -ECANCELED);
		} else {
			pp = &op->next;
		}
	}
	sqe = get_sqe(u);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, UD_IGNORE);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	return 0;
}

/*
 * A bundle CQE (6.10) covers several consecutive ring slots starting at the
 * buffer it names, each filled to capacity but the last. Deliver the full ones
 * to the op as separate completions; leave the last one's id and bytes in
 * *bid and *res for the ordinary path.
 */
static void bundle_lead(struct vq_driver *d, struct vq_op *op, unsigned *bid, int *res)
{
	struct uring *u = U(d);
	uint32_t cap = d->pool->size, mask = io_uring_buf_ring_mask(u->br_entries);
	uint16_t pos = u->bid_pos[*bid];

	while ((uint32_t)*res > cap) {
		struct vq_buf *b = vq_pool_buf(d->pool, *bid);

		u->br_count--;
		vq_buf_from_kernel(b);
		b->off = 0;
		b->len = cap;
		d->st.completions++;
		d->st.bundled++;
		op->done(op, (int)cap, b, VQ_CQE_MORE);
		*res -= (int)cap;
		*bid = u->slot_bid[++pos & mask];
	}
}

/* A pooled recv completion: translate the selected buffer id into its vq_buf. */
static struct vq_buf *selected_buf(struct vq_driver *d, struct vq_op *op,
				   struct io_uring_cqe *cqe, int *resp)
{
	struct uring *u = U(d);
	struct vq_buf *b;
	unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
	int res = *resp;

	if (!(cqe->flags & IORING_CQE_F_BUFFER))
		return NULL;
	if (u->bundle && res > (int)d->pool->size)
		bundle_lead(d, op, &bid, &res);
	b = vq_pool_buf(d->pool, bid);
	u->br_count--;
	if (res <= 0) {
		vq_buf_kernel_to_free(b); /* nothing in it; replenish hands it back */
		return NULL;
	}
	vq_buf_from_kernel(b);
	b->off = 0;
	b->len = (uint32_t)res;
	*resp = res; /* what the op's own completion reports: the last buffer's bytes */
	return b;
}

static void handle_multishot(struct vq_driver *d, struct vq_op *op, struct io_uring_cqe *cqe,
			     int res, struct vq_buf *b)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more && b && !op->cancelled) {
		/* A recv ended with data (its byte cap, a CQ overflow): its last completion
		 * carries the buffer, and the owner re-arms if it still reads. */
		op->buf = b;
		vq_buf_to_kernel(b); /* finish() hands it over */
		finish(d, op, res);
		return;
	}
	if (!more && res > 0 && !op->cancelled) {
		/* The kernel ended a multishot accept without an error (e.g. CQ overflow): re-arm. */
		d->st.rearms++;
		if (queue_op(d, op) == 0) {
			more = true;
		} else {
			/* No SQE now: deliver this one and let replenish() re-arm it, not a fake end. */
			d->st.completions++;
			op->done(op, res, b, VQ_CQE_MORE);
			park(d, op);
			return;
		}
	}
	if (more) {
		d->st.completions++;
		op->done(op, res, b, VQ_CQE_MORE);
		return;
	}
	if (b) {
		/* Data that arrives with the final CQE is delivered first, then the end. */
		d->st.completions++;
		op->done(op, res, b, VQ_CQE_MORE);
		res = op->cancelled ? -ECANCELED : 0;
	}
	finish(d, op, res);
}

/*
 * io_uring does not poll for splice: with an O_NONBLOCK end (sockets made by
 * vq_conn_connect, fds the epoll driver touched) a splice that cannot move a
 * byte answers -EAGAIN. Then wait for the end that is not ready with a poll
 * (which the deadline's linked timeout covers too) and splice again. Returns
 * true while the op stays in flight.
 */
static bool splice_wait(struct vq_driver *d, struct vq_op *op, int res)
{
	struct pollfd p = { .fd = op->fd, .events = POLLIN };

	if (op->state & SPLICE_POLL) {
		op->state = 0; /* the poll's CQE: ready (res > 0), or an error that ends the op */
		return res > 0 && queue_op(d, op) == 0;
	}

	/* Input readable (or a regular file, always readable): the output is full. */
	op->state = SPLICE_POLL;
	op->res = op->fd;
	if (poll(&p, 1, 0) == 1) {
		op->state |= SPLICE_OUT;
		op->res = op->fd_out;
	}
	if (queue_op(d, op) == 0)
		return true;
	op->state = 0;
	return false;
}

/*
 * A parked op's deadline timeout completed. Only trust it for an op still
 * parked with its timer armed and its deadline really past: a late CQE for an
 * op that left the list (or whose memory now holds another op) changes nothing.
 */
static void park_timer_fired(struct vq_driver *d, struct vq_op *op, int res)
{
	struct uring *u = U(d);
	const struct __kernel_timespec *ts;
	struct timespec now;
	bool parked = false;

	if (res != -ETIME)
		return; /* removed */
	for (struct vq_op *p = u->parked; p; p = p->next)
		parked |= p == op;
	if (!parked || !(op->state & PARK_TIMER))
		return;
	ts = (const struct __kernel_timespec *)op->scratch;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec < ts->tv_sec || (now.tv_sec == ts->tv_sec && now.tv_nsec < ts->tv_nsec))
		return;
	op->state &= (uint8_t)~PARK_TIMER;
	unpark(u, op);
	d->st.timeouts++;
	complete_locally(u, op, -ETIMEDOUT);
}

/* The read on the doorbell eventfd. A NOP op to queue_op(), so it has its own prep. */
static int arm_wake(struct uring *u)
{
	struct io_uring_sqe *sqe = get_sqe(u);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, u->wake_fd, &u->wake_val, sizeof(u->wake_val), 0);
	io_uring_sqe_set_data(sqe, &u->wake_op);
	return 0;
}

static void handle_cqe(struct vq_driver *d, struct io_uring_cqe *cqe)
{
	struct uring *u = U(d);
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct vq_op *op = (struct vq_op *)(uintptr_t)ud;
	int res = cqe->res;

	if (ud == UD_IGNORE)
		return;
	if (UD_IS_BELL(ud)) {
		/* The doorbell failed (success is skipped): ring the target's eventfd instead. */
		static _Atomic int told;

		if (!atomic_exchange(&told, 1))
			fprintf(stderr, "uring: MSG_RING doorbell failed (%s); using the eventfd\n",
				strerror(-res));
		eventfd_write((int)(ud >> 32), 1);
		return;
	}
	if (ud == UD_WAKE) {
		d->st.wakeups++;
		return;
	}
	if (ud & UD_PARK) {
		park_timer_fired(d, (struct vq_op *)(uintptr_t)(ud & ~UD_PARK), res);
		return;
	}
	if (op == &u->wake_op) {
		d->st.wakeups++;
		if (res >= 0 && !op->cancelled) {
			if (arm_wake(u) == 0)
				return;
			u->wake_rearm = true; /* no SQE now: replenish() re-arms it */
		}
		op->inflight = 0;
		d->inflight--;
		d->internal--;
		return;
	}
	if (op->opcode == VQ_OP_SPLICE && !op->cancelled &&
	    (op->state & SPLICE_POLL || res == -EAGAIN)) {
		if (splice_wait(d, op, res))
			return;
		if (res > 0)
			res = -EAGAIN; /* the re-queue failed: report what we had */
	}
	if (op->opcode == VQ_OP_SEND_ZC && op->state & ZC_PENDING) {
		/*
		 * Two CQEs: the result (F_MORE), then the notification (F_NOTIF) once the
		 * kernel is done with the pages. The user hears only of the second.
		 */
		if (cqe->flags & IORING_CQE_F_MORE) {
			op->res = res;
			return;
		}
		if (cqe->flags & IORING_CQE_F_NOTIF)
			res = op->res;
		op->state = 0;
		d->st.zc_sends++;
	}
	if (op->opcode == VQ_OP_RECV && op->flags & VQ_OPF_POOLED) {
		struct vq_buf *b = selected_buf(d, op, cqe, &res);

		if (res == -ENOBUFS) {
			/* The provided ring ran dry: park until replenish() has buffers
			 * again. A cancelled recv has simply ended. */
			if (op->cancelled)
				finish(d, op, -ECANCELED);
			else
				park(d, op);
			return;
		}
		if (op->flags & VQ_OPF_MULTISHOT) {
			handle_multishot(d, op, cqe, res, b);
			return;
		}
		op->buf = b; /* finish() hands it over */
		if (b)
			vq_buf_to_kernel(b);
	} else if (op->opcode == VQ_OP_ACCEPT && op->flags & VQ_OPF_MULTISHOT) {
		handle_multishot(d, op, cqe, res, NULL);
		return;
	} else if (vq_op_resumable(op) && res > 0) {
		op->progress += (uint32_t)res;
		if (op->flags & VQ_OPF_ALL && op->progress < vq_op_total(op) && !op->cancelled) {
			d->st.partial++;
			if (queue_op(d, op) == 0)
				return;
		}
		res = (int)op->progress;
	} else if (op->opcode == VQ_OP_TIMEOUT && res == -ETIME) {
		res = 0;
	}
	finish(d, op, res);
}

static int deliver(struct vq_driver *d)
{
	struct uring *u = U(d);
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int delivered = 0;

	io_uring_for_each_cqe(&u->ring, head, cqe) {
		handle_cqe(d, cqe);
		n++;
	}
	io_uring_cq_advance(&u->ring, n);
	delivered += (int)n;
	while (u->local) {
		struct vq_op *op = u->local;

		u->local = op->next;
		finish(d, op, op->res);
		delivered++;
	}
	return delivered;
}

static int uring_wait(struct vq_driver *d, int64_t timeout_ns)
{
	struct uring *u = U(d);
	struct io_uring_cqe *cqe;
	int ret;

	if (u->local || io_uring_cq_ready(&u->ring))
		timeout_ns = 0;
	d->st.enters++;
	if (timeout_ns == 0) {
		ret = io_uring_submit_and_get_events(&u->ring);
	} else if (timeout_ns < 0) {
		ret = io_uring_submit_and_wait(&u->ring, 1);
	} else {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ns / 1000000000,
			.tv_nsec = timeout_ns % 1000000000,
		};

		ret = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	}
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY)
		return ret;
	vq_driver_tick(d);
	return deliver(d);
}

static int uring_wake(struct vq_driver *target, struct vq_driver *from)
{
	struct io_uring_sqe *sqe;

	/* From a non-shard thread, or from a shard that fell back to epoll (auto may
	 * leave shards of one process on different drivers): the eventfd. */
	if (!from || from->ops != &vq_uring_driver)
		return eventfd_write(U(target)->wake_fd, 1) ? -errno : 0;
	sqe = get_sqe(U(from));
	if (!sqe)
		return -EBUSY;
	/* The target sees a CQE with UD_WAKE; the sender's own CQE is skipped. */
	io_uring_prep_msg_ring(sqe, U(target)->ring.ring_fd, 0, UD_WAKE, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)U(target)->wake_fd << 32 | UD_BELL_TAG);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	return 0;
}

/*
 * Refill the provided ring only while it holds less than its share of the
 * buffers users do not hold: buffers.provided of buffers.count, the rest kept
 * free for replies. At rest that is the whole ring. When clients that do not
 * read hold most of the pool, a full ring would keep every buffer that comes
 * back (the freshest client's own request, once parsed) from the reply that
 * client waits for; sharing keeps both receiving and replying going.
 */
static bool ring_wants_more(const struct uring *u, const struct vq_pool *p)
{
	return u->br_count < u->br_entries &&
	       (uint64_t)u->br_count * (p->count - u->br_entries) <
		       (uint64_t)p->st.free * u->br_entries;
}

static bool uring_starved(struct vq_driver *d)
{
	return U(d)->parked != NULL;
}

static void uring_replenish(struct vq_driver *d)
{
	struct uring *u = U(d);
	uint32_t mask, n = 0;
	struct vq_buf *b;

	if (u->wake_rearm && arm_wake(u) == 0) {
		u->wake_rearm = false;
		u->wake_op.inflight = 1;
		d->inflight++;
		d->internal++;
	}

	if (!u->br)
		return;
	mask = io_uring_buf_ring_mask(u->br_entries);
	while (ring_wants_more(u, d->pool) && (b = vq_pool_take_for_kernel(d->pool))) {
		uint16_t pos = (uint16_t)(u->br_tail + n);

		io_uring_buf_ring_add(u->br, b->data, b->cap, (unsigned short)b->index, mask, (int)n);
		u->slot_bid[pos & mask] = (uint16_t)b->index;
		u->bid_pos[b->index] = pos;
		n++;
		u->br_count++;
	}
	if (n) {
		io_uring_buf_ring_advance(u->br, (int)n);
		u->br_tail = (uint16_t)(u->br_tail + n);
	}
	while (u->parked && u->br_count) {
		struct vq_op *op = u->parked;

		u->parked = op->next;
		park_timer_off(u, op); /* the re-armed recv carries a linked timeout again */
		if (queue_op(d, op)) {
			op->next = u->parked;
			u->parked = op;
			break;
		}
		d->st.rearms++;
	}
}

static int uring_register_pool(struct vq_driver *d, struct vq_pool *pool)
{
	struct uring *u = U(d);
	struct io_uring_buf_reg reg = { 0 };
	struct iovec *iov;
	uint32_t entries = u->br_entries;
	int ret;

	d->pool = pool;
	iov = calloc(pool->count, sizeof(*iov));
	if (!iov)
		return -ENOMEM;
	for (uint32_t i = 0; i < pool->count; i++)
		iov[i] = (struct iovec){ pool->bufs[i].data, pool->size };
	/* Charged to RLIMIT_MEMLOCK unless CAP_IPC_LOCK: -ENOMEM means the limit is too low. */
	ret = io_uring_register_buffers(&u->ring, iov, pool->count);
	free(iov);
	if (ret)
		return ret;
	u->bufs_registered = true;

	if (!entries)
		return 0;
	u->slot_bid = calloc(entries, sizeof(*u->slot_bid));
	u->bid_pos = calloc(pool->count, sizeof(*u->bid_pos));
	if (!u->slot_bid || !u->bid_pos)
		return -ENOMEM;
	u->br_len = (entries * sizeof(struct io_uring_buf) + 4095) & ~4095ul;
	u->br = mmap(NULL, u->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->br == MAP_FAILED) {
		u->br = NULL;
		return -ENOMEM;
	}
	reg.ring_addr = (uint64_t)(uintptr_t)u->br;
	reg.ring_entries = entries;
	reg.bgid = BGID;
	ret = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (ret) {
		munmap(u->br, u->br_len);
		u->br = NULL;
		return ret;
	}
	io_uring_buf_ring_init(u->br);
	uring_replenish(d);
	return 0;
}

static void uring_unregister_pool(struct vq_driver *d)
{
	struct uring *u = U(d);

	if (u->br) {
		io_uring_unregister_buf_ring(&u->ring, BGID);
		munmap(u->br, u->br_len);
		u->br = NULL;
		/* With no op in flight, every KERNEL buffer was sitting in the ring. */
		for (uint32_t i = 0; i < d->pool->count; i++)
			if (d->pool->bufs[i].state == VQ_BUF_KERNEL)
				vq_buf_kernel_to_free(&d->pool->bufs[i]);
		u->br_count = 0;
		u->br_tail = 0;
	}
	free(u->slot_bid);
	free(u->bid_pos);
	u->slot_bid = u->bid_pos = NULL;
	if (u->bufs_registered) {
		io_uring_unregister_buffers(&u->ring);
		u->bufs_registered = false;
	}
}

static int setup_ring(struct uring *u, uint32_t entries, char *what, size_t len)
{
	/* Best first; each fallback drops what an older kernel rejects with -EINVAL. */
	static const struct {
		unsigned flags;
		const char *name;
	} tries[] = {
		{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			  IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
		  "single_issuer defer_taskrun" },
		{ IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, "coop_taskrun" },
		{ 0, "basic" },
	};
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params p = { 0 };

		p.flags = tries[i].flags | IORING_SETUP_CQSIZE;
		p.cq_entries = entries * CQ_FACTOR;
		ret = io_uring_queue_init_params(entries, &u->ring, &p);
		if (ret == 0) {
			u->ring_features = p.features;
			snprintf(what, len, "%s%s", tries[i].name,
				 p.features & IORING_FEAT_EXT_ARG ? " ext_arg" : "");
			return 0;
		}
		if (ret != -EINVAL)
			break;
	}
	return ret;
}

/*
 * 6.12 incremental buffer consumption: the only probe is to try registering a
 * ring with the flag (an older kernel says -EINVAL). Group 1 is a scratch id.
 */
static bool probe_incremental(struct uring *u)
{
	/* 2.3 calls the 6.12 `flags` field `pad`. */
	struct io_uring_buf_reg reg = { .ring_entries = 1, .bgid = 1, .pad = IOU_PBUF_RING_INC };
	void *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool ok;

	if (mem == MAP_FAILED)
		return false;
	reg.ring_addr = (uint64_t)(uintptr_t)mem;
	ok = io_uring_register_buf_ring(&u->ring, &reg, 0) == 0;
	if (ok)
		io_uring_unregister_buf_ring(&u->ring, 1);
	munmap(mem, 4096);
	return ok;
}

/*
 * 6.17 recv byte cap: an older kernel refuses the field with -EINVAL when the
 * SQE is prepared. A newer one gets as far as picking a buffer from group 1,
 * which has none, and says -ENOBUFS (a byte is waiting, so it does not arm).
 */
static bool probe_recv_cap(struct uring *u)
{
	struct __kernel_timespec ts = { .tv_nsec = 100000000 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	bool ok = false;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return false;
	if (write(sv[1], "", 1) == 1 && (sqe = io_uring_get_sqe(&u->ring))) {
		io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = 1;
		vq_sqe_set_recv_cap(sqe, 1);
		io_uring_sqe_set_data64(sqe, UD_IGNORE);
		if (io_uring_submit(&u->ring) == 1) {
			if (io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts) == 0) {
				ok = cqe->res == -ENOBUFS;
				io_uring_cqe_seen(&u->ring, cqe);
			} else if ((sqe = io_uring_get_sqe(&u->ring))) {
				/* Armed after all: cancel it; both CQEs are UD_IGNORE. */
				io_uring_prep_cancel64(sqe, UD_IGNORE, 0);
				io_uring_sqe_set_data64(sqe, UD_IGNORE);
				io_uring_submit(&u->ring);
			}
		}
	}
	close(sv[0]);
	close(sv[1]);
	return ok;
}

static int uring_init(struct vq_driver *d, const struct vq_driver_params *params)
{
	struct uring *u = calloc(1, sizeof(*u));
	struct io_uring_probe *probe;
	char setup[64];
	int ret;

	if (!u)
		return -ENOMEM;
	d->impl = u;
	ret = setup_ring(u, params->sq_entries, setup, sizeof(setup));
	if (ret) {
		free(u);
		d->impl = NULL;
		return ret;
	}
	u->br_entries = params->provided;
	u->bundle = params->flags & VQ_DRV_RECV_BUNDLE &&
		    u->ring_features & IORING_FEAT_RECVSEND_BUNDLE;
	bool has_cap = probe_recv_cap(u);
	u->recv_cap = has_cap && !(params->flags & VQ_DRV_NO_RECV_CAP);
	/* The registered ring fd saves an fget/fput on every enter (5.18+); optional. */
	bool reg_fd = io_uring_register_ring_fd(&u->ring) == 1;
	probe = io_uring_get_probe_ring(&u->ring);
	d->zc_min = params->zc_min ? params->zc_min : VQ_ZC_MIN_DEFAULT;
	/* Bundles are opt-in (io.recv_bundle); incremental buffers are probed, not used: see
	 * docs/BENCHMARKS.md for the measurements behind both choices. */
	snprintf(d->features, sizeof(d->features), "sq=%u cq=%u %s%s%s%s%s%s%s",
		 u->ring.sq.ring_entries, u->ring.cq.ring_entries, setup,
		 reg_fd ? " reg_ring_fd" : "",
		 probe && io_uring_opcode_supported(probe, IORING_OP_MSG_RING) ? " msg_ring" : "",
		 probe && io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) ? " send_zc" : "",
		 u->bundle ? " recv_bundle" :
		 u->ring_features & IORING_FEAT_RECVSEND_BUNDLE ? " recv_bundle(off)" : "",
		 u->recv_cap ? " recv_cap" : has_cap ? " recv_cap(off)" : "",
		 probe_incremental(u) ? " pbuf_inc(unused)" : "");
	if (probe)
		io_uring_free_probe(probe);

	u->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (u->wake_fd < 0) {
		ret = -errno;
		io_uring_queue_exit(&u->ring);
		free(u);
		d->impl = NULL;
		return ret;
	}
	vq_op_prep(&u->wake_op, VQ_OP_NOP, u->wake_fd, NULL, NULL);
	arm_wake(u); /* a fresh ring has room */
	u->wake_op.inflight = 1;
	d->inflight++;
	d->internal++;
	return 0;
}

static void uring_fini(struct vq_driver *d)
{
	struct uring *u = U(d);

	if (!u)
		return;
	/* Reap the driver's own read before its memory goes away. */
	if (u->wake_op.inflight) {
		uring_cancel(d, &u->wake_op);
		while (u->wake_op.inflight && uring_wait(d, 100000000) >= 0)
			;
	}
	uring_unregister_pool(d);
	io_uring_queue_exit(&u->ring);
	close(u->wake_fd);
	free(u);
	d->impl = NULL;
}

const struct vq_driver_ops vq_uring_driver = {
	.name = "uring",
	.init = uring_init,
	.fini = uring_fini,
	.register_pool = uring_register_pool,
	.unregister_pool = uring_unregister_pool,
	.submit = uring_submit,
	.cancel = uring_cancel,
	.cancel_fd = uring_cancel_fd,
	.wait = uring_wait,
	.wake = uring_wake,
	.replenish = uring_replenish,
	.starved = uring_starved,
};
