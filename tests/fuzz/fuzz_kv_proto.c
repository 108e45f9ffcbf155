/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for veloq-kv's protocol parser and session: the input is fed to
 * one session in pieces whose sizes come from the input itself, against a
 * small store so eviction, expiry and the value limit are all reachable.
 * Built as a libFuzzer target with clang (-DVQ_FUZZ=ON), and as a corpus
 * replayer under any compiler (fuzz_replay_main.c) so ctest runs the seeds.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
	size_t bytes;
	int closes;
};

static int sink_write(void *ctx, const void *d, size_t n)
{
	struct sink *s = ctx;

	/* Every reply byte is touched so ASan sees a read of anything stale. */
	for (size_t i = 0; i < n; i++)
		s->bytes += ((const uint8_t *)d)[i] != 0;
	return 0;
}

static void sink_close(void *ctx)
{
	((struct sink *)ctx)->closes++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct kv_config cfg = { .memory = 1 << 20, .max_value = 4096,
					      .max_pending = 16 };
	struct kv_shard ks;
	struct sink out = { 0 };
	struct kv_io io = { .write = sink_write, .close = sink_close, .ctx = &out };
	struct kv_sess *s;
	size_t pos = 0;
	unsigned seed = size ? data[0] : 0;

	if (kv_shard_init(&ks, NULL, 0, 1, &cfg))
		return 0;
	ks.now = 1700000000;
	s = kv_sess_new(&ks, &io);
	if (!s) {
		kv_shard_fini(&ks);
		return 0;
	}
	while (pos < size) {
		size_t n = 1 + (seed % 97);

		if (n > size - pos)
			n = size - pos;
		kv_sess_feed(s, (const char *)data + pos, n);
		pos += n;
		seed = seed * 1103515245u + 12345u;
		ks.now += seed % 3; /* let time pass so expiry paths run */
	}
	kv_sess_closed(s);
	kv_shard_fini(&ks);
	return 0;
}
