/*
 * JSON output through jansson: every string it is given is checked to be
 * UTF-8 by jansson itself, and bytes that are not printable text are
 * shown as hex, so the output always parses.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int
cli_json_print(json_t *v)
{
	if (v == NULL) {
		cli_err(NULL, "out of memory");
		return EXIT_IO;
	}
	int rc = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(v);
	if (rc != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
		cli_err(NULL, "stdout: write error");
		return EXIT_IO;
	}
	return 0;
}

json_t *
cli_json_hex(const uint8_t *p, size_t n)
{
	char *s = malloc(2 * n + 1);
	if (s == NULL)
		return NULL;
	tool_hex(p, n, s);
	json_t *v = json_stringn(s, 2 * n);
	free(s);
	return v;
}

json_t *
cli_json_u64(uint64_t v)
{
	/* JSON integers through jansson are json_int_t (long long): a
	 * larger value is written as a decimal string, not wrapped. */
	if (v > (uint64_t)INT64_MAX) {
		char b[24];
		snprintf(b, sizeof b, "%llu", (unsigned long long)v);
		return json_string(b);
	}
	return json_integer((json_int_t)v);
}

json_t *
cli_json_replica(const crdt_replica_id *id)
{
	return cli_json_hex(id->bytes, sizeof id->bytes);
}

json_t *
cli_json_dot(crdt_dot d)
{
	json_t *o = json_object();
	json_object_set_new(o, "replica", cli_json_replica(&d.replica));
	json_object_set_new(o, "counter", cli_json_u64(d.counter));
	return o;
}

json_t *
cli_json_hlc(uint64_t hlc)
{
	json_t *o = json_object();
	json_object_set_new(o, "stamp", cli_json_u64(hlc));
	json_object_set_new(o, "ms", cli_json_u64(CRDT_HLC_MS(hlc)));
	json_object_set_new(o, "logical", json_integer(CRDT_HLC_LOGICAL(hlc)));
	return o;
}

static bool
printable(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return true;
}

json_t *
cli_json_bytes(const uint8_t *p, size_t n)
{
	json_t *o = json_object();
	json_t *t = printable(p, n) ? json_stringn((const char *)p, n) : NULL;
	/* json_stringn refuses invalid UTF-8 (NULL): then hex. */
	if (t != NULL)
		json_object_set_new(o, "text", t);
	else
		json_object_set_new(o, "hex", cli_json_hex(p, n));
	json_object_set_new(o, "bytes", cli_json_u64(n));
	return o;
}

json_t *
cli_json_clock(const crdt_vclock *vc)
{
	json_t *a = json_array();
	for (size_t i = 0; i < crdt_vclock_size(vc); i++) {
		crdt_dot d;
		if (crdt_vclock_entry(vc, i, &d.replica, &d.counter) == 0)
			json_array_append_new(a, cli_json_dot(d));
	}
	return a;
}
