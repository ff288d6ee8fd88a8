/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The window spec (weir_window_spec, include/weir/keyed.h): parsing its
 * text form (weir_window_parse: "tumbling:SIZE", "sliding:SIZE:SLIDE",
 * "session:GAP", "count:SIZE[:SLIDE]"), checking one, and what every
 * window builder (window_build.c) starts with (win_begin: a checked spec
 * over a keyed input).  Build time, on the thread that builds
 * the job.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "window.h"

/* ---- the spec ------------------------------------------------------------------------ */

/* A strictly parsed decimal integer > 0 ending at ':' or the end. */
static const char *parse_pos(const char *p, int64_t *out)
{
	int64_t v = 0;
	if (*p < '0' || *p > '9')
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - (*p - '0')) / 10)
			return NULL;
		v = v * 10 + (*p - '0');
	}
	if ((*p && *p != ':') || v <= 0)
		return NULL;
	*out = v;
	return p;
}

int weir_window_parse(const char *text, weir_window_spec *w)
{
	static const struct { const char *name; weir_window_kind kind; int min, max; } kinds[] = {
		{ "tumbling", WEIR_WIN_TUMBLING, 1, 1 },
		{ "sliding", WEIR_WIN_SLIDING, 2, 2 },
		{ "session", WEIR_WIN_SESSION, 1, 1 },
		{ "count", WEIR_WIN_COUNT, 1, 2 },
	};
	weir_window_spec ws;
	int64_t n[2] = { 0, 0 };
	int k, nn = 0;

	if (!text || !w)
		return -EINVAL;
	const char *p = strchr(text, ':');
	if (!p)
		return -EINVAL;
	for (k = 0; k < (int)ARRAY_SIZE(kinds); k++)
		if (strlen(kinds[k].name) == (size_t)(p - text) &&
		    !strncmp(text, kinds[k].name, (size_t)(p - text)))
			break;
	if (k == (int)ARRAY_SIZE(kinds))
		return -EINVAL;
	while (*p == ':') {
		if (nn == kinds[k].max || !(p = parse_pos(p + 1, &n[nn])))
			return -EINVAL;
		nn++;
	}
	if (*p || nn < kinds[k].min)
		return -EINVAL;
	memset(&ws, 0, sizeof(ws));
	ws.kind = kinds[k].kind;
	if (ws.kind == WEIR_WIN_SESSION) {
		ws.gap = n[0];
	} else {
		ws.size = n[0];
		ws.slide = n[1];
	}
	*w = ws;
	return 0;
}

/* Check a spec; false after recording an env error. */
static bool spec_check(weir_env *env, const char *nm, const weir_window_spec *w)
{
	const int64_t max_per_record = 1 << 16;

	if (!w) {
		env_error(env, "window '%s': no window spec", nm);
		return false;
	}
	if (w->time != WEIR_EVENT_TIME && w->time != WEIR_PROCESSING_TIME) {
		env_error(env, "window '%s': unknown time domain %d", nm, (int)w->time);
		return false;
	}
	if (w->allowed_lateness < 0 || w->trigger_count < 0 || w->early_fire_ms < 0) {
		env_error(env, "window '%s': allowed_lateness, trigger_count and "
			  "early_fire_ms must be >= 0", nm);
		return false;
	}
	switch (w->kind) {
	case WEIR_WIN_TUMBLING:
		if (w->size <= 0) {
			env_error(env, "window '%s': tumbling window size must be > 0 ms (got %lld)",
				  nm, (long long)w->size);
			return false;
		}
		return true;
	case WEIR_WIN_SLIDING:
		if (w->size <= 0 || w->slide <= 0) {
			env_error(env, "window '%s': sliding window size and slide must be > 0 ms "
				  "(got %lld and %lld)", nm, (long long)w->size, (long long)w->slide);
			return false;
		}
		if (w->size / w->slide >= max_per_record) {
			env_error(env, "window '%s': sliding window size %lld / slide %lld puts a "
				  "record in too many windows (at most %lld)", nm,
				  (long long)w->size, (long long)w->slide,
				  (long long)max_per_record);
			return false;
		}
		return true;
	case WEIR_WIN_SESSION:
		if (w->gap <= 0) {
			env_error(env, "window '%s': session gap must be > 0 ms (got %lld)", nm,
				  (long long)w->gap);
			return false;
		}
		return true;
	case WEIR_WIN_COUNT:
		if (w->size <= 0 || w->slide < 0) {
			env_error(env, "window '%s': count window size must be > 0 and slide >= 0 "
				  "(got %lld and %lld)", nm, (long long)w->size, (long long)w->slide);
			return false;
		}
		if (w->slide && (w->size - 1) / w->slide + 1 >= max_per_record) {
			env_error(env, "window '%s': count window size %lld / slide %lld puts a "
				  "record in too many windows", nm, (long long)w->size,
				  (long long)w->slide);
			return false;
		}
		if (w->trigger_count || w->early_fire_ms || w->allowed_lateness) {
			env_error(env, "window '%s': count windows fire by count only "
				  "(trigger_count, early_fire_ms and allowed_lateness must be 0)", nm);
			return false;
		}
		return true;
	default:
		env_error(env, "window '%s': unknown window kind %d", nm, (int)w->kind);
		return false;
	}
}

/* ---- what every builder starts with ------------------------------------------------- */

win_conf *win_begin(weir_stream *keyed, const char *nm,
			   const weir_window_spec *w)
{
	weir_env *env;
	win_conf *c;
	int kc;

	if (!keyed)
		return NULL;
	env = stream_env(keyed);
	kc = stream_key_col(keyed);
	if (kc < 0) {
		env_error(env, "window '%s': the input is not keyed (call weir_key_by first)", nm);
		return NULL;
	}
	if (!spec_check(env, nm, w))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return NULL;
	}
	c->w = *w;
	c->nin = 1;
	c->key_col[0] = kc;
	c->in[0] = weir_stream_schema(keyed);
	c->key_type = c->in[0]->fields[kc].type;
	c->col = -1;
	return c;
}
