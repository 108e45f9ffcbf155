/* SPDX-License-Identifier: MIT */
/*
 * veloq-kv's protocol, store and sessions, driven by hand: one shard, no
 * sockets, time set by the test. Replies are compared byte for byte with what
 * memcached sends.
 */
#include "vq_check.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_int.h"
#include "vq_version.h"

struct out {
	char *p;
	size_t len, cap;
	int closed;
};

static int out_write(void *ctx, const void *d, size_t n)
{
	struct out *o = ctx;

	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->p = realloc(o->p, o->cap);
	}
	memcpy(o->p + o->len, d, n);
	o->len += n;
	o->p[o->len] = 0;
	return 0;
}

static void out_close(void *ctx)
{
	((struct out *)ctx)->closed++;
}

static struct kv_config cfg = { .memory = 1 << 20, .max_value = 1 << 20, .max_pending = 64 };
static struct kv_shard ks;
static struct out out;
static struct kv_sess *sess;

static void setup(void)
{
	struct kv_io io = { .write = out_write, .close = out_close, .ctx = &out };

	ck_assert_int_eq(kv_shard_init(&ks, NULL, 0, 1, &cfg), 0);
	ks.now = 1700000000;
	memset(&out, 0, sizeof(out));
	sess = kv_sess_new(&ks, &io);
	ck_assert_ptr_nonnull(sess);
}

static void teardown(void)
{
	kv_sess_closed(sess);
	kv_shard_fini(&ks);
	free(out.p);
	cfg.memory = 1 << 20;
	cfg.max_value = 1 << 20;
}

static void feed(const char *s)
{
	kv_sess_feed(sess, s, strlen(s));
}

/* Feed a request and check the whole reply it produced. */
static void expect(const char *req, const char *rep)
{
	size_t before = out.len;

	kv_sess_feed(sess, req, strlen(req));
	ck_assert_msg(out.len - before == strlen(rep) && !memcmp(out.p + before, rep, strlen(rep)),
		      "request %s: expected [%s], got [%.*s]", req, rep, (int)(out.len - before),
		      out.p ? out.p + before : "");
}

START_TEST(test_set_get)
{
	expect("set a 5 0 3\r\nabc\r\n", "STORED\r\n");
	expect("get a\r\n", "VALUE a 5 3\r\nabc\r\nEND\r\n");
	expect("get nope\r\n", "END\r\n");
	expect("get a nope a\r\n", "VALUE a 5 3\r\nabc\r\nVALUE a 5 3\r\nabc\r\nEND\r\n");
	expect("set a 4294967295 0 0\r\n\r\n", "STORED\r\n");
	expect("get a\r\n", "VALUE a 4294967295 0\r\n\r\nEND\r\n");
	/* bare \n line endings are accepted like memcached does */
	expect("set b 0 0 1\nx\r\nget b\n", "STORED\r\nVALUE b 0 1\r\nx\r\nEND\r\n");
}
END_TEST

START_TEST(test_gets_cas)
{
	uint64_t cas;
	char req[128], rep[128];

	expect("set k 0 0 1\r\n1\r\n", "STORED\r\n");
	feed("gets k\r\n");
	ck_assert_int_eq(sscanf(out.p, "STORED\r\nVALUE k 0 1 %lu", &cas), 1);
	snprintf(req, sizeof(req), "cas k 7 0 1 %lu\r\n2\r\n", cas + 1);
	expect(req, "EXISTS\r\n");
	snprintf(req, sizeof(req), "cas k 7 0 1 %lu\r\n2\r\n", cas);
	expect(req, "STORED\r\n");
	expect(req, "EXISTS\r\n");
	expect("cas nokey 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n");
	snprintf(req, sizeof(req), "gets k\r\n");
	snprintf(rep, sizeof(rep), "VALUE k 7 1 %lu\r\n2\r\nEND\r\n", cas + 1);
	expect(req, rep);
	expect("cas k 0 0 1 1 noreply\r\nx\r\n", "");
	expect("cas k 0 0 1\r\nx\r\n", "ERROR\r\nERROR\r\n");
}
END_TEST

START_TEST(test_add_replace_append_prepend)
{
	expect("add x 1 0 1\r\na\r\n", "STORED\r\n");
	expect("add x 1 0 1\r\nb\r\n", "NOT_STORED\r\n");
	expect("replace y 1 0 1\r\nb\r\n", "NOT_STORED\r\n");
	expect("replace x 2 0 1\r\nb\r\n", "STORED\r\n");
	expect("append x 9 0 2\r\ncd\r\n", "STORED\r\n");
	expect("prepend x 9 0 2\r\n01\r\n", "STORED\r\n");
	expect("get x\r\n", "VALUE x 2 5\r\n01bcd\r\nEND\r\n");
	expect("append nope 0 0 1\r\na\r\n", "NOT_STORED\r\n");
	expect("prepend nope 0 0 1\r\na\r\n", "NOT_STORED\r\n");
}
END_TEST

START_TEST(test_delete_touch)
{
	expect("set d 0 0 1\r\n1\r\n", "STORED\r\n");
	expect("delete d\r\n", "DELETED\r\n");
	expect("delete d\r\n", "NOT_FOUND\r\n");
	expect("set d 0 0 1\r\n1\r\n", "STORED\r\n");
	expect("delete d 0\r\n", "DELETED\r\n");
	expect("delete d 5\r\n",
	       "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
	expect("set d 0 0 1 noreply\r\n1\r\ndelete d noreply\r\nget d\r\n", "END\r\n");
	expect("touch d 10\r\n", "NOT_FOUND\r\n");
	expect("set d 0 100 1\r\n1\r\n", "STORED\r\n");
	expect("touch d 10\r\n", "TOUCHED\r\n");
	ks.now += 11;
	expect("get d\r\n", "END\r\n");
	expect("touch d x\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
}
END_TEST

START_TEST(test_incr_decr)
{
	expect("set n 0 0 2\r\n10\r\n", "STORED\r\n");
	expect("incr n 5\r\n", "15\r\n");
	expect("decr n 100\r\n", "0\r\n");
	expect("set n 0 0 20\r\n18446744073709551615\r\n", "STORED\r\n");
	expect("incr n 2\r\n", "1\r\n"); /* wraps at 2^64 */
	expect("get n\r\n", "VALUE n 0 1\r\n1\r\nEND\r\n");
	expect("incr n 18446744073709551615\r\n", "0\r\n");
	expect("incr nope 1\r\n", "NOT_FOUND\r\n");
	expect("decr nope 1\r\n", "NOT_FOUND\r\n");
	expect("set s 0 0 2\r\nab\r\n", "STORED\r\n");
	expect("incr s 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
	expect("incr n -1\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n");
	expect("incr n 18446744073709551616\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n");
	expect("incr n 1 noreply\r\n", "");
	expect("get n\r\n", "VALUE n 0 1\r\n1\r\nEND\r\n");
}
END_TEST

#define NON_NUMERIC "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"

/* What counts as a number to incr/decr: what memcached's strtoull takes, within the value. */
START_TEST(test_incr_number_forms)
{
	expect("set n 0 0 3\r\n 12\r\nincr n 1\r\n", "STORED\r\n13\r\n");
	expect("get n\r\n", "VALUE n 0 2\r\n13\r\nEND\r\n"); /* no padding, see docs/KV.md */
	expect("set n 0 0 3\r\n12 \r\nincr n 1\r\n", "STORED\r\n13\r\n");
	expect("set n 0 0 4\r\n100 \r\ndecr n 1\r\n", "STORED\r\n99\r\n");
	expect("set n 0 0 21\r\n000000000000000000001\r\nincr n 1\r\n", "STORED\r\n2\r\n");
	expect("set n 0 0 25\r\n0000000000000000000000012\r\ndecr n 1\r\n", "STORED\r\n11\r\n");
	expect("set n 0 0 3\r\n+12\r\nincr n 1\r\n", "STORED\r\n13\r\n");
	expect("set n 0 0 4\r\n\t\v12\r\nincr n 1\r\n", "STORED\r\n13\r\n");
	expect("set n 0 0 3\r\n12\t\r\nincr n 1\r\n", "STORED\r\n13\r\n");
	/* after the digits and a space, the rest is not looked at */
	expect("set n 0 0 6\r\n12 abc\r\nincr n 1\r\n", "STORED\r\n13\r\n");
	expect("set n 0 0 21\r\n18446744073709551615 \r\nincr n 1\r\n", "STORED\r\n0\r\n");
	/* everything else is not a number */
	expect("set n 0 0 20\r\n18446744073709551616\r\nincr n 1\r\n", "STORED\r\n" NON_NUMERIC);
	expect("set n 0 0 3\r\n12a\r\nincr n 1\r\n", "STORED\r\n" NON_NUMERIC);
	expect("set n 0 0 3\r\n0x1\r\nincr n 1\r\n", "STORED\r\n" NON_NUMERIC);
	expect("set n 0 0 3\r\n+ 1\r\nincr n 1\r\n", "STORED\r\n" NON_NUMERIC);
	expect("set n 0 0 0\r\n\r\nincr n 1\r\n", "STORED\r\n" NON_NUMERIC);
	/* all blanks: memcached reads on past the value here; the value alone is no number */
	expect("set n 0 0 2\r\n  \r\nincr n 1\r\n", "STORED\r\n" NON_NUMERIC);
	/* no sign but "+": memcached lets "-0" through, a quirk not kept */
	expect("set n 0 0 2\r\n-0\r\ndecr n 1\r\n", "STORED\r\n" NON_NUMERIC);
	/* the delta is read the same way as other numbers on the line */
	expect("set n 0 0 2\r\n12\r\nincr n +5\r\n", "STORED\r\n17\r\n");
	expect("incr n 5x\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n");
}
END_TEST

START_TEST(test_expiry)
{
	char req[64];

	expect("set e 0 10 1\r\nx\r\n", "STORED\r\n");
	ks.now += 9;
	expect("get e\r\n", "VALUE e 0 1\r\nx\r\nEND\r\n");
	ks.now += 1;
	expect("get e\r\n", "END\r\n");
	expect("set e 0 -1 1\r\nx\r\n", "STORED\r\n");
	expect("get e\r\n", "END\r\n");
	/* beyond 30 days: an absolute unix time */
	snprintf(req, sizeof(req), "set e 0 %ld 1\r\nx\r\n", (long)ks.now + 5);
	expect(req, "STORED\r\n");
	expect("get e\r\n", "VALUE e 0 1\r\nx\r\nEND\r\n");
	ks.now += 5;
	expect("get e\r\n", "END\r\n");
	snprintf(req, sizeof(req), "set e 0 %ld 1\r\nx\r\n", (long)ks.now - 5);
	expect(req, "STORED\r\n");
	expect("get e\r\n", "END\r\n");
	expect("set e 0 2592000 1\r\nx\r\n", "STORED\r\n");
	ks.now += 2591999;
	expect("get e\r\n", "VALUE e 0 1\r\nx\r\nEND\r\n");
	/* gat sets a new expiry while reading */
	expect("gat 5 e\r\n", "VALUE e 0 1\r\nx\r\nEND\r\n");
	ks.now += 5;
	expect("gats 5 e\r\n", "END\r\n");
	expect("gat x e\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
	expect("gat 1\r\n", "END\r\n");
}
END_TEST

START_TEST(test_flush_all)
{
	expect("set f 0 0 1\r\nx\r\n", "STORED\r\n");
	expect("flush_all\r\n", "OK\r\n");
	expect("get f\r\n", "END\r\n");
	expect("set f 0 0 1\r\nx\r\n", "STORED\r\n");
	expect("get f\r\n", "VALUE f 0 1\r\nx\r\nEND\r\n");
	expect("flush_all 10\r\n", "OK\r\n");
	ks.now += 9;
	expect("get f\r\n", "VALUE f 0 1\r\nx\r\nEND\r\n");
	ks.now += 1;
	expect("get f\r\n", "END\r\n");
	expect("flush_all noreply\r\n", "");
	expect("flush_all 0 noreply\r\n", "");
	expect("flush_all -1\r\n", "OK\r\n");
	expect("flush_all x\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
}
END_TEST

/* The flush time reads like an item's expiry: past 30 days it is a unix time. */
START_TEST(test_flush_all_times)
{
	char req[64];

	expect("set f 0 0 1\r\nx\r\n", "STORED\r\n");
	snprintf(req, sizeof(req), "flush_all %ld\r\n", (long)ks.now + 100);
	expect(req, "OK\r\n");
	ks.now += 99;
	expect("get f\r\n", "VALUE f 0 1\r\nx\r\nEND\r\n");
	ks.now += 1;
	expect("get f\r\n", "END\r\n");
	/* a unix time already past flushes now */
	expect("set f 0 0 1\r\nx\r\n", "STORED\r\n");
	snprintf(req, sizeof(req), "flush_all %ld noreply\r\n", (long)ks.now - 100);
	expect(req, "");
	expect("get f\r\n", "END\r\n");
	/* exactly 30 days is still a delay */
	expect("set f 0 0 1\r\nx\r\n", "STORED\r\n");
	expect("flush_all 2592000\r\n", "OK\r\n");
	ks.now += 2591999;
	expect("get f\r\n", "VALUE f 0 1\r\nx\r\nEND\r\n");
	/* a later flush_all replaces a pending one; 0, none and negative mean now */
	expect("flush_all 0\r\n", "OK\r\n");
	expect("get f\r\n", "END\r\n");
	expect("set f 0 0 1\r\nx\r\nflush_all -5\r\nget f\r\n", "STORED\r\nOK\r\nEND\r\n");
	expect("set f 0 0 1\r\nx\r\nflush_all\r\nget f\r\n", "STORED\r\nOK\r\nEND\r\n");
	ck_assert_int_eq(ks.store.flush_at, 0);
	/* the token after the time is the noreply place: anything else there is ignored */
	expect("flush_all 0 x\r\n", "OK\r\n");
	expect("flush_all +0\r\n", "OK\r\n");
	expect("flush_all noreply 10\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
	expect("flush_all x noreply\r\n", "");
	expect("flush_all 1 2 3\r\n", "ERROR\r\n");
}
END_TEST

START_TEST(test_misc_commands)
{
	expect("version\r\n", "VERSION 1.6.21-veloq-" VQ_VERSION "\r\n");
	expect("version foo\r\n", "VERSION 1.6.21-veloq-" VQ_VERSION "\r\n");
	expect("verbosity 1\r\n", "OK\r\n");
	expect("verbosity 1 noreply\r\n", "");
	expect("verbosity\r\n", "ERROR\r\n");
	expect("verbosity noreply\r\n", "");
	expect("verbosity 1 2 3\r\n", "ERROR\r\n");
	expect("bogus\r\n", "ERROR\r\n");
	expect("\r\n", "ERROR\r\n");
	expect("GET a\r\n", "ERROR\r\n");
	expect("get\r\n", "ERROR\r\n");
	expect("stats detail\r\n", "ERROR\r\n");
	feed("stats\r\n");
	ck_assert_ptr_nonnull(strstr(out.p, "STAT curr_items 0\r\n"));
	ck_assert_ptr_nonnull(strstr(out.p, "STAT shard0:evictions 0\r\n"));
	ck_assert(out.len >= 5 && !memcmp(out.p + out.len - 5, "END\r\n", 5));
	ck_assert_int_eq(out.closed, 0);
	expect("quit\r\nget a\r\n", "");
	ck_assert_int_eq(out.closed, 1);
}
END_TEST

START_TEST(test_bad_keys)
{
	char key[300], req[400];

	memset(key, 'k', sizeof(key));
	snprintf(req, sizeof(req), "set %.250s 0 0 1\r\nx\r\n", key);
	expect(req, "STORED\r\n");
	/* 251 bytes: rejected, and its data block skipped so the stream stays in step */
	snprintf(req, sizeof(req), "set %.251s 0 0 1\r\nx\r\n", key);
	expect(req, "CLIENT_ERROR bad command line format\r\n");
	snprintf(req, sizeof(req), "get %.251s\r\n", key);
	expect(req, "CLIENT_ERROR bad command line format\r\n");
	snprintf(req, sizeof(req), "get a %.251s\r\n", key);
	expect(req, "CLIENT_ERROR bad command line format\r\n");
	expect("set a\x01 0 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\n");
	expect("get a\tb\r\n", "CLIENT_ERROR bad command line format\r\n");
	snprintf(req, sizeof(req), "delete %.251s\r\n", key);
	expect(req, "CLIENT_ERROR bad command line format\r\n");
	expect("get a\r\n", "END\r\n");
}
END_TEST

START_TEST(test_bad_lengths)
{
	expect("set a 0 0 -1\r\n", "CLIENT_ERROR bad command line format\r\n");
	expect("set a 0 0 x\r\n", "CLIENT_ERROR bad command line format\r\n");
	expect("set a x 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	expect("set a 4294967296 0 1\r\n", "CLIENT_ERROR bad command line format\r\n");
	expect("set a 0 0\r\n", "ERROR\r\n");
	/* too many tokens: not a storage command at all, so its data is a command line */
	expect("set a 0 0 1 noreply extra\r\nx\r\n", "ERROR\r\nERROR\r\n");
	/* data longer than declared: commands resume right after <bytes> + 2 */
	expect("set a 0 0 3\r\nabcdef\r\nget a\r\n",
	       "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n");
	/* shorter: the declared bytes run into the next line */
	expect("set a 0 0 5\r\nabc\r\nget a\r\nget a\r\n",
	       "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n");
	/* missing terminator */
	expect("set a 0 0 3\r\nabcXY", "CLIENT_ERROR bad data chunk\r\n");
	expect("\r\nget a\r\n", "ERROR\r\nEND\r\n");
	expect("set a 0 0 3\r\nabc\n\nget a\r\n", "CLIENT_ERROR bad data chunk\r\nEND\r\n");
	expect("get a\r\n", "END\r\n");
}
END_TEST

/*
 * A data block is exactly <bytes> + 2 bytes, whatever they hold; not ending in
 * "\r\n" makes it a bad chunk, and the next command starts right after it
 * (memcached 1.6 does the same; each case here was checked against it).
 */
START_TEST(test_bad_chunk_resync)
{
	expect("set k 0 0 3\r\nabcX\r\nget k\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n");
	expect("set k 0 0 3\r\nabc\rXget k\r\nget k\r\n",
	       "CLIENT_ERROR bad data chunk\r\nEND\r\nEND\r\n");
	expect("set k 0 0 3\r\nabc\nget k\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
	expect("set k 0 0 3\r\nabc\n\rget k\r\n", "CLIENT_ERROR bad data chunk\r\nEND\r\n");
	/* a block that is all command: it is data all the same, and the key stays unset */
	expect("set k 0 0 7\r\nget k\r\n\r\nget k\r\n", "STORED\r\nVALUE k 0 7\r\nget k\r\n\r\nEND\r\n");
	expect("delete k\r\n", "DELETED\r\n");
	expect("set k 0 0 1\r\nxyzget k\r\n", "CLIENT_ERROR bad data chunk\r\nEND\r\n");
	/* the same with the block fed in pieces */
	feed("set k 0 0 4\r\nab");
	feed("cd");
	expect("\n\rget k\r\n", "CLIENT_ERROR bad data chunk\r\nEND\r\n");
	/* a value too large is skipped whole, terminator or not, as memcached does */
	cfg.max_value = 4;
	expect("set k 0 0 5\r\nabcdeXYget k\r\n", "SERVER_ERROR object too large for cache\r\nEND\r\n");
}
END_TEST

/* noreply silences every reply of a command once the line has it, errors included. */
START_TEST(test_noreply_silences_errors)
{
	/* the data block's own errors */
	expect("set k 0 0 3 noreply\r\nabcde\r\nget k\r\n", "ERROR\r\nEND\r\n");
	expect("set k 0 0 3 noreply\r\nabcX\r\nget k\r\n", "ERROR\r\nEND\r\n");
	cfg.max_value = 8;
	expect("set k 0 0 9 noreply\r\n123456789\r\nget k\r\n", "END\r\n");
	expect("append k 0 0 9 noreply\r\n123456789\r\n", "");
	cfg.max_value = 1 << 20;
	ks.store.limit = 200; /* an item of 300 bytes cannot be stored at all */
	expect("set k 0 0 300\r\n", "SERVER_ERROR out of memory storing object\r\n");
	for (int i = 0; i < 30; i++)
		feed("0123456789");
	expect("\r\nset k 0 0 300 noreply\r\n", "");
	for (int i = 0; i < 30; i++)
		feed("0123456789");
	expect("\r\nget k\r\n", "END\r\n");
	ks.store.limit = 1 << 20;
	/* errors in the line itself, once its token count is right */
	expect("set k x 0 1 noreply\r\nx\r\n", "ERROR\r\n");
	expect("set k 0 0 noreply\r\n", "");
	expect("set k 0 0 -1 noreply\r\n", "");
	expect("cas k 0 0 1 noreply\r\nx\r\n", "ERROR\r\n");
	expect("incr k x noreply\r\n", "");
	expect("incr k noreply\r\n", "");
	expect("touch k x noreply\r\n", "");
	expect("delete k 5 noreply\r\n", "");
	expect("delete k x noreply\r\n", "");
	expect("verbosity x noreply\r\n", "");
	/* a line that could not be parsed that far still gets its error */
	expect("set k 0 0 1 noreply extra\r\nx\r\n", "ERROR\r\nERROR\r\n");
	expect("incr k 1 2 noreply\r\n", "ERROR\r\n");
	expect("delete k 0 noreply x\r\n", "ERROR\r\n");
	/* a key that is "noreply" is just a key */
	expect("delete noreply\r\n", "NOT_FOUND\r\n");
	expect("get k\r\n", "END\r\n");
}
END_TEST

/* Wrong token counts are "ERROR", as in memcached; bad tokens are CLIENT_ERROR. */
START_TEST(test_token_counts)
{
	expect("cas k 0 0 abc\r\n", "ERROR\r\n");
	expect("cas k 0 0\r\n", "ERROR\r\n");
	expect("set k 0 0\r\n", "ERROR\r\n");
	expect("add k 0 0\r\n", "ERROR\r\n");
	expect("replace k 0 0\r\n", "ERROR\r\n");
	expect("append k 0 0\r\n", "ERROR\r\n");
	expect("prepend k 0 0\r\n", "ERROR\r\n");
	expect("set k\r\n", "ERROR\r\n");
	expect("set\r\n", "ERROR\r\n");
	expect("set k 0 0 1 2 3 4 5\r\nx\r\n", "ERROR\r\nERROR\r\n");
	expect("cas k 0 0 1 2 noreply extra\r\nx\r\n", "ERROR\r\nERROR\r\n");
	/* the token in the noreply place is ignored when it is not "noreply" */
	expect("set k 0 0 1 extra\r\nx\r\n", "STORED\r\n");
	expect("cas k 0 0 1 2 3\r\nx\r\n", "EXISTS\r\n");
	expect("incr k 1 x\r\n", NON_NUMERIC);
	expect("touch k 1 x\r\n", "TOUCHED\r\n");
	expect("incr k 1 2 3\r\n", "ERROR\r\n");
	expect("touch k 1 2 3\r\n", "ERROR\r\n");
	expect("delete k 1 2 3\r\n", "ERROR\r\n");
	expect("delete k 0 x\r\n",
	       "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
	/* numbers: a "+" and leading zeros as strtol takes them */
	expect("set k +0 0 00001\r\ny\r\nget k\r\n", "STORED\r\nVALUE k 0 1\r\ny\r\nEND\r\n");
	/* verbosity: one level, which must be a number; no level is ERROR */
	expect("verbosity\r\n", "ERROR\r\n");
	expect("verbosity x\r\n", "CLIENT_ERROR bad command line format\r\n");
	expect("verbosity -1\r\n", "CLIENT_ERROR bad command line format\r\n");
	expect("verbosity x y\r\n", "CLIENT_ERROR bad command line format\r\n");
	expect("verbosity noreply x\r\n", "CLIENT_ERROR bad command line format\r\n");
	expect("verbosity 1 x\r\n", "OK\r\n");
	expect("verbosity +1\r\n", "OK\r\n");
	expect("verbosity 99999999999\r\n", "OK\r\n");
	expect("verbosity noreply\r\n", "");
	expect("verbosity 1 2 3\r\n", "ERROR\r\n");
}
END_TEST

START_TEST(test_value_limits)
{
	size_t n = 1 << 20;
	char *big = malloc(n + 64);
	int h;

	ks.store.limit = 4 << 20;
	/* exactly the maximum works, spanning many feeds */
	h = sprintf(big, "set big 0 0 %zu\r\n", n);
	memset(big + h, 'v', n);
	memcpy(big + h + n, "\r\n", 2);
	for (size_t off = 0; off < h + n + 2; off += 16384)
		kv_sess_feed(sess, big + off, h + n + 2 - off < 16384 ? h + n + 2 - off : 16384);
	ck_assert_str_eq(out.p, "STORED\r\n");
	out.len = 0;
	feed("get big\r\n");
	ck_assert_uint_eq(out.len, strlen("VALUE big 0 1048576\r\n") + n + 2 + 5);
	ck_assert(!memcmp(out.p + out.len - 8, "v\r\nEND\r\n", 8));
	out.len = 0;
	/* one more byte: refused, and the data skipped */
	h = sprintf(big, "set big 0 0 %zu\r\n", n + 1);
	kv_sess_feed(sess, big, (size_t)h);
	memset(big, 'w', n + 1);
	memcpy(big + n + 1, "\r\n", 2);
	kv_sess_feed(sess, big, n + 3);
	ck_assert_str_eq(out.p, "SERVER_ERROR object too large for cache\r\n");
	/* as memcached does, a failed set does not leave the old value behind */
	expect("get big\r\n", "END\r\n");
	free(big);
	/* append and prepend may not grow a value past the limit either */
	ks.store.max_value = 8;
	expect("set k 0 0 5\r\nhello\r\n", "STORED\r\n");
	expect("append k 0 0 3\r\nabc\r\n", "STORED\r\n");
	expect("append k 0 0 1\r\nx\r\n", "SERVER_ERROR object too large for cache\r\n");
	expect("prepend k 0 0 1\r\nx\r\n", "SERVER_ERROR object too large for cache\r\n");
	expect("get k\r\n", "VALUE k 0 8\r\nhelloabc\r\nEND\r\n");
}
END_TEST

START_TEST(test_line_too_long)
{
	char line[KV_LINE_MAX + 10];

	memset(line, 'a', sizeof(line));
	memcpy(line, "set ", 4);
	kv_sess_feed(sess, line, sizeof(line));
	ck_assert_str_eq(out.p, "CLIENT_ERROR line too long\r\n");
	ck_assert_int_eq(out.closed, 1);
	expect("get a\r\n", ""); /* nothing more is read */
}
END_TEST

START_TEST(test_line_too_long_in_pieces)
{
	char line[600];
	int i;

	memset(line, 'a', sizeof(line));
	memcpy(line, "get ", 4);
	/* a retrieval line may be longer, but not without bound */
	for (i = 0; i < 2000 && !out.closed; i++)
		kv_sess_feed(sess, line, sizeof(line));
	ck_assert_int_eq(out.closed, 1);
	ck_assert_int_gt(i * 600, KV_GETLINE_MAX);
	ck_assert_int_le(i * 600, KV_GETLINE_MAX + 600);
	ck_assert_str_eq(out.p, "CLIENT_ERROR line too long\r\n");
}
END_TEST

START_TEST(test_long_get_line)
{
	char line[KV_LINE_MAX * 3];
	size_t n = 0;

	expect("set k1 0 0 1\r\n1\r\n", "STORED\r\n");
	n += (size_t)sprintf(line, "get");
	while (n < KV_LINE_MAX * 2)
		n += (size_t)sprintf(line + n, " k1");
	n += (size_t)sprintf(line + n, "\r\n");
	out.len = 0;
	kv_sess_feed(sess, line, n / 2);
	kv_sess_feed(sess, line + n / 2, n - n / 2);
	ck_assert_int_eq(out.closed, 0);
	ck_assert(out.len > 5 && !memcmp(out.p + out.len - 5, "END\r\n", 5));
}
END_TEST

/* A session touching every command; replies are deterministic (no cas values). */
static const char session[] =
	"set a 1 0 3\r\nabc\r\n"
	"get a b\r\n"
	"add a 0 0 1\r\nz\r\n"
	"add b 2 0 2\r\nbb\r\n"
	"replace b 3 0 1\r\nB\r\n"
	"append a 0 0 2\r\nde\r\n"
	"prepend a 0 0 1\r\n_\r\n"
	"get a b\r\n"
	"set n 0 0 2 noreply\r\n41\r\n"
	"incr n 1\r\ndecr n 50\r\n"
	"touch a 100\r\n"
	"gat 0 a\r\n"
	"delete b\r\ndelete b noreply\r\n"
	"bogus command\r\n"
	"set x 0 0 2\r\nxyz\r\n"
	"set y 0 0 -3\r\n"
	"verbosity 0\r\n"
	"set big 0 0 1980\r\n"
	"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
	"8901234567890123456789012345678901234567890123456789012345678901234567890123456789012345"
	"6789012345678901234567890123456789012345678901234567890123456789012345678901234567890123"
	"4567890123456789012345678901234567890123456789012345678901234567890123456789012345678901"
	"2345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
	"8901234567890123456789012345678901234567890123456789012345678901234567890123456789012345"
	"6789012345678901234567890123456789012345678901234567890123456789012345678901234567890123"
	"4567890123456789012345678901234567890123456789012345678901234567890123456789012345678901"
	"2345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
	"8901234567890123456789012345678901234567890123456789012345678901234567890123456789012345"
	"6789012345678901234567890123456789012345678901234567890123456789012345678901234567890123"
	"4567890123456789012345678901234567890123456789012345678901234567890123456789012345678901"
	"2345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
	"8901234567890123456789012345678901234567890123456789012345678901234567890123456789012345"
	"6789012345678901234567890123456789012345678901234567890123456789012345678901234567890123"
	"4567890123456789012345678901234567890123456789012345678901234567890123456789012345678901"
	"2345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
	"8901234567890123456789012345678901234567890123456789012345678901234567890123456789012345"
	"67890123456789012345678901234567890123456789\r\n"
	"get big\r\n"
	"flush_all\r\n"
	"get a n\r\n"
	"quit\r\n";

static char *run_session(const size_t *cuts, size_t ncuts, int *closed)
{
	struct kv_shard k;
	struct out o = { 0 };
	struct kv_io io = { .write = out_write, .close = out_close, .ctx = &o };
	struct kv_sess *s;
	size_t pos = 0, len = sizeof(session) - 1;

	ck_assert_int_eq(kv_shard_init(&k, NULL, 0, 1, &cfg), 0);
	k.now = 1700000000;
	s = kv_sess_new(&k, &io);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;

		kv_sess_feed(s, session + pos, end - pos);
		pos = end;
	}
	kv_sess_closed(s);
	kv_shard_fini(&k);
	*closed = o.closed;
	return o.p;
}

START_TEST(test_every_boundary)
{
	int closed;
	char *whole = run_session(NULL, 0, &closed);
	size_t len = sizeof(session) - 1;

	ck_assert_int_eq(closed, 1);
	ck_assert_ptr_nonnull(strstr(whole, "VALUE a 1 6\r\n_abcde\r\nVALUE b 3 1\r\nB\r\nEND\r\n"));
	ck_assert_ptr_nonnull(strstr(whole, "42\r\n0\r\nTOUCHED\r\n"));
	/* "xyz\r" is the block of "set x 0 0 2", and its "\n" an empty command line */
	ck_assert_ptr_nonnull(strstr(whole, "ERROR\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\n"
					    "CLIENT_ERROR bad command line format\r\nOK\r\n"));
	ck_assert_ptr_nonnull(strstr(whole, "STORED\r\nVALUE big 0 1980\r\n0123"));
	ck_assert_msg(strlen(whole) > 9 && !strcmp(whole + strlen(whole) - 9, "OK\r\nEND\r\n"),
		      "%s", whole);
	/* split in two at every offset */
	for (size_t cut = 1; cut < len; cut++) {
		char *r = run_session(&cut, 1, &closed);

		ck_assert_msg(!strcmp(r, whole), "split at %zu differs", cut);
		ck_assert_int_eq(closed, 1);
		free(r);
	}
	/* and one byte at a time */
	{
		size_t *cuts = malloc(len * sizeof(*cuts));
		char *r;

		for (size_t i = 0; i < len - 1; i++)
			cuts[i] = i + 1;
		r = run_session(cuts, len - 1, &closed);
		ck_assert_str_eq(r, whole);
		free(r);
		free(cuts);
	}
	free(whole);
}
END_TEST

START_TEST(test_store_eviction)
{
	struct kv_store st;
	char key[32];
	int stored = 0;
	int64_t now = 1000;

	ck_assert_int_eq(kv_store_init(&st, 64 * 1024, 1 << 20), 0);
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "key%d", i);
		struct kv_item *it = kv_item_alloc(&st, key, (size_t)n, kv_hash(key, (size_t)n), 0,
						   0, 1000);

		ck_assert_ptr_nonnull(it);
		memset(kv_item_val(it), 'x', 1000);
		memcpy(kv_item_val(it) + 1000, "\r\n", 2);
		ck_assert_int_eq(kv_store_put(&st, KV_SET, it, 0, now), KV_STORED);
		kv_item_put(&st, it);
		stored++;
		ck_assert_uint_le(st.st.bytes, 64 * 1024);
	}
	ck_assert_uint_gt(st.st.evictions, 900);
	ck_assert_uint_eq(st.st.curr_items + st.st.evictions, 1000);
	/* the newest survive, the oldest went */
	ck_assert_ptr_nonnull(kv_store_get(&st, "key999", 6, kv_hash("key999", 6), now, false, 0));
	ck_assert_ptr_null(kv_store_get(&st, "key0", 4, kv_hash("key0", 4), now, false, 0));
	/* larger than the whole limit: refused */
	ck_assert_ptr_null(kv_item_alloc(&st, "k", 1, kv_hash("k", 1), 0, 0, 65 * 1024));
	kv_store_fini(&st);
}
END_TEST

START_TEST(test_store_lent_items)
{
	struct kv_store st;
	struct kv_item *it, *lent;

	ck_assert_int_eq(kv_store_init(&st, 1 << 20, 1 << 20), 0);
	it = kv_item_alloc(&st, "k", 1, kv_hash("k", 1), 0, 0, 1);
	memcpy(kv_item_val(it), "1\r\n", 3);
	kv_store_put(&st, KV_SET, it, 0, 1);
	kv_item_put(&st, it);
	lent = kv_store_get(&st, "k", 1, kv_hash("k", 1), 1, false, 0);
	lent->refs++; /* as a borrower on another shard would hold it */
	ck_assert_int_eq(kv_store_delete(&st, "k", 1, kv_hash("k", 1), 1), KV_DELETED);
	ck_assert_uint_eq(st.st.curr_items, 0);
	ck_assert_uint_gt(st.st.bytes, 0);      /* still lent: still counted */
	ck_assert(!memcmp(kv_item_val(lent), "1\r\n", 3));
	kv_item_put(&st, lent);                 /* the release message */
	ck_assert_uint_eq(st.st.bytes, 0);
	/* Lent memory no eviction can free: an allocation that cannot fit fails
	 * without emptying the rest of the cache. */
	lent = kv_item_alloc(&st, "big", 3, kv_hash("big", 3), 0, 0, 700 << 10);
	kv_store_put(&st, KV_SET, lent, 0, 1); /* the caller's reference stays: lent */
	ck_assert_int_eq(kv_store_delete(&st, "big", 3, kv_hash("big", 3), 1), KV_DELETED);
	for (int i = 0; i < 10; i++) {
		char k[8];

		snprintf(k, sizeof(k), "s%d", i);
		it = kv_item_alloc(&st, k, strlen(k), kv_hash(k, strlen(k)), 0, 0, 1);
		kv_store_put(&st, KV_SET, it, 0, 1);
		kv_item_put(&st, it);
	}
	ck_assert_ptr_null(kv_item_alloc(&st, "new", 3, kv_hash("new", 3), 0, 0, 400 << 10));
	ck_assert_uint_eq(st.st.curr_items, 10);
	kv_item_put(&st, lent);
	it = kv_item_alloc(&st, "new", 3, kv_hash("new", 3), 0, 0, 400 << 10);
	ck_assert_ptr_nonnull(it);
	kv_item_put(&st, it);
	/* a lent item left at shutdown is freed with the store (ASan checks) */
	it = kv_item_alloc(&st, "k", 1, kv_hash("k", 1), 0, 0, 1);
	memcpy(kv_item_val(it), "1\r\n", 3);
	kv_store_put(&st, KV_SET, it, 0, 1);
	it->refs++;
	kv_item_put(&st, it);
	kv_store_flush(&st, 0, 1);
	kv_store_fini(&st);
}
END_TEST

/* Store n items "k0".."k<n-1>" with a 1-byte value at time 1. */
static void fill(struct kv_store *st, int n)
{
	for (int i = 0; i < n; i++) {
		char k[16];
		struct kv_item *it;

		snprintf(k, sizeof(k), "k%d", i);
		it = kv_item_alloc(st, k, strlen(k), kv_hash(k, strlen(k)), 0, 0, 1);
		memcpy(kv_item_val(it), "1\r\n", 3);
		ck_assert_int_eq(kv_store_put(st, KV_SET, it, 0, 1), KV_STORED);
		kv_item_put(st, it);
	}
}

/* flush_all costs O(1): items go at once for clients, their memory a few per call. */
START_TEST(test_store_flush_is_lazy)
{
	struct kv_store st;
	struct kv_item *it;
	int calls = 0;

	ck_assert_int_eq(kv_store_init(&st, 64 << 20, 1 << 20), 0);
	fill(&st, 100000);
	kv_store_flush(&st, 0, 1);
	ck_assert_uint_eq(st.st.curr_items, 0);      /* gone for clients at once ... */
	ck_assert_uint_eq(st.flushed_items, 100000); /* ... but nothing freed yet */
	ck_assert_uint_gt(st.st.bytes, 0);
	/* Read as gone (and counted as flushed), also through gat and add. The
	 * newest ones: the calls free from the oldest end. */
	ck_assert_ptr_null(kv_store_get(&st, "k99995", 6, kv_hash("k99995", 6), 1, false, 0));
	ck_assert_uint_eq(st.st.get_flushed, 1);
	ck_assert_uint_eq(st.st.get_expired, 0);
	ck_assert_ptr_null(kv_store_get(&st, "k99996", 6, kv_hash("k99996", 6), 1, true, 0));
	ck_assert_uint_eq(st.st.get_flushed, 2);
	it = kv_item_alloc(&st, "k99997", 6, kv_hash("k99997", 6), 0, 0, 1);
	memcpy(kv_item_val(it), "2\r\n", 3);
	ck_assert_int_eq(kv_store_put(&st, KV_ADD, it, 0, 1), KV_STORED);
	kv_item_put(&st, it);
	ck_assert_uint_eq(st.st.curr_items, 1);
	ck_assert_int_eq(kv_store_delete(&st, "k99998", 6, kv_hash("k99998", 6), 1), KV_NOT_FOUND);
	/* Each call frees at most a few; all go in time, the new item stays. */
	while (st.flushed_items && calls < 100000) {
		uint64_t before = st.flushed_items;

		ck_assert_ptr_null(kv_store_get(&st, "none", 4, kv_hash("none", 4), 1, false, 0));
		ck_assert_uint_le(before - st.flushed_items, 64);
		calls++;
	}
	ck_assert_uint_eq(st.flushed_items, 0);
	ck_assert_uint_gt(calls, 1000);
	it = kv_store_get(&st, "k99997", 6, kv_hash("k99997", 6), 1, false, 0);
	ck_assert_ptr_nonnull(it);
	ck_assert(!memcmp(kv_item_val(it), "2\r\n", 3));
	ck_assert_uint_eq(st.st.curr_items, 1);
	ck_assert_uint_eq(st.st.bytes, kv_item_size(6, 1));
	/* A second flush while the first is not yet freed; eviction meets them too. */
	fill(&st, 1000);
	kv_store_flush(&st, 0, 1);
	fill(&st, 10);
	kv_store_flush(&st, 0, 1);
	ck_assert_uint_eq(st.st.curr_items, 0);
	ck_assert_uint_le(st.flushed_items, 1011);
	st.limit = st.st.bytes; /* full: the next item makes room from the flushed ones */
	fill(&st, 1);
	ck_assert_uint_eq(st.st.curr_items, 1);
	ck_assert_uint_eq(st.st.evictions, 0);
	kv_store_fini(&st);
}
END_TEST

START_TEST(test_eviction_via_session)
{
	char req[64];

	cfg.memory = 1 << 20;
	for (int i = 0; i < 2000; i++) {
		snprintf(req, sizeof(req), "set k%d 0 0 1000 noreply\r\n", i);
		feed(req);
		for (int j = 0; j < 10; j++)
			feed("0123456789012345678901234567890123456789012345678901234567890123456789"
			     "012345678901234567890123456789");
		feed("\r\n");
	}
	ck_assert_uint_eq(out.len, 0);
	ck_assert_uint_gt(ks.store.st.evictions, 900);
	ck_assert_uint_le(ks.store.st.bytes, 1 << 20);
	expect("get k0\r\n", "END\r\n");
	feed("get k1999\r\n");
	ck_assert(out.len > 1000);
}
END_TEST

/* A connection whose output counts as full once it holds full_at bytes. */
static size_t full_at;

static bool out_full(void *ctx)
{
	return ((struct out *)ctx)->len >= full_at;
}

/* A full connection stops the session between requests and between multi-get keys. */
START_TEST(test_stops_when_full)
{
	struct out o = { 0 };
	struct kv_io io = { .write = out_write, .close = out_close, .full = out_full, .ctx = &o };
	struct kv_sess *s2 = kv_sess_new(&ks, &io);
	const char *three = "get a\r\nget a\r\nget a\r\n";
	const char *one = "VALUE a 0 2\r\nhi\r\nEND\r\n";
	size_t used;

	ck_assert_ptr_nonnull(s2);
	expect("set a 0 0 2\r\nhi\r\n", "STORED\r\n");
	full_at = 1; /* full after any reply */
	used = kv_sess_feed(s2, three, strlen(three));
	ck_assert_uint_eq(used, 7); /* the first request only */
	ck_assert_str_eq(o.p, one);
	ck_assert_uint_eq(kv_sess_feed(s2, three + used, strlen(three) - used), 0);
	full_at = SIZE_MAX;
	used += kv_sess_feed(s2, three + used, strlen(three) - used);
	ck_assert_uint_eq(used, strlen(three));
	ck_assert_uint_eq(o.len, 3 * strlen(one));

	/* One line: it is consumed whole, its keys answered as room comes, END last. */
	o.len = 0;
	full_at = 1;
	used = kv_sess_feed(s2, "get a nope a a\r\nversion\r\n", 25);
	ck_assert_uint_eq(used, 16);
	ck_assert_str_eq(o.p, "VALUE a 0 2\r\nhi\r\n");
	kv_sess_resume(s2); /* still full: nothing */
	ck_assert_uint_eq(o.len, 17);
	ck_assert_uint_eq(kv_sess_feed(s2, "version\r\n", 9), 0);
	full_at = SIZE_MAX;
	kv_sess_resume(s2);
	ck_assert_str_eq(o.p, "VALUE a 0 2\r\nhi\r\nVALUE a 0 2\r\nhi\r\nVALUE a 0 2\r\nhi\r\nEND\r\n");
	ck_assert_uint_eq(kv_sess_feed(s2, "version\r\n", 9), 9);
	ck_assert(strstr(o.p, "END\r\nVERSION "));
	kv_sess_closed(s2);
	free(o.p);
}
END_TEST

/*
 * A large local hit is lent, not copied: it goes out one piece at a time as the
 * connection has room, and intact even when the key is deleted meanwhile.
 */
START_TEST(test_large_hit_in_pieces)
{
	enum { N = 100000 };
	struct out o = { 0 };
	struct kv_io io = { .write = out_write, .close = out_close, .full = out_full, .ctx = &o };
	struct kv_sess *s2 = kv_sess_new(&ks, &io);
	static char set[N + 64], want[N + 64];
	const char *head = "VALUE big 7 100000\r\n";
	size_t used, n = (size_t)snprintf(set, sizeof(set), "set big 7 0 %d\r\n", N), before;
	int rounds = 0;

	ck_assert_ptr_nonnull(s2);
	for (size_t i = 0; i < N; i++)
		set[n + i] = (char)('a' + i % 26);
	memcpy(set + n + N, "\r\n", 3);
	feed(set);
	ck_assert_str_eq(out.p, "STORED\r\n");

	full_at = 1;
	used = kv_sess_feed(s2, "get big\r\nversion\r\n", 18);
	ck_assert_uint_eq(used, 9);
	ck_assert_uint_le(o.len, strlen(head) + KV_PIECE);
	expect("delete big\r\n", "DELETED\r\n");
	ck_assert_uint_gt(ks.store.st.bytes, N); /* still lent to s2 */
	while (o.len < strlen(head) + N + 2) {
		before = o.len;
		full_at = o.len + 1; /* room for one more write */
		kv_sess_resume(s2);
		ck_assert_uint_gt(o.len, before);
		ck_assert_uint_le(o.len - before, KV_PIECE);
		rounds++;
	}
	ck_assert_int_ge(rounds, N / KV_PIECE);
	full_at = SIZE_MAX;
	kv_sess_resume(s2);
	ck_assert_uint_eq(kv_sess_feed(s2, "version\r\n", 9), 9);
	n = (size_t)snprintf(want, sizeof(want), "%s", head);
	memcpy(want + n, set + strlen("set big 7 0 100000\r\n"), N + 2);
	memcpy(want + n + N + 2, "END\r\nVERSION ", 13);
	ck_assert(!memcmp(o.p, want, n + N + 2 + 13));
	ck_assert_uint_eq(ks.store.st.bytes, 0); /* released once written */
	kv_sess_closed(s2);
	free(o.p);
}
END_TEST

/* The value of "STAT name " in the last stats reply, or NULL; *after* is where that line ends. */
static const char *stat_val(const char *name, const char **after)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\r\nSTAT %s ", name);
	p = strstr(out.p, pat);
	if (!p)
		return NULL;
	*after = strstr(p + 2, "\r\n");
	return p + strlen(pat);
}

START_TEST(test_stats_fields)
{
	/* memcached's names, in memcached's order */
	static const char *const order[] = {
		"pid", "uptime", "time", "version", "pointer_size", "rusage_user", "rusage_system",
		"curr_connections", "max_connections", "total_connections", "rejected_connections",
		"cmd_get", "cmd_set", "cmd_flush",
		"cmd_touch", "get_hits", "get_misses", "get_expired", "get_flushed",
		"delete_misses", "delete_hits", "incr_misses", "incr_hits", "decr_misses",
		"decr_hits", "cas_misses", "cas_hits", "cas_badval", "touch_hits", "touch_misses",
		"bytes_read", "bytes_written", "limit_maxbytes", "accepting_conns", "threads",
		"bytes", "curr_items", "total_items", "evictions", "reclaimed",
	};
	const char *prev = NULL, *v, *end;
	long sec, usec;
	int used;

	expect("set e 0 5 1\r\nx\r\nset f 0 0 1\r\ny\r\n", "STORED\r\nSTORED\r\n");
	ks.now += 5;
	expect("get e f\r\n", "VALUE f 0 1\r\ny\r\nEND\r\n");
	expect("gat 0 e\r\n", "END\r\n"); /* already removed: a plain miss */
	expect("set e 0 1 1\r\nx\r\n", "STORED\r\n");
	ks.now += 1;
	expect("gats 0 e\r\n", "END\r\n");
	expect("touch f 1\r\n", "TOUCHED\r\n");
	ks.now += 1;
	expect("delete f\r\n", "NOT_FOUND\r\n"); /* not a retrieval: not counted */
	out.len = 0;
	feed("stats\r\n");
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		v = stat_val(order[i], &end);
		if (i == 0)
			v = strstr(out.p, "STAT pid ") == out.p ? out.p + 9 : NULL;
		ck_assert_msg(v, "no STAT %s", order[i]);
		ck_assert_msg(!prev || v > prev, "STAT %s out of order", order[i]);
		prev = v;
	}
	ck_assert(!strncmp(stat_val("get_expired", &end), "2\r\n", 3));
	ck_assert(!strncmp(stat_val("get_flushed", &end), "0\r\n", 3));
	ck_assert(!strncmp(stat_val("get_misses", &end), "3\r\n", 3));
	/* no framework under this test: nothing read or written through sockets, accepting */
	ck_assert(!strncmp(stat_val("bytes_read", &end), "0\r\n", 3));
	ck_assert(!strncmp(stat_val("bytes_written", &end), "0\r\n", 3));
	ck_assert(!strncmp(stat_val("accepting_conns", &end), "1\r\n", 3));
	/* seconds.microseconds, six digits after the point */
	v = stat_val("rusage_user", &end);
	ck_assert_int_eq(sscanf(v, "%ld.%ld%n", &sec, &usec, &used), 2);
	ck_assert_int_eq(end - v, used);
	ck_assert_ptr_eq(strchr(v, '.') + 7, end);
	v = stat_val("rusage_system", &end);
	ck_assert_int_eq(sscanf(v, "%ld.%ld%n", &sec, &usec, &used), 2);
	ck_assert_ptr_eq(strchr(v, '.') + 7, end);
}
END_TEST

static Suite *kv_suite(void)
{
	Suite *s = suite_create("kv");
	TCase *proto = tcase_create("commands");
	TCase *bad = tcase_create("malformed input");
	TCase *split = tcase_create("partial reads");
	TCase *store = tcase_create("store");

	tcase_add_checked_fixture(proto, setup, teardown);
	tcase_add_test(proto, test_set_get);
	tcase_add_test(proto, test_gets_cas);
	tcase_add_test(proto, test_add_replace_append_prepend);
	tcase_add_test(proto, test_delete_touch);
	tcase_add_test(proto, test_incr_decr);
	tcase_add_test(proto, test_expiry);
	tcase_add_test(proto, test_flush_all);
	tcase_add_test(proto, test_flush_all_times);
	tcase_add_test(proto, test_incr_number_forms);
	tcase_add_test(proto, test_token_counts);
	tcase_add_test(proto, test_stats_fields);
	tcase_add_test(proto, test_misc_commands);
	tcase_add_test(proto, test_stops_when_full);
	tcase_add_test(proto, test_large_hit_in_pieces);
	suite_add_tcase(s, proto);

	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_add_test(bad, test_bad_keys);
	tcase_add_test(bad, test_bad_lengths);
	tcase_add_test(bad, test_bad_chunk_resync);
	tcase_add_test(bad, test_noreply_silences_errors);
	tcase_add_test(bad, test_value_limits);
	tcase_add_test(bad, test_line_too_long);
	tcase_add_test(bad, test_line_too_long_in_pieces);
	tcase_add_test(bad, test_long_get_line);
	suite_add_tcase(s, bad);

	tcase_add_test(split, test_every_boundary);
	tcase_set_timeout(split, 60);
	suite_add_tcase(s, split);

	tcase_add_checked_fixture(store, setup, teardown);
	tcase_add_test(store, test_store_eviction);
	tcase_add_test(store, test_store_lent_items);
	tcase_add_test(store, test_store_flush_is_lazy);
	tcase_add_test(store, test_eviction_via_session);
	suite_add_tcase(s, store);
	return s;
}

int main(void)
{
	return vq_check_run(kv_suite());
}
