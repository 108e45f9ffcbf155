/* SPDX-License-Identifier: MIT */
#ifndef VQ_OPS_H
#define VQ_OPS_H
/*
 * Ops as user calls: the C form of `async fn op(fd, FixedBuf) -> (io::Result<usize>, FixedBuf)`.
 *
 * Every call runs on the shard thread `s`, takes ownership of its buffer and
 * completes exactly once, on the same thread, through cb(ctx, res, buf): res is
 * bytes (>= 0) or -errno, and buf is the caller's buffer back (for vectored
 * calls the head of the same chain, every buffer in it) — on success, error,
 * -ECANCELED and -ETIMEDOUT alike. Reads grow buf->len by the bytes read; writes
 * and sends finish the whole buffer or report the error.
 *
 * deadline_ns > 0 ends the op with -ETIMEDOUT if it has not completed that
 * many ns after the call (a linked timeout on io_uring). 0 = none.
 *
 * A call returns a handle for vq_io_cancel(), valid until its callback starts;
 * or NULL with errno set if it could not start (-EINVAL, -EBUSY, -ENOMEM): then
 * the callback never runs and the buffer is still the caller's.
 * Nothing reaches the kernel before the shard's next loop turn.
 */
#include <stdint.h>
#include <sys/socket.h>
#include "buf.h"

struct vq_shard;
struct vq_io;

typedef void (*vq_io_fn)(void *ctx, int res, struct vq_buf *buf);

/* Receive into buf's room. res 0 = the peer finished sending. */
struct vq_io *vq_io_recv(struct vq_shard *s, int fd, struct vq_buf *buf, int64_t deadline_ns,
			 vq_io_fn cb, void *ctx);

/*
 * Send all of buf's valid bytes. At or above io.zc_min bytes the uring driver
 * sends zero-copy from the registered pool and calls back only when the kernel
 * has let go of the pages; below, and on epoll, it is a plain send.
 */
struct vq_io *vq_io_send(struct vq_shard *s, int fd, struct vq_buf *buf, int64_t deadline_ns,
			 vq_io_fn cb, void *ctx);

/* Read into buf's room from offset off (VQ_OFF_CUR: the current position; streams). */
struct vq_io *vq_io_read(struct vq_shard *s, int fd, uint64_t off, struct vq_buf *buf,
			 int64_t deadline_ns, vq_io_fn cb, void *ctx);

/* Write all of buf's valid bytes at offset off. */
struct vq_io *vq_io_write(struct vq_shard *s, int fd, uint64_t off, struct vq_buf *buf,
			  int64_t deadline_ns, vq_io_fn cb, void *ctx);

/*
 * Vectored: `chain` is up to VQ_IOV_MAX buffers linked through vq_buf.next
 * (the last next = NULL). readv fills each buffer's room in order; writev
 * writes every valid byte in order (short writes resumed). The chain comes back whole.
 */
struct vq_io *vq_io_readv(struct vq_shard *s, int fd, uint64_t off, struct vq_buf *chain,
			  int64_t deadline_ns, vq_io_fn cb, void *ctx);
struct vq_io *vq_io_writev(struct vq_shard *s, int fd, uint64_t off, struct vq_buf *chain,
			   int64_t deadline_ns, vq_io_fn cb, void *ctx);

/* Connect socket fd to addr (copied). res 0 or -errno; buf is NULL. */
struct vq_io *vq_io_connect(struct vq_shard *s, int fd, const struct sockaddr *addr,
			    socklen_t addrlen, int64_t deadline_ns, vq_io_fn cb, void *ctx);

/* Move up to len bytes from fd_in (at off_in, or VQ_OFF_CUR) to fd_out; one must be a pipe. */
struct vq_io *vq_io_splice(struct vq_shard *s, int fd_in, uint64_t off_in, int fd_out,
			   uint32_t len, int64_t deadline_ns, vq_io_fn cb, void *ctx);

/*
 * Send len bytes of file_fd from offset off to socket sock_fd without copying
 * through user memory: splices file -> pipe -> socket through a pipe of the
 * request's own (so concurrent transfers cannot mix). res = bytes sent; less
 * than len only if the file ended first; buf is NULL.
 */
struct vq_io *vq_io_sendfile(struct vq_shard *s, int sock_fd, int file_fd, uint64_t off,
			     uint64_t len, int64_t deadline_ns, vq_io_fn cb, void *ctx);

/* Call back after ns (res 0), or with -ECANCELED. */
struct vq_io *vq_io_sleep(struct vq_shard *s, int64_t ns, vq_io_fn cb, void *ctx);

/* Ask the op to end; its callback still comes (usually -ECANCELED). 0 or -ENOENT. */
int vq_io_cancel(struct vq_shard *s, struct vq_io *io);

/* Cancel every op on fd. */
int vq_io_cancel_fd(struct vq_shard *s, int fd);

#endif
