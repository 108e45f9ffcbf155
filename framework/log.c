/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static _Atomic int log_level = VQ_LOG_INFO;
static __thread int log_shard = -1;
static int journal = -1; /* -1: not yet checked */

static const char *const level_names[] = {
	[VQ_LOG_ERR] = "err",       [VQ_LOG_WARNING] = "warning", [VQ_LOG_NOTICE] = "notice",
	[VQ_LOG_INFO] = "info",     [VQ_LOG_DEBUG] = "debug",
};

void vq_log_set_level(enum vq_log_level level)
{
	atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

enum vq_log_level vq_log_get_level(void)
{
	return atomic_load_explicit(&log_level, memory_order_relaxed);
}

int vq_log_level_parse(const char *name)
{
	for (int i = VQ_LOG_ERR; i <= VQ_LOG_DEBUG; i++)
		if (!strcmp(name, level_names[i]))
			return i;
	return -1;
}

const char *vq_log_level_name(enum vq_log_level level)
{
	return level >= VQ_LOG_ERR && level <= VQ_LOG_DEBUG ? level_names[level] : "?";
}

void vq_log_set_shard(int shard)
{
	log_shard = shard;
}

/* JOURNAL_STREAM is "dev:ino" of the journal socket; it counts only if stderr is it. */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%lu:%lu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st))
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

void vq_log(enum vq_log_level level, const char *fmt, ...)
{
	char line[1024];
	size_t n = 0;
	va_list ap;
	int w;

	if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	if (journal < 0)
		journal = stderr_is_journal();
	if (journal)
		n += (size_t)snprintf(line, sizeof(line), "<%d>", level);
	else
		n += (size_t)snprintf(line, sizeof(line), "%s: ", level_names[level]);
	if (log_shard >= 0)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "shard %d: ", log_shard);
	va_start(ap, fmt);
	w = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (w < 0)
		return;
	n += (size_t)w;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2; /* truncated: keep the newline */
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
		return; /* nowhere left to report it */
}
