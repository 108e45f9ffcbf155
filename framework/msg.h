/* SPDX-License-Identifier: MIT */
#ifndef VQ_MSG_H
#define VQ_MSG_H

/*
 * Cross-shard messages: one bounded lock-free SPSC queue per ordered pair of
 * shards, allocated on the receiver's NUMA node. A message names a function
 * and an argument; the function runs on the destination shard's thread.
 *
 * Ownership: `arg` is lent, not given. Memory it points to stays owned by the
 * sender's shard and must be released there: a call's reply is the natural
 * release point. A vq_buf never crosses shards (debug builds assert it):
 * copy its bytes, or lend a read-only pointer and release on the reply.
 *
 * Deadlock rule: a handler must never wait for another shard. Handlers run to
 * completion; a handler that needs another shard's data sends its own call and
 * finishes the work in that call's reply continuation.
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
/* Queue t to run on `from` once the queue to dst has room again. */
void vq_msg_wait_space(struct vq_shard *from, unsigned dst, struct vq_task *t);

#endif
