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

/*
 * Numbers as memcached reads them (strtoul and friends): an optional sign, then
 * digits; leading zeros are fine, a value past 64 bits is not. A token never
 * holds spaces, so strtoul's leading-whitespace skip has nothing to match.
 */
static bool parse_digits(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
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

/* Unsigned: "+" allowed; any "-" refused (memcached lets "-0" through: a quirk not kept). */
static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
	if (n && *p == '+')
		p++, n--;
	return parse_digits(p, n, out);
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

	if (n && (*p == '-' || *p == '+'))
		p++, n--;
	if (!parse_digits(p, n, &v) || v > (uint64_t)INT64_MAX)
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

/*
 * A command line's tokens after the command word. More than KV_TOKS_MAX are not
 * kept: no command other than a retrieval takes that many, and too many tokens
 * is an "ERROR" whatever they are.
 */
#define KV_TOKS_MAX 7

struct args {
	const char *tok[KV_TOKS_MAX];
	size_t n[KV_TOKS_MAX];
	size_t count;             /* KV_TOKS_MAX + 1: more than fit */
};

static void split_args(struct toks *t, struct args *a)
{
	const char *tok;
	size_t n;

	a->count = 0;
	while (next_tok(t, &tok, &n)) {
		if (a->count == KV_TOKS_MAX) {
			a->count++;
			return;
		}
		a->tok[a->count] = tok;
		a->n[a->count++] = n;
	}
}

static bool arg_is(const struct args *a, size_t i, const char *word)
{
	return tok_is(a->tok[i], a->n[i], word);
}

/*
 * memcached decides noreply before anything else on a line whose token count
 * is right for the command: it is on when the last token is "noreply", and from
 * then on even the command's own errors go unanswered. A token in the noreply
 * place that is not "noreply" is ignored.
 */
static void take_noreply(const struct args *a, struct kv_cmd *cmd)
{
	cmd->noreply = a->count && arg_is(a, a->count - 1, "noreply");
}

/* <key> <flags> <exptime> <bytes> [<cas unique>] [noreply] */
static int parse_storage(const struct args *a, struct kv_cmd *cmd, const char **err,
			 uint64_t *swallow)
{
	size_t want = cmd->type == KV_C_CAS ? 5 : 4;

	if (a->count != want && a->count != want + 1)
		return *err = "ERROR", -1;
	take_noreply(a, cmd);
	cmd->key = a->tok[0];
	cmd->nkey = a->n[0];
	if (!parse_u32(a->tok[1], a->n[1], &cmd->flags) ||
	    !parse_i64(a->tok[2], a->n[2], &cmd->exptime) ||
	    !parse_u64(a->tok[3], a->n[3], &cmd->nval) ||
	    (cmd->type == KV_C_CAS && !parse_u64(a->tok[4], a->n[4], &cmd->cas)))
		return *err = E_FORMAT, -1;
	if (!kv_key_ok(cmd->key, cmd->nkey)) {
		/*
		 * The length is known: skip the data block too, so it is not read as
		 * commands. (memcached reads it as commands; it is the client's data.)
		 */
		if (cmd->nval <= UINT64_MAX - 2)
			*swallow = cmd->nval + 2;
		return *err = E_FORMAT, -1;
	}
	return 0;
}

/* delete <key> [0] [noreply]: the "0" is tolerated for old clients, other times are not. */
static int parse_delete(const struct args *a, struct kv_cmd *cmd, const char **err)
{
	if (a->count < 1 || a->count > 3)
		return *err = "ERROR", -1;
	if (a->count > 1) {
		bool zero = arg_is(a, 1, "0");

		take_noreply(a, cmd);
		if (!(a->count == 2 ? zero || cmd->noreply : zero && cmd->noreply))
			return *err = "CLIENT_ERROR bad command line format.  "
				      "Usage: delete <key> [noreply]", -1;
	}
	cmd->key = a->tok[0];
	cmd->nkey = a->n[0];
	if (!kv_key_ok(cmd->key, cmd->nkey))
		return *err = E_FORMAT, -1;
	return 0;
}

int kv_parse(const char *line, size_t len, struct kv_cmd *cmd, const char **err,
	     uint64_t *swallow)
{
	struct toks t = { line, line + len };
	struct args a;
	const char *tok;
	size_t n;
	size_t i;
	int ret;

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
	case KV_C_VERSION:
	case KV_C_QUIT:
		return 0; /* memcached ignores anything after these two */
	default:
		break;
	}

	split_args(&t, &a);
	switch (cmd->type) {
	case KV_C_SET:
	case KV_C_ADD:
	case KV_C_REPLACE:
	case KV_C_APPEND:
	case KV_C_PREPEND:
	case KV_C_CAS:
		ret = parse_storage(&a, cmd, err, swallow);
		break;
	case KV_C_DELETE:
		ret = parse_delete(&a, cmd, err);
		break;
	case KV_C_INCR:
	case KV_C_DECR:
	case KV_C_TOUCH:
		/* <key> <delta or exptime> [noreply] */
		if (a.count != 2 && a.count != 3)
			return *err = "ERROR", -1;
		take_noreply(&a, cmd);
		cmd->key = a.tok[0];
		cmd->nkey = a.n[0];
		if (!kv_key_ok(cmd->key, cmd->nkey))
			ret = (*err = E_FORMAT, -1);
		else if (cmd->type == KV_C_TOUCH)
			ret = parse_i64(a.tok[1], a.n[1], &cmd->exptime) ? 0 :
			      (*err = "CLIENT_ERROR invalid exptime argument", -1);
		else
			ret = parse_u64(a.tok[1], a.n[1], &cmd->delta) ? 0 :
			      (*err = "CLIENT_ERROR invalid numeric delta argument", -1);
		break;
	case KV_C_FLUSH_ALL:
		/* [<delay or unix time>] [noreply]: a lone "noreply" is not a time. */
		if (a.count > 2)
			return *err = "ERROR", -1;
		take_noreply(&a, cmd);
		ret = 0;
		if (a.count != (cmd->noreply ? 1u : 0u) && !parse_i64(a.tok[0], a.n[0], &cmd->delay))
			ret = (*err = "CLIENT_ERROR invalid exptime argument", -1);
		break;
	case KV_C_VERBOSITY: {
		/* <level> [noreply]; there are no levels to set, but the level must be a number. */
		uint64_t level;

		if (a.count != 1 && a.count != 2)
			return *err = "ERROR", -1;
		take_noreply(&a, cmd);
		ret = 0;
		if (!(a.count == 1 && cmd->noreply) && !parse_u64(a.tok[0], a.n[0], &level))
			ret = (*err = E_FORMAT, -1);
		break;
	}
	case KV_C_STATS:
		/* Only the general statistics; "stats <group>" is not offered. */
		if (a.count)
			return *err = "ERROR", -1;
		return 0;
	default:
		return *err = "ERROR", -1;
	}
	if (ret && cmd->noreply)
		*err = NULL; /* the command was sent with noreply: its errors too go unanswered */
	return ret;
}
