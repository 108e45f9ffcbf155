/* SPDX-License-Identifier: MIT */
/*
 * The io_uring driver. One ring per shard, created on the shard's pinned thread
 * with SINGLE_ISSUER|DEFER_TASKRUN (6.1+), so completions run only inside our own
 * io_uring_enter and one submit-and-wait per loop iteration does all the work.
 *
 * user_data is the vq_op pointer; two small values are reserved for the driver.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <liburing.h>

#include "driver.h"

#define UD_IGNORE 0ull /* results of cancel requests and doorbell sends */
#define UD_WAKE   1ull /* a MSG_RING doorbell from another shard */
/* Our own MSG_RING's failure CQE: (target's eventfd << 32) | 2. Ops are 8-aligned. */
#define UD_BELL_TAG  2ull
#define UD_IS_BELL(ud) (((ud) & 7) == UD_BELL_TAG)
#define BGID      0    /* the shard's one provided-buffer group */
#define CQ_FACTOR 8    /* multishot ops post many CQEs per SQE */

struct uring {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	size_t br_len;
	uint32_t br_entries;
	uint32_t br_count;        /* buffers currently in the provided ring */
	bool bufs_registered;
	struct vq_op *parked;     /* pooled recvs that ran out of buffers (ENOBUFS) */
	struct vq_op *local;      /* ops completed without a CQE, delivered in wait() */
	int wake_fd;              /* eventfd for doorbells from non-shard threads */
	struct vq_op wake_op;     /* the driver's read on wake_fd */
	uint64_t wake_val;
};

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

/* Fill and queue the SQE for op's current step. Called for first submits and re-arms. */
static int queue_op(struct vq_driver *d, struct vq_op *op)
{
	struct uring *u = U(d);
	struct io_uring_sqe *sqe = get_sqe(u);
	struct vq_buf *b = op->buf;
	struct __kernel_timespec *ts;

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
			if (op->flags & VQ_OPF_MULTISHOT)
				io_uring_prep_recv_multishot(sqe, op->fd, NULL, 0, 0);
			else
				io_uring_prep_recv(sqe, op->fd, NULL, 0, 0);
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
	default:
		return -EINVAL;
	}
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

static bool needs_buf(const struct vq_op *op)
{
	switch (op->opcode) {
	case VQ_OP_RECV:
		return !(op->flags & VQ_OPF_POOLED);
	case VQ_OP_SEND:
	case VQ_OP_READ:
	case VQ_OP_WRITE:
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
	op->progress = 0;
	op->cancelled = 0;
	ret = queue_op(d, op);
	if (ret)
		return ret;
	if (op->buf)
		vq_buf_to_kernel(op->buf);
	op->inflight = 1;
	d->inflight++;
	d->st.submitted++;
	return 0;
}

/* Final completion: the op ends and its buffer goes back to the caller. */
static void finish(struct vq_driver *d, struct vq_op *op, int res)
{
	struct vq_buf *b = op->buf;

	op->buf = NULL;
	op->inflight = 0;
	d->inflight--;
	d->st.completions++;
	if (b)
		vq_buf_from_kernel(b);
	op->done(op, res, b, 0);
}

static void complete_locally(struct uring *u, struct vq_op *op, int res)
{
	op->res = res;
	op->next = u->local;
	u->local = op;
}

static bool unpark(struct uring *u, struct vq_op *op)
{
	for (struct vq_op **pp = &u->parked; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
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
	op->cancelled = 1;
	if (unpark(u, op)) {
		complete_locally(u, op, -ECANCELED);
		return 0;
	}
	sqe = get_sqe(u);
	if (!sqe)
		return -EBUSY;
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

/* A pooled recv completion: translate the selected buffer id into its vq_buf. */
static struct vq_buf *selected_buf(struct vq_driver *d, struct io_uring_cqe *cqe)
{
	struct uring *u = U(d);
	struct vq_buf *b;

	if (!(cqe->flags & IORING_CQE_F_BUFFER))
		return NULL;
	b = vq_pool_buf(d->pool, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	u->br_count--;
	if (cqe->res <= 0) {
		vq_buf_kernel_to_free(b); /* nothing in it; replenish hands it back */
		return NULL;
	}
	vq_buf_from_kernel(b);
	b->off = 0;
	b->len = (uint32_t)cqe->res;
	return b;
}

static void handle_multishot(struct vq_driver *d, struct vq_op *op, struct io_uring_cqe *cqe,
			     struct vq_buf *b)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;
	int res = cqe->res;

	if (res == -ENOBUFS && op->opcode == VQ_OP_RECV && !op->cancelled) {
		/* The provided ring ran dry: park until replenish() has buffers again. */
		d->st.nobufs++;
		op->next = U(d)->parked;
		U(d)->parked = op;
		return;
	}
	if (!more && res > 0 && !op->cancelled) {
		/* The kernel ended the multishot without an error (e.g. CQ overflow): re-arm. */
		d->st.rearms++;
		if (queue_op(d, op) == 0)
			more = true;
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
	if (op == &u->wake_op) {
		d->st.wakeups++;
		if (res >= 0 && !op->cancelled && arm_wake(u) == 0)
			return;
		op->inflight = 0;
		d->inflight--;
		d->internal--;
		return;
	}
	if (op->opcode == VQ_OP_RECV && op->flags & VQ_OPF_POOLED) {
		struct vq_buf *b = selected_buf(d, cqe);

		if (op->flags & VQ_OPF_MULTISHOT) {
			handle_multishot(d, op, cqe, b);
			return;
		}
		op->buf = b; /* finish() hands it over */
		if (b)
			vq_buf_to_kernel(b);
	} else if (op->opcode == VQ_OP_ACCEPT && op->flags & VQ_OPF_MULTISHOT) {
		handle_multishot(d, op, cqe, NULL);
		return;
	} else if ((op->opcode == VQ_OP_SEND || op->opcode == VQ_OP_WRITE) && res > 0) {
		op->progress += (uint32_t)res;
		if (op->flags & VQ_OPF_ALL && op->progress < op->buf->len && !op->cancelled) {
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
	return deliver(d);
}

static int uring_wake(struct vq_driver *target, struct vq_driver *from)
{
	struct io_uring_sqe *sqe;

	if (!from)
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

static void uring_replenish(struct vq_driver *d)
{
	struct uring *u = U(d);
	uint32_t mask, n = 0;
	struct vq_buf *b;

	if (!u->br)
		return;
	mask = io_uring_buf_ring_mask(u->br_entries);
	while (u->br_count < u->br_entries && (b = vq_pool_take_for_kernel(d->pool))) {
		io_uring_buf_ring_add(u->br, b->data, b->cap, (unsigned short)b->index, mask, (int)n);
		n++;
		u->br_count++;
	}
	if (n)
		io_uring_buf_ring_advance(u->br, (int)n);
	while (u->parked && u->br_count) {
		struct vq_op *op = u->parked;

		u->parked = op->next;
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
	}
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
			snprintf(what, len, "%s%s", tries[i].name,
				 p.features & IORING_FEAT_EXT_ARG ? " ext_arg" : "");
			return 0;
		}
		if (ret != -EINVAL)
			break;
	}
	return ret;
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
	/* The registered ring fd saves an fget/fput on every enter (5.18+); optional. */
	bool reg_fd = io_uring_register_ring_fd(&u->ring) == 1;
	probe = io_uring_get_probe_ring(&u->ring);
	snprintf(d->features, sizeof(d->features), "sq=%u cq=%u %s%s%s%s",
		 u->ring.sq.ring_entries, u->ring.cq.ring_entries, setup,
		 reg_fd ? " reg_ring_fd" : "",
		 probe && io_uring_opcode_supported(probe, IORING_OP_MSG_RING) ? " msg_ring" : "",
		 probe && io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) ? " send_zc" : "");
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
};
