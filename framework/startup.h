/* SPDX-License-Identifier: MIT */
#ifndef VQ_STARTUP_H
#define VQ_STARTUP_H

/*
 * Start-up checks of the process's limits against the configuration. Each
 * runs on the launcher thread before any shard starts, and on failure logs
 * one error that says what is needed and how to get it, then returns -1.
 */

#include "config.h"
#include "topology.h"

/* Registered pools are charged to RLIMIT_MEMLOCK unless we have CAP_IPC_LOCK. */
int vq_check_memlock(const struct vq_config *cfg, int nshards);

/* Every connection is an fd: raise the soft limit if we may, else say how. */
int vq_check_nofile(const struct vq_config *cfg, int nshards);

/*
 * buffers.hugepages = on: each shard's node must have enough free 2 MiB pages.
 * sysroot prefixes /sys ("" for the real one).
 */
int vq_check_hugepages(const struct vq_config *cfg, const struct vq_place *place, int nshards,
		       const char *sysroot);

#endif
