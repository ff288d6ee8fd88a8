/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the keyed operators of two inputs share at build time (two_input.h
 * says what else they share, inline): key type compatibility and the
 * default output schema of a join.
 */
#include <stdio.h>
#include <string.h>

#include "ops.h"
#include "two_input.h"

bool key_types_match(weir_type a, weir_type b)
{
	if (a == WEIR_TS)
		a = WEIR_I64;
	if (b == WEIR_TS)
		b = WEIR_I64;
	return a == b;
}

const weir_schema *join_concat_schema(weir_env *env, const char *what,
				      const char *nm, const weir_schema *a,
				      const weir_schema *b)
{
	weir_schema *o;
	if (a->ncols + b->ncols > WEIR_MAX_COLS) {
		env_error(env, "%s '%s': %d output columns (at most %d)", what, nm,
			  a->ncols + b->ncols, WEIR_MAX_COLS);
		return NULL;
	}
	o = env_alloc_schema(env);
	if (!o)
		return NULL;
	*o = *a;
	for (int i = 0; i < b->ncols; i++) {
		weir_field f = b->fields[i];
		if (weir_schema_find(o, f.name) >= 0) {
			char nmb[WEIR_MAX_NAME];
			snprintf(nmb, sizeof(nmb), "b_%.*s", WEIR_MAX_NAME - 3, f.name);
			memcpy(f.name, nmb, sizeof(nmb));
			if (weir_schema_find(o, f.name) >= 0 ||
			    weir_schema_find(b, f.name) >= 0) {
				env_error(env, "%s '%s': cannot name b's column "
					  "'%s' in the output ('%s' is taken)", what, nm,
					  b->fields[i].name, f.name);
				return NULL;
			}
		}
		o->fields[o->ncols++] = f;
	}
	return o;
}
