/* SPDX-License-Identifier: MIT */
#ifndef KV_STORE_H
#define KV_STORE_H

/*
 * One shard's items: a chained hash table, an LRU list and a memory limit.
 * Everything here runs on the owning shard's thread only; other shards reach
 * items through messages (see kv.c for the lending scheme). Time is passed in
 * as unix seconds so expiry is deterministic under test.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_KEY_MAX 250

/*
 * An item. `data` holds the key, then the value followed by "\r\n", so a get
 * reply copies the value and its terminator in one piece. refs counts the
 * table's link (while linked) plus every reader the item is lent to; memory is
 * freed when it drops to zero.
 */
struct kv_item {
	struct kv_item *hnext;
	struct kv_item *lprev, *lnext;
	uint64_t cas;
	int64_t exptime;  /* absolute unix seconds; 0 = never */
	uint64_t hash;
	uint32_t flags;
	uint32_t nval;    /* value bytes, without the "\r\n" */
	uint32_t refs;
	uint8_t nkey;
	uint8_t linked;
	uint8_t zombie;   /* unlinked while lent: on the zombie list until released */
	char data[];
};

static inline char *kv_item_key(struct kv_item *it)
{
	return it->data;
}

/* The value and its "\r\n": nval + 2 bytes. */
static inline char *kv_item_val(struct kv_item *it)
{
	return it->data + it->nkey;
}

struct kv_store_stats {
	uint64_t curr_items;     /* linked and live: flushed ones not yet reclaimed do not count */
	uint64_t total_items;
	uint64_t bytes;          /* item memory in use, counted against the limit */
	uint64_t evictions;      /* live items dropped to make room */
	uint64_t reclaimed;      /* expired items whose memory was reused */
	uint64_t cmd_get, get_hits, get_misses;
	uint64_t get_expired;    /* retrievals that found their item expired (and removed it) */
	uint64_t get_flushed;    /* retrievals that found their item flushed (and removed it) */
	uint64_t cmd_set, cmd_touch, cmd_flush;
	uint64_t delete_hits, delete_misses;
	uint64_t incr_hits, incr_misses, decr_hits, decr_misses;
	uint64_t cas_hits, cas_misses, cas_badval;
	uint64_t touch_hits, touch_misses;
	uint64_t oom;            /* allocations that failed even after eviction */
};

struct kv_store {
	struct kv_item **table;
	uint64_t mask;           /* buckets - 1 */
	struct kv_item *lru_head, *lru_tail; /* head = most recently used */
	struct kv_item *zombies; /* unlinked but still lent (to a connection or another shard) */
	uint64_t zombie_bytes;   /* their memory: counted, but no eviction can free it */
	uint64_t limit;          /* bytes of item memory */
	uint64_t max_value;      /* largest value, also for one grown by append/prepend */
	uint64_t next_cas;
	int64_t now;             /* the latest time a call passed in */
	int64_t flush_at;        /* unix seconds of a pending delayed flush_all; 0 = none */
	/*
	 * flush_all drops every item with a cas below this. They are not freed at
	 * once (millions would stall the shard): lookups and evictions meet them
	 * as gone, and each store call frees a few from the LRU's cold end, where
	 * they all are, since nothing can move a flushed item to the hot end.
	 */
	uint64_t flushed_below;
	uint64_t flushed_items;  /* linked, flushed and not yet freed */
	struct kv_store_stats st;
};

enum kv_status {
	KV_STORED = 0,
	KV_NOT_STORED,
	KV_EXISTS,
	KV_NOT_FOUND,
	KV_DELETED,
	KV_TOUCHED,
	KV_NON_NUMERIC,
	KV_NO_MEMORY,
	KV_TOO_LARGE,
};

enum kv_store_op { KV_SET, KV_ADD, KV_REPLACE, KV_APPEND, KV_PREPEND, KV_CAS };

/* A 64-bit hash of a key; its high bits pick the owner shard, its low bits the bucket. */
uint64_t kv_hash(const char *key, size_t nkey);

/* Set up an empty store with a memory limit and a largest value, in bytes.
 * Returns 0 or -ENOMEM. */
int kv_store_init(struct kv_store *s, uint64_t limit, uint64_t max_value);

/* Free every item, linked or lent: call only once no other shard can hold a reference. */
void kv_store_fini(struct kv_store *s);

/*
 * Allocate an unlinked item with one reference (the caller's), evicting from the
 * LRU tail to stay under the limit. The value bytes are left for the caller to
 * fill. Returns NULL when even an empty store could not hold it.
 */
struct kv_item *kv_item_alloc(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			      uint32_t flags, int64_t exptime, uint32_t nval);

/* Drop one reference; the item is freed (and its bytes uncounted) at zero. */
void kv_item_put(struct kv_store *s, struct kv_item *it);

/*
 * Look a key up. Returns the live item (not referenced: use it before the next
 * store call, or take a reference with it->refs++), or NULL. Counts a get and
 * moves the item to the LRU head. A non-negative `touch` also sets its expiry
 * (gat).
 */
struct kv_item *kv_store_get(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			     int64_t now, bool touch, int64_t exptime);

/*
 * Store `it` (filled by the caller) under op's rule; `cas` is checked for KV_CAS.
 * The caller keeps its own reference and drops it afterwards. Returns KV_STORED,
 * KV_NOT_STORED, KV_EXISTS, KV_NOT_FOUND or KV_NO_MEMORY (append/prepend).
 */
enum kv_status kv_store_put(struct kv_store *s, enum kv_store_op op, struct kv_item *it,
			    uint64_t cas, int64_t now);

enum kv_status kv_store_delete(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			       int64_t now);
enum kv_status kv_store_touch(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			      int64_t exptime, int64_t now);

/*
 * incr (wraps at 2^64) or decr (stops at 0). *out gets the new value. Returns
 * KV_STORED, KV_NOT_FOUND, KV_NON_NUMERIC or KV_NO_MEMORY.
 */
enum kv_status kv_store_incr(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			     bool incr, uint64_t delta, int64_t now, uint64_t *out);

/* flush_all: drop every item now, or at unix time `at` if that is later than now. */
void kv_store_flush(struct kv_store *s, int64_t at, int64_t now);

/* Bytes an item with this key and value length is charged. */
size_t kv_item_size(size_t nkey, size_t nval);

#endif
