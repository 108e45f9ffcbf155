/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpulist.h"

static int parse_cpu(const char **p, long *out)
{
	char *end;

	if (!isdigit((unsigned char)**p))
		return -1;
	*out = strtol(*p, &end, 10);
	*p = end;
	return *out >= CPU_SETSIZE ? -1 : 0;
}

int vq_cpulist_parse(const char *text, cpu_set_t *set, char *err, size_t errlen)
{
	const char *p = text;

	CPU_ZERO(set);
	while (isspace((unsigned char)*p))
		p++;
	if (!*p) {
		snprintf(err, errlen, "empty CPU list");
		return -1;
	}
	while (*p) {
		const char *start = p;
		long lo, hi;

		if (parse_cpu(&p, &lo))
			goto bad;
		hi = lo;
		if (*p == '-') {
			p++;
			if (parse_cpu(&p, &hi))
				goto bad;
			if (hi < lo) {
				snprintf(err, errlen, "'%.*s' is a reversed range", (int)(p - start),
					 start);
				return -1;
			}
		}
		for (long c = lo; c <= hi; c++)
			CPU_SET((int)c, set);
		while (isspace((unsigned char)*p))
			p++;
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
		while (isspace((unsigned char)*p))
			p++;
	}
	return 0;
bad:
	snprintf(err, errlen, "'%s' is not a CPU list (expected e.g. 0-3,8; CPUs below %d)", text,
		 CPU_SETSIZE);
	return -1;
}

char *vq_cpulist_format(const cpu_set_t *set, char *out, size_t len)
{
	size_t n = 0;

	out[0] = 0;
	for (int c = 0; c < CPU_SETSIZE && n < len; c++) {
		int e = c;

		if (!CPU_ISSET(c, set))
			continue;
		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set))
			e++;
		if (e == c)
			n += (size_t)snprintf(out + n, len - n, "%s%d", n ? "," : "", c);
		else
			n += (size_t)snprintf(out + n, len - n, "%s%d-%d", n ? "," : "", c, e);
		c = e;
	}
	return out;
}
