/*
 * Bounded msgpack walking. msgpack-c's unpacker sizes an array from its
 * header before any element is there (a 5-byte input can make it reserve
 * 512 MiB, STYLE.md 3.1), so every input first passes a pre-scan over
 * the raw bytes: each count must fit the bytes left, nesting is bounded,
 * and only the forms libcrdt writes are allowed (docs/wire-format.md,
 * "The msgpack subset"). Only then does msgpack_unpack() build objects,
 * whose zone use is then linear in the input.
 */
#include <string.h>

#include "cli.h"

#define MAX_DEPTH 16

/* One pending array level: how many elements are still to come. */
typedef struct level {
	size_t left;
} level;

static int
get_be(const uint8_t *p, const uint8_t *end, size_t n, uint64_t *v)
{
	if ((size_t)(end - p) < n)
		return CRDT_EMALFORMED;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++)
		x = x << 8 | p[i];
	*v = x;
	return 0;
}

/* Iterative: an explicit stack of MAX_DEPTH levels, never recursion on
 * hostile input. */
static int
prescan(const uint8_t *b, size_t len)
{
	level st[MAX_DEPTH + 1];
	size_t depth = 0;
	const uint8_t *p = b, *end = b + len;
	size_t values = 1; /* values still expected at the top level */

	if (len > CLI_MAX_FILE)
		return CRDT_ETOOBIG;
	for (;;) {
		/* Pop finished levels. */
		while (depth > 0 && st[depth - 1].left == 0)
			depth--;
		if (depth == 0 && values == 0)
			break;
		if (p >= end)
			return CRDT_EMALFORMED;
		if (depth > 0)
			st[depth - 1].left--;
		else
			values--;
		uint8_t c = *p++;
		uint64_t n = 0;
		size_t hdr = 0;
		bool arr = false, blob = false;
		if (c <= 0x7f || c == 0xc0)
			continue;
		if (c >= 0x90 && c <= 0x9f) {
			n = c & 15, arr = true;
		} else if (c == 0xdc || c == 0xdd) {
			hdr = c == 0xdc ? 2 : 4, arr = true;
		} else if (c >= 0xc4 && c <= 0xc6) {
			hdr = (size_t)1 << (c - 0xc4), blob = true;
		} else if (c >= 0xcc && c <= 0xcf) {
			hdr = (size_t)1 << (c - 0xcc);
			if ((size_t)(end - p) < hdr)
				return CRDT_EMALFORMED;
			p += hdr;
			continue;
		} else {
			return CRDT_EMALFORMED; /* outside the subset */
		}
		if (hdr > 0) {
			if (get_be(p, end, hdr, &n) != 0)
				return CRDT_EMALFORMED;
			p += hdr;
		}
		if (blob) {
			if (n > (uint64_t)(end - p))
				return CRDT_EMALFORMED;
			p += n;
			continue;
		}
		if (arr) {
			/* Every element takes at least one byte. */
			if (n > (uint64_t)(end - p))
				return CRDT_EMALFORMED;
			if (n == 0)
				continue;
			if (depth == MAX_DEPTH)
				return CRDT_ETOOBIG;
			st[depth++].left = (size_t)n;
		}
	}
	return p == end ? 0 : CRDT_EMALFORMED;
}

int
cli_mp_parse(const uint8_t *b, size_t len, msgpack_zone *z,
    msgpack_object *out)
{
	size_t off = 0;

	int rc = prescan(b, len);
	if (rc != 0)
		return rc;
	switch (msgpack_unpack((const char *)b, len, &off, z, out)) {
	case MSGPACK_UNPACK_SUCCESS:
		return off == len ? 0 : CRDT_EMALFORMED;
	case MSGPACK_UNPACK_NOMEM_ERROR:
		return CRDT_ENOMEM;
	default:
		return CRDT_EMALFORMED;
	}
}

static int
sbuf_write(void *data, const char *buf, size_t len)
{
	return crdt_buf_append(data, buf, len) == 0 ? 0 : -1;
}

bool
cli_mp_canonical(const msgpack_object *o, const uint8_t *b, size_t len)
{
	crdt_buf re;
	msgpack_packer pk;

	crdt_buf_init(&re, NULL);
	msgpack_packer_init(&pk, &re, sbuf_write);
	bool same = msgpack_pack_object(&pk, *o) == 0 && re.len == len &&
	    memcmp(re.data, b, len) == 0;
	crdt_buf_fini(&re);
	return same;
}

/* Recursion is bounded by the pre-scan's depth limit. */
json_t *
cli_mp_json(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return cli_json_u64(o->via.u64);
	case MSGPACK_OBJECT_BIN:
		return cli_json_bytes((const uint8_t *)o->via.bin.ptr,
		    o->via.bin.size);
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++)
			json_array_append_new(a,
			    cli_mp_json(&o->via.array.ptr[i]));
		return a;
	}
	default:
		return json_string("(outside the libcrdt subset)");
	}
}

bool
cli_mp_uint(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*v = o->via.u64;
	return true;
}

bool
cli_mp_bin(const msgpack_object *o, const uint8_t **p, size_t *n)
{
	if (o->type != MSGPACK_OBJECT_BIN)
		return false;
	*p = (const uint8_t *)o->via.bin.ptr;
	*n = o->via.bin.size;
	return true;
}

bool
cli_mp_id(const msgpack_object *o, crdt_replica_id *id)
{
	const uint8_t *p;
	size_t n;
	return cli_mp_bin(o, &p, &n) &&
	    crdt_replica_id_from_bytes(id, p, n) == 0;
}

const msgpack_object_array *
cli_mp_array(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_ARRAY ? &o->via.array : NULL;
}

unsigned
cli_kind(const uint8_t *b, size_t len, unsigned *version)
{
	/* [version, kind, ...]: a fixarray or array16/32 header, then two
	 * fixints (every version and kind is below 128). */
	size_t h;
	if (len < 3)
		return 0;
	if (b[0] >= 0x92 && b[0] <= 0x9f)
		h = 1;
	else if (b[0] == 0xdc)
		h = 3;
	else if (b[0] == 0xdd)
		h = 5;
	else
		return 0;
	if (len < h + 2 || b[h] > 0x7f || b[h + 1] > 0x7f)
		return 0;
	if (version != NULL)
		*version = b[h];
	return b[h + 1] >= 1 && b[h + 1] <= 10 ? b[h + 1] : 0;
}

const char *
cli_kind_name(unsigned kind)
{
	static const char *n[] = { "unknown", "gset", "lww", "map", "vclock",
		"message", "snapshot", "hello", "data", "chat",
		"sealed_snapshot" };
	return kind <= 10 ? n[kind] : n[0];
}
