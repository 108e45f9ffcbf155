/* SPDX-License-Identifier: MIT */
#ifndef VQ_BUF_H
#define VQ_BUF_H

#include <stddef.h>
#include <stdint.h>

struct vq_pool;

/* Where a buffer is. Every buffer is in exactly one state; the pool counts them. */
enum vq_buf_state {
	VQ_BUF_FREE = 0, /* on the pool's free list */
	VQ_BUF_KERNEL,   /* held by an in-flight op or by the provided-buffer ring */
	VQ_BUF_USER,     /* held by user code (or a framework queue on its behalf) */
};

/*
 * A fixed, registered buffer. The handle lives in its pool's descriptor array;
 * `data` never moves and `index` is both the registered-buffer index and the
 * provided-ring buffer id. The valid bytes are data[off, off + len).
 */
struct vq_buf {
	uint8_t *data;
	struct vq_pool *pool;
	struct vq_buf *next; /* link for the free list and for user queues */
	uint32_t cap;
	uint32_t len;
	uint32_t off;
	uint32_t index;
	uint8_t state;
};

/* First valid byte. */
static inline uint8_t *vq_buf_bytes(const struct vq_buf *b)
{
	return b->data + b->off;
}

/* Room left after the valid bytes. */
static inline uint32_t vq_buf_room(const struct vq_buf *b)
{
	return b->cap - b->off - b->len;
}

/* Drop n bytes from the front of the valid bytes (n <= len). */
static inline void vq_buf_consume(struct vq_buf *b, uint32_t n)
{
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		b->off = 0;
}

/* A FIFO of buffers linked through `next`; used for connection input and output. */
struct vq_bufq {
	struct vq_buf *head;
	struct vq_buf *tail;
	size_t bytes;
};

static inline void vq_bufq_push(struct vq_bufq *q, struct vq_buf *b)
{
	b->next = NULL;
	if (q->tail)
		q->tail->next = b;
	else
		q->head = b;
	q->tail = b;
	q->bytes += b->len;
}

static inline void vq_bufq_push_front(struct vq_bufq *q, struct vq_buf *b)
{
	b->next = q->head;
	q->head = b;
	if (!q->tail)
		q->tail = b;
	q->bytes += b->len;
}

static inline struct vq_buf *vq_bufq_pop(struct vq_bufq *q)
{
	struct vq_buf *b = q->head;

	if (!b)
		return NULL;
	q->head = b->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= b->len;
	b->next = NULL;
	return b;
}

#endif
