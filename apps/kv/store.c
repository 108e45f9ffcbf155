/* SPDX-License-Identifier: MIT */
/*
 * The per-shard item store. Expired and flushed items are removed lazily:
 * when a lookup finds them, or when the LRU tail is reclaimed for room; flushed
 * ones also a few at a time on every call (tick).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define INITIAL_BUCKETS (1u << 12)
#define FLUSHED_PER_CALL 64 /* flushed items freed per store call: ~3 µs */

uint64_t kv_hash(const char *key, size_t nkey)
{
	/* FNV-1a with a final avalanche (from splitmix64) so high and low bits both mix. */
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < nkey; i++) {
		h ^= (unsigned char)key[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

size_t kv_item_size(size_t nkey, size_t nval)
{
	return sizeof(struct kv_item) + nkey + nval + 2;
}

int kv_store_init(struct kv_store *s, uint64_t limit, uint64_t max_value)
{
	memset(s, 0, sizeof(*s));
	s->table = calloc(INITIAL_BUCKETS, sizeof(*s->table));
	if (!s->table)
		return -ENOMEM;
	s->mask = INITIAL_BUCKETS - 1;
	s->limit = limit;
	s->max_value = max_value;
	s->next_cas = 1;
	return 0;
}

static void item_free(struct kv_store *s, struct kv_item *it)
{
	s->st.bytes -= kv_item_size(it->nkey, it->nval);
	free(it);
}

void kv_item_put(struct kv_store *s, struct kv_item *it)
{
	if (--it->refs)
		return;
	if (it->zombie) {
		s->zombie_bytes -= kv_item_size(it->nkey, it->nval);
		if (it->lprev)
			it->lprev->lnext = it->lnext;
		else
			s->zombies = it->lnext;
		if (it->lnext)
			it->lnext->lprev = it->lprev;
	}
	item_free(s, it);
}

static void lru_unlink(struct kv_store *s, struct kv_item *it)
{
	if (it->lprev)
		it->lprev->lnext = it->lnext;
	else
		s->lru_head = it->lnext;
	if (it->lnext)
		it->lnext->lprev = it->lprev;
	else
		s->lru_tail = it->lprev;
	it->lprev = it->lnext = NULL;
}

static void lru_push(struct kv_store *s, struct kv_item *it)
{
	it->lprev = NULL;
	it->lnext = s->lru_head;
	if (s->lru_head)
		s->lru_head->lprev = it;
	else
		s->lru_tail = it;
	s->lru_head = it;
}

static struct kv_item **bucket(struct kv_store *s, uint64_t hash)
{
	return &s->table[hash & s->mask];
}

static bool is_flushed(const struct kv_store *s, const struct kv_item *it)
{
	return it->cas < s->flushed_below;
}

/* Remove a linked item from the table and the LRU and drop the table's reference. */
static void unlink_item(struct kv_store *s, struct kv_item *it)
{
	struct kv_item **pp = bucket(s, it->hash);

	while (*pp != it)
		pp = &(*pp)->hnext;
	*pp = it->hnext;
	it->hnext = NULL;
	lru_unlink(s, it);
	it->linked = 0;
	if (is_flushed(s, it))
		s->flushed_items--;
	else
		s->st.curr_items--;
	if (it->refs > 1) {
		/* Still lent: keep it findable for kv_store_fini until the last release. */
		it->zombie = 1;
		s->zombie_bytes += kv_item_size(it->nkey, it->nval);
		it->lnext = s->zombies;
		if (s->zombies)
			s->zombies->lprev = it;
		s->zombies = it;
	}
	kv_item_put(s, it);
}

void kv_store_fini(struct kv_store *s)
{
	struct kv_item *it, *next;

	for (it = s->lru_head; it; it = next) {
		next = it->lnext;
		free(it);
	}
	for (it = s->zombies; it; it = next) {
		next = it->lnext;
		free(it);
	}
	free(s->table);
	memset(s, 0, sizeof(*s));
}

static void grow(struct kv_store *s)
{
	uint64_t n = (s->mask + 1) * 2;
	struct kv_item **t = calloc(n, sizeof(*t));

	if (!t)
		return; /* longer chains, still correct */
	for (uint64_t i = 0; i <= s->mask; i++) {
		struct kv_item *it = s->table[i], *next;

		for (; it; it = next) {
			next = it->hnext;
			it->hnext = t[it->hash & (n - 1)];
			t[it->hash & (n - 1)] = it;
		}
	}
	free(s->table);
	s->table = t;
	s->mask = n - 1;
}

static void link_item(struct kv_store *s, struct kv_item *it)
{
	struct kv_item **b;

	if (s->st.curr_items + s->flushed_items >= (s->mask + 1) + (s->mask + 1) / 2)
		grow(s);
	b = bucket(s, it->hash);
	it->hnext = *b;
	*b = it;
	lru_push(s, it);
	it->linked = 1;
	it->refs++;
	it->cas = s->next_cas++;
	s->st.curr_items++;
	s->st.total_items++;
}

static bool is_dead(const struct kv_store *s, const struct kv_item *it, int64_t now)
{
	return is_flushed(s, it) || (it->exptime && it->exptime <= now);
}

static void flush_now(struct kv_store *s)
{
	s->flushed_below = s->next_cas;
	s->flushed_items += s->st.curr_items;
	s->st.curr_items = 0;
}

/* A pending delayed flush_all whose time has come; a few flushed items freed. */
static void tick(struct kv_store *s, int64_t now)
{
	s->now = now;
	if (s->flush_at && s->flush_at <= now) {
		s->flush_at = 0;
		flush_now(s);
	}
	/* flushed_items first: the cold end's item is likely not in the cache. */
	for (int n = 0; n < FLUSHED_PER_CALL && s->flushed_items && is_flushed(s, s->lru_tail); n++)
		unlink_item(s, s->lru_tail);
}

enum gone { LIVE = 0, EXPIRED, FLUSHED };

/* The live item under key, or NULL; a dead one found is removed (and *gone says why). */
static struct kv_item *lookup(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			      int64_t now, enum gone *gone)
{
	struct kv_item *it;

	tick(s, now);
	for (it = *bucket(s, hash); it; it = it->hnext) {
		if (it->hash == hash && it->nkey == nkey && !memcmp(it->data, key, nkey)) {
			if (is_dead(s, it, now)) {
				*gone = is_flushed(s, it) ? FLUSHED : EXPIRED;
				unlink_item(s, it);
				return NULL;
			}
			return it;
		}
	}
	return NULL;
}

static struct kv_item *find(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			    int64_t now)
{
	enum gone gone;

	return lookup(s, key, nkey, hash, now, &gone);
}

struct kv_item *kv_item_alloc(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			      uint32_t flags, int64_t exptime, uint32_t nval)
{
	size_t size = kv_item_size(nkey, nval);
	struct kv_item *it;

	if (size > s->limit) {
		s->st.oom++;
		return NULL;
	}
	/*
	 * Make room from the cold end; a lent item leaves the table now and its
	 * memory later. Stop once lent memory alone leaves no room: evicting the
	 * rest of the cache would not make any.
	 */
	while (s->st.bytes + size > s->limit && s->lru_tail &&
	       s->zombie_bytes + size <= s->limit) {
		struct kv_item *victim = s->lru_tail;

		if (is_dead(s, victim, s->now))
			s->st.reclaimed++;
		else
			s->st.evictions++;
		unlink_item(s, victim);
	}
	if (s->st.bytes + size > s->limit) {
		s->st.oom++;
		return NULL;
	}
	it = malloc(size);
	if (!it) {
		s->st.oom++;
		return NULL;
	}
	memset(it, 0, sizeof(*it));
	it->hash = hash;
	it->flags = flags;
	it->exptime = exptime;
	it->nval = nval;
	it->nkey = (uint8_t)nkey;
	it->refs = 1;
	memcpy(it->data, key, nkey);
	s->st.bytes += size;
	return it;
}

struct kv_item *kv_store_get(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			     int64_t now, bool touch, int64_t exptime)
{
	enum gone gone = LIVE;
	struct kv_item *it = lookup(s, key, nkey, hash, now, &gone);

	s->st.cmd_get++;
	if (touch)
		s->st.cmd_touch++;
	if (!it) {
		s->st.get_misses++;
		if (gone == EXPIRED)
			s->st.get_expired++;
		else if (gone == FLUSHED)
			s->st.get_flushed++;
		if (touch)
			s->st.touch_misses++;
		return NULL;
	}
	s->st.get_hits++;
	if (touch) {
		s->st.touch_hits++;
		it->exptime = exptime;
	}
	if (s->lru_head != it) {
		lru_unlink(s, it);
		lru_push(s, it);
	}
	return it;
}

/* Replace old (linked) by it, or link it fresh. */
static void install(struct kv_store *s, struct kv_item *old, struct kv_item *it)
{
	if (old)
		unlink_item(s, old);
	link_item(s, it);
}

/* append/prepend: a new item holding both values, with the old item's flags and expiry. */
static enum kv_status concat(struct kv_store *s, struct kv_item *old, struct kv_item *it,
			     bool append)
{
	struct kv_item *n;
	struct kv_item *first = append ? old : it, *second = append ? it : old;

	/* Each part was within kv.max_value when it was stored; the sum may not be. */
	if ((uint64_t)old->nval + it->nval > s->max_value)
		return KV_TOO_LARGE;
	old->refs++; /* keep it across a possible eviction inside alloc */
	n = kv_item_alloc(s, old->data, old->nkey, old->hash, old->flags, old->exptime,
			  old->nval + it->nval);
	if (!n) {
		kv_item_put(s, old);
		return KV_NO_MEMORY;
	}
	memcpy(kv_item_val(n), kv_item_val(first), first->nval);
	memcpy(kv_item_val(n) + first->nval, kv_item_val(second), second->nval + 2);
	install(s, old->linked ? old : NULL, n);
	kv_item_put(s, old);
	kv_item_put(s, n);
	return KV_STORED;
}

enum kv_status kv_store_put(struct kv_store *s, enum kv_store_op op, struct kv_item *it,
			    uint64_t cas, int64_t now)
{
	struct kv_item *old = find(s, it->data, it->nkey, it->hash, now);

	s->st.cmd_set++;
	switch (op) {
	case KV_SET:
		break;
	case KV_ADD:
		if (old) {
			/* memcached bumps the existing item on a failed add */
			lru_unlink(s, old);
			lru_push(s, old);
			return KV_NOT_STORED;
		}
		break;
	case KV_REPLACE:
		if (!old)
			return KV_NOT_STORED;
		break;
	case KV_APPEND:
	case KV_PREPEND:
		if (!old)
			return KV_NOT_STORED;
		return concat(s, old, it, op == KV_APPEND);
	case KV_CAS:
		if (!old) {
			s->st.cas_misses++;
			return KV_NOT_FOUND;
		}
		if (old->cas != cas) {
			s->st.cas_badval++;
			return KV_EXISTS;
		}
		s->st.cas_hits++;
		break;
	}
	install(s, old, it);
	return KV_STORED;
}

enum kv_status kv_store_delete(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			       int64_t now)
{
	struct kv_item *it = find(s, key, nkey, hash, now);

	if (!it) {
		s->st.delete_misses++;
		return KV_NOT_FOUND;
	}
	s->st.delete_hits++;
	unlink_item(s, it);
	return KV_DELETED;
}

enum kv_status kv_store_touch(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			      int64_t exptime, int64_t now)
{
	struct kv_item *it = find(s, key, nkey, hash, now);

	s->st.cmd_touch++;
	if (!it) {
		s->st.touch_misses++;
		return KV_NOT_FOUND;
	}
	s->st.touch_hits++;
	it->exptime = exptime;
	lru_unlink(s, it);
	lru_push(s, it);
	return KV_TOUCHED;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/*
 * The value as a counter, read the way memcached reads it (strtoull, base 10):
 * optional leading whitespace, an optional "+", then digits (any number of
 * leading zeros) that fit in 64 bits, followed by whitespace or the end of the
 * value; what comes after that whitespace is not looked at. Two differences,
 * both memcached bugs: a value that is all whitespace is not numeric here
 * (strtoull runs on past the value into whatever memory follows), and no "-"
 * is accepted (memcached takes "-0" and large negative numbers wrap around).
 */
static bool parse_counter(const char *p, uint32_t n, uint64_t *out)
{
	const char *end = p + n;
	uint64_t v = 0;

	while (p < end && is_space(*p))
		p++;
	if (p < end && *p == '+')
		p++;
	if (p == end || (unsigned)(*p - '0') > 9)
		return false;
	for (; p < end && (unsigned)(*p - '0') <= 9; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (p < end && !is_space(*p))
		return false;
	*out = v;
	return true;
}

enum kv_status kv_store_incr(struct kv_store *s, const char *key, size_t nkey, uint64_t hash,
			     bool incr, uint64_t delta, int64_t now, uint64_t *out)
{
	struct kv_item *it = find(s, key, nkey, hash, now), *n;
	uint64_t v;
	char digits[24];
	int len;

	if (!it) {
		if (incr)
			s->st.incr_misses++;
		else
			s->st.decr_misses++;
		return KV_NOT_FOUND;
	}
	if (!parse_counter(kv_item_val(it), it->nval, &v))
		return KV_NON_NUMERIC;
	if (incr) {
		s->st.incr_hits++;
		v += delta; /* unsigned: wraps at 2^64 as memcached does */
	} else {
		s->st.decr_hits++;
		v = delta > v ? 0 : v - delta;
	}
	*out = v;
	len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
	if ((uint32_t)len == it->nval && it->refs == 1) {
		/* Nobody borrows it: rewrite in place, with a new cas like any change. */
		memcpy(kv_item_val(it), digits, (size_t)len);
		it->cas = s->next_cas++;
		lru_unlink(s, it);
		lru_push(s, it);
		return KV_STORED;
	}
	it->refs++;
	n = kv_item_alloc(s, it->data, it->nkey, it->hash, it->flags, it->exptime, (uint32_t)len);
	if (!n) {
		kv_item_put(s, it);
		return KV_NO_MEMORY;
	}
	memcpy(kv_item_val(n), digits, (size_t)len);
	memcpy(kv_item_val(n) + len, "\r\n", 2);
	install(s, it->linked ? it : NULL, n);
	kv_item_put(s, it);
	kv_item_put(s, n);
	return KV_STORED;
}

void kv_store_flush(struct kv_store *s, int64_t at, int64_t now)
{
	s->st.cmd_flush++;
	if (at > now) {
		s->flush_at = at; /* replaces a pending one, as in memcached */
		return;
	}
	s->flush_at = 0;
	flush_now(s);
}
