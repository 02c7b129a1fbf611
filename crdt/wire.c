/*
 * Wire codec: the only user of msgpack-c.
 *
 * Encoding goes through msgpack-c's packer with a write callback that
 * appends to a crdt_buf, so every byte lives on the caller's allocator.
 *
 * Decoding is a hand-written cursor instead of msgpack_unpack(): msgpack-c
 * allocates n * 24 bytes as soon as it reads an array header (a 5-byte
 * input can claim 512 MiB), copies nothing yet points into the input, and
 * accepts non-minimal encodings that would break canonical bytes. Our
 * formats are a handful of fixed shapes, so a cursor that checks every
 * count against the bytes that remain, every length against the limits,
 * and every integer for its smallest form is both simpler and strict:
 * whatever it accepts re-encodes to the same bytes.
 */
#include <msgpack.h>

#include "internal.h"

static int
buf_write(void *data, const char *p, size_t n)
{
	crdt_buf *b = data;
	/* Fast path: msgpack-c calls this once per header and field, mostly
	 * for a few bytes, so skip the general append when room is there. */
	if (n <= b->cap - b->len) {
		memcpy(b->data + b->len, p, n);
		b->len += n;
		return 0;
	}
	return crdt_buf_append(b, p, n) == 0 ? 0 : -1;
}

#define PACKER(pk, b)                                                   \
	msgpack_packer pk;                                              \
	msgpack_packer_init(&pk, (b), buf_write)

int
crdt__w_array(crdt_buf *b, size_t n)
{
	PACKER(pk, b);
	if (n > UINT32_MAX)
		return CRDT_ETOOBIG;
	return msgpack_pack_array(&pk, n) == 0 ? 0 : CRDT_ENOMEM;
}

int
crdt__w_uint(crdt_buf *b, uint64_t v)
{
	PACKER(pk, b);
	return msgpack_pack_uint64(&pk, v) == 0 ? 0 : CRDT_ENOMEM;
}

int
crdt__w_bin(crdt_buf *b, const void *p, size_t n)
{
	PACKER(pk, b);
	if (n > UINT32_MAX)
		return CRDT_ETOOBIG;
	if (msgpack_pack_bin(&pk, n) != 0 ||
	    (n != 0 && msgpack_pack_bin_body(&pk, p, n) != 0))
		return CRDT_ENOMEM;
	return 0;
}

int
crdt__w_bin_header(crdt_buf *b, size_t n)
{
	PACKER(pk, b);
	if (n > UINT32_MAX)
		return CRDT_ETOOBIG;
	return msgpack_pack_bin(&pk, n) == 0 ? 0 : CRDT_ENOMEM;
}

int
crdt__w_nil(crdt_buf *b)
{
	PACKER(pk, b);
	return msgpack_pack_nil(&pk) == 0 ? 0 : CRDT_ENOMEM;
}

int
crdt__w_id(crdt_buf *b, const crdt_replica_id *id)
{
	return crdt__w_bin(b, id->bytes, CRDT_REPLICA_ID_BYTES);
}

int
crdt__w_header(crdt_buf *b, unsigned kind, size_t n_more)
{
	CRDT_TRY(crdt__w_array(b, 2 + n_more));
	CRDT_TRY(crdt__w_uint(b, crdt__kind_version(kind)));
	return crdt__w_uint(b, kind);
}

/* ---- strict reader ---- */

int
crdt__rd_init(crdt__rd *r, const crdt_limits *lim, const void *bytes,
    size_t len)
{
	if (bytes == NULL && len != 0)
		return CRDT_EINVAL;
	if (len > lim->max_bytes)
		return CRDT_ETOOBIG;
	r->p = bytes;
	r->end = r->p + len;
	r->lim = *lim;
	r->elems = 0;
	r->depth = 0;
	return 0;
}

static size_t
left(const crdt__rd *r)
{
	return (size_t)(r->end - r->p);
}

static uint64_t
be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Read a big-endian length/value of `n` bytes after the tag byte. */
static int
take(crdt__rd *r, unsigned n, uint64_t *v)
{
	if (left(r) < n)
		return CRDT_EMALFORMED;
	*v = be(r->p, n);
	r->p += n;
	return 0;
}

int
crdt__rd_array(crdt__rd *r, size_t *n)
{
	uint64_t v;

	if (left(r) < 1)
		return CRDT_EMALFORMED;
	uint8_t t = *r->p++;
	if (t >= 0x90 && t <= 0x9f) {
		v = t & 0x0f;
	} else if (t == 0xdc) {
		CRDT_TRY(take(r, 2, &v));
		if (v < 16)
			return CRDT_EMALFORMED;
	} else if (t == 0xdd) {
		CRDT_TRY(take(r, 4, &v));
		if (v <= UINT16_MAX)
			return CRDT_EMALFORMED;
	} else {
		return CRDT_EMALFORMED;
	}
	/* Every element takes at least one byte. */
	if (v > left(r))
		return CRDT_EMALFORMED;
	if (++r->depth > r->lim.max_depth)
		return CRDT_ETOOBIG;
	r->elems += (size_t)v;
	if (r->elems > r->lim.max_elems)
		return CRDT_ETOOBIG;
	*n = (size_t)v;
	return 0;
}

int
crdt__rd_fits(const crdt__rd *r, size_t n, size_t each)
{
	return each != 0 && n > left(r) / each ? CRDT_EMALFORMED : 0;
}

int
crdt__rd_array_n(crdt__rd *r, size_t want)
{
	size_t n;
	CRDT_TRY(crdt__rd_array(r, &n));
	return n == want ? 0 : CRDT_EMALFORMED;
}

int
crdt__rd_uint(crdt__rd *r, uint64_t *out)
{
	uint64_t v;

	if (left(r) < 1)
		return CRDT_EMALFORMED;
	uint8_t t = *r->p++;
	switch (t) {
	case 0xcc:
		CRDT_TRY(take(r, 1, &v));
		if (v < 0x80)
			return CRDT_EMALFORMED;
		break;
	case 0xcd:
		CRDT_TRY(take(r, 2, &v));
		if (v <= UINT8_MAX)
			return CRDT_EMALFORMED;
		break;
	case 0xce:
		CRDT_TRY(take(r, 4, &v));
		if (v <= UINT16_MAX)
			return CRDT_EMALFORMED;
		break;
	case 0xcf:
		CRDT_TRY(take(r, 8, &v));
		if (v <= UINT32_MAX)
			return CRDT_EMALFORMED;
		break;
	default:
		if (t > 0x7f)
			return CRDT_EMALFORMED;
		v = t;
	}
	*out = v;
	return 0;
}

/* A bin of any length that fits the input; the value limit is the
 * caller's business (fixed-size fields such as replica IDs are not
 * values and must not depend on limits.max_value_bytes). */
static int
rd_bin_any(crdt__rd *r, const uint8_t **p, size_t *n)
{
	uint64_t v;

	if (left(r) < 1)
		return CRDT_EMALFORMED;
	uint8_t t = *r->p++;
	if (t == 0xc4) {
		CRDT_TRY(take(r, 1, &v));
	} else if (t == 0xc5) {
		CRDT_TRY(take(r, 2, &v));
		if (v <= UINT8_MAX)
			return CRDT_EMALFORMED;
	} else if (t == 0xc6) {
		CRDT_TRY(take(r, 4, &v));
		if (v <= UINT16_MAX)
			return CRDT_EMALFORMED;
	} else {
		return CRDT_EMALFORMED;
	}
	if (v > left(r))
		return CRDT_EMALFORMED;
	*p = r->p;
	*n = (size_t)v;
	r->p += v;
	return 0;
}

int
crdt__rd_bin(crdt__rd *r, const uint8_t **p, size_t *n)
{
	const uint8_t *q;
	size_t m;

	CRDT_TRY(rd_bin_any(r, &q, &m));
	if (m > r->lim.max_value_bytes)
		return CRDT_ETOOBIG;
	*p = q;
	*n = m;
	return 0;
}

int
crdt__rd_blob(crdt__rd *r, const uint8_t **p, size_t *n)
{
	size_t saved = r->lim.max_value_bytes;
	r->lim.max_value_bytes = r->lim.max_bytes;
	int rc = crdt__rd_bin(r, p, n);
	r->lim.max_value_bytes = saved;
	return rc;
}

int
crdt__rd_opt_bin(crdt__rd *r, const uint8_t **p, size_t *n, bool *present)
{
	if (left(r) >= 1 && *r->p == 0xc0) {
		r->p++;
		*p = NULL;
		*n = 0;
		*present = false;
		return 0;
	}
	*present = true;
	return crdt__rd_bin(r, p, n);
}

int
crdt__rd_id(crdt__rd *r, crdt_replica_id *id)
{
	const uint8_t *p;
	size_t n;
	static const crdt_replica_id zero;

	CRDT_TRY(rd_bin_any(r, &p, &n));
	if (n != CRDT_REPLICA_ID_BYTES || memcmp(p, zero.bytes, n) == 0)
		return CRDT_EMALFORMED;
	memcpy(id->bytes, p, n);
	return 0;
}

int
crdt__rd_header_v(crdt__rd *r, unsigned kind, size_t *n, unsigned *ver)
{
	uint64_t v, k;
	unsigned cur = crdt__kind_version(kind);
	unsigned oldest = crdt__kind_oldest(kind);

	CRDT_TRY(crdt__rd_array(r, n));
	if (*n < 2)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__rd_uint(r, &v));
	if (v < oldest || v > cur)
		return CRDT_EVERSION;
	CRDT_TRY(crdt__rd_uint(r, &k));
	*ver = (unsigned)v;
	return k == kind ? 0 : CRDT_EMALFORMED;
}

int
crdt__rd_header(crdt__rd *r, unsigned kind, size_t *n)
{
	unsigned v;

	CRDT_TRY(crdt__rd_header_v(r, kind, n, &v));
	return v == crdt__kind_version(kind) ? 0 : CRDT_EVERSION;
}

int
crdt__rd_done(const crdt__rd *r)
{
	return r->p == r->end ? 0 : CRDT_EMALFORMED;
}
