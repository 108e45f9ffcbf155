/* SPDX-License-Identifier: MIT */
/*
 * kv_load: a memcached text-protocol load generator for the veloq-kv benchmark.
 * One thread, epoll, C connections each keeping D requests in flight (closed
 * loop per connection). A request is a get of M keys (probability G) or a set;
 * every request's latency, from its send to the end of its reply, goes into a
 * histogram with 1 µs buckets below 10 ms. Prints one line of results.
 *
 * With -r RATE the load is offered at RATE requests per second in all instead:
 * request i is due at start + i / RATE and goes out on the next connection
 * with fewer than D in flight; its latency counts from when it was due, so a
 * server that falls behind is charged for the wait.
 *
 *   kv_load -p PORT [-c conns] [-d depth] [-t secs] [-k keys] [-v value bytes]
 *           [-g get ratio] [-m keys per get] [-r rate] [-C cpu] [-P server pid]
 *
 * With -P, the server's CPU time (utime + stime from /proc/PID/stat) over the
 * measured window is divided by the requests completed in it: cpu_us_per_req.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 100000 /* 1 µs buckets up to 100 ms: 1000 connections x 4 wait ~10 ms */
#define MAXDEPTH 256

struct conn {
	int fd;
	char *out;
	size_t nout, offout;
	char in[1 << 20];
	size_t nin;
	uint64_t sent_ns[MAXDEPTH];
	uint8_t is_get[MAXDEPTH];
	unsigned head, count;   /* FIFO of outstanding requests */
	/* reply parser */
	size_t skip;            /* value bytes (+2) still to skip */
	unsigned values;        /* VALUEs of the reply being parsed, counted at its END */
};

static int port = 11211, nconns = 16, depth = 1, secs = 5, nkeys = 10000, vsize = 32, mget = 1;
static double get_ratio = 0.9, rate;
static uint64_t hist[HIST_US + 1], done, gets, sets, errors, values;
static char *value;
static uint64_t rng = 88172645463325252ull;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void out_add(struct conn *c, const char *p, size_t n)
{
	c->out = realloc(c->out, c->nout + n);
	memcpy(c->out + c->nout, p, n);
	c->nout += n;
}

static void queue_request(struct conn *c, uint64_t t)
{
	char line[8192];
	int n;
	unsigned slot = (c->head + c->count) % MAXDEPTH;
	int is_get = (double)(rnd() % 1000000) / 1e6 < get_ratio;

	if (is_get) {
		n = snprintf(line, sizeof(line), "get");
		for (int i = 0; i < mget; i++)
			n += snprintf(line + n, sizeof(line) - (size_t)n, " key:%08llu",
				      (unsigned long long)(rnd() % (uint64_t)nkeys));
		n += snprintf(line + n, sizeof(line) - (size_t)n, "\r\n");
		out_add(c, line, (size_t)n);
	} else {
		n = snprintf(line, sizeof(line), "set key:%08llu 0 0 %d\r\n",
			     (unsigned long long)(rnd() % (uint64_t)nkeys), vsize);
		out_add(c, line, (size_t)n);
		out_add(c, value, (size_t)vsize + 2);
	}
	c->sent_ns[slot] = t;
	c->is_get[slot] = (uint8_t)is_get;
	c->count++;
}

static void complete(struct conn *c, uint64_t t)
{
	uint64_t us = (t - c->sent_ns[c->head]) / 1000;

	hist[us < HIST_US ? us : HIST_US]++;
	if (c->is_get[c->head]) {
		gets++;
		values += c->values; /* whole replies only: none split by the warm-up reset */
	} else {
		sets++;
	}
	c->values = 0;
	c->head = (c->head + 1) % MAXDEPTH;
	c->count--;
	done++;
}

/* Consume whole replies from c->in; returns how many requests completed. */
static void parse(struct conn *c, uint64_t t)
{
	size_t pos = 0;

	for (;;) {
		char *nl;

		if (c->skip) {
			size_t take = c->nin - pos < c->skip ? c->nin - pos : c->skip;

			pos += take;
			c->skip -= take;
			if (c->skip)
				break;
		}
		nl = memchr(c->in + pos, '\n', c->nin - pos);
		if (!nl)
			break;
		if (!strncmp(c->in + pos, "VALUE ", 6)) {
			unsigned flags, len;
			char key[300];

			if (sscanf(c->in + pos, "VALUE %299s %u %u", key, &flags, &len) != 3)
				errors++;
			c->skip = len + 2;
			c->values++;
		} else if (!strncmp(c->in + pos, "END\r\n", 5) ||
			   !strncmp(c->in + pos, "STORED\r\n", 8)) {
			complete(c, t);
		} else {
			errors++;
			complete(c, t);
		}
		pos = (size_t)(nl - c->in) + 1;
	}
	memmove(c->in, c->in + pos, c->nin - pos);
	c->nin -= pos;
}

/* Send what queue_request() built; the socket buffer always has room for it here. */
static int flush(struct conn *c)
{
	ssize_t w;

	if (!c->nout)
		return 0;
	w = write(c->fd, c->out, c->nout);
	if (w != (ssize_t)c->nout) {
		fprintf(stderr, "short write\n");
		return 1;
	}
	c->nout = 0;
	return 0;
}

static int connect_one(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void preload(void)
{
	int fd = connect_one();
	char line[128], buf[65536];
	size_t stored = 0, got = 0;

	for (int i = 0; i < nkeys; i++) {
		int n = snprintf(line, sizeof(line), "set key:%08d 0 0 %d noreply\r\n", i, vsize);

		if (write(fd, line, (size_t)n) != n || write(fd, value, (size_t)vsize + 2) != vsize + 2) {
			perror("preload");
			exit(1);
		}
		stored++;
	}
	if (write(fd, "version\r\n", 9) != 9)
		exit(1);
	while (got < 1) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			exit(1);
		got += memchr(buf, '\n', (size_t)n) != NULL;
	}
	close(fd);
	(void)stored;
}

/* utime + stime of a process, in microseconds. */
static double proc_cpu_us(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return 0;
	}
	fclose(f);
	p = strrchr(buf, ')'); /* the name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static uint64_t pct(double p, uint64_t total)
{
	uint64_t want = (uint64_t)(p * (double)total), acc = 0;

	for (int i = 0; i <= HIST_US; i++) {
		acc += hist[i];
		if (acc > want)
			return (uint64_t)i;
	}
	return HIST_US;
}

int main(int argc, char **argv)
{
	int opt, ep, cpu = -1, pid = 0;
	double cpu0 = 0, cpu1 = 0;
	struct conn *conns;
	uint64_t start, end, measured_from;
	struct epoll_event ev[64];
	uint64_t issued = 0;
	int next_conn = 0;

	while ((opt = getopt(argc, argv, "p:c:d:t:k:v:g:m:r:C:P:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'c': nconns = atoi(optarg); break;
		case 'd': depth = atoi(optarg); break;
		case 't': secs = atoi(optarg); break;
		case 'k': nkeys = atoi(optarg); break;
		case 'v': vsize = atoi(optarg); break;
		case 'g': get_ratio = atof(optarg); break;
		case 'm': mget = atoi(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'C': cpu = atoi(optarg); break;
		case 'P': pid = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s -p port [-c conns] [-d depth] [-t secs] [-k keys] "
					"[-v bytes] [-g get ratio] [-m keys per get] [-r rate] [-C cpu] "
					"[-P pid]\n", argv[0]);
			return 2;
		}
	}
	if (depth < 1 || depth > MAXDEPTH / 2)
		depth = 1;
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	value = malloc((size_t)vsize + 2);
	memset(value, 'v', (size_t)vsize);
	memcpy(value + vsize, "\r\n", 2);
	preload();

	conns = calloc((size_t)nconns, sizeof(*conns));
	ep = epoll_create1(0);
	start = now_ns();
	for (int i = 0; i < nconns; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = &conns[i] };

		conns[i].fd = connect_one();
		fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
		epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &e);
		for (int d = 0; !rate && d < depth; d++)
			queue_request(&conns[i], start);
		if (flush(&conns[i]))
			return 1;
	}
	start = now_ns();
	/* A quarter-second warm-up is not counted. */
	measured_from = start + 250000000ull;
	end = measured_from + (uint64_t)secs * 1000000000ull;
	for (int warm = 1;;) {
		struct timespec wait = { 0, 100000000 };
		int n;
		uint64_t t;

		if (rate) {
			uint64_t due = start + (uint64_t)((double)issued * 1e9 / rate);

			t = now_ns();
			wait.tv_nsec = due > t ? (long)(due - t) : 0;
			if (wait.tv_nsec > 100000000)
				wait.tv_nsec = 100000000;
		}
		n = epoll_pwait2(ep, ev, 64, &wait, NULL);
		t = now_ns();

		if (warm && t >= measured_from) {
			warm = 0;
			memset(hist, 0, sizeof(hist));
			done = gets = sets = errors = values = 0;
			if (pid)
				cpu0 = proc_cpu_us(pid);
		}
		if (t >= end) {
			if (pid)
				cpu1 = proc_cpu_us(pid);
			break;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;
			ssize_t r = read(c->fd, c->in + c->nin, sizeof(c->in) - c->nin);

			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				fprintf(stderr, "server closed a connection\n");
				return 1;
			}
			c->nin += (size_t)r;
			parse(c, t);
			/* Closed loop: refill to the pipeline depth, one write. */
			while (!rate && (int)c->count < depth)
				queue_request(c, t);
			if (flush(c))
				return 1;
		}
		/* Offered load: every request now due, round robin over connections with room. */
		for (int tries = 0; rate && tries < nconns; tries++) {
			struct conn *c = &conns[next_conn];
			uint64_t due;

			next_conn = (next_conn + 1) % nconns;
			while ((int)c->count < depth &&
			       (due = start + (uint64_t)((double)issued * 1e9 / rate)) <= t) {
				queue_request(c, due);
				issued++;
				tries = 0;
			}
			if (flush(c))
				return 1;
		}
	}
	printf("requests=%llu secs=%d rps=%.0f gets=%llu sets=%llu values=%llu errors=%llu "
	       "p50_us=%llu p99_us=%llu p999_us=%llu cpu_us_per_req=%.2f\n",
	       (unsigned long long)done, secs, (double)done / secs, (unsigned long long)gets,
	       (unsigned long long)sets, (unsigned long long)values, (unsigned long long)errors,
	       (unsigned long long)pct(0.5, done), (unsigned long long)pct(0.99, done),
	       (unsigned long long)pct(0.999, done), done ? (cpu1 - cpu0) / (double)done : 0.0);
	return errors ? 1 : 0;
}
