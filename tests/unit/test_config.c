/* SPDX-License-Identifier: MIT */
/* Config key origins (for file:line errors after parsing) and reloadable-key copying. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[] = "/tmp/vq-config-XXXXXX";

static void write_file(const char *text)
{
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	fputs(text, f);
	fclose(f);
}

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

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("origins and reload");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, origins_name_file_line);
	tcase_add_test(tc, copy_reloadable_keeps_the_rest);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
