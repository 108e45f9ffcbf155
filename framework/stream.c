/* SPDX-License-Identifier: MIT */
/* Framed and copying reads over a queue of buffers, and a gathering writer. */
#include <errno.h>
#include <string.h>

#include "conn.h"
#include "pool.h"
#include "shard.h"
#include "stream.h"

/* Offset of the first `delim` within the first `limit` queued bytes, or -1. */
static ssize_t find(const struct vq_bufq *q, int delim, size_t limit)
{
	size_t base = 0;

	for (const struct vq_buf *b = q->head; b && base < limit; b = b->next) {
		size_t n = b->len < limit - base ? b->len : limit - base;
		const uint8_t *p = memchr(vq_buf_bytes(b), delim, n);

		if (p)
			return (ssize_t)(base + (size_t)(p - vq_buf_bytes(b)));
		base += b->len;
	}
	return -1;
}

size_t vq_bufq_read_copy(struct vq_bufq *q, void *dst, size_t len)
{
	uint8_t *d = dst;
	size_t done = 0;

	while (q->head && done < len) {
		struct vq_buf *b = q->head;
		uint32_t n = b->len < len - done ? b->len : (uint32_t)(len - done);

		memcpy(d + done, vq_buf_bytes(b), n);
		done += n;
		vq_buf_consume(b, n);
		q->bytes -= n;
		if (!b->len)
			vq_buf_release(vq_bufq_pop(q));
	}
	return done;
}

ssize_t vq_bufq_read_until(struct vq_bufq *q, int delim, void *dst, size_t max)
{
	ssize_t at = find(q, delim, max);

	if (at < 0)
		return q->bytes >= max ? -EMSGSIZE : -EAGAIN;
	return (ssize_t)vq_bufq_read_copy(q, dst, (size_t)at + 1);
}

ssize_t vq_bufq_read_exact(struct vq_bufq *q, void *dst, size_t n, size_t max)
{
	if (n > max)
		return -EMSGSIZE;
	if (q->bytes < n)
		return -EAGAIN;
	return (ssize_t)vq_bufq_read_copy(q, dst, n);
}

ssize_t vq_read_until(struct vq_conn *c, int delim, void *dst, size_t max)
{
	return vq_bufq_read_until(&c->in, delim, dst, max);
}

ssize_t vq_read_line(struct vq_conn *c, void *dst, size_t max)
{
	return vq_bufq_read_until(&c->in, '\n', dst, max);
}

ssize_t vq_read_exact(struct vq_conn *c, void *dst, size_t n, size_t max)
{
	return vq_bufq_read_exact(&c->in, dst, n, max);
}

size_t vq_read_copy(struct vq_conn *c, void *dst, size_t len)
{
	return vq_bufq_read_copy(&c->in, dst, len);
}

int vq_write_copy(struct vq_conn *c, const void *src, size_t len)
{
	return vq_conn_write_copy(c, src, len);
}

int vq_writer_put(struct vq_writer *w, const void *data, size_t n)
{
	struct vq_pool *pool = &w->c->shard->pool;
	const uint8_t *p = data;
	size_t room = w->cur ? vq_buf_room(w->cur) : 0;

	if (w->c->flags & (VQ_CONN_ABORT | VQ_CONN_CLOSED))
		return -EPIPE;
	/* All or nothing: make sure the pool holds what does not fit before copying. */
	if (n > room && (n - room + pool->size - 1) / pool->size > pool->st.free)
		return -ENOBUFS;
	while (n) {
		uint32_t k;
		int ret;

		if (!w->cur) {
			w->cur = vq_pool_alloc(pool);
			if (!w->cur)
				return -ENOBUFS; /* not reached: counted above */
		}
		k = vq_buf_room(w->cur) < n ? vq_buf_room(w->cur) : (uint32_t)n;
		memcpy(vq_buf_bytes(w->cur) + w->cur->len, p, k);
		w->cur->len += k;
		p += k;
		n -= k;
		if (!vq_buf_room(w->cur)) {
			ret = vq_writer_flush(w);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int vq_writer_flush(struct vq_writer *w)
{
	struct vq_buf *b = w->cur;

	if (!b)
		return 0;
	w->cur = NULL;
	return vq_conn_write(w->c, b); /* takes b, even on -EPIPE */
}

void vq_writer_discard(struct vq_writer *w)
{
	if (w->cur)
		vq_buf_release(w->cur);
	w->cur = NULL;
}
