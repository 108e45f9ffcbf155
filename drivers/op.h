/* SPDX-License-Identifier: MIT */
#ifndef VQ_OP_H
#define VQ_OP_H

#include <stdint.h>
#include <sys/uio.h>
#include "buf.h"

/* What an op asks for, independent of the driver that carries it out. */
enum vq_opcode {
	VQ_OP_NOP = 0,
	VQ_OP_ACCEPT,  /* fd = listener; res = new fd */
	VQ_OP_RECV,    /* into buf's room (len grows by res), or a pool buffer with VQ_OPF_POOLED;
			* res = bytes, 0 = EOF */
	VQ_OP_SEND,    /* buf's valid bytes; res = bytes sent */
	VQ_OP_READ,    /* fd at off into buf's room (len grows by res); res = bytes, 0 = end */
	VQ_OP_WRITE,   /* buf's valid bytes to fd at off; res = bytes */
	VQ_OP_CLOSE,   /* res = 0 or -errno */
	VQ_OP_TIMEOUT, /* after timeout_ns; res = 0 when it fires, -ECANCELED if cancelled */
	VQ_OP_CONNECT, /* fd (a fresh stream socket) to addr/addrlen; res = 0 or -errno */
	VQ_OP_READV,   /* fd at off into the room of each buf of the chain, in order; res = bytes */
	VQ_OP_WRITEV,  /* each chained buf's valid bytes to fd at off, in order; res = bytes */
	VQ_OP_SPLICE,  /* len bytes from fd (at off, or -1) to fd_out; one side a pipe; no buf */
	VQ_OP_SEND_ZC, /* SEND without copying when buf->len >= the driver's zc threshold; the
			* single completion comes when the kernel no longer reads the buffer */
};

/* Offset meaning "the file's current position" (READ/WRITE/READV/WRITEV/SPLICE). */
#define VQ_OFF_CUR UINT64_MAX

/* Most buffers one READV/WRITEV carries (a chain through vq_buf.next). */
#define VQ_IOV_MAX 16

/* accept/recv: keep completing until error or cancel; a pooled recv may also end
 * with data (res > 0 without VQ_CQE_MORE: the driver's cap), to be re-armed */
#define VQ_OPF_MULTISHOT (1u << 0)
#define VQ_OPF_POOLED    (1u << 1) /* recv: the driver picks a buffer from the shard's pool */
#define VQ_OPF_ALL       (1u << 2) /* send/write/writev: resume short transfers to the end */

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
	uint64_t off;            /* file offset for READ/WRITE/READV/WRITEV/SPLICE input */
	union {
		int64_t timeout_ns;  /* TIMEOUT: relative delay */
		/*
		 * Any other op: relative deadline (0 = none), counted from submit. When
		 * it passes first the op ends with -ETIMEDOUT and its buffer comes back.
		 */
		int64_t deadline_ns;
	};
	union {                  /* per opcode; set them after vq_op_prep() */
		struct {
			const void *addr;     /* CONNECT: struct sockaddr, valid until completion */
			uint32_t addrlen;
		};
		struct iovec *iov;    /* READV/WRITEV: room for VQ_IOV_MAX entries, driver-filled */
		struct {
			int fd_out;           /* SPLICE: destination */
			uint32_t len;         /* SPLICE: bytes to move */
		};
	};
	int fd;
	uint32_t progress;       /* VQ_OPF_ALL: bytes done so far */
	int32_t res;             /* driver-private: result of a locally completed op */
	uint8_t opcode;
	uint8_t flags;
	uint8_t inflight;        /* submitted and its final completion not yet delivered */
	uint8_t cancelled;       /* a cancel was requested */
	uint8_t state;           /* driver-private */
	uint64_t scratch[2];     /* driver-private (e.g. a kernel timespec) */
};

static inline void vq_op_prep(struct vq_op *op, enum vq_opcode code, int fd, struct vq_buf *buf,
			      vq_op_fn done)
{
	*op = (struct vq_op){ .done = done, .buf = buf, .fd = fd, .opcode = (uint8_t)code };
}

/*
 * Helpers shared by the drivers (drivers/op.c), so both read an op the same way.
 */

/* 0, or -EINVAL for an op whose fields do not fit its opcode. */
int vq_op_check(const struct vq_op *op);

/* Bytes a SEND/SEND_ZC/WRITE/WRITEV must move in all (the chain's valid bytes). */
uint32_t vq_op_total(const struct vq_op *op);

/* SEND, SEND_ZC, WRITE, WRITEV: short results count towards `progress`. */
static inline int vq_op_resumable(const struct vq_op *op)
{
	return op->opcode == VQ_OP_SEND || op->opcode == VQ_OP_SEND_ZC ||
	       op->opcode == VQ_OP_WRITE || op->opcode == VQ_OP_WRITEV;
}

/*
 * Fill op->iov from the buffer chain: for a write the valid bytes not yet
 * sent (past `progress`), for a read each buffer's room. Returns the count.
 */
unsigned vq_op_iov_fill(struct vq_op *op, int write);

/* A READ/RECV/READV returned n bytes: grow each buffer's len by what landed in it. */
void vq_op_iov_spread(struct vq_op *op, uint32_t n);

/* Move every buffer the op holds (the whole chain for READV/WRITEV) to/from the kernel. */
void vq_op_bufs_to_kernel(struct vq_op *op);
void vq_op_bufs_from_kernel(struct vq_op *op);

#endif
