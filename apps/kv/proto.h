/* SPDX-License-Identifier: MIT */
#ifndef KV_PROTO_H
#define KV_PROTO_H

/*
 * The memcached text protocol's command lines (protocol.txt): tokenizing,
 * numbers, key rules and expiry times. Pure functions over bytes; no I/O.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A command line may be this long without its "\n"; longer closes the connection. */
#define KV_LINE_MAX    2048
/*
 * Retrieval lines carry many keys, so they may grow further (memcached has no
 * bound): 1 MiB, limits.max_input's default, holds some 25 000 keys of 40 bytes.
 * memcslap's own multi-gets of 2 000 keys run past 64 KiB.
 */
#define KV_GETLINE_MAX (1024 * 1024)
/* Relative expiry times go up to 30 days; larger numbers are unix times. */
#define KV_REALTIME_MAXDELTA 2592000

enum kv_cmd_type {
	KV_C_GET, KV_C_GETS, KV_C_GAT, KV_C_GATS,
	KV_C_SET, KV_C_ADD, KV_C_REPLACE, KV_C_APPEND, KV_C_PREPEND, KV_C_CAS,
	KV_C_DELETE, KV_C_INCR, KV_C_DECR, KV_C_TOUCH,
	KV_C_FLUSH_ALL, KV_C_VERSION, KV_C_VERBOSITY, KV_C_STATS, KV_C_QUIT,
};

struct kv_cmd {
	enum kv_cmd_type type;
	const char *key;         /* single-key commands */
	size_t nkey;
	const char *keys, *end;  /* retrieval commands: the keys left on the line */
	uint32_t flags;
	int64_t exptime;         /* as sent; see kv_exptime() */
	uint64_t nval;           /* storage: declared data bytes */
	uint64_t cas;
	uint64_t delta;          /* incr/decr */
	int64_t delay;           /* flush_all, as sent: 0 or less = now, else as an exptime */
	bool noreply;
};

/*
 * Parse one command line (without "\n"; a trailing "\r" is ignored). Returns 0
 * with *cmd filled, or -1 with *err set to the whole reply line to send
 * ("ERROR", "CLIENT_ERROR ..."), or to NULL when the line asked for noreply:
 * as in memcached, a line with the right number of tokens whose last one is
 * "noreply" gets no reply at all, also not for its errors. When a storage
 * command with an invalid key is rejected after its data length was read,
 * *swallow is set to the bytes of data block to skip (length + 2) so the
 * connection stays in sync; otherwise it is 0.
 */
int kv_parse(const char *line, size_t len, struct kv_cmd *cmd, const char **err,
	     uint64_t *swallow);

/*
 * Next key of a retrieval command. Returns 1 with key and nkey set, 0 when the
 * line is done, -1 for an invalid key (too long, control characters).
 */
int kv_next_key(const char **p, const char *end, const char **key, size_t *nkey);

/* Is this a valid key: 1..250 bytes, no control characters or spaces? */
bool kv_key_ok(const char *key, size_t nkey);

/*
 * An expiry as sent → absolute unix seconds: 0 stays 0 (never); negative means
 * already expired; up to 30 days is relative to now; beyond is absolute.
 */
int64_t kv_exptime(int64_t raw, int64_t now);

/* The most bytes a line starting with these bytes may have before its "\n". */
size_t kv_line_limit(const char *start, size_t n);

#endif
