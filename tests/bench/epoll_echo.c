/*
 * epoll_echo - a plain single-thread epoll echo loop, the classic readiness design
 * (the shape of Redis's ae or of memcached's event loop) to compare io_uring against.
 *
 * Level triggered. On readable: one read into a shared buffer, then write it straight back.
 * Whatever the socket does not take is kept in a per-connection pending buffer; while it is
 * non-empty the connection waits for EPOLLOUT instead of EPOLLIN, so a peer that does not read
 * cannot make us buffer without bound.
 *
 * Usage: epoll_echo PORT     (binds 127.0.0.1; pin it with taskset; stop it with a signal)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE 65536
#define MAX_EVENTS 256

struct conn {
	char *pending; /* bytes read but not yet written back; NULL when none */
	size_t off, len;
};

static struct conn *conns; /* indexed by fd */
static int max_fds;
static int epfd;
static char rbuf[READ_SIZE];

static void die(const char *what)
{
	fprintf(stderr, "epoll_echo: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void set_interest(int fd, unsigned int events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		die("epoll_ctl MOD");
}

static void close_conn(int fd)
{
	free(conns[fd].pending);
	conns[fd] = (struct conn){0};
	close(fd); /* also removes it from the epoll set */
}

/* Write buf back; keep what the socket does not take. Returns -1 if the peer is gone. */
static int echo_out(int fd, const char *buf, size_t len)
{
	struct conn *c = &conns[fd];
	ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

	if (n < 0) {
		if (errno != EAGAIN)
			return -1;
		n = 0;
	}
	if ((size_t)n == len)
		return 0;
	c->pending = malloc(len - n);
	if (!c->pending)
		return -1;
	memcpy(c->pending, buf + n, len - n);
	c->off = 0;
	c->len = len - n;
	set_interest(fd, EPOLLOUT);
	return 0;
}

static void on_readable(int fd)
{
	ssize_t n = read(fd, rbuf, sizeof(rbuf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || echo_out(fd, rbuf, n) < 0)
		close_conn(fd);
}

static void on_writable(int fd)
{
	struct conn *c = &conns[fd];
	ssize_t n = send(fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);

	if (n < 0) {
		if (errno != EAGAIN)
			close_conn(fd);
		return;
	}
	c->off += n;
	if (c->off < c->len)
		return;
	free(c->pending);
	c->pending = NULL;
	set_interest(fd, EPOLLIN);
}

static void on_accept(int lfd)
{
	for (;;) {
		struct epoll_event ev = {.events = EPOLLIN};
		int one = 1;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				fprintf(stderr, "epoll_echo: accept: %s\n", strerror(errno));
			return;
		}
		if (fd >= max_fds) {
			close(fd);
			continue;
		}
		/* Echoes are small and pipelined: Nagle would hold the second one for an ACK. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev.data.fd = fd;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl ADD");
	}
}

static int listen_loopback(int port)
{
	struct sockaddr_in sa = {
	    .sin_family = AF_INET,
	    .sin_port = htons(port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(fd, SOMAXCONN) < 0)
		die("listen");
	return fd;
}

int main(int argc, char **argv)
{
	struct epoll_event events[MAX_EVENTS];
	struct epoll_event lev = {.events = EPOLLIN};
	struct rlimit rl;
	int port, lfd;

	if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit");
	max_fds = rl.rlim_cur > 1 << 20 ? 1 << 20 : (int)rl.rlim_cur;
	conns = calloc(max_fds, sizeof(*conns));
	if (!conns)
		die("calloc");

	lfd = listen_loopback(port);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	lev.data.fd = lfd;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
		die("epoll_ctl ADD listener");
	printf("epoll_echo: listening on 127.0.0.1:%d\n", port);
	fflush(stdout);

	for (;;) {
		int n = epoll_wait(epfd, events, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;

			if (fd == lfd)
				on_accept(lfd);
			else if (conns[fd].pending)
				on_writable(fd);
			else
				on_readable(fd);
		}
	}
}
