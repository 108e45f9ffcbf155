/* SPDX-License-Identifier: MIT */
/*
 * The epoll driver, for hosts where io_uring is blocked (seccomp, the
 * io_uring_disabled sysctl, a tiny memlock limit). It keeps the driver
 * contract of uring.c — ops are queued by submit(), carried out and completed
 * inside wait(), every buffer comes back with the final completion — by
 * emulating completions: try the syscall without blocking; on EAGAIN park the
 * op on its fd until epoll reports readiness (edge-triggered, registered once
 * per fd), then try again.
 *
 * The provided-buffer ring is emulated by taking a free pool buffer at the
 * moment a pooled recv has something to read, so an idle connection still
 * holds no buffer; an empty pool parks the recv like -ENOBUFS does on uring.
 * Deadlines and TIMEOUT ops live on one list scanned per wait (the shard's own
 * timers are elsewhere; this list holds only ops that asked for a deadline).
 * Regular files never report EAGAIN: their reads and writes run inline.
 * The doorbell is an eventfd in the epoll set.
 *
 * Per-op driver fields: state = where the op is (enum where) and STARTED (its
 * once-per-op set-up is done), res = the fd it waits on, scratch[0] = absolute
 * deadline in CLOCK_MONOTONIC ns, scratch[1] = next on the timed list.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"

#define BATCH       16  /* completions one multishot op may post per turn before others run */
#define MAX_EVENTS  256
#define WHERE_MASK  0x0fu
#define STARTED     0x10u /* vq_op.state */

enum where {
	W_NONE = 0, /* being run, or finished */
	W_RUN,      /* on runq (ready now) */
	W_PENDING,  /* on pending (submitted or re-queued during this turn; runs next turn) */
	W_RD,       /* waiting for the fd to become readable */
	W_WR,       /* waiting for the fd to become writable */
	W_PARKED,   /* pooled recv waiting for a free pool buffer */
	W_TIMER,    /* TIMEOUT op: only on the timed list */
	W_DONE,     /* cancelled; completion queued for the next wait */
};

struct opq {
	struct vq_op *head, *tail;
};

struct fdw {
	struct opq rd, wr;
};

struct ep {
	int epfd;
	int wake_fd;
	struct fdw *fds;
	size_t nfds;
	struct opq runq, pending, parked, done;
	struct vq_op *timed;      /* ops with a deadline, and TIMEOUT ops */
};

static inline struct ep *E(struct vq_driver *d)
{
	return d->impl;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void q_push(struct opq *q, struct vq_op *op)
{
	op->next = NULL;
	if (q->tail)
		q->tail->next = op;
	else
		q->head = op;
	q->tail = op;
}

static struct vq_op *q_pop(struct opq *q)
{
	struct vq_op *op = q->head;

	if (op) {
		q->head = op->next;
		if (!q->head)
			q->tail = NULL;
		op->next = NULL;
	}
	return op;
}

static bool q_remove(struct opq *q, struct vq_op *op)
{
	struct vq_op *prev = NULL;

	for (struct vq_op *o = q->head; o; prev = o, o = o->next) {
		if (o != op)
			continue;
		if (prev)
			prev->next = o->next;
		else
			q->head = o->next;
		if (q->tail == o)
			q->tail = prev;
		o->next = NULL;
		return true;
	}
	return false;
}

static void set_where(struct vq_op *op, enum where w)
{
	op->state = (uint8_t)((op->state & ~WHERE_MASK) | w);
}

static enum where where_of(const struct vq_op *op)
{
	return (enum where)(op->state & WHERE_MASK);
}

static struct vq_op *timed_next(struct vq_op *op)
{
	return (struct vq_op *)(uintptr_t)op->scratch[1];
}

static bool timed(const struct vq_op *op)
{
	return op->opcode == VQ_OP_TIMEOUT || op->deadline_ns > 0;
}

static void untime(struct ep *e, struct vq_op *op)
{
	if (!timed(op))
		return;
	for (struct vq_op **pp = &e->timed; *pp; pp = (struct vq_op **)&(*pp)->scratch[1]) {
		if (*pp == op) {
			*pp = timed_next(op);
			op->scratch[1] = 0;
			return;
		}
	}
}

static struct fdw *fdw_of(struct ep *e, int fd)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= e->nfds) {
		size_t n = e->nfds ? e->nfds : 64;
		struct fdw *f;

		while (n <= (size_t)fd)
			n *= 2;
		f = realloc(e->fds, n * sizeof(*f));
		if (!f)
			return NULL;
		memset(f + e->nfds, 0, (n - e->nfds) * sizeof(*f));
		e->fds = f;
		e->nfds = n;
	}
	return &e->fds[fd];
}

/* Take op off whatever list holds it. */
static void detach(struct ep *e, struct vq_op *op)
{
	struct fdw *f;

	switch (where_of(op)) {
	case W_RUN:
		q_remove(&e->runq, op);
		break;
	case W_PENDING:
		q_remove(&e->pending, op);
		break;
	case W_PARKED:
		q_remove(&e->parked, op);
		break;
	case W_DONE:
		q_remove(&e->done, op);
		break;
	case W_RD:
	case W_WR:
		f = fdw_of(e, op->res);
		if (f)
			q_remove(where_of(op) == W_RD ? &f->rd : &f->wr, op);
		break;
	default:
		break;
	}
	set_where(op, W_NONE);
}

/* Final completion: the op ends and every buffer it holds goes back to the caller. */
static void finish(struct vq_driver *d, struct vq_op *op, int res)
{
	struct vq_buf *b = op->buf;

	untime(E(d), op);
	set_where(op, W_NONE);
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

/* Park op until fd is readable (rd) or writable; registers fd with epoll on first use. */
static int wait_fd(struct vq_driver *d, struct vq_op *op, int fd, bool rd)
{
	struct ep *e = E(d);
	struct fdw *f = fdw_of(e, fd);
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.fd = fd,
	};

	if (!f)
		return -ENOMEM;
	/* One registration per fd for its life; EEXIST means it is there already. */
	if (!f->rd.head && !f->wr.head && epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) &&
	    errno != EEXIST)
		return -errno;
	op->res = fd; /* a splice may wait on its output fd */
	q_push(rd ? &f->rd : &f->wr, op);
	set_where(op, rd ? W_RD : W_WR);
	return 0;
}

static void requeue(struct ep *e, struct vq_op *op)
{
	q_push(&e->pending, op);
	set_where(op, W_PENDING);
}

/* The epoll driver works only on nonblocking fds; regular files ignore the flag. */
static int make_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK))
		return -errno;
	return 0;
}

/* read/write at an offset, or at the current position for streams (ESPIPE). */
static ssize_t do_rw(struct vq_op *op, bool write, struct iovec *iov, int cnt, uint64_t off)
{
	ssize_t n;

	if (off != VQ_OFF_CUR) {
		n = write ? pwritev(op->fd, iov, cnt, (off_t)off) :
			    preadv(op->fd, iov, cnt, (off_t)off);
		if (n >= 0 || errno != ESPIPE)
			return n;
	}
	if (write) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };

		/* A socket: no SIGPIPE for a vanished peer, as with SEND. */
		n = sendmsg(op->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0 || errno != ENOTSOCK)
			return n;
		return writev(op->fd, iov, cnt);
	}
	return readv(op->fd, iov, cnt);
}

static void try_pooled_recv(struct vq_driver *d, struct vq_op *op)
{
	struct ep *e = E(d);
	bool multi = op->flags & VQ_OPF_MULTISHOT;

	for (int i = 0; i < BATCH; i++) {
		struct vq_buf *b = vq_pool_take_for_kernel(d->pool);
		ssize_t n;
		int err;

		if (!b) {
			/* The emulated provided ring is dry: replenish() re-runs us. */
			d->st.nobufs++;
			q_push(&e->parked, op);
			set_where(op, W_PARKED);
			return;
		}
		n = recv(op->fd, b->data, b->cap, MSG_DONTWAIT);
		err = errno;
		if (n <= 0) {
			vq_buf_kernel_to_free(b);
			if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
				err = wait_fd(d, op, op->fd, true);
				if (err)
					finish(d, op, err);
				return;
			}
			finish(d, op, n == 0 ? 0 : -err);
			return;
		}
		b->off = 0;
		b->len = (uint32_t)n;
		if (!multi) {
			op->buf = b;
			finish(d, op, (int)n);
			return;
		}
		vq_buf_from_kernel(b);
		d->st.completions++;
		op->done(op, (int)n, b, VQ_CQE_MORE);
		if (op->cancelled) {
			finish(d, op, -ECANCELED);
			return;
		}
	}
	requeue(e, op); /* more may be waiting: let everyone else have a turn first */
}

static void try_accept(struct vq_driver *d, struct vq_op *op)
{
	bool multi = op->flags & VQ_OPF_MULTISHOT;
	int ret;

	for (int i = 0; i < BATCH; i++) {
		int fd = accept4(op->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ret = wait_fd(d, op, op->fd, true);
				if (ret)
					finish(d, op, ret);
			} else {
				finish(d, op, -errno);
			}
			return;
		}
		if (!multi) {
			finish(d, op, fd);
			return;
		}
		d->st.completions++;
		op->done(op, fd, NULL, VQ_CQE_MORE);
		if (op->cancelled) {
			finish(d, op, -ECANCELED);
			return;
		}
	}
	requeue(E(d), op);
}

/*
 * One step of op. Ends in exactly one of: finish(), a MORE completion and a
 * re-queue, a wait on an fd, or parking.
 */
static void try_op(struct vq_driver *d, struct vq_op *op)
{
	struct vq_buf *b = op->buf;
	struct iovec iov[VQ_IOV_MAX];
	ssize_t n = 0;
	bool rd = true, first = !(op->state & STARTED) && !op->progress;
	int fd = op->fd, ret;
	socklen_t sl;

	if (op->cancelled) {
		finish(d, op, -ECANCELED);
		return;
	}
	switch (op->opcode) {
	case VQ_OP_NOP:
		finish(d, op, 0);
		return;
	case VQ_OP_TIMEOUT:
		set_where(op, W_TIMER); /* the timed list fires it */
		return;
	case VQ_OP_CLOSE:
		finish(d, op, close(op->fd) ? -errno : 0);
		return;
	case VQ_OP_ACCEPT:
		if (first && (ret = make_nonblocking(op->fd))) {
			finish(d, op, ret);
			return;
		}
		op->state |= STARTED;
		try_accept(d, op);
		return;
	case VQ_OP_RECV:
		if (op->flags & VQ_OPF_POOLED) {
			try_pooled_recv(d, op);
			return;
		}
		n = recv(fd, vq_buf_bytes(b) + b->len, vq_buf_room(b), MSG_DONTWAIT);
		break;
	case VQ_OP_SEND:
	case VQ_OP_SEND_ZC: /* no zero copy here: MSG_ZEROCOPY's errqueue is not worth it */
		rd = false;
		n = send(fd, vq_buf_bytes(b) + op->progress, b->len - op->progress,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		break;
	case VQ_OP_READ:
	case VQ_OP_WRITE:
	case VQ_OP_READV:
	case VQ_OP_WRITEV: {
		bool w = op->opcode == VQ_OP_WRITE || op->opcode == VQ_OP_WRITEV;
		int cnt = 1;

		if (first && (ret = make_nonblocking(fd))) {
			finish(d, op, ret);
			return;
		}
		rd = !w;
		if (op->opcode == VQ_OP_READ) {
			iov[0] = (struct iovec){ vq_buf_bytes(b) + b->len, vq_buf_room(b) };
		} else if (op->opcode == VQ_OP_WRITE) {
			iov[0] = (struct iovec){ vq_buf_bytes(b) + op->progress,
						 b->len - op->progress };
		} else {
			cnt = (int)vq_op_iov_fill(op, w);
			memcpy(iov, op->iov, (size_t)cnt * sizeof(*iov));
		}
		n = do_rw(op, w, iov, cnt,
			  op->off == VQ_OFF_CUR || !w ? op->off : op->off + op->progress);
		break;
	}
	case VQ_OP_SPLICE: {
		loff_t off = (loff_t)op->off;

		if (first &&
		    ((ret = make_nonblocking(fd)) || (ret = make_nonblocking(op->fd_out)))) {
			finish(d, op, ret);
			return;
		}
		n = splice(fd, op->off == VQ_OFF_CUR ? NULL : &off, op->fd_out, NULL, op->len,
			   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n < 0 && errno == EAGAIN) {
			/* Either side may be the one that is not ready: ask which. */
			struct pollfd p = { .fd = fd, .events = POLLIN };

			if (poll(&p, 1, 0) == 1)
				rd = false, fd = op->fd_out;
		}
		break;
	}
	case VQ_OP_CONNECT:
		if (first) {
			if ((ret = make_nonblocking(fd))) {
				finish(d, op, ret);
				return;
			}
			op->state |= STARTED;
			if (connect(fd, op->addr, op->addrlen) == 0) {
				finish(d, op, 0);
				return;
			}
			if (errno != EINPROGRESS) {
				finish(d, op, -errno);
				return;
			}
			errno = EAGAIN;
			n = -1;
			rd = false;
			break;
		}
		/* Woken as writable: the result is the socket's pending error. */
		sl = sizeof(ret);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &ret, &sl))
			ret = errno;
		if (ret == 0) {
			/* Not connected yet (a spurious wake)? Then wait again. */
			struct sockaddr_storage ss;

			sl = sizeof(ss);
			if (getpeername(fd, (struct sockaddr *)&ss, &sl) && errno == ENOTCONN) {
				errno = EAGAIN, n = -1, rd = false;
				break;
			}
		}
		finish(d, op, -ret);
		return;
	default:
		finish(d, op, -EINVAL);
		return;
	}
	op->state |= STARTED; /* the once-per-op set-up is done */
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			ret = wait_fd(d, op, fd, rd);
			if (ret)
				finish(d, op, ret);
			return;
		}
		finish(d, op, -errno);
		return;
	}
	if (vq_op_resumable(op) && n > 0) {
		op->progress += (uint32_t)n;
		if (op->flags & VQ_OPF_ALL && op->progress < vq_op_total(op)) {
			d->st.partial++;
			try_op(d, op); /* usually EAGAIN now: then it waits for POLLOUT */
			return;
		}
		n = op->progress;
	}
	finish(d, op, (int)n);
}

static int ep_submit(struct vq_driver *d, struct vq_op *op)
{
	struct ep *e = E(d);
	bool needs;
	int ret;

	if (op->inflight)
		return -EBUSY;
	switch (op->opcode) {
	case VQ_OP_RECV:
		needs = !(op->flags & VQ_OPF_POOLED);
		break;
	case VQ_OP_SEND:
	case VQ_OP_SEND_ZC:
	case VQ_OP_READ:
	case VQ_OP_WRITE:
	case VQ_OP_READV:
	case VQ_OP_WRITEV:
		needs = true;
		break;
	default:
		if (op->opcode > VQ_OP_SEND_ZC)
			return -EINVAL;
		needs = false;
	}
	if (needs != (op->buf != NULL))
		return -EINVAL;
	if (op->flags & VQ_OPF_POOLED && !d->pool)
		return -ENOBUFS;
	ret = vq_op_check(op);
	if (ret)
		return ret;
	op->progress = 0;
	op->cancelled = 0;
	op->state = 0;
	op->scratch[1] = 0;
	if (timed(op)) {
		/* timeout_ns and deadline_ns share their storage: one or the other. */
		op->scratch[0] = now_ns() + (uint64_t)op->timeout_ns;
		op->scratch[1] = (uint64_t)(uintptr_t)e->timed;
		e->timed = op;
	}
	vq_op_bufs_to_kernel(op);
	op->inflight = 1;
	d->inflight++;
	d->st.submitted++;
	requeue(e, op);
	return 0;
}

static int ep_cancel(struct vq_driver *d, struct vq_op *op)
{
	struct ep *e = E(d);

	if (!op->inflight)
		return -ENOENT;
	if (op->cancelled)
		return 0;
	op->cancelled = 1;
	if (where_of(op) == W_NONE)
		return 0; /* running right now: the step in progress sees the flag */
	detach(e, op);
	q_push(&e->done, op);
	set_where(op, W_DONE);
	return 0;
}

static void cancel_list(struct vq_driver *d, struct opq *q, int fd)
{
	for (struct vq_op *op = q->head, *next; op; op = next) {
		next = op->next;
		if (op->fd == fd || (op->opcode == VQ_OP_SPLICE && op->fd_out == fd))
			ep_cancel(d, op);
	}
}

static int ep_cancel_fd(struct vq_driver *d, int fd)
{
	struct ep *e = E(d);
	struct fdw *f = (size_t)fd < e->nfds && fd >= 0 ? &e->fds[fd] : NULL;

	cancel_list(d, &e->runq, fd);
	cancel_list(d, &e->pending, fd);
	cancel_list(d, &e->parked, fd);
	if (f) {
		cancel_list(d, &f->rd, fd);
		cancel_list(d, &f->wr, fd);
	}
	/* A splice waiting on its output fd sits on that fd's list. */
	for (size_t i = 0; i < e->nfds; i++)
		if ((int)i != fd && e->fds[i].wr.head)
			cancel_list(d, &e->fds[i].wr, fd);
	for (struct vq_op *op = e->timed; op; op = timed_next(op))
		if (where_of(op) == W_TIMER && op->fd == fd)
			ep_cancel(d, op);
	return 0;
}

/* Fire expired deadlines and TIMEOUT ops; return ns until the next one (-1: none). */
static int64_t run_timers(struct vq_driver *d)
{
	struct ep *e = E(d);
	uint64_t now = now_ns();
	int64_t next = -1;

	for (struct vq_op *op = e->timed, *nx; op; op = nx) {
		nx = timed_next(op);
		if (op->scratch[0] > now) {
			int64_t left = (int64_t)(op->scratch[0] - now);

			if (next < 0 || left < next)
				next = left;
			continue;
		}
		if (where_of(op) == W_DONE || where_of(op) == W_NONE)
			continue; /* already ending */
		detach(e, op);
		if (op->opcode == VQ_OP_TIMEOUT) {
			finish(d, op, 0);
		} else {
			d->st.timeouts++;
			finish(d, op, -ETIMEDOUT);
		}
		nx = e->timed; /* finish() may have changed the list: start over */
	}
	return next;
}

static int run_queue(struct vq_driver *d)
{
	struct ep *e = E(d);
	int n = 0;
	struct vq_op *op;

	while ((op = q_pop(&e->done))) {
		set_where(op, W_NONE);
		finish(d, op, -ECANCELED);
		n++;
	}
	while ((op = q_pop(&e->runq))) {
		set_where(op, W_NONE);
		try_op(d, op);
		n++;
	}
	return n;
}

static void ready(struct ep *e, struct opq *from)
{
	struct vq_op *op;

	while ((op = q_pop(from))) {
		q_push(&e->runq, op);
		set_where(op, W_RUN);
	}
}

static int ep_wait(struct vq_driver *d, int64_t timeout_ns)
{
	struct ep *e = E(d);
	struct epoll_event evs[MAX_EVENTS];
	struct timespec ts, *tsp = NULL;
	int64_t next;
	int n, delivered;

	d->st.enters++;
	/* What was submitted since the last wait runs first, as a ring would submit it. */
	while (e->pending.head) {
		struct vq_op *op = q_pop(&e->pending);

		q_push(&e->runq, op);
		set_where(op, W_RUN);
	}
	delivered = run_queue(d);
	next = run_timers(d);
	if (delivered || e->pending.head || e->done.head)
		timeout_ns = 0;
	if (next >= 0 && (timeout_ns < 0 || next < timeout_ns))
		timeout_ns = next;
	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tsp = &ts;
	}
	n = epoll_pwait2(e->epfd, evs, MAX_EVENTS, tsp, NULL);
	if (n < 0 && errno != EINTR)
		return -errno;
	vq_driver_tick(d);
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd;
		struct fdw *f;

		if (fd == e->wake_fd) {
			uint64_t v;

			if (read(e->wake_fd, &v, sizeof(v)) > 0)
				d->st.wakeups++;
			continue;
		}
		f = fdw_of(e, fd);
		if (!f)
			continue;
		if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			ready(e, &f->rd);
		if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			ready(e, &f->wr);
	}
	run_timers(d);
	delivered += run_queue(d);
	return delivered;
}

static int ep_wake(struct vq_driver *target, struct vq_driver *from)
{
	return eventfd_write(E(target)->wake_fd, 1) ? -errno : 0;
}

static bool ep_starved(struct vq_driver *d)
{
	return E(d)->parked.head != NULL;
}

static void ep_replenish(struct vq_driver *d)
{
	struct ep *e = E(d);

	while (e->parked.head && d->pool->free_list) {
		struct vq_op *op = q_pop(&e->parked);

		d->st.rearms++;
		requeue(e, op);
	}
}

static int ep_register_pool(struct vq_driver *d, struct vq_pool *pool)
{
	d->pool = pool; /* nothing to register: the emulated ring takes from the free list */
	return 0;
}

static void ep_unregister_pool(struct vq_driver *d)
{
}

static int ep_init(struct vq_driver *d, const struct vq_driver_params *params)
{
	struct ep *e = calloc(1, sizeof(*e));
	struct epoll_event ev = { .events = EPOLLIN };
	int ret;

	if (!e)
		return -ENOMEM;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ev.data.fd = e->wake_fd;
	if (e->epfd < 0 || e->wake_fd < 0 || epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->wake_fd, &ev)) {
		ret = -errno;
		if (e->epfd >= 0)
			close(e->epfd);
		if (e->wake_fd >= 0)
			close(e->wake_fd);
		free(e);
		return ret;
	}
	d->impl = e;
	d->zc_min = params->zc_min ? params->zc_min : VQ_ZC_MIN_DEFAULT;
	snprintf(d->features, sizeof(d->features), "edge-triggered, eventfd doorbell");
	return 0;
}

static void ep_fini(struct vq_driver *d)
{
	struct ep *e = E(d);

	if (!e)
		return;
	close(e->epfd);
	close(e->wake_fd);
	free(e->fds);
	free(e);
	d->impl = NULL;
}

const struct vq_driver_ops vq_epoll_driver = {
	.name = "epoll",
	.init = ep_init,
	.fini = ep_fini,
	.register_pool = ep_register_pool,
	.unregister_pool = ep_unregister_pool,
	.submit = ep_submit,
	.cancel = ep_cancel,
	.cancel_fd = ep_cancel_fd,
	.wait = ep_wait,
	.wake = ep_wake,
	.replenish = ep_replenish,
	.starved = ep_starved,
};
