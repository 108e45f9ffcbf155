/* SPDX-License-Identifier: MIT */
/*
 * INI configuration through libinih, driven by key tables. Every key is
 * declared once with its type, default and limits; anything not declared is an
 * error that names the file, the line and the key.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ini.h>

#include "config.h"

#define KEY(sec, nm, ty, field, def, lo, hi, reload, text)                                  \
	{ .section = sec, .name = nm, .type = ty, .offset = offsetof(struct vq_config, field),     \
	  .dflt = def, .min = lo, .max = hi, .reloadable = reload, .help = text }

static const char *const smt_choices[] = { "one-per-core", "all", NULL };
static const char *const pin_choices[] = { "core", "node", NULL };
static const char *const huge_choices[] = { "off", "try", "on", NULL };
static const char *const driver_choices[] = { "auto", "uring", "epoll", NULL };
static const char *const level_choices[] = { "", "", "", "err", "warning", "notice", "info",
					     "debug", NULL };

static const struct vq_cfg_key framework_keys[] = {
	KEY("shards", "cpus", VQ_CFG_STR, cpus, "auto", 0, 0, false,
	    "auto (every CPU the process may use), or a CPU list in the kernel's syntax (0-3,8)"),
	{ .section = "shards", .name = "smt", .type = VQ_CFG_ENUM,
	  .offset = offsetof(struct vq_config, smt), .dflt = "one-per-core",
	  .choices = smt_choices,
	  .help = "one-per-core (the first usable PU of each core) or all (every SMT sibling)" },
	KEY("shards", "exclude", VQ_CFG_STR, exclude, "", 0, 0, false,
	    "CPUs to leave free, e.g. for NIC interrupts; empty = none"),
	KEY("shards", "numa_nodes", VQ_CFG_STR, numa_nodes, "all", 0, 0, false,
	    "all, or a list of NUMA nodes the shards are restricted to"),
	KEY("shards", "count", VQ_CFG_STR, count, "auto", 0, 0, false,
	    "auto (one shard per selected CPU) or an upper bound on the number of shards"),
	{ .section = "shards", .name = "pin", .type = VQ_CFG_ENUM,
	  .offset = offsetof(struct vq_config, pin), .dflt = "core", .choices = pin_choices,
	  .help = "core (each shard on its own CPU) or node (any core-map CPU of the shard's "
		  "NUMA node: for hosts whose cores other busy processes share)" },
	KEY("listen", "address", VQ_CFG_STR, address, "127.0.0.1", 0, 0, false,
	    "IPv4 or IPv6 address to listen on"),
	KEY("listen", "port", VQ_CFG_U64, port, "7000", 1, 65535, false, "TCP port"),
	KEY("listen", "backlog", VQ_CFG_U64, backlog, "4096", 1, 1 << 20, false,
	    "accept queue length per shard"),
	KEY("buffers", "count", VQ_CFG_U64, buf_count, "1024", 16, 65536, false,
	    "registered buffers per shard"),
	KEY("buffers", "size", VQ_CFG_SIZE, buf_size, "16K", 4096, 1 << 20, false,
	    "bytes per buffer, a multiple of 4K"),
	KEY("buffers", "provided", VQ_CFG_U64, buf_provided, "512", 1, 32768, false,
	    "buffers lent to the kernel for receiving, a power of two below count"),
	{ .section = "buffers", .name = "hugepages", .type = VQ_CFG_ENUM,
	  .offset = offsetof(struct vq_config, hugepages), .dflt = "try", .choices = huge_choices,
	  .help = "explicit 2M pages: off, try (fall back to normal pages), on (required)" },
	KEY("io", "ring_entries", VQ_CFG_U64, sq_entries, "256", 8, 32768, false,
	    "submission queue entries per shard; the completion queue is 8x"),
	{ .section = "io", .name = "driver", .type = VQ_CFG_ENUM,
	  .offset = offsetof(struct vq_config, driver), .dflt = "auto", .choices = driver_choices,
	  .help = "auto (io_uring, or epoll where io_uring is blocked), uring, or epoll" },
	KEY("io", "zc_min", VQ_CFG_SIZE, zc_min, "16K", 0, 1 << 30, false,
	    "zero-copy sends (send_zc) for buffers of at least this size; below, plain send"),
	KEY("io", "recv_bundle", VQ_CFG_BOOL, recv_bundle, "no", 0, 0, false,
	    "io_uring 6.10+: let one receive fill several buffers (see docs/BENCHMARKS.md)"),
	KEY("io", "recv_cap", VQ_CFG_BOOL, recv_cap, "yes", 0, 0, false,
	    "io_uring 6.17+: end each multishot receive after 4 buffers (no: as older kernels)"),
	KEY("io", "msg_poll_us", VQ_CFG_U64, msg_poll_us, "20", 0, 10000, false,
	    "microseconds a shard keeps polling its message rings before it sleeps"),
	KEY("limits", "max_connections", VQ_CFG_U64, max_connections, "4096", 1, 1 << 24, true,
	    "open connections per shard; more are accepted and closed at once"),
	KEY("limits", "max_input", VQ_CFG_SIZE, max_input, "1M", 4096, 1ull << 32, true,
	    "unconsumed input per connection before it is closed (held-back requests excepted)"),
	KEY("limits", "max_output", VQ_CFG_SIZE, max_output, "4M", 4096, 1ull << 32, true,
	    "queued output per connection above which reading pauses"),
	KEY("limits", "idle_timeout", VQ_CFG_MS, idle_timeout_ms, "0", 0, 0, true,
	    "close connections idle this long; 0 = never"),
	KEY("limits", "stall_timeout", VQ_CFG_MS, stall_timeout_ms, "10s", 0, 0, true,
	    "close a connection with work pending that sends and takes nothing this long; 0 = never"),
	KEY("limits", "pool_stall_timeout", VQ_CFG_MS, pool_stall_timeout_ms, "2s", 0, 0, true,
	    "while the pool has run dry, close a connection whose peer acknowledged none of "
	    "its output this long; 0 = stall_timeout only"),
	KEY("shutdown", "drain_timeout", VQ_CFG_MS, drain_timeout_ms, "5s", 0, 0, true,
	    "how long SIGTERM waits for in-flight requests before closing connections"),
	{ .section = "log", .name = "level", .type = VQ_CFG_ENUM,
	  .offset = offsetof(struct vq_config, log_level), .dflt = "info",
	  .choices = level_choices, .reloadable = true,
	  .help = "err, warning, notice, info or debug" },
	KEY("debug", "stall_on_signal", VQ_CFG_BOOL, debug_stall_on_signal, "no", 0, 0, false,
	    "for tests only: SIGUSR2 makes a shard hang forever, to exercise the watchdog"),
};

const char *vq_driver_choice_name(int choice)
{
	return driver_choices[choice];
}

struct vq_cfg_table vq_config_table(struct vq_config *cfg)
{
	return (struct vq_cfg_table){ framework_keys,
				      sizeof(framework_keys) / sizeof(framework_keys[0]), cfg, NULL };
}

struct load_ctx {
	const struct vq_cfg_table *tables;
	size_t ntables;
	const char *origin; /* file name, or "-o" */
	FILE *fp;
	int line;
	char *err;
	size_t errlen;
	int failed;
	int fail_line; /* line of the first failure */
};

static int parse_u64(const char *v, uint64_t *out, enum vq_cfg_type type)
{
	char *end;
	unsigned long long n;
	uint64_t mul = 1;

	while (isspace((unsigned char)*v))
		v++;
	if (!isdigit((unsigned char)*v))
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno)
		return -1;
	if (type == VQ_CFG_SIZE) {
		switch (toupper((unsigned char)*end)) {
		case 'K': mul = 1ull << 10; end++; break;
		case 'M': mul = 1ull << 20; end++; break;
		case 'G': mul = 1ull << 30; end++; break;
		}
		if (mul > 1 && toupper((unsigned char)*end) == 'B')
			end++;
	} else if (type == VQ_CFG_MS) {
		if (!strcmp(end, "ms"))
			end += 2;
		else if (!strcmp(end, "s"))
			mul = 1000, end++;
		else if (!strcmp(end, "m"))
			mul = 60000, end++;
	}
	if (*end)
		return -1;
	if (n > UINT64_MAX / mul)
		return -1;
	*out = n * mul;
	return 0;
}

static const char *type_hint(const struct vq_cfg_key *k, char *buf, size_t len)
{
	size_t n;

	switch (k->type) {
	case VQ_CFG_BOOL:
		return "expected yes or no";
	case VQ_CFG_ENUM:
		n = (size_t)snprintf(buf, len, "expected one of:");
		for (const char *const *c = k->choices; *c; c++)
			if (**c && n < len)
				n += (size_t)snprintf(buf + n, len - n, " %s", *c);
		return buf;
	case VQ_CFG_STR:
		return "expected text";
	default:
		if (k->max)
			snprintf(buf, len, "expected %s from %" PRIu64 " to %" PRIu64,
				 k->type == VQ_CFG_SIZE ? "a size (K/M/G)" :
				 k->type == VQ_CFG_MS	 ? "a duration (ms/s/m)" : "a number",
				 k->min, k->max);
		else
			snprintf(buf, len, "expected %s of at least %" PRIu64,
				 k->type == VQ_CFG_SIZE ? "a size (K/M/G)" :
				 k->type == VQ_CFG_MS	 ? "a duration (ms/s/m)" : "a number",
				 k->min);
		return buf;
	}
}

/* Store one value; returns 0 or -1 (bad value). */
static int set_value(const struct vq_cfg_key *k, void *base, const char *v)
{
	void *dst = (char *)base + k->offset;
	uint64_t n;

	switch (k->type) {
	case VQ_CFG_U64:
	case VQ_CFG_SIZE:
	case VQ_CFG_MS:
		if (parse_u64(v, &n, k->type) || n < k->min || (k->max && n > k->max))
			return -1;
		*(uint64_t *)dst = n;
		return 0;
	case VQ_CFG_BOOL:
		if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") ||
		    !strcmp(v, "1"))
			*(bool *)dst = true;
		else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") ||
			 !strcasecmp(v, "off") || !strcmp(v, "0"))
			*(bool *)dst = false;
		else
			return -1;
		return 0;
	case VQ_CFG_STR:
		if (strlen(v) >= VQ_CFG_STR_MAX)
			return -1;
		strcpy(dst, v);
		return 0;
	case VQ_CFG_ENUM:
		for (int i = 0; k->choices[i]; i++) {
			if (k->choices[i][0] && !strcasecmp(v, k->choices[i])) {
				*(int *)dst = i;
				return 0;
			}
		}
		return -1;
	}
	return -1;
}

static const struct vq_cfg_key *find_key(const struct vq_cfg_table *tables, size_t ntables,
					 const char *section, const char *name,
					 const struct vq_cfg_table **table, size_t *index)
{
	for (size_t t = 0; t < ntables; t++) {
		for (size_t i = 0; i < tables[t].count; i++) {
			const struct vq_cfg_key *k = &tables[t].keys[i];

			if (!strcmp(k->section, section) && !strcmp(k->name, name)) {
				*table = &tables[t];
				*index = i;
				return k;
			}
		}
	}
	return NULL;
}

static void fail(struct load_ctx *c, const char *section, const char *name, const char *fmt,
		 ...) __attribute__((format(printf, 4, 5)));

static void fail(struct load_ctx *c, const char *section, const char *name, const char *fmt, ...)
{
	size_t n;
	va_list ap;

	if (c->failed++)
		return; /* the first error is the one to fix */
	c->fail_line = c->line;
	if (c->line > 0)
		n = (size_t)snprintf(c->err, c->errlen, "%s:%d: %s.%s: ", c->origin, c->line,
				     section, name);
	else
		n = (size_t)snprintf(c->err, c->errlen, "%s %s.%s: ", c->origin, section, name);
	if (n >= c->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - n, fmt, ap);
	va_end(ap);
}

static void apply(struct load_ctx *c, const char *section, const char *name, const char *value)
{
	const struct vq_cfg_table *tbl;
	size_t idx;
	const struct vq_cfg_key *k = find_key(c->tables, c->ntables, section, name, &tbl, &idx);
	char hint[160];

	if (!k) {
		/* Name the keys that do exist in that section: the usual cause is a typo. */
		size_t n = 0;

		hint[0] = 0;
		for (size_t t = 0; t < c->ntables; t++)
			for (size_t i = 0; i < c->tables[t].count; i++)
				if (!strcmp(c->tables[t].keys[i].section, section) && n < sizeof(hint))
					n += (size_t)snprintf(hint + n, sizeof(hint) - n, "%s%s",
							      n ? ", " : "",
							      c->tables[t].keys[i].name);
		if (n)
			fail(c, section, name, "unknown key (keys in [%s]: %s)", section, hint);
		else
			fail(c, section, name, "unknown key (no section [%s])", section);
		return;
	}
	if (set_value(k, tbl->base, value))
		fail(c, section, name, "bad value '%s' (%s)", value,
		     type_hint(k, hint, sizeof(hint)));
	else if (tbl->origins)
		tbl->origins[idx] = (struct vq_cfg_origin){ c->origin, c->line }; /* file outlives us */
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *c = user;

	if (!name)
		return 1; /* a section header alone */
	if (!*section) {
		if (!c->failed++) {
			c->fail_line = c->line;
			snprintf(c->err, c->errlen, "%s:%d: '%s' is outside any [section]",
				 c->origin, c->line, name);
		}
		return 0;
	}
	apply(c, section, name, value ? value : "");
	return !c->failed;
}

/* Counting lines as inih reads them gives the handler a line number. */
static char *counting_reader(char *str, int num, void *stream)
{
	struct load_ctx *c = stream;
	char *s = fgets(str, num, c->fp);

	if (s)
		c->line++;
	return s;
}

int vq_config_load(const struct vq_cfg_table *tables, size_t ntables, const char *file,
		   const char *const *overrides, size_t noverrides, char *err, size_t errlen)
{
	struct load_ctx c = { .tables = tables, .ntables = ntables, .err = err, .errlen = errlen };

	err[0] = 0;
	c.origin = "default";
	for (size_t t = 0; t < ntables; t++) {
		for (size_t i = 0; i < tables[t].count; i++) {
			if (set_value(&tables[t].keys[i], tables[t].base, tables[t].keys[i].dflt))
				fail(&c, tables[t].keys[i].section, tables[t].keys[i].name,
				     "bad default '%s'", tables[t].keys[i].dflt);
			if (tables[t].origins)
				tables[t].origins[i] = (struct vq_cfg_origin){ NULL, 0 };
		}
	}
	if (c.failed)
		return -1;

	if (file) {
		int ret;

		c.fp = fopen(file, "r");
		if (!c.fp) {
			snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
			return -1;
		}
		c.origin = file;
		ret = ini_parse_stream(counting_reader, &c, on_ini_entry, &c);
		fclose(c.fp);
		/*
		 * inih goes on after a syntax error, so a broken "[section" line shows up
		 * first as odd keys after it: the earlier error is the one to report.
		 */
		if (c.failed && (ret <= 0 || ret >= c.fail_line))
			return -1;
		if (ret) {
			snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)",
				 file, ret);
			return -1;
		}
	}

	c.origin = "-o";
	c.line = 0;
	for (size_t i = 0; i < noverrides; i++) {
		char buf[VQ_CFG_STR_MAX * 2];
		char *dot, *eq;

		snprintf(buf, sizeof(buf), "%s", overrides[i]);
		dot = strchr(buf, '.');
		eq = strchr(buf, '=');
		if (!dot || !eq || dot > eq) {
			snprintf(err, errlen, "-o %s: expected section.key=value", overrides[i]);
			return -1;
		}
		*dot = *eq = 0;
		apply(&c, buf, dot + 1, eq + 1);
		if (c.failed)
			return -1;
	}
	return 0;
}

static void format_value(const struct vq_cfg_key *k, const void *base, char *out, size_t len)
{
	const void *src = (const char *)base + k->offset;

	switch (k->type) {
	case VQ_CFG_U64:
	case VQ_CFG_SIZE:
	case VQ_CFG_MS:
		snprintf(out, len, "%" PRIu64 "%s", *(const uint64_t *)src,
			 k->type == VQ_CFG_MS ? "ms" : "");
		break;
	case VQ_CFG_BOOL:
		snprintf(out, len, "%s", *(const bool *)src ? "yes" : "no");
		break;
	case VQ_CFG_STR:
		snprintf(out, len, "%s", (const char *)src);
		break;
	case VQ_CFG_ENUM:
		snprintf(out, len, "%s", k->choices[*(const int *)src]);
		break;
	}
}

void vq_config_print(const struct vq_cfg_table *tables, size_t ntables)
{
	const char *section = "";
	char value[VQ_CFG_STR_MAX + 32];

	for (size_t t = 0; t < ntables; t++) {
		for (size_t i = 0; i < tables[t].count; i++) {
			const struct vq_cfg_key *k = &tables[t].keys[i];

			if (strcmp(section, k->section))
				printf("%s[%s]\n", *section ? "\n" : "", k->section);
			section = k->section;
			format_value(k, tables[t].base, value, sizeof(value));
			printf("%s = %s\n", k->name, value);
		}
	}
}

void vq_config_diff(const struct vq_cfg_table *old_t, const struct vq_cfg_table *new_t,
		    size_t ntables, void (*fn)(const struct vq_cfg_key *key, void *ctx), void *ctx)
{
	char a[VQ_CFG_STR_MAX + 32], b[VQ_CFG_STR_MAX + 32];

	for (size_t t = 0; t < ntables; t++) {
		for (size_t i = 0; i < old_t[t].count; i++) {
			const struct vq_cfg_key *k = &old_t[t].keys[i];

			format_value(k, old_t[t].base, a, sizeof(a));
			format_value(k, new_t[t].base, b, sizeof(b));
			if (strcmp(a, b))
				fn(k, ctx);
		}
	}
}

const char *vq_config_where(const struct vq_cfg_table *tables, size_t ntables,
			    const char *section, const char *name, char *out, size_t len)
{
	const struct vq_cfg_table *t;
	size_t i;
	const struct vq_cfg_origin *o;

	if (!find_key(tables, ntables, section, name, &t, &i) || !t->origins ||
	    !t->origins[i].file) {
		snprintf(out, len, "default");
		return out;
	}
	o = &t->origins[i];
	if (o->line > 0)
		snprintf(out, len, "%s:%d", o->file, o->line);
	else
		snprintf(out, len, "%s", o->file);
	return out;
}

static size_t value_size(const struct vq_cfg_key *k)
{
	switch (k->type) {
	case VQ_CFG_BOOL:
		return sizeof(bool);
	case VQ_CFG_STR:
		return VQ_CFG_STR_MAX;
	case VQ_CFG_ENUM:
		return sizeof(int);
	default:
		return sizeof(uint64_t);
	}
}

void vq_config_copy_reloadable(const struct vq_cfg_table *dst, const struct vq_cfg_table *src,
			       size_t ntables)
{
	for (size_t t = 0; t < ntables; t++)
		for (size_t i = 0; i < dst[t].count; i++)
			if (dst[t].keys[i].reloadable)
				memcpy((char *)dst[t].base + dst[t].keys[i].offset,
				       (const char *)src[t].base + src[t].keys[i].offset,
				       value_size(&dst[t].keys[i]));
}
