/* SPDX-License-Identifier: MIT */
/*
 * One SO_REUSEPORT listener per shard, served by a multishot accept. The
 * kernel spreads new connections over the shards' sockets; per-shard
 * `accepted` counters show the balance.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "listener.h"
#include "log.h"
#include "shard.h"

#define ACCEPT_RETRY_NS 100000000ull /* after EMFILE and friends: 100 ms */

static void accept_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags);

static void arm_accept(struct vq_shard *s)
{
	vq_op_prep(&s->accept_op, VQ_OP_ACCEPT, s->listen_fd, NULL, accept_done);
	s->accept_op.flags = VQ_OPF_MULTISHOT;
	if (vq_driver_submit(&s->drv, &s->accept_op))
		vq_timer_arm(s, &s->accept_retry, ACCEPT_RETRY_NS);
}

static void accept_retry(struct vq_timer *t)
{
	struct vq_shard *s = (struct vq_shard *)((char *)t - offsetof(struct vq_shard, accept_retry));

	if (s->state == VQ_SHARD_RUNNING && !s->accept_op.inflight)
		arm_accept(s);
}

static void accept_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct vq_shard *s = (struct vq_shard *)((char *)op - offsetof(struct vq_shard, accept_op));

	if (res >= 0) {
		vq_conn_accepted(s, res);
	} else if (res != -ECANCELED && s->state == VQ_SHARD_RUNNING) {
		/* Out of fds or memory: keep serving the open connections, retry soon.
		 * Logged at the first failure and then every 100th, not every retry. */
		if (s->st.accept_errors++ % 100 == 0)
			vq_warn("accept: %s (%lu failures so far); open connections are still "
				"served, new ones wait", strerror(-res),
				(unsigned long)s->st.accept_errors);
	}
	if (flags & VQ_CQE_MORE)
		return;
	if (s->state == VQ_SHARD_RUNNING)
		vq_timer_arm(s, &s->accept_retry, res == -ECANCELED ? 0 : ACCEPT_RETRY_NS);
	else
		vq_listener_close(s);
}

/* Fill ss from listen.address/port; returns its length, or 0 for a bad address. */
static socklen_t listen_addr(const struct vq_config *cfg, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, cfg->address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)cfg->port);
		return sizeof(*in4);
	}
	if (inet_pton(AF_INET6, cfg->address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)cfg->port);
		return sizeof(*in6);
	}
	return 0;
}

int vq_listener_probe(const struct vq_config *cfg, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = listen_addr(cfg, &ss);
	int one = 1, fd, ret = 0;

	if (!len) {
		snprintf(err, errlen, "listen.address: '%s' is not an IPv4 or IPv6 address",
			 cfg->address);
		return -EINVAL;
	}
	/*
	 * Without SO_REUSEPORT: a bind fails if anyone listens there already, even
	 * another copy of this service, which SO_REUSEPORT would let share the port.
	 */
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&ss, len)) {
		ret = -errno;
		snprintf(err, errlen, "listen on %s port %lu: %s%s", cfg->address,
			 (unsigned long)cfg->port, strerror(errno),
			 errno == EADDRINUSE ? " (another process holds the port: stop it or change "
					       "listen.port)" : "");
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

int vq_listener_open(struct vq_shard *s)
{
	const struct vq_config *cfg = s->cfg;
	struct sockaddr_storage ss;
	socklen_t len = listen_addr(cfg, &ss);
	int one = 1, fd;

	if (!len) {
		snprintf(s->error, sizeof(s->error),
			 "listen.address: '%s' is not an IPv4 or IPv6 address", cfg->address);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    /* Inherited by accepted sockets: a reply of several buffers must not wait
	     * for the peer's delayed ACK (Nagle), up to 40 ms per reply. */
	    (ss.ss_family != AF_UNIX && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) ||
	    bind(fd, (struct sockaddr *)&ss, len) || listen(fd, (int)cfg->backlog)) {
		int err = errno;

		close(fd);
		errno = err;
		goto fail;
	}
	s->listen_fd = fd;
	s->accept_retry.fn = accept_retry;
	arm_accept(s);
	return 0;
fail:
	snprintf(s->error, sizeof(s->error), "listen on %s port %lu: %s%s", cfg->address,
		 (unsigned long)cfg->port, strerror(errno),
		 errno == EADDRINUSE ? " (another process holds the port: change listen.port)" : "");
	return -errno;
}

void vq_listener_stop(struct vq_shard *s)
{
	vq_timer_disarm(s, &s->accept_retry);
	if (s->accept_op.inflight)
		s->drv.ops->cancel(&s->drv, &s->accept_op);
	else
		vq_listener_close(s);
}

void vq_listener_close(struct vq_shard *s)
{
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		s->listen_fd = -1;
	}
}
