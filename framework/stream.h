/* SPDX-License-Identifier: MIT */
#ifndef VQ_STREAM_H
#define VQ_STREAM_H
/*
 * Stream helpers over a connection's queues, for protocols framed by a
 * delimiter or a length, and for code that wants plain memory.
 *
 * Readers work on c->in (the received buffers, in order) across buffer
 * boundaries. They copy a complete frame into the caller's memory, consume it,
 * and release each buffer once emptied. A frame that is not complete yet
 * returns -EAGAIN and consumes nothing: call again from the next on_data. A
 * frame longer than `max` is -EMSGSIZE — an error for the caller to answer,
 * never a reason to buffer more. Call them from the connection's shard only.
 */
#include <stddef.h>
#include <sys/types.h>
#include "buf.h"

struct vq_conn;
struct vq_pool;

/*
 * Copy the bytes up to and including the first `delim` into dst (room for max
 * bytes) and consume them. Returns the frame length, -EAGAIN (no delimiter yet,
 * fewer than max bytes queued) or -EMSGSIZE (no delimiter in the first max bytes).
 */
ssize_t vq_read_until(struct vq_conn *c, int delim, void *dst, size_t max);

/* vq_read_until(c, '\n', ...): the line with its newline. */
ssize_t vq_read_line(struct vq_conn *c, void *dst, size_t max);

/* Exactly n bytes into dst once n are queued; -EAGAIN before; -EMSGSIZE if n > max. */
ssize_t vq_read_exact(struct vq_conn *c, void *dst, size_t n, size_t max);

/*
 * The compat read: copy up to len queued bytes into dst and consume them.
 * Returns the count (0: nothing queued). Borrowed memory in, no ownership.
 */
size_t vq_read_copy(struct vq_conn *c, void *dst, size_t len);

/* The compat write: copy len bytes into pool buffers and queue them (0, -EPIPE, -ENOBUFS). */
int vq_write_copy(struct vq_conn *c, const void *src, size_t len);

/* The same readers on any queue of buffers; `release` gives emptied buffers back. */
ssize_t vq_bufq_read_until(struct vq_bufq *q, int delim, void *dst, size_t max);
ssize_t vq_bufq_read_exact(struct vq_bufq *q, void *dst, size_t n, size_t max);
size_t vq_bufq_read_copy(struct vq_bufq *q, void *dst, size_t len);

/*
 * A buffered writer: small writes gather in one pool buffer, which goes to the
 * connection's output queue when full or on flush. Zero it to start.
 */
struct vq_writer {
	struct vq_conn *c;
	struct vq_buf *cur;  /* being filled; owned by the writer */
};

static inline void vq_writer_init(struct vq_writer *w, struct vq_conn *c)
{
	w->c = c;
	w->cur = NULL;
}

/*
 * Append n bytes. All or nothing: returns 0, -ENOBUFS when the pool cannot
 * hold them (nothing appended), or -EPIPE when the connection is closing.
 */
int vq_writer_put(struct vq_writer *w, const void *data, size_t n);

/* Queue what is gathered for sending. Returns 0 or -EPIPE. */
int vq_writer_flush(struct vq_writer *w);

/* Drop what is gathered and not flushed (e.g. the request failed half-way). */
void vq_writer_discard(struct vq_writer *w);

#endif
