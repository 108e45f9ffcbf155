/* SPDX-License-Identifier: MIT */
#ifndef VQ_MSG_INTERNAL_H
#define VQ_MSG_INTERNAL_H

/*
 * Message rings, private side: the ring layout, each shard's message state,
 * and the hooks the shard loop calls. Only msg.c, mesh.c and shard.c include
 * this.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "msg.h"

#define VQ_CACHELINE 64

enum vq_msg_kind { VQ_MSG_SEND = 1, VQ_MSG_CALL, VQ_MSG_REPLY };

/* One inline message: 40 bytes, no allocation. */
struct vq_msg_slot {
	union {
		vq_msg_fn send;
		vq_call_fn call;
		vq_reply_fn reply;
	} fn;
	void *arg;             /* send/call: the argument; reply: the caller's ctx */
	vq_reply_fn on_reply;  /* call: the continuation */
	void *ctx;             /* call: its ctx; reply: the result */
	int32_t err;           /* reply: 0 or -ESHUTDOWN */
	uint32_t kind;
};

/*
 * The shared part of one ordered pair's queue, on the receiver's node. The
 * producer's and the consumer's indices sit on separate lines so that neither
 * side's writes invalidate the other's line except when published.
 */
struct vq_ring {
	_Alignas(VQ_CACHELINE) _Atomic uint32_t tail;  /* producer publishes */
	_Alignas(VQ_CACHELINE) _Atomic uint32_t head;  /* consumer publishes */
	_Alignas(VQ_CACHELINE) _Atomic int space_wanted; /* producer waits for room */
	uint32_t mask;
	_Alignas(VQ_CACHELINE) struct vq_msg_slot slots[];
};

/* Counters the owning shard writes (relaxed atomics: any thread may read them). */
struct vq_msg_out {
	struct vq_ring *ring;
	uint32_t tail;          /* next slot to fill */
	uint32_t published;     /* last tail the consumer can see */
	uint32_t head_cache;    /* consumer's head as last read: refreshed only when short */
	uint32_t calls;         /* our calls to this peer whose reply we have not run */
	bool dirty;             /* on the dirty list */
	bool reclaimed;         /* peer is gone and its queue was emptied by us */
	struct vq_task *waiters, *waiters_tail;
	_Atomic uint64_t sent, doorbells, full;
};

struct vq_msg_in {
	struct vq_ring *ring;
	uint32_t head;
	uint32_t tail_cache;
	_Atomic uint64_t received;
	_Atomic uint64_t space_wakes; /* doorbells rung for a producer waiting for room */
};

enum vq_mesh_phase {
	VQ_MESH_SERVING = 0, /* connections open or draining; messages flow freely */
	VQ_MESH_DRAINED,     /* our connections are done; we still serve messages */
	VQ_MESH_CLOSING,     /* every shard drained: no new requests, replies still flow */
	VQ_MESH_DONE,        /* nothing in or out: the loop may end */
};

/* One shard's message state, on that shard's node. */
struct vq_msg_local {
	/* Every sender reads this on each publish; it gets a line to itself. */
	_Alignas(VQ_CACHELINE) _Atomic int parked; /* 0 awake, 1 parked, 2 parked and rung */
	_Alignas(VQ_CACHELINE) _Atomic int live;   /* set up: may be woken */
	_Atomic int gone;       /* never ran (failed set-up): nobody will consume its queues */
	_Alignas(VQ_CACHELINE) struct vq_msg_out *out; /* [n], by destination */
	struct vq_msg_in *in;   /* [n], by source */
	uint16_t *dirty;        /* destinations with unpublished messages */
	uint32_t ndirty;
	uint32_t nwaiting;      /* destinations with space waiters */
	uint32_t calls;         /* all outstanding calls */
	enum vq_mesh_phase phase;
	bool parked_now;        /* we published parked for this wait */
	bool unsubmitted;       /* a doorbell SQE waits for our next wait() */
	uint64_t busy_ns;       /* loop clock when we last ran a message or waited for space */
	int node;
};

struct vq_mesh {
	struct vq_shard *shards;
	unsigned n;
	uint32_t slots;         /* per ring, a power of two */
	uint32_t reserve;       /* slots per ring kept for replies = max calls per pair */
	uint64_t poll_ns;       /* keep polling this long after traffic before parking */
	struct vq_msg_local **local; /* [n] */
	struct vq_ring **rings; /* [from * n + to] */
	_Atomic unsigned drained, quiesced;
	_Atomic uint64_t undelivered;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned exited, ready, failed;
	unsigned stoppers;      /* vq_mesh_stop calls ringing doorbells right now */
	pthread_t *threads;     /* vq_mesh_start only */
};

struct vq_shard;

/* Shard loop hooks (shard.c). All run on s's own thread. */
/* Publish pending messages, then park if timeout_ns != 0; returns the timeout to use. */
int64_t vq_msg_before_wait(struct vq_shard *s, int64_t timeout_ns);
/* Unpark, run inbound messages, release space waiters. */
void vq_msg_after_wait(struct vq_shard *s);
/* conn_done: the shard has nothing else left. True when the loop may end. */
bool vq_msg_may_stop(struct vq_shard *s, bool conn_done);
/* Set-up succeeded: s may be woken from now on. */
void vq_msg_shard_ready(struct vq_shard *s);
/*
 * Before teardown. A shard that ran waits until every shard's loop has ended,
 * so no doorbell can reach a freed ring; one that never ran leaves at once.
 */
void vq_msg_shard_exit(struct vq_shard *s);

/* mesh.c -> msg.c */
void vq_msg_wake_all(struct vq_shard *from, struct vq_mesh *m);
void vq_msg_release_waiters(struct vq_shard *s);
bool vq_msg_idle(struct vq_shard *s);
void vq_msg_reclaim_gone(struct vq_shard *s);
bool vq_msg_settled(struct vq_shard *s);

#endif
