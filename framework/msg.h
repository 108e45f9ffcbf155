/* SPDX-License-Identifier: MIT */
#ifndef VQ_MSG_H
#define VQ_MSG_H

/*
 * Cross-shard messages: one bounded lock-free SPSC queue per ordered pair of
 * shards, allocated on the receiver's NUMA node. A message names a function
 * and an argument; the function runs on the destination shard's thread.
 *
 * Every function taking `from` runs on from's own thread (debug builds assert
 * it); a shard without a mesh gets -EINVAL.
 *
 * Ownership: `arg` is lent, not given. Memory it points to stays owned by the
 * sender's shard and must be released there: a call's reply is the natural
 * release point. A vq_buf never crosses shards (debug builds assert it):
 * copy its bytes, or lend a read-only pointer and release on the reply.
 *
 * Deadlock rule: a handler must never wait for another shard. Handlers run to
 * completion; a handler that needs another shard's data sends its own call and
 * finishes the work in that call's reply continuation. A call that gets -EAGAIN
 * must not be retried in a loop: queue a task with vq_msg_wait_space and give
 * the loop back, because the space appears only when the peer's loop runs.
 *
 * Replies are never refused. Each ring keeps `reserve` slots that only replies
 * may use, and a shard may have at most `reserve` calls outstanding to one peer
 * (more get -EAGAIN). A reply goes on the ring callee -> caller, which holds at
 * most `reserve` replies (one per outstanding call) and at most
 * `slots - reserve` requests, so the reply always fits.
 *
 * Delivery and batching: messages to one peer arrive in the order sent. They
 * become visible to the peer when the sender's loop turn ends (before it
 * waits), or earlier when a batch fills or on vq_msg_flush. A parked (sleeping)
 * receiver gets at most one doorbell per sleep, whoever rings it.
 *
 * Stopping (two phases, because services forward requests while draining):
 *  1. Every shard drains its connections; messages flow freely. A shard whose
 *     connections are done keeps serving messages (phase "drained").
 *  2. When every shard has drained, each shard stops accepting new requests
 *     (vq_msg_send/call/broadcast return -ESHUTDOWN, space waiters run so they
 *     see it) but keeps delivering what is queued and every reply. A shard's
 *     loop ends once every shard is in phase 2, its queues are empty and all its
 *     calls have had their reply. So an accepted message is always delivered
 *     and an accepted call always gets on_reply with err 0. The one exception
 *     is a shard that failed to start: calls queued to it get on_reply with
 *     -ESHUTDOWN, sends to it are counted as undelivered and logged.
 */

#include <stdint.h>

struct vq_shard;

/* Runs on the destination shard. */
typedef void (*vq_msg_fn)(struct vq_shard *on, void *arg);
/* Runs on the destination shard; its return value travels back to the caller. */
typedef void *(*vq_call_fn)(struct vq_shard *on, void *arg);
/*
 * Runs on the calling shard with the callee's result. err is 0, or
 * -ESHUTDOWN when the message could not be delivered because a shard stopped
 * (result is NULL then).
 */
typedef void (*vq_reply_fn)(struct vq_shard *self, void *ctx, void *result, int err);

/* Number of shards in the running service (every shard sees the same value). */
unsigned vq_shard_count(const struct vq_shard *s);

/*
 * Fire-and-forget: run fn(dst shard, arg) on shard dst. Returns 0; -EAGAIN
 * when the queue to dst is full (nothing was queued: retry from a later loop
 * turn, see vq_msg_wait_space); -ESHUTDOWN when dst is stopping; -EINVAL for a
 * bad dst. Sending to yourself runs fn on your next loop turn.
 */
int vq_msg_send(struct vq_shard *from, unsigned dst, vq_msg_fn fn, void *arg);

/*
 * Run fn(dst shard, arg) on dst and deliver its result to on_reply(from, ctx,
 * result, 0) on this shard. Same return values as vq_msg_send. Once 0 is
 * returned, on_reply runs exactly once.
 */
int vq_msg_call(struct vq_shard *from, unsigned dst, vq_call_fn fn, void *arg,
		vq_reply_fn on_reply, void *ctx);

/*
 * Gather: run fn(shard, arg) on every shard (this one included); when all
 * have answered, done(from, ctx, results, n) runs here with results[i] from
 * shard i. Returns 0 or -errno (then nothing was sent).
 */
typedef void (*vq_gather_fn)(struct vq_shard *self, void *ctx, void **results, unsigned n);
int vq_msg_broadcast(struct vq_shard *from, vq_call_fn fn, void *arg, vq_gather_fn done,
		     void *ctx);

struct vq_task;
/*
 * Queue t to run on `from` once the queue to dst has room again (half of its
 * request slots free, and for calls a free call slot), or once `from` stops accepting
 * requests (the retry then gets -ESHUTDOWN). t must not be queued elsewhere
 * until it runs. From's own thread only.
 */
void vq_msg_wait_space(struct vq_shard *from, unsigned dst, struct vq_task *t);

/* Publish every pending message now instead of at the end of the loop turn. */
void vq_msg_flush(struct vq_shard *from);

/* Per ordered pair (from -> to). Any thread may read them; values are racy snapshots. */
struct vq_msg_pair_stats {
	uint64_t sent;       /* requests and replies queued by `from` */
	uint64_t received;   /* messages run (or reclaimed) on `to` */
	uint64_t doorbells;  /* wakes `from` rang on a parked `to` */
	uint64_t full;       /* -EAGAIN returned to `from` for this pair */
};

/*
 * The mesh: the rings between n shards. vq_main builds one; tests and tools
 * build their own with vq_mesh_create + vq_mesh_start.
 */
struct vq_mesh;

/*
 * Allocate the n x n rings for shards[0..n-1] (shards[i].id == i, cpu set;
 * node -1 is fine) and attach them (shards[i].mesh). Call before any shard is
 * set up. slots: per ring, rounded up to a power of two (0 = 1024); reserve is
 * slots / 4. Returns 0 or -errno (-EINVAL, -ENOMEM).
 */
int vq_mesh_create(struct vq_mesh **out, struct vq_shard *shards, unsigned n, uint32_t slots);

/*
 * Keep a shard's loop polling for poll_ns after it last ran a message or
 * waited for queue space, before it parks (0, the default: park at once).
 * Polling trades CPU for fewer doorbells under bursty load. Before start only.
 */
void vq_mesh_set_poll(struct vq_mesh *m, uint64_t poll_ns);

/* Free the rings. Every shard thread must have ended. */
void vq_mesh_destroy(struct vq_mesh *m);

/*
 * For tests and tools: start one thread per shard that sets it up without a
 * listener (svc->shard_init runs there) and runs its loop. Returns once every
 * shard is running, 0; or -errno when one failed to set up (the others are
 * stopped; call vq_mesh_join anyway).
 */
int vq_mesh_start(struct vq_mesh *m);
/* Ask every shard to stop (two-phase, as above). Any thread. */
void vq_mesh_stop(struct vq_mesh *m);
/* Join the threads vq_mesh_start made; returns the OR of the shards' exit statuses. */
int vq_mesh_join(struct vq_mesh *m);

void vq_mesh_pair_stats(const struct vq_mesh *m, unsigned from, unsigned to,
			struct vq_msg_pair_stats *st);
/* Sends accepted for a shard that then failed to start (should stay 0). */
uint64_t vq_mesh_undelivered(const struct vq_mesh *m);

#endif
