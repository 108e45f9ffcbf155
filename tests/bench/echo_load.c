/*
 * echo_load - closed-loop load generator for echo servers on 127.0.0.1.
 *
 * Each connection keeps PIPELINE messages of SIZE bytes outstanding: it sends them, and every
 * time one comes back complete it sends one more. Every echoed byte is checked against what was
 * sent; a mismatch or a dropped connection stops the run with exit code 1.
 * Latency is the time from queueing a message to receiving its last byte, kept in a log-linear
 * histogram (32 sub-buckets per power of two, under 2% error) so percentiles, not averages,
 * are reported.
 *
 * Idle mode (-i) opens CONNS connections, says so on stdout, holds them open and silent for
 * SECONDS, and checks the server closed none of them: for measuring memory per idle connection.
 *
 * Output (one line, for scripts):
 *   echo_load: conns=.. size=.. pipeline=.. threads=.. secs=.. messages=.. msgs_per_sec=..
 *              p50_us=.. p99_us=.. p999_us=.. max_us=..
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SUB_BITS 5
#define SUB (1 << SUB_BITS)
#define HIST_BUCKETS (40 * SUB) /* up to 2^43 ns: far beyond any sane latency */
#define READ_SIZE 65536
#define MAX_EVENTS 256

struct hist {
	uint64_t bucket[HIST_BUCKETS];
	uint64_t count;
	uint64_t max;
};

struct lconn {
	int fd;
	unsigned int id;
	uint64_t sent_seq; /* messages queued so far */
	uint64_t done_seq; /* messages fully echoed and checked */
	size_t rx_off;	   /* bytes of message done_seq received so far */
	unsigned char *tx; /* queued bytes not yet written: [tx_off, tx_len) */
	size_t tx_off, tx_len;
	uint64_t *t_sent; /* queue time of message seq, at [seq % pipeline] */
	bool want_out;
};

struct worker {
	pthread_t tid;
	int epfd;
	struct lconn *conns;
	int nconns;
	struct hist hist;
	uint64_t messages;
	double secs;
};

static int opt_port, opt_conns = 50, opt_size = 64, opt_pipeline = 1, opt_threads = 1;
static double opt_secs = 5;
static bool opt_idle;
static pthread_barrier_t start_line;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("echo_load: FAIL: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static unsigned int bucket_of(uint64_t v)
{
	unsigned int e, idx;

	if (v < SUB)
		return v;
	e = 63 - __builtin_clzll(v);
	idx = (e - SUB_BITS + 1) * SUB + ((v >> (e - SUB_BITS)) & (SUB - 1));
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The middle of a bucket: what a percentile falling into it is reported as. */
static double bucket_mid(unsigned int idx)
{
	unsigned int e;

	if (idx < SUB)
		return idx;
	e = idx / SUB + SUB_BITS - 1;
	return (double)((uint64_t)(SUB + idx % SUB) << (e - SUB_BITS)) +
	       (double)((uint64_t)1 << (e - SUB_BITS)) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->bucket[bucket_of(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

static double hist_quantile(const struct hist *h, double q)
{
	uint64_t want = (uint64_t)(q * h->count + 0.999999), seen = 0;

	if (!h->count)
		return 0;
	for (unsigned int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want)
			return bucket_mid(i) < h->max ? bucket_mid(i) : h->max;
	}
	return h->max;
}

/*
 * Message `seq` of connection `id` is a window into one random pattern, starting at a place
 * picked from both: neighbouring messages differ, so lost, repeated, reordered or crossed bytes
 * all show, and sending and checking are a memcpy and a memcmp. The client must stay cheap
 * next to the server it measures, even at large message sizes.
 */
#define PATTERN_STARTS 4093 /* a prime: starts spread evenly whatever the sequence stride */

static unsigned char *pattern;

static void pattern_init(void)
{
	uint64_t x = 0x9e3779b97f4a7c15u;

	pattern = malloc((size_t)opt_size + PATTERN_STARTS);
	if (!pattern)
		fail("out of memory");
	for (size_t i = 0; i < (size_t)opt_size + PATTERN_STARTS; i++) {
		x ^= x << 13; /* xorshift64 */
		x ^= x >> 7;
		x ^= x << 17;
		pattern[i] = (unsigned char)(x >> 32);
	}
}

static inline const unsigned char *message(unsigned int id, uint64_t seq)
{
	return pattern + (seq * 2654435761u + id * 40503u) % PATTERN_STARTS;
}

static void set_out_interest(struct worker *w, struct lconn *c, bool on)
{
	struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};

	if (c->want_out == on)
		return;
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		fail("epoll_ctl: %s", strerror(errno));
	c->want_out = on;
}

/* Queue `n` new messages; the caller flushes. Room exists: never more than pipeline queued. */
static void queue_messages(struct lconn *c, int n, uint64_t now)
{
	if (c->tx_off) {
		memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
		c->tx_len -= c->tx_off;
		c->tx_off = 0;
	}
	while (n--) {
		uint64_t seq = c->sent_seq++;

		memcpy(c->tx + c->tx_len, message(c->id, seq), opt_size);
		c->tx_len += opt_size;
		c->t_sent[seq % opt_pipeline] = now;
	}
}

static void flush(struct worker *w, struct lconn *c)
{
	while (c->tx_off < c->tx_len) {
		ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN)
				break;
			if (errno == EINTR)
				continue;
			fail("conn %u: send: %s", c->id, strerror(errno));
		}
		c->tx_off += n;
	}
	set_out_interest(w, c, c->tx_off < c->tx_len);
}

static void report_mismatch(const struct lconn *c, const unsigned char *got,
			    const unsigned char *want, size_t len)
{
	size_t i = 0;

	while (i < len - 1 && got[i] == want[i])
		i++;
	fail("conn %u: message %llu byte %zu: got 0x%02x, want 0x%02x", c->id,
	     (unsigned long long)c->done_seq, c->rx_off + i, got[i], want[i]);
}

/* Check what arrived, count finished messages, and send as many new ones. */
static void on_readable(struct worker *w, struct lconn *c, unsigned char *buf)
{
	ssize_t n = recv(c->fd, buf, READ_SIZE, 0);
	uint64_t now;
	int done = 0;

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		fail("conn %u: recv: %s", c->id, strerror(errno));
	}
	if (n == 0)
		fail("conn %u: closed by the server after %llu messages", c->id,
		     (unsigned long long)c->done_seq);
	now = now_ns();
	for (ssize_t i = 0; i < n;) {
		size_t len = opt_size - c->rx_off;
		const unsigned char *want = message(c->id, c->done_seq) + c->rx_off;

		if (len > (size_t)(n - i))
			len = n - i;
		if (c->done_seq >= c->sent_seq)
			fail("conn %u: %zd bytes echoed beyond what was sent", c->id, n - i);
		if (memcmp(buf + i, want, len))
			report_mismatch(c, buf + i, want, len);
		i += len;
		c->rx_off += len;
		if (c->rx_off == (size_t)opt_size) {
			hist_add(&w->hist, now - c->t_sent[c->done_seq % opt_pipeline]);
			c->done_seq++;
			c->rx_off = 0;
			done++;
		}
	}
	w->messages += done;
	if (done) {
		queue_messages(c, done, now);
		flush(w, c);
	}
}

static int connect_loopback(unsigned int id)
{
	struct sockaddr_in sa = {
	    .sin_family = AF_INET,
	    .sin_port = htons(opt_port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		fail("conn %u: socket: %s", id, strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		fail("conn %u: connect to 127.0.0.1:%d: %s", id, opt_port, strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[MAX_EVENTS];
	unsigned char *buf = malloc(READ_SIZE);
	uint64_t start, deadline, now;

	if (!buf)
		fail("out of memory");
	for (int i = 0; i < w->nconns; i++) {
		struct lconn *c = &w->conns[i];
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

		c->fd = connect_loopback(c->id);
		fcntl(c->fd, F_SETFL, O_NONBLOCK);
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			fail("epoll_ctl: %s", strerror(errno));
	}
	pthread_barrier_wait(&start_line);

	start = now_ns();
	deadline = start + (uint64_t)(opt_secs * 1e9);
	for (int i = 0; i < w->nconns; i++) {
		queue_messages(&w->conns[i], opt_pipeline, start);
		flush(w, &w->conns[i]);
	}
	for (now = start; now < deadline; now = now_ns()) {
		int left_ms = (int)((deadline - now) / 1000000) + 1;
		int n = epoll_wait(w->epfd, events, MAX_EVENTS, left_ms < 100 ? left_ms : 100);

		if (n < 0 && errno != EINTR)
			fail("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			struct lconn *c = events[i].data.ptr;

			if (events[i].events & EPOLLOUT)
				flush(w, c);
			if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				on_readable(w, c, buf);
		}
	}
	w->secs = (now - start) / 1e9;
	for (int i = 0; i < w->nconns; i++)
		close(w->conns[i].fd);
	free(buf);
	return NULL;
}

static void run_load(void)
{
	struct worker *workers = calloc(opt_threads, sizeof(*workers));
	struct hist *total = calloc(1, sizeof(*total));
	uint64_t messages = 0;
	double secs = 0;

	if (!workers || !total)
		fail("out of memory");
	pthread_barrier_init(&start_line, NULL, opt_threads + 1);
	for (int t = 0; t < opt_threads; t++) {
		struct worker *w = &workers[t];

		w->nconns = opt_conns / opt_threads + (t < opt_conns % opt_threads);
		w->conns = calloc(w->nconns, sizeof(*w->conns));
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (!w->conns || w->epfd < 0)
			fail("worker setup: %s", strerror(errno));
		for (int i = 0; i < w->nconns; i++) {
			struct lconn *c = &w->conns[i];

			c->id = i * opt_threads + t;
			c->tx = malloc((size_t)opt_pipeline * opt_size);
			c->t_sent = calloc(opt_pipeline, sizeof(*c->t_sent));
			if (!c->tx || !c->t_sent)
				fail("out of memory");
		}
		if (pthread_create(&w->tid, NULL, worker_run, w))
			fail("pthread_create failed");
	}
	pthread_barrier_wait(&start_line);
	for (int t = 0; t < opt_threads; t++) {
		struct worker *w = &workers[t];

		pthread_join(w->tid, NULL);
		messages += w->messages;
		if (w->secs > secs)
			secs = w->secs;
		for (int i = 0; i < HIST_BUCKETS; i++)
			total->bucket[i] += w->hist.bucket[i];
		total->count += w->hist.count;
		if (w->hist.max > total->max)
			total->max = w->hist.max;
	}
	if (!messages)
		fail("no message completed in %.1f s", secs);
	printf("echo_load: conns=%d size=%d pipeline=%d threads=%d secs=%.3f messages=%llu "
	       "msgs_per_sec=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n",
	       opt_conns, opt_size, opt_pipeline, opt_threads, secs, (unsigned long long)messages,
	       messages / secs, hist_quantile(total, 0.50) / 1e3, hist_quantile(total, 0.99) / 1e3,
	       hist_quantile(total, 0.999) / 1e3, total->max / 1e3);
}

static void run_idle(void)
{
	int *fds = calloc(opt_conns, sizeof(*fds));
	struct linger rst = {.l_onoff = 1, .l_linger = 0};
	struct timespec tick = {.tv_nsec = 100000000};
	uint64_t deadline;
	int closed = 0;

	if (!fds)
		fail("out of memory");
	for (int i = 0; i < opt_conns; i++)
		fds[i] = connect_loopback(i);
	printf("echo_load: idle: %d connections open\n", opt_conns);
	fflush(stdout);

	deadline = now_ns() + (uint64_t)(opt_secs * 1e9);
	while (now_ns() < deadline)
		nanosleep(&tick, NULL);

	for (int i = 0; i < opt_conns; i++) {
		char c;

		if (recv(fds[i], &c, 1, MSG_DONTWAIT | MSG_PEEK) == 0)
			closed++;
		/* Reset rather than close: thousands of TIME_WAITs would eat ephemeral ports. */
		setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
		close(fds[i]);
	}
	if (closed)
		fail("idle: the server closed %d of %d connections", closed, opt_conns);
	printf("echo_load: idle: conns=%d secs=%.1f closed=0\n", opt_conns, opt_secs);
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s -p PORT [-c CONNS] [-s SIZE] [-P PIPELINE] [-d SECONDS] [-t THREADS]\n"
		"       %s -p PORT -i [-c CONNS] [-d SECONDS]\n"
		"  -c connections (50)  -s message bytes (64)  -P messages in flight per "
		"connection (1)\n"
		"  -d seconds, 0.1..3600 (5)  -t client threads (1)  -i hold idle connections\n",
		prog, prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	int opt;

	while ((opt = getopt(argc, argv, "p:c:s:P:d:t:i")) != -1) {
		switch (opt) {
		case 'p':
			opt_port = atoi(optarg);
			break;
		case 'c':
			opt_conns = atoi(optarg);
			break;
		case 's':
			opt_size = atoi(optarg);
			break;
		case 'P':
			opt_pipeline = atoi(optarg);
			break;
		case 'd':
			opt_secs = atof(optarg);
			break;
		case 't':
			opt_threads = atoi(optarg);
			break;
		case 'i':
			opt_idle = true;
			break;
		default:
			usage(argv[0]);
		}
	}
	if (optind != argc || opt_port <= 0 || opt_port > 65535 || opt_conns <= 0 ||
	    opt_size <= 0 || opt_size > (1 << 24) || opt_pipeline <= 0 || opt_threads <= 0 ||
	    opt_threads > opt_conns || !(opt_secs >= 0.1 && opt_secs <= 3600))
		usage(argv[0]);

	/* Thousands of idle connections need more fds than the usual soft limit of 1024. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (opt_idle) {
		run_idle();
	} else {
		pattern_init();
		run_load();
	}
	return 0;
}
