/* SPDX-License-Identifier: MIT */
/* io.driver: which driver a shard runs, and the automatic fallback to epoll. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "driver_select.h"
#include "log.h"

static atomic_flag logged = ATOMIC_FLAG_INIT;

static bool blocked(int err)
{
	return err == -EPERM || err == -ENOSYS || err == -ENOMEM;
}

static const char *hint(int err, enum vq_driver_choice choice)
{
	if (err == -ENOMEM)
		return " (registered buffers count against RLIMIT_MEMLOCK: raise it with "
		       "'ulimit -l' or LimitMEMLOCK= in the unit, lower buffers.count, or set "
		       "io.driver = auto)";
	if ((err == -EPERM || err == -ENOSYS) && choice == VQ_DRIVER_URING)
		return " (io_uring is blocked here: a seccomp profile, the "
		       "kernel.io_uring_disabled sysctl, or an old kernel; set io.driver = auto "
		       "or epoll)";
	return "";
}

int vq_driver_open(struct vq_driver *d, enum vq_driver_choice choice,
		   const struct vq_driver_params *p, struct vq_pool *pool, char *err,
		   size_t errlen)
{
	const char *step = "io_uring setup";
	int ret;

	d->ops = choice == VQ_DRIVER_EPOLL ? &vq_epoll_driver : &vq_uring_driver;
	ret = d->ops->init(d, p);
	if (!ret) {
		step = "registering buffers";
		ret = d->ops->register_pool(d, pool);
		if (ret) {
			d->ops->unregister_pool(d);
			d->ops->fini(d);
		}
	}
	if (ret && choice == VQ_DRIVER_AUTO && blocked(ret)) {
		if (!atomic_flag_test_and_set(&logged))
			vq_notice("io.driver = auto: io_uring unavailable (%s: %s); using epoll%s",
				  step, strerror(-ret),
				  ret == -ENOMEM ? " (raise RLIMIT_MEMLOCK for io_uring)" : "");
		*d = (struct vq_driver){ .ops = &vq_epoll_driver };
		ret = d->ops->init(d, p);
		step = "epoll setup";
		if (!ret)
			ret = d->ops->register_pool(d, pool);
	}
	if (ret)
		snprintf(err, errlen, "%s (io.driver = %s): %s%s", step, d->ops->name,
			 strerror(-ret), hint(ret, choice));
	return ret;
}
