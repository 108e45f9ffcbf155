/* SPDX-License-Identifier: MIT */
#ifndef VQ_CPULIST_H
#define VQ_CPULIST_H

#include <sched.h>
#include <stddef.h>

/*
 * Parse a CPU list in the kernel's syntax ("0-3,8,10-11") into set. Returns 0,
 * or -1 with a reason in err ("'3-1' is a reversed range").
 */
int vq_cpulist_parse(const char *text, cpu_set_t *set, char *err, size_t errlen);

/* Format set in the same syntax ("0-3,8"); returns out. */
char *vq_cpulist_format(const cpu_set_t *set, char *out, size_t len);

#endif
