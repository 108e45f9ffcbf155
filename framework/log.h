/* SPDX-License-Identifier: MIT */
#ifndef VQ_LOG_H
#define VQ_LOG_H

/* Syslog priorities, so journald can read them from a "<N>" prefix. */
enum vq_log_level {
	VQ_LOG_ERR = 3,
	VQ_LOG_WARNING = 4,
	VQ_LOG_NOTICE = 5,
	VQ_LOG_INFO = 6,
	VQ_LOG_DEBUG = 7,
};

/* Set the most verbose level written; any thread, takes effect at once. */
void vq_log_set_level(enum vq_log_level level);
enum vq_log_level vq_log_get_level(void);

/* Parse "err|warning|notice|info|debug"; returns -1 if unknown. */
int vq_log_level_parse(const char *name);
const char *vq_log_level_name(enum vq_log_level level);

/* The shard id printed on this thread's lines (-1: none). */
void vq_log_set_shard(int shard);

/*
 * Write one line to stderr: "<N>" prefix when stderr is the journal
 * (JOURNAL_STREAM matches it), then "shard N: " when on a shard. One write()
 * per line, so lines from different shards never interleave.
 */
void vq_log(enum vq_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define vq_err(...)    vq_log(VQ_LOG_ERR, __VA_ARGS__)
#define vq_warn(...)   vq_log(VQ_LOG_WARNING, __VA_ARGS__)
#define vq_notice(...) vq_log(VQ_LOG_NOTICE, __VA_ARGS__)
#define vq_info(...)   vq_log(VQ_LOG_INFO, __VA_ARGS__)
#define vq_debug(...)  vq_log(VQ_LOG_DEBUG, __VA_ARGS__)

#endif
