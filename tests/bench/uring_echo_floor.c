/*
 * uring_echo_floor - the smallest io_uring echo server we know how to write well.
 *
 * It is the floor veloq-echo is measured against: one thread, one ring, no framework. It uses
 * what a careful hand-written loop uses on kernel 6.1+ with liburing 2.3:
 *
 *   - SINGLE_ISSUER | DEFER_TASKRUN: completions run only when we ask for them, in our thread;
 *   - a registered ring fd, so io_uring_enter skips the fd table lookup;
 *   - one multishot accept on the listener;
 *   - one multishot recv per connection, picking buffers from a provided-buffer ring;
 *   - a send straight from the buffer the data arrived in (no copy), one send in flight per
 *     socket so echoed bytes keep their order, the buffer going back to the ring when sent;
 *   - one io_uring_submit_and_wait per loop iteration.
 *
 * Usage: uring_echo_floor PORT     (binds 127.0.0.1; pin it with taskset; stop it with a signal)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SQ_ENTRIES 1024
#define CQ_ENTRIES (8 * SQ_ENTRIES) /* multishot ops post many CQEs per SQE */
#define NBUFS 1024		    /* power of two: the buffer ring indexes by mask */
#define BUF_SIZE 16384		    /* veloq-echo's default: compare loops, not buffer sizes */
#define BGID 0

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND };

/*
 * A connection is a FIFO of received buffers waiting to be echoed, linked through next_bid[].
 * Only the head is ever being sent: two sends in flight on one socket may complete out of order
 * when the first one has to wait for socket space.
 */
struct conn {
	int head; /* buffer id being sent, -1 if the queue is empty */
	int tail;
	unsigned int sent; /* bytes of the head already sent (short sends happen) */
	bool sending;
	bool recv_done; /* multishot recv ended for good: EOF or error */
	bool broken;	/* a send failed: drop whatever else arrives */
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static unsigned char *bufs;
static int next_bid[NBUFS];
static unsigned int buf_len[NBUFS];
static int recycled; /* buffers added to the ring since the last advance */

static struct conn *conns; /* indexed by fd */
static int max_fds;
static int *starved; /* fds whose recv stopped with -ENOBUFS, re-armed on recycle */
static int nstarved;

static void die(const char *what, int err)
{
	fprintf(stderr, "uring_echo_floor: %s: %s\n", what, strerror(err));
	exit(1);
}

static inline uint64_t make_ud(unsigned int op, int fd)
{
	return (uint64_t)op << 32 | (uint32_t)fd;
}

/* Never fails: a full SQ is flushed to the kernel to make room. */
static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	while (!sqe) {
		int ret = io_uring_submit(&ring);

		if (ret < 0 && ret != -EINTR && ret != -EBUSY)
			die("io_uring_submit", -ret);
		sqe = io_uring_get_sqe(&ring);
	}
	return sqe;
}

static void recycle(int bid)
{
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
			      io_uring_buf_ring_mask(NBUFS), recycled);
	recycled++;
}

static void arm_accept(int lfd)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, make_ud(OP_ACCEPT, lfd));
}

static void arm_recv(int fd)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, make_ud(OP_RECV, fd));
}

static void arm_send(int fd, struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe();
	int bid = c->head;

	io_uring_prep_send(sqe, fd, bufs + (size_t)bid * BUF_SIZE + c->sent, buf_len[bid] - c->sent,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, make_ud(OP_SEND, fd));
	c->sending = true;
}

static void drop_queue(struct conn *c)
{
	while (c->head >= 0) {
		int bid = c->head;

		c->head = next_bid[bid];
		recycle(bid);
	}
	c->tail = -1;
	c->sent = 0;
}

/* Close once nothing refers to the fd any more: no recv armed, no send in flight. */
static void maybe_close(int fd, struct conn *c)
{
	if (!c->recv_done || c->sending)
		return;
	drop_queue(c);
	close(fd);
}

static void on_accept(int lfd, struct io_uring_cqe *cqe)
{
	int fd = cqe->res;
	int one = 1;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_accept(lfd);
	if (fd < 0) {
		fprintf(stderr, "uring_echo_floor: accept: %s\n", strerror(-fd));
		return;
	}
	if (fd >= max_fds) {
		close(fd);
		return;
	}
	/* Echoes are small and pipelined: Nagle would hold the second one for an ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conns[fd] = (struct conn){.head = -1, .tail = -1};
	arm_recv(fd);
}

static void on_recv(int fd, struct io_uring_cqe *cqe)
{
	struct conn *c = &conns[fd];
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (cqe->res > 0) {
		int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (c->broken) {
			recycle(bid);
		} else {
			buf_len[bid] = cqe->res;
			next_bid[bid] = -1;
			if (c->tail >= 0)
				next_bid[c->tail] = bid;
			else
				c->head = bid;
			c->tail = bid;
			if (!c->sending)
				arm_send(fd, c);
		}
		/* The kernel may end a multishot recv that still carried data (e.g. CQ full). */
		if (!more)
			arm_recv(fd);
		return;
	}
	if (more)
		return;
	if (cqe->res == -ENOBUFS) {
		/* Every buffer is queued for sending; resume once some come back. */
		starved[nstarved++] = fd;
		return;
	}
	c->recv_done = true;
	maybe_close(fd, c);
}

static void on_send(int fd, struct io_uring_cqe *cqe)
{
	struct conn *c = &conns[fd];

	c->sending = false;
	if (cqe->res < 0) {
		/* The peer is gone; its recv will end with EOF or an error and close the fd. */
		c->broken = true;
		drop_queue(c);
	} else {
		c->sent += cqe->res;
		if (c->sent == buf_len[c->head]) {
			int bid = c->head;

			c->head = next_bid[bid];
			if (c->head < 0)
				c->tail = -1;
			c->sent = 0;
			recycle(bid);
		}
		if (c->head >= 0) {
			arm_send(fd, c);
			return;
		}
	}
	maybe_close(fd, c);
}

static int listen_loopback(int port)
{
	struct sockaddr_in sa = {
	    .sin_family = AF_INET,
	    .sin_port = htons(port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket", errno);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind", errno);
	if (listen(fd, SOMAXCONN) < 0)
		die("listen", errno);
	return fd;
}

static void setup_ring(void)
{
	struct io_uring_params p = {
	    .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE,
	    .cq_entries = CQ_ENTRIES,
	};
	struct io_uring_buf_reg reg = {.ring_entries = NBUFS, .bgid = BGID};
	size_t ring_bytes = NBUFS * sizeof(struct io_uring_buf);
	int ret;

	ret = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
	if (ret < 0)
		die("io_uring_queue_init_params", -ret);
	ret = io_uring_register_ring_fd(&ring);
	if (ret < 0)
		die("io_uring_register_ring_fd", -ret);

	/* The buffer ring must be page aligned: the kernel pins its pages. */
	br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED)
		die("mmap", errno);
	bufs = malloc((size_t)NBUFS * BUF_SIZE);
	if (!bufs)
		die("malloc", ENOMEM);
	reg.ring_addr = (uintptr_t)br;
	ret = io_uring_register_buf_ring(&ring, &reg, 0);
	if (ret < 0)
		die("io_uring_register_buf_ring", -ret);
	io_uring_buf_ring_init(br);
	for (int bid = 0; bid < NBUFS; bid++)
		recycle(bid);
	io_uring_buf_ring_advance(br, recycled);
	recycled = 0;
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	int port, lfd;

	if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit", errno);
	max_fds = rl.rlim_cur > 1 << 20 ? 1 << 20 : (int)rl.rlim_cur;
	conns = calloc(max_fds, sizeof(*conns));
	starved = calloc(max_fds, sizeof(*starved));
	if (!conns || !starved)
		die("calloc", ENOMEM);

	setup_ring();
	lfd = listen_loopback(port);
	arm_accept(lfd);
	printf("uring_echo_floor: listening on 127.0.0.1:%d\n", port);
	fflush(stdout);

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		int ret = io_uring_submit_and_wait(&ring, 1);

		if (ret < 0 && ret != -EINTR && ret != -EBUSY)
			die("io_uring_submit_and_wait", -ret);

		io_uring_for_each_cqe(&ring, head, cqe)
		{
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			int fd = (int)(uint32_t)ud;

			switch (ud >> 32) {
			case OP_ACCEPT:
				on_accept(fd, cqe);
				break;
			case OP_RECV:
				on_recv(fd, cqe);
				break;
			case OP_SEND:
				on_send(fd, cqe);
				break;
			}
			seen++;
		}
		io_uring_cq_advance(&ring, seen);

		if (recycled) {
			io_uring_buf_ring_advance(br, recycled);
			recycled = 0;
			while (nstarved)
				arm_recv(starved[--nstarved]);
		}
	}
}
