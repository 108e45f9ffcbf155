/* SPDX-License-Identifier: MIT */
#ifndef VQ_OP_H
#define VQ_OP_H

#include <stdint.h>
#include "buf.h"

/* What an op asks for, independent of the driver that carries it out. */
enum vq_opcode {
	VQ_OP_NOP = 0,
	VQ_OP_ACCEPT,  /* fd = listener; res = new fd */
	VQ_OP_RECV,    /* into buf, or a pool buffer with VQ_OPF_POOLED; res = bytes, 0 = EOF */
	VQ_OP_SEND,    /* buf's valid bytes; res = bytes sent */
	VQ_OP_READ,    /* fd at off into buf's room; res = bytes */
	VQ_OP_WRITE,   /* buf's valid bytes to fd at off; res = bytes */
	VQ_OP_CLOSE,   /* res = 0 or -errno */
	VQ_OP_TIMEOUT, /* after timeout_ns; res = 0 when it fires, -ECANCELED if cancelled */
};

#define VQ_OPF_MULTISHOT (1u << 0) /* accept/recv: keep completing until error or cancel */
#define VQ_OPF_POOLED    (1u << 1) /* recv: the driver picks a buffer from the shard's pool */
#define VQ_OPF_ALL       (1u << 2) /* send/write: resume short transfers until done or error */

/* Completion flags. */
#define VQ_CQE_MORE (1u << 0) /* the op stays armed: more completions will follow */

struct vq_op;

/*
 * Called once per completion. `buf` is handed back to the caller: the op's own
 * buffer on its final completion, or (pooled recv) a filled pool buffer that the
 * callee now owns. Without VQ_CQE_MORE this is the op's last completion and the
 * op may be reused or freed from inside the callback.
 */
typedef void (*vq_op_fn)(struct vq_op *op, int res, struct vq_buf *buf, unsigned flags);

struct vq_op {
	vq_op_fn done;
	struct vq_buf *buf;
	struct vq_op *next;      /* driver-private list link */
	uint64_t off;            /* file offset for READ/WRITE */
	int64_t timeout_ns;      /* TIMEOUT: relative delay */
	int fd;
	uint32_t progress;       /* VQ_OPF_ALL: bytes done so far */
	int32_t res;             /* driver-private: result of a locally completed op */
	uint8_t opcode;
	uint8_t flags;
	uint8_t inflight;        /* submitted and its final completion not yet delivered */
	uint8_t cancelled;       /* a cancel was requested */
	uint64_t scratch[2];     /* driver-private (e.g. the kernel timespec) */
};

static inline void vq_op_prep(struct vq_op *op, enum vq_opcode code, int fd, struct vq_buf *buf,
			      vq_op_fn done)
{
	*op = (struct vq_op){ .done = done, .buf = buf, .fd = fd, .opcode = (uint8_t)code };
}

#endif
