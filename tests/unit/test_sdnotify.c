/* SPDX-License-Identifier: MIT */
/*
 * sd_notify over real AF_UNIX datagram sockets (path and abstract), the
 * watchdog environment, the supervisor's stall logic on shards whose beats
 * the test moves by hand, and the journal stream's "<N>" log prefixes.
 */
#include "vq_check.h"
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sdnotify.h"
#include "shard.h"

/* Bind a datagram socket at "/path" or "@abstract"; returns the fd. */
static int listen_at(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { 0, 200000 };

	ck_assert_int_ge(fd, 0);
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@')
		sa.sun_path[0] = 0;
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* The next datagram as a string, or "" when none arrives within 200 ms. */
static const char *next_msg(int fd)
{
	static char buf[1024];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = 0;
	return buf;
}

static void abstract_name(char *out, size_t len, const char *what)
{
	snprintf(out, len, "@vq-test-%s-%d", what, (int)getpid());
}

START_TEST(send_to_path)
{
	char path[64] = "/tmp/vq-notify-XXXXXX";
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(path));
	strcat(path, "/sock");
	fd = listen_at(path);
	ck_assert_int_eq(vq_sd_send_to(path, "READY=1"), 0);
	ck_assert_str_eq(next_msg(fd), "READY=1");
	close(fd);
	unlink(path);
	*strrchr(path, '/') = 0;
	rmdir(path);
}
END_TEST

START_TEST(send_to_abstract)
{
	char name[64];
	int fd;

	abstract_name(name, sizeof(name), "abs");
	fd = listen_at(name);
	ck_assert_int_eq(vq_sd_send_to(name, "STATUS=hello\nREADY=1"), 0);
	ck_assert_str_eq(next_msg(fd), "STATUS=hello\nREADY=1");
	close(fd);
}
END_TEST

START_TEST(bad_addresses)
{
	char longname[200];

	ck_assert_int_eq(vq_sd_send_to("relative/sock", "x"), -EINVAL);
	ck_assert_int_eq(vq_sd_send_to("@", "x"), -EINVAL);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = 0;
	ck_assert_int_eq(vq_sd_send_to(longname, "x"), -EINVAL);
	/* Nobody listening: the error comes back as a value. */
	ck_assert_int_eq(vq_sd_send_to("@vq-test-nobody-listens-here", "x"), -ECONNREFUSED);
}
END_TEST

START_TEST(inactive_without_socket)
{
	unsetenv("NOTIFY_SOCKET");
	setenv("WATCHDOG_USEC", "2000000", 1);
	ck_assert_int_eq(vq_sd_init(), 0);
	ck_assert(!vq_sd_active());
	ck_assert_uint_eq(vq_sd_watchdog_ns(), 0);
	ck_assert_uint_eq(vq_sd_max_wait_ns(), 0); /* no supervisor: shards may sleep forever */
	ck_assert_int_eq(vq_sd_notifyf("READY=1"), 0);
}
END_TEST

START_TEST(env_and_watchdog)
{
	char name[64], pid[32];
	int fd;

	abstract_name(name, sizeof(name), "env");
	fd = listen_at(name);
	setenv("NOTIFY_SOCKET", name, 1);
	setenv("WATCHDOG_USEC", "2000000", 1);
	unsetenv("WATCHDOG_PID");
	ck_assert_int_eq(vq_sd_init(), 0);
	ck_assert(vq_sd_active());
	ck_assert_uint_eq(vq_sd_watchdog_ns(), 2000000000ull);
	ck_assert_uint_eq(vq_sd_max_wait_ns(), 250000000ull); /* tick 500 ms: two turns per tick */
	ck_assert_int_eq(vq_sd_notifyf("STATUS=%d shards", 3), 0);
	ck_assert_str_eq(next_msg(fd), "STATUS=3 shards");

	/* A watchdog meant for another process (WATCHDOG_PID) is not ours. */
	snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_int_eq(vq_sd_init(), 0);
	ck_assert_uint_eq(vq_sd_watchdog_ns(), 0);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	setenv("WATCHDOG_USEC", "400000", 1);
	ck_assert_int_eq(vq_sd_init(), 0);
	ck_assert_uint_eq(vq_sd_watchdog_ns(), 400000000ull);
	ck_assert_uint_eq(vq_sd_max_wait_ns(), 50000000ull); /* tick 100 ms */
	setenv("WATCHDOG_USEC", "30000000", 1);
	ck_assert_int_eq(vq_sd_init(), 0);
	ck_assert_uint_eq(vq_sd_max_wait_ns(), 250000000ull); /* tick 1 s, turns capped at 250 ms */
	vq_sd_fini();
	close(fd);
}
END_TEST

START_TEST(beats)
{
	uint64_t last[3] = { 0, 0, 0 }, now[3] = { 1, 1, 1 };

	ck_assert_int_eq(vq_sd_beats_check(now, last, 3), -1);
	now[0] = 2, now[2] = 2;
	ck_assert_int_eq(vq_sd_beats_check(now, last, 3), 1);
	ck_assert_uint_eq(last[1], 1);
	now[0] = 3, now[1] = VQ_SD_BEAT_DONE, now[2] = 3; /* shard 1 ended: not a stall */
	ck_assert_int_eq(vq_sd_beats_check(now, last, 3), -1);
	now[0] = 4;
	ck_assert_int_eq(vq_sd_beats_check(now, last, 3), 2);
}
END_TEST

/* The supervisor on two hand-made shards: pings while both beat, silence when one stalls. */
START_TEST(supervisor)
{
	struct vq_shard *sh = calloc(2, sizeof(*sh));
	struct vq_sd_watch w;
	char name[64];
	uint64_t t = 1000000000ull, half = 500000000ull;
	int fd;

	abstract_name(name, sizeof(name), "sup");
	fd = listen_at(name);
	setenv("NOTIFY_SOCKET", name, 1);
	setenv("WATCHDOG_USEC", "1000000", 1);
	unsetenv("WATCHDOG_PID");
	ck_assert_int_eq(vq_sd_init(), 0);
	for (int i = 0; i < 2; i++) {
		sh[i].drv.ops = &vq_uring_driver;
		strcpy(sh[i].drv.features, "sq=8");
	}
	sh[1].live_conns = 5;
	ck_assert_int_eq(vq_sd_watch_init(&w, sh, 2, 5000000000ull), 0);

	ck_assert_uint_eq(vq_sd_tick(&w, t), 250000000ull); /* a quarter of WATCHDOG_USEC */
	ck_assert_str_eq(next_msg(fd), "STATUS=2 shards, 5 connections, driver uring (sq=8)");
	ck_assert_str_eq(next_msg(fd), "WATCHDOG=1");

	/* A tick (not half an interval) later no ping is due yet; at half the interval one is. */
	sh[0].heartbeat = 6;
	sh[1].heartbeat = 8;
	vq_sd_tick(&w, t += half / 2);
	ck_assert_str_eq(next_msg(fd), "");
	sh[0].heartbeat = 7;
	sh[1].heartbeat = 9;
	vq_sd_tick(&w, t += half / 2);
	ck_assert_str_eq(next_msg(fd), "WATCHDOG=1");

	sh[0].heartbeat = 8; /* shard 1 stalls */
	vq_sd_tick(&w, t += half);
	ck_assert_str_eq(next_msg(fd), "");
	ck_assert_int_eq(w.stalled, 1);

	sh[0].heartbeat = 9;
	sh[1].heartbeat = 10; /* it recovers */
	vq_sd_tick(&w, t += half);
	ck_assert_str_eq(next_msg(fd), "WATCHDOG=1");

	vq_sd_stopping();
	ck_assert_str_eq(next_msg(fd), "STOPPING=1\nSTATUS=draining connections, then stopping");
	sh[0].heartbeat = 10;
	sh[1].heartbeat = VQ_SD_BEAT_DONE;
	vq_sd_tick(&w, t += half);
	ck_assert_str_eq(next_msg(fd),
			 "STATUS=stopping: 2 shards, 5 connections, driver uring (sq=8)");
	ck_assert_str_eq(next_msg(fd), "WATCHDOG=1");
	ck_assert_str_eq(next_msg(fd), "EXTEND_TIMEOUT_USEC=750000"); /* three ticks */

	/* A drain stuck past drain_timeout + grace gets no more time. */
	sh[0].heartbeat = 11;
	vq_sd_tick(&w, t += 20000000000ull);
	ck_assert_str_eq(next_msg(fd), "WATCHDOG=1");
	ck_assert_str_eq(next_msg(fd), "");

	vq_sd_watch_fini(&w);
	vq_sd_fini();
	free(sh);
	close(fd);
}
END_TEST

/* Point stderr at a temp file; JOURNAL_STREAM names it (or not). Returns the fd to read. */
static int capture_stderr(bool as_journal)
{
	char path[] = "/tmp/vq-log-XXXXXX", js[64];
	int fd = mkstemp(path);
	struct stat st;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	ck_assert_int_eq(fstat(fd, &st), 0);
	snprintf(js, sizeof(js), "%lu:%lu", (unsigned long)st.st_dev,
		 (unsigned long)st.st_ino + (as_journal ? 0 : 1));
	setenv("JOURNAL_STREAM", js, 1);
	return fd;
}

static const char *captured(int fd)
{
	static char buf[512];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = 0;
	return buf;
}

START_TEST(journal_prefixes)
{
	int fd = capture_stderr(true);

	vq_log_set_level(VQ_LOG_DEBUG);
	vq_notice("ready");
	vq_err("broken %d", 1);
	vq_debug("detail");
	ck_assert_str_eq(captured(fd), "<5>ready\n<3>broken 1\n<7>detail\n");
}
END_TEST

START_TEST(plain_when_not_journal)
{
	int fd = capture_stderr(false); /* JOURNAL_STREAM set, but for another file */

	vq_log_set_level(VQ_LOG_INFO);
	vq_notice("ready");
	vq_debug("hidden");
	ck_assert_str_eq(captured(fd), "notice: ready\n");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("sdnotify");
	TCase *t = tcase_create("protocol");

	tcase_add_test(t, send_to_path);
	tcase_add_test(t, send_to_abstract);
	tcase_add_test(t, bad_addresses);
	tcase_add_test(t, inactive_without_socket);
	tcase_add_test(t, env_and_watchdog);
	suite_add_tcase(s, t);
	t = tcase_create("supervisor");
	tcase_add_test(t, beats);
	tcase_add_test(t, supervisor);
	suite_add_tcase(s, t);
	t = tcase_create("journal stream");
	tcase_add_test(t, journal_prefixes);
	tcase_add_test(t, plain_when_not_journal);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return vq_check_run(suite());
}
