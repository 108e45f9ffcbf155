/* SPDX-License-Identifier: MIT */
/*
 * The user-call layer over struct vq_op: a request wraps one op (or, for
 * sendfile, a sequence of splices) and turns its completion into cb(ctx, res,
 * buf). Requests are recycled through a small per-thread free list so the data
 * path does not call malloc once warm.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"
#include "shard.h"

#define FREE_MAX      256         /* requests kept for reuse per thread */
#define SENDFILE_STEP (64u << 10) /* one pipe's default capacity */

struct vq_io {
	struct vq_op op;
	struct vq_shard *s;
	vq_io_fn cb;
	void *ctx;
	struct vq_io *next_free;
	struct iovec iov[VQ_IOV_MAX];
	struct sockaddr_storage addr;
	/* sendfile */
	int pipe[2];
	int sock_fd, file_fd;
	uint64_t off, left, sent;
	uint32_t in_pipe;
};

static __thread struct vq_io *free_reqs;
static __thread unsigned nfree;

static struct vq_io *req_get(struct vq_shard *s, vq_io_fn cb, void *ctx)
{
	struct vq_io *io = free_reqs;

	if (io) {
		free_reqs = io->next_free;
		nfree--;
	} else if (!(io = malloc(sizeof(*io)))) {
		errno = ENOMEM;
		return NULL;
	}
	io->s = s;
	io->cb = cb;
	io->ctx = ctx;
	io->pipe[0] = io->pipe[1] = -1;
	return io;
}

static void req_put(struct vq_io *io)
{
	if (io->pipe[0] >= 0) {
		close(io->pipe[0]);
		close(io->pipe[1]);
	}
	if (nfree >= FREE_MAX) {
		free(io);
		return;
	}
	io->next_free = free_reqs;
	free_reqs = io;
	nfree++;
}

static void io_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct vq_io *io = (struct vq_io *)op;
	vq_io_fn cb = io->cb;
	void *ctx = io->ctx;

	req_put(io); /* before the callback: it may start the next op with a recycled request */
	cb(ctx, res, b);
}

static struct vq_io *start(struct vq_shard *s, enum vq_opcode code, int fd, struct vq_buf *b,
			   int64_t deadline_ns, vq_io_fn cb, void *ctx, uint64_t off, uint8_t flags)
{
	struct vq_io *io = req_get(s, cb, ctx);

	if (!io)
		return NULL;
	vq_op_prep(&io->op, code, fd, b, io_done);
	io->op.off = off;
	io->op.flags = flags;
	if (code != VQ_OP_TIMEOUT)
		io->op.deadline_ns = deadline_ns;
	if (code == VQ_OP_READV || code == VQ_OP_WRITEV)
		io->op.iov = io->iov;
	return io;
}

static struct vq_io *go(struct vq_io *io)
{
	int ret = vq_driver_submit(&io->s->drv, &io->op);

	if (ret) {
		req_put(io);
		errno = -ret;
		return NULL;
	}
	return io;
}

struct vq_io *vq_io_recv(struct vq_shard *s, int fd, struct vq_buf *buf, int64_t deadline_ns,
			 vq_io_fn cb, void *ctx)
{
	struct vq_io *io = start(s, VQ_OP_RECV, fd, buf, deadline_ns, cb, ctx, 0, 0);

	return io ? go(io) : NULL;
}

struct vq_io *vq_io_send(struct vq_shard *s, int fd, struct vq_buf *buf, int64_t deadline_ns,
			 vq_io_fn cb, void *ctx)
{
	struct vq_io *io = start(s, VQ_OP_SEND_ZC, fd, buf, deadline_ns, cb, ctx, 0, VQ_OPF_ALL);

	return io ? go(io) : NULL;
}

struct vq_io *vq_io_read(struct vq_shard *s, int fd, uint64_t off, struct vq_buf *buf,
			 int64_t deadline_ns, vq_io_fn cb, void *ctx)
{
	struct vq_io *io = start(s, VQ_OP_READ, fd, buf, deadline_ns, cb, ctx, off, 0);

	return io ? go(io) : NULL;
}

struct vq_io *vq_io_write(struct vq_shard *s, int fd, uint64_t off, struct vq_buf *buf,
			  int64_t deadline_ns, vq_io_fn cb, void *ctx)
{
	struct vq_io *io = start(s, VQ_OP_WRITE, fd, buf, deadline_ns, cb, ctx, off, VQ_OPF_ALL);

	return io ? go(io) : NULL;
}

struct vq_io *vq_io_readv(struct vq_shard *s, int fd, uint64_t off, struct vq_buf *chain,
			  int64_t deadline_ns, vq_io_fn cb, void *ctx)
{
	struct vq_io *io = start(s, VQ_OP_READV, fd, chain, deadline_ns, cb, ctx, off, 0);

	return io ? go(io) : NULL;
}

struct vq_io *vq_io_writev(struct vq_shard *s, int fd, uint64_t off, struct vq_buf *chain,
			   int64_t deadline_ns, vq_io_fn cb, void *ctx)
{
	struct vq_io *io = start(s, VQ_OP_WRITEV, fd, chain, deadline_ns, cb, ctx, off, VQ_OPF_ALL);

	return io ? go(io) : NULL;
}

struct vq_io *vq_io_connect(struct vq_shard *s, int fd, const struct sockaddr *addr,
			    socklen_t addrlen, int64_t deadline_ns, vq_io_fn cb, void *ctx)
{
	struct vq_io *io;

	if (addrlen > sizeof(io->addr)) {
		errno = EINVAL;
		return NULL;
	}
	io = start(s, VQ_OP_CONNECT, fd, NULL, deadline_ns, cb, ctx, 0, 0);
	if (!io)
		return NULL;
	memcpy(&io->addr, addr, addrlen);
	io->op.addr = &io->addr;
	io->op.addrlen = addrlen;
	return go(io);
}

struct vq_io *vq_io_splice(struct vq_shard *s, int fd_in, uint64_t off_in, int fd_out,
			   uint32_t len, int64_t deadline_ns, vq_io_fn cb, void *ctx)
{
	struct vq_io *io = start(s, VQ_OP_SPLICE, fd_in, NULL, deadline_ns, cb, ctx, off_in, 0);

	if (!io)
		return NULL;
	io->op.fd_out = fd_out;
	io->op.len = len;
	return go(io);
}

struct vq_io *vq_io_sleep(struct vq_shard *s, int64_t ns, vq_io_fn cb, void *ctx)
{
	struct vq_io *io = start(s, VQ_OP_TIMEOUT, -1, NULL, 0, cb, ctx, 0, 0);

	if (!io)
		return NULL;
	io->op.timeout_ns = ns;
	return go(io);
}

int vq_io_cancel(struct vq_shard *s, struct vq_io *io)
{
	return s->drv.ops->cancel(&s->drv, &io->op);
}

int vq_io_cancel_fd(struct vq_shard *s, int fd)
{
	return s->drv.ops->cancel_fd(&s->drv, fd);
}

/*
 * sendfile: alternate file -> pipe and pipe -> socket splices on the request's
 * own op. The deadline applies to each step (the driver contract is per op).
 */
static void sendfile_step(struct vq_op *op, int res, struct vq_buf *b, unsigned flags);

static void sendfile_end(struct vq_io *io, int res)
{
	vq_io_fn cb = io->cb;
	void *ctx = io->ctx;

	req_put(io);
	cb(ctx, res, NULL);
}

static int sendfile_next(struct vq_io *io)
{
	int64_t deadline = io->op.deadline_ns;

	if (io->in_pipe) {
		vq_op_prep(&io->op, VQ_OP_SPLICE, io->pipe[0], NULL, sendfile_step);
		io->op.off = VQ_OFF_CUR;
		io->op.fd_out = io->sock_fd;
		io->op.len = io->in_pipe;
	} else {
		vq_op_prep(&io->op, VQ_OP_SPLICE, io->file_fd, NULL, sendfile_step);
		io->op.off = io->off;
		io->op.fd_out = io->pipe[1];
		io->op.len = io->left < SENDFILE_STEP ? (uint32_t)io->left : SENDFILE_STEP;
	}
	io->op.deadline_ns = deadline;
	return vq_driver_submit(&io->s->drv, &io->op);
}

static void sendfile_step(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct vq_io *io = (struct vq_io *)op;
	int ret;

	if (res < 0) {
		sendfile_end(io, res);
		return;
	}
	if (op->fd_out == io->sock_fd) {
		io->in_pipe -= (uint32_t)res;
		io->sent += (uint64_t)res;
	} else if (res == 0) {
		sendfile_end(io, (int)io->sent); /* the file is shorter than asked */
		return;
	} else {
		io->in_pipe = (uint32_t)res;
		io->off += (uint64_t)res;
		io->left -= (uint64_t)res;
	}
	if (!io->left && !io->in_pipe) {
		sendfile_end(io, io->sent > INT32_MAX ? INT32_MAX : (int)io->sent);
		return;
	}
	ret = sendfile_next(io);
	if (ret)
		sendfile_end(io, ret);
}

struct vq_io *vq_io_sendfile(struct vq_shard *s, int sock_fd, int file_fd, uint64_t off,
			     uint64_t len, int64_t deadline_ns, vq_io_fn cb, void *ctx)
{
	struct vq_io *io;
	int ret;

	if (!len || len > INT32_MAX) {
		errno = EINVAL;
		return NULL;
	}
	io = req_get(s, cb, ctx);
	if (!io)
		return NULL;
	/* A blocking pipe: io_uring would hand -EAGAIN back for an O_NONBLOCK one. */
	if (pipe2(io->pipe, O_CLOEXEC)) {
		ret = errno;
		io->pipe[0] = io->pipe[1] = -1;
		req_put(io);
		errno = ret;
		return NULL;
	}
	io->sock_fd = sock_fd;
	io->file_fd = file_fd;
	io->off = off;
	io->left = len;
	io->sent = 0;
	io->in_pipe = 0;
	io->op.deadline_ns = deadline_ns;
	ret = sendfile_next(io);
	if (ret) {
		req_put(io);
		errno = -ret;
		return NULL;
	}
	return io;
}
