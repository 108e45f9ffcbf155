/* SPDX-License-Identifier: MIT */
/*
 * What every driver needs to read an op the same way: field checks, vectored
 * buffer chains and their iovecs, and buffer state changes for chains.
 */
#include <errno.h>
#include <stddef.h>

#include "op.h"
#include "pool.h"

static int vectored(const struct vq_op *op)
{
	return op->opcode == VQ_OP_READV || op->opcode == VQ_OP_WRITEV;
}

int vq_op_check(const struct vq_op *op)
{
	unsigned n = 0;

	switch (op->opcode) {
	case VQ_OP_READV:
	case VQ_OP_WRITEV:
		if (!op->iov)
			return -EINVAL;
		for (const struct vq_buf *b = op->buf; b; b = b->next)
			if (++n > VQ_IOV_MAX)
				return -EINVAL;
		return 0;
	case VQ_OP_SPLICE:
		return op->fd_out >= 0 && op->len ? 0 : -EINVAL;
	case VQ_OP_CONNECT:
		return op->addr && op->addrlen ? 0 : -EINVAL;
	default:
		return 0;
	}
}

uint32_t vq_op_total(const struct vq_op *op)
{
	uint32_t n = 0;

	if (!vectored(op))
		return op->buf ? op->buf->len : 0;
	for (const struct vq_buf *b = op->buf; b; b = b->next)
		n += b->len;
	return n;
}

unsigned vq_op_iov_fill(struct vq_op *op, int write)
{
	uint32_t skip = write ? op->progress : 0;
	unsigned n = 0;

	for (struct vq_buf *b = op->buf; b; b = b->next) {
		if (write) {
			if (skip >= b->len) {
				skip -= b->len;
				continue;
			}
			op->iov[n].iov_base = vq_buf_bytes(b) + skip;
			op->iov[n].iov_len = b->len - skip;
			skip = 0;
		} else {
			op->iov[n].iov_base = vq_buf_bytes(b) + b->len;
			op->iov[n].iov_len = vq_buf_room(b);
		}
		n++;
	}
	return n;
}

void vq_op_iov_spread(struct vq_op *op, uint32_t n)
{
	for (struct vq_buf *b = op->buf; b && n; b = vectored(op) ? b->next : NULL) {
		uint32_t take = vq_buf_room(b) < n ? vq_buf_room(b) : n;

		b->len += take;
		n -= take;
	}
}

void vq_op_bufs_to_kernel(struct vq_op *op)
{
	for (struct vq_buf *b = op->buf; b; b = vectored(op) ? b->next : NULL)
		vq_buf_to_kernel(b);
}

void vq_op_bufs_from_kernel(struct vq_op *op)
{
	for (struct vq_buf *b = op->buf; b; b = vectored(op) ? b->next : NULL)
		vq_buf_from_kernel(b);
}
