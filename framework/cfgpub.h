/* SPDX-License-Identifier: MIT */
#ifndef VQ_CFGPUB_H
#define VQ_CFGPUB_H

/*
 * Publishing a new configuration to running shards without locks and without
 * the message rings: the publisher (the thread that handles SIGHUP) swaps an
 * atomic pointer to an immutable snapshot; each shard picks it up at the top
 * of its next loop turn and acknowledges the generation it now uses. A
 * snapshot is freed once every shard has acknowledged a newer one, so no shard
 * ever reads freed memory and no shard reads a struct another thread writes.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct vq_cfg_snap {
	struct vq_config cfg;      /* immutable once published */
	uint64_t gen;              /* 1 for the start-up config, +1 per reload */
	struct vq_cfg_snap *older; /* the publisher's list of retired snapshots */
};

struct vq_cfg_pub {
	struct vq_cfg_snap *_Atomic cur;
	struct vq_cfg_snap *retired; /* touched by the publisher only */
	_Atomic uint64_t *acks;      /* per reader: the generation it uses */
	int nreaders;
};

/* Publish cfg as generation 1 for nreaders readers. Returns 0 or -ENOMEM. */
int vq_cfg_pub_init(struct vq_cfg_pub *p, const struct vq_config *cfg, int nreaders);

/*
 * Publisher only: make a copy of cfg the current snapshot (generation + 1),
 * retire the previous one, and free retired snapshots every reader has moved
 * past. Readers see it at their next vq_cfg_pub_pick(); wake them to hurry
 * them. Returns the new generation, or 0 if out of memory (nothing changed).
 */
uint64_t vq_cfg_pub_publish(struct vq_cfg_pub *p, const struct vq_config *cfg);

/* Publisher only: free retired snapshots no reader uses. Returns how many remain. */
int vq_cfg_pub_reclaim(struct vq_cfg_pub *p);

/*
 * Reader `reader` (its own thread): if a newer snapshot is published, point
 * *cfg at it, acknowledge its generation and return true. Until the next call
 * *cfg stays valid and unchanged.
 */
bool vq_cfg_pub_pick(struct vq_cfg_pub *p, int reader, const struct vq_config **cfg);

/* The current generation (any thread). */
uint64_t vq_cfg_pub_gen(struct vq_cfg_pub *p);

/* The generation reader `reader` last acknowledged (any thread). */
uint64_t vq_cfg_pub_acked(struct vq_cfg_pub *p, int reader);

/* Free everything; no reader may run any more. */
void vq_cfg_pub_fini(struct vq_cfg_pub *p);

#endif
