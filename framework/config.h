/* SPDX-License-Identifier: MIT */
#ifndef VQ_CONFIG_H
#define VQ_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VQ_CFG_STR_MAX 256

enum vq_cfg_type {
	VQ_CFG_U64,  /* uint64_t, plain integer */
	VQ_CFG_SIZE, /* uint64_t bytes; accepts K, M, G suffixes (powers of 1024) */
	VQ_CFG_MS,   /* uint64_t milliseconds; accepts ms, s, m suffixes */
	VQ_CFG_BOOL, /* bool; yes/no, true/false, on/off, 1/0 */
	VQ_CFG_STR,  /* char[VQ_CFG_STR_MAX] */
	VQ_CFG_ENUM, /* int: index into `choices` */
};

/* One configuration key: where it is stored, its default, and its limits. */
struct vq_cfg_key {
	const char *section;
	const char *name;
	enum vq_cfg_type type;
	size_t offset;             /* into the table's base struct */
	const char *dflt;          /* parsed like a value from a file */
	uint64_t min, max;         /* numeric types; max 0 = no limit */
	const char *const *choices; /* VQ_CFG_ENUM: NULL-terminated */
	bool reloadable;           /* applied by SIGHUP without a restart */
	const char *help;
};

/* Where a key's value came from: file:line, an -o override, or the default. */
struct vq_cfg_origin {
	const char *file; /* the config path, "-o", or NULL for the default */
	int line;         /* 1-based line in file; 0 for -o and defaults */
};

/*
 * A set of keys and the struct they fill. Apps add their own table to the framework's.
 * `origins`, when not NULL, has `count` entries that vq_config_load() fills so that
 * checks made after parsing can cite the line of the key they reject.
 */
struct vq_cfg_table {
	const struct vq_cfg_key *keys;
	size_t count;
	void *base;
	struct vq_cfg_origin *origins;
};

/* The framework's own settings. */
enum vq_smt { VQ_SMT_ONE_PER_CORE = 0, VQ_SMT_ALL };
/* Where a shard's thread may run: its own CPU, or any core-map CPU of its NUMA node. */
enum vq_pin { VQ_PIN_CORE = 0, VQ_PIN_NODE };

struct vq_config {
	char cpus[VQ_CFG_STR_MAX];       /* "auto" or a CPU list */
	int smt;                         /* enum vq_smt */
	char exclude[VQ_CFG_STR_MAX];    /* CPU list, "" = none */
	char numa_nodes[VQ_CFG_STR_MAX]; /* node list, "" or "all" = every node */
	char count[VQ_CFG_STR_MAX];      /* "auto" or an upper bound */
	int pin;                         /* enum vq_pin */
	char address[VQ_CFG_STR_MAX];
	uint64_t port;
	uint64_t backlog;
	uint64_t buf_count;
	uint64_t buf_size;
	uint64_t buf_provided;
	int hugepages;
	uint64_t sq_entries;
	int driver;               /* enum vq_driver_choice */
	uint64_t zc_min;
	bool recv_bundle;
	bool recv_cap;
	uint64_t msg_poll_us;
	uint64_t max_connections;
	uint64_t max_input;
	uint64_t max_output;
	uint64_t idle_timeout_ms;
	uint64_t stall_timeout_ms;
	uint64_t pool_stall_timeout_ms;
	uint64_t drain_timeout_ms;
	int log_level;
	bool debug_stall_on_signal; /* tests only: SIGUSR2 hangs a shard (the watchdog test) */
};

/* io.driver */
enum vq_driver_choice { VQ_DRIVER_AUTO = 0, VQ_DRIVER_URING, VQ_DRIVER_EPOLL };

/* io.driver's value as written in a config file ("auto", "uring", "epoll"). */
const char *vq_driver_choice_name(int choice);

/* The framework's table, filling *cfg. */
struct vq_cfg_table vq_config_table(struct vq_config *cfg);

/*
 * Fill every table: defaults first, then `file` (NULL: none), then each
 * "section.key=value" override in order. Returns 0, or -1 with one message
 * in err such as "echo.ini:12: listen.port: 'x' is not a number (0..65535)".
 */
int vq_config_load(const struct vq_cfg_table *tables, size_t ntables, const char *file,
		   const char *const *overrides, size_t noverrides, char *err, size_t errlen);

/* Write every key's resolved value as an INI file, to stdout. */
void vq_config_print(const struct vq_cfg_table *tables, size_t ntables);

/* Compare two loads of the same tables key by key; call fn for each changed key. */
void vq_config_diff(const struct vq_cfg_table *old_t, const struct vq_cfg_table *new_t,
		    size_t ntables, void (*fn)(const struct vq_cfg_key *key, void *ctx),
		    void *ctx);

/*
 * Where section.name got its value, formatted for an error message: "echo.ini:12",
 * "-o" or "default" (also when the tables carry no origins). Returns out.
 */
const char *vq_config_where(const struct vq_cfg_table *tables, size_t ntables,
			    const char *section, const char *name, char *out, size_t len);

/*
 * Copy every reloadable key's value from src to dst (tables of the same keys,
 * e.g. two loads). Non-reloadable keys in dst keep their values: that is how a
 * reload leaves e.g. shards.cpus as it was until the next restart.
 */
void vq_config_copy_reloadable(const struct vq_cfg_table *dst, const struct vq_cfg_table *src,
			       size_t ntables);

#endif
