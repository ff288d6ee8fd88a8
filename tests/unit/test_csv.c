/* SPDX-License-Identifier: Apache-2.0 */
/* The CSV codec: RFC 4180 splitting, values, escaping. */
#include <criterion/criterion.h>
#include <errno.h>

#include "ops.h"

static long split(const char *in, bool eof, char *scratch, csv_field *f, int *nf,
		  const char **why)
{
	*why = NULL;
	return csv_split(in, strlen(in), eof, scratch, f, 8, nf, why);
}

static void field_is(const char *scratch, csv_field f, const char *want)
{
	cr_assert_eq(f.len, strlen(want), "len %u want '%s'", f.len, want);
	cr_assert(!memcmp(scratch + f.off, want, f.len));
}

Test(csv, plain_quoted_and_crlf)
{
	char s[256];
	csv_field f[8];
	int nf;
	const char *why;

	cr_assert_eq(split("a,b,c\nnext", false, s, f, &nf, &why), 6);
	cr_assert_eq(nf, 3);
	field_is(s, f[2], "c");
	const char *q = "\"x,y\",\"say \"\"hi\"\"\",\"l1\nl2\"\r\n";
	cr_assert_eq(split(q, false, s, f, &nf, &why), (long)strlen(q));
	cr_assert_eq(nf, 3);
	field_is(s, f[0], "x,y");
	field_is(s, f[1], "say \"hi\"");
	field_is(s, f[2], "l1\nl2");
	cr_assert_gt(split("1,2\r\n", false, s, f, &nf, &why), 0);
	field_is(s, f[1], "2");
	cr_assert_eq(split("a,,\n", false, s, f, &nf, &why), 4);
	cr_assert_eq(nf, 3);
	field_is(s, f[1], "");
}

Test(csv, incomplete_records_wait_for_more)
{
	char s[256];
	csv_field f[8];
	int nf;
	const char *why;
	cr_assert_eq(split("a,b", false, s, f, &nf, &why), 0);
	cr_assert_eq(split("a,\"b\nc", false, s, f, &nf, &why), 0);
	cr_assert_eq(split("a,b", true, s, f, &nf, &why), 3);
	cr_assert_eq(nf, 2);
}

Test(csv, malformed_records_say_why)
{
	char s[256];
	csv_field f[8];
	int nf;
	const char *why;
	cr_assert_eq(split("a,\"b\"c\n", false, s, f, &nf, &why), -EINVAL);
	cr_assert_str_eq(why, "text after a closing quote");
	cr_assert_eq(split("a,b\"c\n", false, s, f, &nf, &why), -EINVAL);
	cr_assert_str_eq(why, "quote inside an unquoted field");
	cr_assert_eq(split("a,\"open", true, s, f, &nf, &why), -EINVAL);
	cr_assert_str_eq(why, "unterminated quoted field");
	cr_assert_eq(csv_skip_line("bad\"line\nnext", 13), 9);
}

Test(csv, values)
{
	int64_t v;
	double d;
	cr_assert_eq(csv_parse_value("-42", 3, WEIR_I64, &v), 0);
	cr_assert_eq(v, -42);
	cr_assert_eq(csv_parse_value("9223372036854775807", 19, WEIR_I64, &v), 0);
	cr_assert_eq(csv_parse_value("9223372036854775808", 19, WEIR_I64, &v), -EINVAL);
	cr_assert_eq(csv_parse_value("12a", 3, WEIR_I64, &v), -EINVAL);
	cr_assert_eq(csv_parse_value("", 0, WEIR_I64, &v), -EINVAL);
	cr_assert_eq(csv_parse_value(" 1", 2, WEIR_I64, &v), -EINVAL);
	cr_assert_eq(csv_parse_value("2.5e3", 5, WEIR_F64, &v), 0);
	memcpy(&d, &v, 8);
	cr_assert_float_eq(d, 2500.0, 1e-9);
	cr_assert_eq(csv_parse_value("abc", 3, WEIR_F64, &v), -EINVAL);
	cr_assert_eq(csv_parse_value("true", 4, WEIR_BOOL, &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(csv_parse_value("0", 1, WEIR_BOOL, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(csv_parse_value("yes", 3, WEIR_BOOL, &v), -EINVAL);
}

Test(csv, escape_round_trips)
{
	const char *cases[] = { "plain", "a,b", "say \"hi\"", "two\nlines", "" };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64], s[64], line[80];
		csv_field f[8];
		int nf;
		const char *why;
		size_t n = csv_escape(cases[i], strlen(cases[i]), out);
		memcpy(line, out, n);
		line[n] = '\n';
		line[n + 1] = 0;
		cr_assert_eq(split(line, false, s, f, &nf, &why), (long)n + 1);
		cr_assert_eq(nf, 1);
		field_is(s, f[0], cases[i]);
	}
}
