/* SPDX-License-Identifier: MIT */
/* Outbound connections: a CONNECT op, then the socket becomes an ordinary vq_conn. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "conn.h"
#include "ops.h"
#include "shard.h"

struct connect_req {
	struct vq_shard *s;
	vq_connect_fn cb;
	void *ctx;
	int fd;
};

static void connected(void *arg, int res, struct vq_buf *b)
{
	struct connect_req *r = arg;
	struct vq_shard *s = r->s;
	vq_connect_fn cb = r->cb;
	void *ctx = r->ctx;
	int fd = r->fd, one = 1;
	struct vq_conn *c = NULL;

	free(r);
	if (res == 0) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = vq_conn_adopt(s, fd); /* closes fd itself when refused */
		if (!c)
			res = -EMFILE;
	} else {
		close(fd);
	}
	cb(ctx, res, c);
	if (c)
		vq_conn_start(c);
}

int vq_conn_connect(struct vq_shard *s, const struct sockaddr *addr, socklen_t addrlen,
		    int64_t timeout_ns, vq_connect_fn cb, void *ctx)
{
	struct connect_req *r;
	int fd, ret;

	if (s->state != VQ_SHARD_RUNNING)
		return -ESHUTDOWN;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	/* Nonblocking suits both drivers: io_uring polls it, epoll needs it. */
	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		free(r);
		return ret;
	}
	*r = (struct connect_req){ s, cb, ctx, fd };
	if (!vq_io_connect(s, fd, addr, addrlen, timeout_ns, connected, r)) {
		ret = -errno;
		close(fd);
		free(r);
		return ret;
	}
	return 0;
}
