/* SPDX-License-Identifier: MIT */
#ifndef VQ_SERVICE_H
#define VQ_SERVICE_H

#include <stddef.h>
#include "config.h"

struct vq_shard;
struct vq_conn;

/*
 * A service: what an app hands to vq_main(). Every callback runs on the shard
 * thread that owns the shard or connection; none may block.
 */
struct vq_service {
	const char *name;        /* "echo": the binary is veloq-echo */
	const char *version;
	/* The app's own config keys and the struct they fill; may be empty. */
	const struct vq_cfg_key *keys;
	size_t nkeys;
	void *config;
	size_t config_size;      /* sizeof(*config), so a reload can parse into a copy */
	/* Bytes of app state allocated (zeroed) with each connection: vq_conn_app(). */
	size_t conn_size;

	/* Per-shard set-up and tear-down on the pinned thread; return 0 or -errno. */
	int (*shard_init)(struct vq_shard *s);
	void (*shard_fini)(struct vq_shard *s);

	/* A new connection; return 0 to keep it, -errno to close it. */
	int (*on_accept)(struct vq_conn *c);
	/*
	 * Input arrived (c->in), the peer finished sending (VQ_CONN_EOF set in
	 * c->flags), or output that had filled up has drained (vq_conn_output_full).
	 * Consume what forms complete requests, stopping while the output is full;
	 * leave the rest queued for the next call. A call may bring nothing new,
	 * and VQ_CONN_EOF stays set across calls: each call means "look at what
	 * is queued", not "this happened once".
	 */
	void (*on_data)(struct vq_conn *c);
	/* The connection is gone; release what the app holds for it. */
	void (*on_close)(struct vq_conn *c);
};

/*
 * Run a service: parse the command line (--config FILE, -o section.key=value,
 * --check-config, --help, --version), start one shard per configured CPU, serve
 * until SIGTERM/SIGINT, drain and stop. Returns the process exit status.
 */
int vq_main(int argc, char **argv, const struct vq_service *svc);

#endif
