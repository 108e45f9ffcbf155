/* SPDX-License-Identifier: MIT */
#ifndef VQ_LISTENER_H
#define VQ_LISTENER_H

#include <stddef.h>

struct vq_config;
struct vq_shard;

/*
 * Start-up check, before any shard binds: is the address valid and the port
 * free? SO_REUSEPORT would otherwise let a second copy of the service share
 * the port silently. Returns 0, or -errno with the reason and fix in err.
 */
int vq_listener_probe(const struct vq_config *cfg, char *err, size_t errlen);

/* Bind this shard's SO_REUSEPORT socket and arm the multishot accept. 0 or -errno. */
int vq_listener_open(struct vq_shard *s);
/* Stop accepting; the socket closes once the accept op has ended. */
void vq_listener_stop(struct vq_shard *s);
void vq_listener_close(struct vq_shard *s);

#endif
