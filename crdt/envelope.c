/*
 * Message envelope: strict parse and document binding (envelope.h).
 */
#include "envelope.h"
#include "crdt/doc.h"
#include "crdt/secure.h"

static int
rd_deps(crdt__rd *r, const crdt_replica_id *sender, size_t *ndeps,
    crdt__deps_fn fn, void *ud)
{
	size_t n;
	crdt__iddep one[2], *v = NULL;

	CRDT_TRY(crdt__rd_array(r, &n));
	if (n % 2 != 0)
		return CRDT_EMALFORMED;
	n /= 2;
	CRDT_TRY(crdt__rd_fits(r, n, CRDT__MIN_ID_UINT));
	if (fn != NULL && n > 0 && (v = fn(ud, n)) == NULL)
		return CRDT_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		/* Without a sink, keep the previous entry for the order
		 * check in a two-slot ring. */
		crdt__iddep *e = v != NULL ? &v[i] : &one[i & 1];
		const crdt__iddep *prev = v != NULL ? &v[i - (i > 0)] :
						      &one[(i + 1) & 1];
		CRDT_TRY(crdt__rd_id(r, &e->id));
		CRDT_TRY(crdt__rd_uint(r, &e->c));
		if (e->c == 0 || crdt_replica_id_cmp(&e->id, sender) == 0)
			return CRDT_EMALFORMED;
		if (i > 0 && crdt_replica_id_cmp(&prev->id, &e->id) >= 0)
			return CRDT_EMALFORMED;
	}
	r->depth--;
	*ndeps = n;
	return 0;
}

int
crdt__env_parse(const crdt_limits *lim, const void *bytes, size_t len,
    crdt__env *e, crdt__deps_fn deps, void *ud)
{
	crdt__rd r;
	size_t n;
	const uint8_t *b = bytes;

	CRDT_TRY(crdt__rd_init(&r, lim, bytes, len));
	CRDT_TRY(crdt__rd_header_v(&r, CRDT__KIND_MSG, &n, &e->version));
	if (n != 8)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__rd_id(&r, &e->sender));
	CRDT_TRY(crdt__rd_uint(&r, &e->counter));
	CRDT_TRY(crdt__rd_uint(&r, &e->hlc));
	if (e->counter == 0)
		return CRDT_EMALFORMED;
	CRDT_TRY(rd_deps(&r, &e->sender, &e->ndeps, deps, ud));
	e->payload_off = (size_t)(r.p - b);
	e->sealed = r.p < r.end && *r.p == 0x93;
	if (e->sealed) {
		uint64_t ep;
		size_t nl;
		CRDT_TRY(crdt__rd_array_n(&r, 3));
		CRDT_TRY(crdt__rd_uint(&r, &ep));
		CRDT_TRY(crdt__rd_bin(&r, &e->nonce, &nl));
		CRDT_TRY(crdt__rd_blob(&r, &e->ct, &e->ctlen));
		r.depth--;
		if (ep > UINT32_MAX || nl != CRDT__NONCE_BYTES ||
		    e->ctlen < CRDT__TAG_BYTES)
			return CRDT_EMALFORMED;
		e->epoch = (uint32_t)ep;
		e->payload = NULL;
		e->plen = 0;
	} else {
		CRDT_TRY(crdt__rd_blob(&r, &e->payload, &e->plen));
	}
	e->auth_off = (size_t)(r.p - b);
	if (r.p >= r.end)
		return CRDT_EMALFORMED; /* the auth slot is not optional */
	e->has_auth = *r.p != 0xc0;
	if (e->has_auth) {
		size_t pl, sl;
		CRDT_TRY(crdt__rd_array_n(&r, 2));
		CRDT_TRY(crdt__rd_bin(&r, &e->pk, &pl));
		CRDT_TRY(crdt__rd_bin(&r, &e->sig, &sl));
		r.depth--;
		if (pl != CRDT_PUBLIC_KEY_BYTES || sl != CRDT__SIG_BYTES)
			return CRDT_EMALFORMED;
	} else {
		r.p++;
	}
	return crdt__rd_done(&r);
}

bool
crdt__doc_id_zero(const crdt_doc_id *doc)
{
	uint8_t any = 0;
	for (size_t i = 0; i < CRDT_DOC_ID_BYTES; i++)
		any |= doc->bytes[i];
	return any == 0;
}

int
crdt__env_sig_digest(uint8_t out[32], unsigned version,
    const crdt_doc_id *doc, const void *bytes, size_t len)
{
	if (version == 1) {
		if (!crdt__doc_id_zero(doc))
			return CRDT_EWRONGDOC;
		return crdt__hash_personal(out, 32, bytes, len,
		    "crdt.msg.v1\0\0\0\0");
	}
	return crdt__hash_keyed(out, 32, bytes, len, doc->bytes,
	    CRDT_DOC_ID_BYTES, "crdt.msg.v2\0\0\0\0");
}

int
crdt__env_ad(uint8_t buf[32], unsigned version, const crdt_doc_id *doc,
    const void *bytes, size_t len, const uint8_t **ad, size_t *adlen)
{
	if (version == 1) {
		if (!crdt__doc_id_zero(doc))
			return CRDT_EWRONGDOC;
		*ad = bytes;
		*adlen = len;
		return 0;
	}
	CRDT_TRY(crdt__hash_keyed(buf, 32, bytes, len, doc->bytes,
	    CRDT_DOC_ID_BYTES, "crdt.ad.v2\0\0\0\0\0\0"));
	*ad = buf;
	*adlen = 32;
	return 0;
}

int
crdt_msg_peek(const void *msg, size_t len, crdt_dot *dot, uint64_t *hlc)
{
	crdt_config c;
	crdt__env e;

	if (msg == NULL)
		return CRDT_EINVAL;
	crdt_config_default(&c);
	CRDT_TRY(crdt__env_parse(&c.limits, msg, len, &e, NULL, NULL));
	if (dot != NULL) {
		dot->replica = e.sender;
		dot->counter = e.counter;
	}
	if (hlc != NULL)
		*hlc = e.hlc;
	return 0;
}
