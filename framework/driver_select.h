/* SPDX-License-Identifier: MIT */
#ifndef VQ_DRIVER_SELECT_H
#define VQ_DRIVER_SELECT_H

#include <stddef.h>
#include "config.h"
#include "driver.h"

/*
 * Create the shard's driver per io.driver and register its pool. With `auto`,
 * io_uring is tried first; if the ring cannot be created (-EPERM: seccomp or
 * kernel.io_uring_disabled; -ENOSYS: no io_uring; -ENOMEM: memlock too low,
 * also when registering the buffers), the epoll driver takes over and the
 * choice with its reason is logged once per process. Runs on the shard thread.
 * Returns 0, or -errno with a message in err.
 */
int vq_driver_open(struct vq_driver *d, enum vq_driver_choice choice,
		   const struct vq_driver_params *p, struct vq_pool *pool, char *err,
		   size_t errlen);

#endif
