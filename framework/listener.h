/* SPDX-License-Identifier: MIT */
#ifndef VQ_LISTENER_H
#define VQ_LISTENER_H

struct vq_shard;

/* Bind this shard's SO_REUSEPORT socket and arm the multishot accept. 0 or -errno. */
int vq_listener_open(struct vq_shard *s);
/* Stop accepting; the socket closes once the accept op has ended. */
void vq_listener_stop(struct vq_shard *s);
void vq_listener_close(struct vq_shard *s);

#endif
