/* SPDX-License-Identifier: MIT */
/*
 * Stand-in for framework/msg.c until the message rings land: one shard, so
 * nothing is ever forwarded. Built only when framework/msg.c is absent.
 */
#include <errno.h>

#include "msg.h"

unsigned vq_shard_count(const struct vq_shard *s)
{
	return 1;
}

int vq_msg_send(struct vq_shard *from, unsigned dst, vq_msg_fn fn, void *arg)
{
	return -ENOSYS;
}

int vq_msg_call(struct vq_shard *from, unsigned dst, vq_call_fn fn, void *arg,
		vq_reply_fn on_reply, void *ctx)
{
	return -ENOSYS;
}

int vq_msg_broadcast(struct vq_shard *from, vq_call_fn fn, void *arg, vq_gather_fn done,
		     void *ctx)
{
	return -ENOSYS;
}

void vq_msg_wait_space(struct vq_shard *from, unsigned dst, struct vq_task *t)
{
}
