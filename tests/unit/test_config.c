/* SPDX-License-Identifier: MIT */
#include "vq_check.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "cpulist.h"

static char path[64];

static const char *write_file(const char *text)
{
	FILE *f;

	strcpy(path, "/tmp/vq_cfg_XXXXXX");
	close(mkstemp(path));
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

static int load(struct vq_config *cfg, const char *text, const char *const *ov, size_t nov,
		char *err, size_t errlen)
{
	struct vq_cfg_table t = vq_config_table(cfg);
	int ret = vq_config_load(&t, 1, text ? write_file(text) : NULL, ov, nov, err, errlen);

	if (text)
		unlink(path);
	return ret;
}

START_TEST(defaults_without_a_file)
{
	struct vq_config cfg;
	char err[256];

	ck_assert_int_eq(load(&cfg, NULL, NULL, 0, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.port, 7000);
	ck_assert_uint_eq(cfg.buf_size, 16384);
	ck_assert_uint_eq(cfg.drain_timeout_ms, 5000);
	ck_assert_str_eq(cfg.address, "127.0.0.1");
}
END_TEST

START_TEST(file_then_overrides)
{
	struct vq_config cfg;
	char err[256];
	const char *ov[] = { "listen.port=9100", "log.level=debug" };

	ck_assert_int_eq(load(&cfg,
			      "; comment\n[listen]\nport = 8000\naddress = ::1\n\n[buffers]\n"
			      "size = 64K\ncount = 256\n[shutdown]\ndrain_timeout = 250ms\n",
			      ov, 2, err, sizeof(err)),
			 0);
	ck_assert_uint_eq(cfg.port, 9100); /* -o wins over the file */
	ck_assert_str_eq(cfg.address, "::1");
	ck_assert_uint_eq(cfg.buf_size, 65536);
	ck_assert_uint_eq(cfg.buf_count, 256);
	ck_assert_uint_eq(cfg.drain_timeout_ms, 250);
	ck_assert_int_eq(cfg.log_level, 7);
}
END_TEST

START_TEST(unknown_key_names_file_line_and_key)
{
	struct vq_config cfg;
	char err[256];

	ck_assert_int_eq(load(&cfg, "[listen]\nport = 1\n\nprot = 2\n", NULL, 0, err, sizeof(err)),
			 -1);
	ck_assert_ptr_nonnull(strstr(err, ":4: listen.prot: unknown key"));
	ck_assert_ptr_nonnull(strstr(err, "port")); /* the keys that do exist */
	ck_assert_int_eq(load(&cfg, "[nope]\nx = 1\n", NULL, 0, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ":2: nope.x: unknown key (no section [nope])"));
}
END_TEST

START_TEST(bad_values_say_what_is_expected)
{
	struct vq_config cfg;
	char err[256];
	const char *ov[] = { "listen.port=70000" };

	ck_assert_int_eq(load(&cfg, "[buffers]\nsize = lots\n", NULL, 0, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ":2: buffers.size: bad value 'lots'"));
	ck_assert_ptr_nonnull(strstr(err, "K/M/G"));
	ck_assert_int_eq(load(&cfg, NULL, ov, 1, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "-o listen.port: bad value '70000'"));
	ck_assert_ptr_nonnull(strstr(err, "1 to 65535"));
	ck_assert_int_eq(load(&cfg, "[log]\nlevel = loud\n", NULL, 0, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "err warning notice info debug"));
	ck_assert_int_eq(load(&cfg, "[listen\nport=1\n", NULL, 0, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ":1: syntax error")); /* the broken header, not its keys */
	ck_assert_int_eq(load(&cfg, "port = 1\n", NULL, 0, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ":1: 'port' is outside any [section]"));
	ck_assert_int_eq(load(&cfg, "[listen]\nport 1\n", NULL, 0, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ":2: syntax error"));
}
END_TEST

START_TEST(missing_file_and_bad_override)
{
	struct vq_config cfg;
	struct vq_cfg_table t = vq_config_table(&cfg);
	char err[256];
	const char *ov[] = { "portonly" };

	ck_assert_int_eq(vq_config_load(&t, 1, "/nonexistent/x.ini", NULL, 0, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/x.ini: cannot open"));
	ck_assert_int_eq(vq_config_load(&t, 1, NULL, ov, 1, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "expected section.key=value"));
}
END_TEST

static void count(const struct vq_cfg_key *k, void *ctx)
{
	(*(int *)ctx)++;
	(void)k;
}

START_TEST(diff_reports_changed_keys)
{
	struct vq_config a, b;
	char err[256];
	const char *ov[] = { "log.level=debug", "listen.port=1234" };
	int changed = 0;
	struct vq_cfg_table ta = vq_config_table(&a), tb = vq_config_table(&b);

	ck_assert_int_eq(vq_config_load(&ta, 1, NULL, NULL, 0, err, sizeof(err)), 0);
	ck_assert_int_eq(vq_config_load(&tb, 1, NULL, ov, 2, err, sizeof(err)), 0);
	vq_config_diff(&ta, &tb, 1, count, &changed);
	ck_assert_int_eq(changed, 2);
}
END_TEST

START_TEST(cpu_lists)
{
	cpu_set_t set;
	char err[128], out[64];

	ck_assert_int_eq(vq_cpulist_parse("0-3,8, 10-11", &set, err, sizeof(err)), 0);
	ck_assert_int_eq(CPU_COUNT(&set), 7);
	ck_assert_str_eq(vq_cpulist_format(&set, out, sizeof(out)), "0-3,8,10-11");
	ck_assert_int_eq(vq_cpulist_parse("3-1", &set, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "reversed"));
	ck_assert_int_eq(vq_cpulist_parse("a", &set, err, sizeof(err)), -1);
	ck_assert_int_eq(vq_cpulist_parse("", &set, err, sizeof(err)), -1);
	ck_assert_int_eq(vq_cpulist_parse("1,", &set, err, sizeof(err)), 0);
}
END_TEST

START_TEST(origins_name_file_line)
{
	static struct vq_config cfg;
	struct vq_cfg_origin origins[64];
	struct vq_cfg_table t = vq_config_table(&cfg);
	const char *ov[] = { "listen.port=9000" };
	char err[256], where[300];

	ck_assert_uint_le(t.count, 64);
	t.origins = origins;
	write_file("; comment\n[shards]\ncpus = 0\n\n[listen]\nport = 8000\nbacklog = 16\n");
	ck_assert(!vq_config_load(&t, 1, path, ov, 1, err, sizeof(err)));
	unlink(path);
	snprintf(err, sizeof(err), "%s:3", path);
	ck_assert_str_eq(vq_config_where(&t, 1, "shards", "cpus", where, sizeof(where)), err);
	snprintf(err, sizeof(err), "%s:7", path);
	ck_assert_str_eq(vq_config_where(&t, 1, "listen", "backlog", where, sizeof(where)), err);
	ck_assert_str_eq(vq_config_where(&t, 1, "listen", "port", where, sizeof(where)), "-o");
	ck_assert_str_eq(vq_config_where(&t, 1, "shards", "smt", where, sizeof(where)), "default");
	ck_assert_str_eq(cfg.cpus, "0");
	ck_assert_str_eq(cfg.count, "auto");
	ck_assert_int_eq(cfg.smt, VQ_SMT_ONE_PER_CORE);
}
END_TEST

START_TEST(copy_reloadable_keeps_the_rest)
{
	static struct vq_config a, b;
	struct vq_cfg_table ta = vq_config_table(&a), tb = vq_config_table(&b);
	char err[256];

	ck_assert(!vq_config_load(&ta, 1, NULL, NULL, 0, err, sizeof(err)));
	ck_assert(!vq_config_load(&tb, 1, NULL, NULL, 0, err, sizeof(err)));
	strcpy(b.cpus, "7");
	b.port = 1234;
	b.max_connections = 5;
	b.idle_timeout_ms = 99;
	b.drain_timeout_ms = 77;
	b.log_level = 7;
	vq_config_copy_reloadable(&ta, &tb, 1);
	ck_assert_str_eq(a.cpus, "auto");
	ck_assert_uint_eq(a.port, 7000);
	ck_assert_uint_eq(a.max_connections, 5);
	ck_assert_uint_eq(a.idle_timeout_ms, 99);
	ck_assert_uint_eq(a.drain_timeout_ms, 77);
	ck_assert_int_eq(a.log_level, 7);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config api");

	tcase_add_test(tc, defaults_without_a_file);
	tcase_add_test(tc, file_then_overrides);
	tcase_add_test(tc, unknown_key_names_file_line_and_key);
	tcase_add_test(tc, bad_values_say_what_is_expected);
	tcase_add_test(tc, missing_file_and_bad_override);
	tcase_add_test(tc, diff_reports_changed_keys);
	tcase_add_test(tc, cpu_lists);
	suite_add_tcase(s, tc);
	tc = tcase_create("origins and reload");
	tcase_add_test(tc, origins_name_file_line);
	tcase_add_test(tc, copy_reloadable_keeps_the_rest);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return vq_check_run(suite());
}
