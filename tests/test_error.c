/*
 * Error table, version getters and crdt_init(). The X-macro table in
 * error.h is the single source of truth; these tests make sure every code
 * really reaches both strings and that the strings stay static.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"

typedef struct code {
	int val;
	const char *name; /* "CRDT_ENOMEM" */
	const char *msg;
} code;

static const code codes[] = {
#define X(name, val, msg) { (val), "CRDT_" #name, (msg) },
	CRDT_ERRNO_MAP(X)
#undef X
};
#define NCODES (sizeof codes / sizeof codes[0])

Test(error, every_code_has_its_own_name_and_message)
{
	for (size_t i = 0; i < NCODES; i++) {
		const char *n = crdt_err_name(codes[i].val);
		const char *m = crdt_strerror(codes[i].val);
		cr_assert_not_null(n, "%d", codes[i].val);
		cr_assert_not_null(m, "%d", codes[i].val);
		cr_assert_str_eq(n, codes[i].name);
		cr_assert_str_eq(m, codes[i].msg);
		cr_assert_str_neq(m, crdt_strerror(INT_MIN),
		    "%s falls through to the unknown string", n);
		for (size_t j = 0; j < i; j++) {
			cr_assert_neq(codes[i].val, codes[j].val,
			    "%s and %s share a value", codes[i].name,
			    codes[j].name);
			cr_assert_str_neq(n, crdt_err_name(codes[j].val));
			cr_assert_str_neq(m, crdt_strerror(codes[j].val),
			    "%s and %s share a message", n, codes[j].name);
		}
	}
}

Test(error, codes_are_negative_and_ok_is_zero)
{
	cr_assert_eq(CRDT_OK, 0);
	cr_assert_str_eq(crdt_err_name(CRDT_OK), "CRDT_OK");
	cr_assert_not_null(crdt_strerror(CRDT_OK));
	cr_assert_str_neq(crdt_strerror(CRDT_OK), crdt_strerror(INT_MIN));
	for (size_t i = 0; i < NCODES; i++)
		cr_assert_lt(codes[i].val, 0, "%s", codes[i].name);
}

/* The enum constants are what the table says (not renumbered). */
Test(error, enum_matches_table)
{
	cr_assert_eq(CRDT_ENOMEM, -1);
	cr_assert_eq(CRDT_EINVAL, -2);
	cr_assert_eq(CRDT_EMALFORMED, -3);
	cr_assert_eq(CRDT_ETOOBIG, -4);
	cr_assert_eq(CRDT_EVERSION, -5);
	cr_assert_eq(CRDT_EDRIFT, -6);
	cr_assert_eq(CRDT_EOVERFLOW, -7);
	cr_assert_eq(CRDT_ENOTFOUND, -8);
	cr_assert_eq(CRDT_ECRYPTO, -9);
	cr_assert_eq(CRDT_EBUSY, -23);
	cr_assert_eq(CRDT_EFORKED, -24);
}

/* Unknown codes get one fixed static string each, never NULL: callers
 * print crdt_strerror(rc) for whatever they got back. */
Test(error, unknown_code_gives_fixed_strings)
{
	static const int unknown[] = { 1, 7, 1000, -1000, INT_MAX, INT_MIN };
	const char *n0 = crdt_err_name(unknown[0]);
	const char *m0 = crdt_strerror(unknown[0]);
	cr_assert_not_null(n0);
	cr_assert_not_null(m0);
	cr_assert_str_eq(m0, "unknown error");
	cr_assert_str_eq(n0, "CRDT_E_UNKNOWN");
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		cr_assert_eq(crdt_err_name(unknown[i]), n0, "%d", unknown[i]);
		cr_assert_eq(crdt_strerror(unknown[i]), m0, "%d", unknown[i]);
	}
	/* One past the most negative defined code is unknown too. */
	int lowest = 0;
	for (size_t i = 0; i < NCODES; i++)
		if (codes[i].val < lowest)
			lowest = codes[i].val;
	cr_assert_eq(crdt_strerror(lowest - 1), m0);
}

/* Static strings: the same pointer every time, so nothing is allocated. */
Test(error, strings_are_static)
{
	for (size_t i = 0; i < NCODES; i++) {
		cr_assert_eq(crdt_strerror(codes[i].val),
		    crdt_strerror(codes[i].val));
		cr_assert_eq(crdt_err_name(codes[i].val),
		    crdt_err_name(codes[i].val));
	}
}

Test(error, init_succeeds_and_is_repeatable)
{
	cr_assert_eq(crdt_init(), 0);
	cr_assert_eq(crdt_init(), 0);
}

Test(version, number_matches_header)
{
	cr_assert_eq(crdt_version_number(), (unsigned)CRDT_VERSION_NUMBER);
	cr_assert_eq(CRDT_VERSION_NUMBER,
	    CRDT_VERSION_MAJOR * 10000 + CRDT_VERSION_MINOR * 100 +
		CRDT_VERSION_PATCH);
}

Test(version, string_matches_header_and_number)
{
	const char *s = crdt_version_string();
	cr_assert_not_null(s);
	cr_assert_str_eq(s, CRDT_VERSION_STRING);
	char want[64];
	snprintf(want, sizeof want, "%d.%d.%d", CRDT_VERSION_MAJOR,
	    CRDT_VERSION_MINOR, CRDT_VERSION_PATCH);
	cr_assert_str_eq(s, want);
}

/* docs/errors.md mirrors the table (error.h says this test checks it):
 * every code must appear on a line together with its numeric value. */
static bool
has_token(const char *line, const char *tok)
{
	size_t n = strlen(tok);
	for (const char *p = strstr(line, tok); p; p = strstr(p + 1, tok)) {
		char before = p == line ? ' ' : p[-1];
		char after = p[n];
		bool lb = !(before == '-' || (before >= '0' && before <= '9') ||
		    (before >= 'A' && before <= 'Z') || before == '_');
		bool rb = !((after >= '0' && after <= '9') ||
		    (after >= 'A' && after <= 'Z') || after == '_');
		if (lb && rb)
			return true;
	}
	return false;
}

Test(error, docs_table_agrees_with_header)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/docs/errors.md", CRDT_SOURCE_ROOT);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		cr_skip_test("%s not written yet", path);
	bool seen[NCODES] = { false };
	char line[1024];
	while (fgets(line, sizeof line, f) != NULL) {
		for (size_t i = 0; i < NCODES; i++) {
			char v[16];
			snprintf(v, sizeof v, "%d", codes[i].val);
			/* "CRDT_ENOMEM" or a bare "ENOMEM" column */
			if ((has_token(line, codes[i].name) ||
				has_token(line, codes[i].name + 5)) &&
			    has_token(line, v))
				seen[i] = true;
		}
	}
	fclose(f);
	for (size_t i = 0; i < NCODES; i++)
		cr_expect(seen[i], "%s (%d) missing from docs/errors.md",
		    codes[i].name, codes[i].val);
}
