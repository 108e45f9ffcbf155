/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "proto.h"
#include "store.h"

#define E_FORMAT "CLIENT_ERROR bad command line format"

struct toks {
	const char *p, *end;
};

/* memcached splits on single spaces and skips empty tokens. */
static bool next_tok(struct toks *t, const char **tok, size_t *n)
{
	while (t->p < t->end && *t->p == ' ')
		t->p++;
	if (t->p >= t->end)
		return false;
	*tok = t->p;
	while (t->p < t->end && *t->p != ' ')
		t->p++;
	*n = (size_t)(t->p - *tok);
	return true;
}

static bool tok_is(const char *tok, size_t n, const char *word)
{
	return strlen(word) == n && !memcmp(tok, word, n);
}

static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(p[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static bool parse_u32(const char *p, size_t n, uint32_t *out)
{
	uint64_t v;

	if (!parse_u64(p, n, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool parse_i64(const char *p, size_t n, int64_t *out)
{
	uint64_t v;
	bool neg = n && *p == '-';

	if (neg)
		p++, n--;
	if (!parse_u64(p, n, &v) || v > (uint64_t)INT64_MAX)
		return false;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

bool kv_key_ok(const char *key, size_t nkey)
{
	if (nkey == 0 || nkey > KV_KEY_MAX)
		return false;
	for (size_t i = 0; i < nkey; i++) {
		unsigned char c = (unsigned char)key[i];

		if (c <= ' ' || c == 0x7f)
			return false;
	}
	return true;
}

int kv_next_key(const char **p, const char *end, const char **key, size_t *nkey)
{
	struct toks t = { *p, end };

	if (!next_tok(&t, key, nkey))
		return 0;
	*p = t.p;
	return kv_key_ok(*key, *nkey) ? 1 : -1;
}

int64_t kv_exptime(int64_t raw, int64_t now)
{
	if (raw == 0)
		return 0;
	if (raw < 0)
		return 1; /* a second long past: expired already */
	if (raw > KV_REALTIME_MAXDELTA)
		return raw <= now ? 1 : raw;
	return now + raw;
}

size_t kv_line_limit(const char *start, size_t n)
{
	if ((n >= 4 && (!memcmp(start, "get ", 4) || !memcmp(start, "gat ", 4))) ||
	    (n >= 5 && (!memcmp(start, "gets ", 5) || !memcmp(start, "gats ", 5))))
		return KV_GETLINE_MAX;
	return KV_LINE_MAX;
}

static const struct {
	const char *name;
	enum kv_cmd_type type;
} commands[] = {
	{ "get", KV_C_GET },         { "gets", KV_C_GETS },       { "set", KV_C_SET },
	{ "delete", KV_C_DELETE },   { "incr", KV_C_INCR },       { "decr", KV_C_DECR },
	{ "add", KV_C_ADD },         { "replace", KV_C_REPLACE }, { "append", KV_C_APPEND },
	{ "prepend", KV_C_PREPEND }, { "cas", KV_C_CAS },         { "touch", KV_C_TOUCH },
	{ "gat", KV_C_GAT },         { "gats", KV_C_GATS },       { "flush_all", KV_C_FLUSH_ALL },
	{ "version", KV_C_VERSION }, { "verbosity", KV_C_VERBOSITY }, { "stats", KV_C_STATS },
	{ "quit", KV_C_QUIT },
};

/* An optional final "noreply"; anything else left on the line is an error. */
static bool tail_noreply(struct toks *t, struct kv_cmd *cmd)
{
	const char *tok;
	size_t n;

	if (!next_tok(t, &tok, &n))
		return true;
	if (!tok_is(tok, n, "noreply"))
		return false;
	cmd->noreply = true;
	return !next_tok(t, &tok, &n);
}

static int parse_storage(struct toks *t, struct kv_cmd *cmd, const char **err, uint64_t *swallow)
{
	const char *tok[4];
	size_t n[4];
	bool key_ok;

	for (int i = 0; i < 4; i++)
		if (!next_tok(t, &tok[i], &n[i]))
			return *err = "ERROR", -1;
	cmd->key = tok[0];
	cmd->nkey = n[0];
	key_ok = kv_key_ok(tok[0], n[0]);
	if (!parse_u32(tok[1], n[1], &cmd->flags) || !parse_i64(tok[2], n[2], &cmd->exptime) ||
	    !parse_u64(tok[3], n[3], &cmd->nval))
		return *err = E_FORMAT, -1;
	if (cmd->type == KV_C_CAS) {
		const char *c;
		size_t cn;

		if (!next_tok(t, &c, &cn))
			return *err = "ERROR", -1;
		if (!parse_u64(c, cn, &cmd->cas))
			return *err = E_FORMAT, -1;
	}
	if (!key_ok || !tail_noreply(t, cmd)) {
		/* The length is known: skip the data block too, so the next line is a command. */
		if (cmd->nval <= UINT64_MAX - 2)
			*swallow = cmd->nval + 2;
		return *err = E_FORMAT, -1;
	}
	return 0;
}

static int parse_key(struct toks *t, struct kv_cmd *cmd, const char **err)
{
	if (!next_tok(t, &cmd->key, &cmd->nkey))
		return *err = "ERROR", -1;
	if (!kv_key_ok(cmd->key, cmd->nkey))
		return *err = E_FORMAT, -1;
	return 0;
}

int kv_parse(const char *line, size_t len, struct kv_cmd *cmd, const char **err,
	     uint64_t *swallow)
{
	struct toks t = { line, line + len };
	const char *tok;
	size_t n;
	size_t i;

	*swallow = 0;
	memset(cmd, 0, sizeof(*cmd));
	if (len && line[len - 1] == '\r')
		t.end--;
	if (!next_tok(&t, &tok, &n))
		return *err = "ERROR", -1;
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (tok_is(tok, n, commands[i].name))
			break;
	if (i == sizeof(commands) / sizeof(commands[0]))
		return *err = "ERROR", -1;
	cmd->type = commands[i].type;

	switch (cmd->type) {
	case KV_C_GAT:
	case KV_C_GATS:
		if (!next_tok(&t, &tok, &n))
			return *err = "ERROR", -1;
		if (!parse_i64(tok, n, &cmd->exptime))
			return *err = "CLIENT_ERROR invalid exptime argument", -1;
		cmd->keys = t.p;
		cmd->end = t.end;
		return 0; /* no keys is fine here: just END, as memcached answers */
	case KV_C_GET:
	case KV_C_GETS:
		cmd->keys = t.p;
		cmd->end = t.end;
		{
			struct toks k = t;

			if (!next_tok(&k, &tok, &n))
				return *err = "ERROR", -1;
		}
		return 0;
	case KV_C_SET:
	case KV_C_ADD:
	case KV_C_REPLACE:
	case KV_C_APPEND:
	case KV_C_PREPEND:
	case KV_C_CAS:
		return parse_storage(&t, cmd, err, swallow);
	case KV_C_DELETE:
		if (parse_key(&t, cmd, err))
			return -1;
		if (next_tok(&t, &tok, &n)) {
			/* "delete <key> 0" is tolerated for old clients; other times are not */
			if (tok_is(tok, n, "noreply")) {
				cmd->noreply = true;
				if (next_tok(&t, &tok, &n))
					goto bad_delete;
			} else if (tok_is(tok, n, "0")) {
				if (!tail_noreply(&t, cmd))
					goto bad_delete;
			} else {
				goto bad_delete;
			}
		}
		return 0;
bad_delete:
		return *err = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
		       -1;
	case KV_C_INCR:
	case KV_C_DECR:
		if (parse_key(&t, cmd, err))
			return -1;
		if (!next_tok(&t, &tok, &n))
			return *err = "ERROR", -1;
		if (!parse_u64(tok, n, &cmd->delta))
			return *err = "CLIENT_ERROR invalid numeric delta argument", -1;
		if (!tail_noreply(&t, cmd))
			return *err = E_FORMAT, -1;
		return 0;
	case KV_C_TOUCH:
		if (parse_key(&t, cmd, err))
			return -1;
		if (!next_tok(&t, &tok, &n))
			return *err = "ERROR", -1;
		if (!parse_i64(tok, n, &cmd->exptime))
			return *err = "CLIENT_ERROR invalid exptime argument", -1;
		if (!tail_noreply(&t, cmd))
			return *err = E_FORMAT, -1;
		return 0;
	case KV_C_FLUSH_ALL: {
		struct toks save = t;

		if (next_tok(&t, &tok, &n) && !tok_is(tok, n, "noreply")) {
			if (!parse_i64(tok, n, &cmd->delay))
				return *err = E_FORMAT, -1;
		} else {
			t = save;
		}
		if (!tail_noreply(&t, cmd))
			return *err = E_FORMAT, -1;
		return 0;
	}
	case KV_C_VERBOSITY: {
		/* As memcached: one or two tokens, the level unchecked, a last "noreply" honoured. */
		const char *t2;
		size_t n2;

		if (!next_tok(&t, &tok, &n))
			return *err = "ERROR", -1;
		if (next_tok(&t, &t2, &n2)) {
			if (next_tok(&t, &tok, &n))
				return *err = "ERROR", -1;
			tok = t2;
			n = n2;
		}
		cmd->noreply = tok_is(tok, n, "noreply");
		return 0;
	}
	case KV_C_VERSION:
	case KV_C_QUIT:
		return 0; /* memcached ignores anything after these two */
	case KV_C_STATS:
		/* Only the general statistics; "stats <group>" is not offered. */
		if (next_tok(&t, &tok, &n))
			return *err = "ERROR", -1;
		return 0;
	}
	return *err = "ERROR", -1;
}
