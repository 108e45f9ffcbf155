/* SPDX-License-Identifier: MIT */
/* RCU-like configuration snapshots: see cfgpub.h for the protocol. */
#include <errno.h>
#include <stdlib.h>

#include "cfgpub.h"

int vq_cfg_pub_init(struct vq_cfg_pub *p, const struct vq_config *cfg, int nreaders)
{
	struct vq_cfg_snap *s = calloc(1, sizeof(*s));

	p->acks = calloc((size_t)nreaders, sizeof(*p->acks));
	if (!s || !p->acks) {
		free(s);
		free(p->acks);
		return -ENOMEM;
	}
	s->cfg = *cfg;
	s->gen = 1;
	p->retired = NULL;
	p->nreaders = nreaders;
	/* Readers start at generation 0, so their first pick adopts generation 1. */
	for (int i = 0; i < nreaders; i++)
		atomic_init(&p->acks[i], 0);
	atomic_store_explicit(&p->cur, s, memory_order_release);
	return 0;
}

uint64_t vq_cfg_pub_publish(struct vq_cfg_pub *p, const struct vq_config *cfg)
{
	struct vq_cfg_snap *old = atomic_load_explicit(&p->cur, memory_order_relaxed);
	struct vq_cfg_snap *s = calloc(1, sizeof(*s));

	if (!s)
		return 0;
	s->cfg = *cfg;
	s->gen = old->gen + 1;
	/* Release: a reader that sees the pointer sees the filled snapshot. */
	atomic_store_explicit(&p->cur, s, memory_order_release);
	old->older = p->retired;
	p->retired = old;
	vq_cfg_pub_reclaim(p);
	return s->gen;
}

int vq_cfg_pub_reclaim(struct vq_cfg_pub *p)
{
	uint64_t min = UINT64_MAX;
	struct vq_cfg_snap **link = &p->retired;
	int left = 0;

	for (int i = 0; i < p->nreaders; i++) {
		/* Acquire: pairs with the reader's release, after its last use of the old one. */
		uint64_t a = atomic_load_explicit(&p->acks[i], memory_order_acquire);

		if (a < min)
			min = a;
	}
	while (*link) {
		struct vq_cfg_snap *s = *link;

		/* A reader that acknowledged gen a uses snapshot a; older ones are unreachable. */
		if (s->gen < min) {
			*link = s->older;
			free(s);
		} else {
			link = &s->older;
			left++;
		}
	}
	return left;
}

bool vq_cfg_pub_pick(struct vq_cfg_pub *p, int reader, const struct vq_config **cfg)
{
	struct vq_cfg_snap *s = atomic_load_explicit(&p->cur, memory_order_acquire);

	if (s->gen == atomic_load_explicit(&p->acks[reader], memory_order_relaxed))
		return false;
	*cfg = &s->cfg;
	atomic_store_explicit(&p->acks[reader], s->gen, memory_order_release);
	return true;
}

uint64_t vq_cfg_pub_gen(struct vq_cfg_pub *p)
{
	return atomic_load_explicit(&p->cur, memory_order_acquire)->gen;
}

uint64_t vq_cfg_pub_acked(struct vq_cfg_pub *p, int reader)
{
	return atomic_load_explicit(&p->acks[reader], memory_order_acquire);
}

void vq_cfg_pub_fini(struct vq_cfg_pub *p)
{
	struct vq_cfg_snap *s = atomic_load_explicit(&p->cur, memory_order_relaxed);

	free(s);
	while ((s = p->retired)) {
		p->retired = s->older;
		free(s);
	}
	free(p->acks);
	p->acks = NULL;
	atomic_store_explicit(&p->cur, NULL, memory_order_relaxed);
}
