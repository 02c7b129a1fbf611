/*
 * White-box: the message envelope (crdt/envelope.h), below the document.
 * crdt__env_parse() is the one strict reader of the bytes every message
 * shares, so:
 *   - a well-formed message parses to exactly what was written, with the
 *     payload and auth slots at the right offsets;
 *   - every malformation the format rules out (wrong kind or arity, zero
 *     counter, dependencies out of order, on the sender or at zero, a
 *     sealed payload or signature of the wrong shape, trailing bytes, any
 *     truncation) is refused;
 *   - a hostile dependency count never reaches the sink: room is asked for
 *     only once the count fits the bytes left, and only once;
 *   - what is signed and sealed is bound to the document ID, and version 1
 *     (which names no document) only verifies in an unbound document.
 * Messages are written with the tests' own msgpack writer (test_util.h),
 * not the library's, so both sides are checked against the format.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "envelope.h"
#include "test_alloc.h"
#include "test_util.h"

static crdt_limits lim;

static void
setup(void)
{
	crdt_config c;
	crdt_config_default(&c);
	lim = c.limits;
}

TestSuite(envelope, .init = setup);

typedef struct dep_in {
	uint8_t id;
	uint64_t c;
} dep_in;

/* [2, 5, sender, counter, hlc, deps, payload, auth]; `payload` is written
 * as a bin unless `sealed`, then as [epoch, nonce, bin(ct)]. */
typedef struct msg_spec {
	uint64_t version, kind;
	uint8_t sender;
	uint64_t counter, hlc;
	const dep_in *deps;
	size_t ndeps;
	bool sealed;
	uint64_t epoch;
	size_t nonce_len, ct_len;
	bool auth;
	size_t pk_len, sig_len;
	size_t extra_fields; /* appended after auth (arity) */
} msg_spec;

static msg_spec
spec_plain(void)
{
	msg_spec s;
	memset(&s, 0, sizeof s);
	s.version = 2;
	s.kind = 5;
	s.sender = 7;
	s.counter = 3;
	s.hlc = 1000;
	s.nonce_len = 24;
	s.ct_len = 20;
	s.pk_len = 32;
	s.sig_len = 64;
	return s;
}

static const uint8_t ops[] = { 0x91, 0x92, 0x00, 0xc4, 0x01, 0x61 };

static void
write_msg(crdt_buf *b, const msg_spec *s)
{
	mp_array(b, (uint32_t)(8 + s->extra_fields));
	mp_uint(b, s->version);
	mp_uint(b, s->kind);
	mp_id(b, test_id(s->sender));
	mp_uint(b, s->counter);
	mp_uint(b, s->hlc);
	mp_array(b, (uint32_t)(2 * s->ndeps));
	for (size_t i = 0; i < s->ndeps; i++) {
		mp_id(b, test_id(s->deps[i].id));
		mp_uint(b, s->deps[i].c);
	}
	if (s->sealed) {
		uint8_t nonce[32] = { 0 }, ct[64] = { 0 };
		mp_array(b, 3);
		mp_uint(b, s->epoch);
		mp_bin(b, nonce, s->nonce_len);
		mp_bin(b, ct, s->ct_len);
	} else {
		mp_bin(b, ops, sizeof ops);
	}
	if (s->auth) {
		uint8_t pk[40] = { 1 }, sig[70] = { 2 };
		mp_array(b, 2);
		mp_bin(b, pk, s->pk_len);
		mp_bin(b, sig, s->sig_len);
	} else {
		mp_nil(b);
	}
	for (size_t i = 0; i < s->extra_fields; i++)
		mp_nil(b);
}

/* A sink that counts its calls and hands out a fixed array. */
typedef struct sink {
	crdt__iddep v[8];
	size_t calls, asked;
} sink;

static crdt__iddep *
sink_room(void *ud, size_t n)
{
	sink *k = ud;
	k->calls++;
	k->asked = n;
	return n <= 8 ? k->v : NULL;
}

static int
parse(const crdt_buf *b, crdt__env *e, sink *k)
{
	return crdt__env_parse(&lim, b->data, b->len, e, k ? sink_room : NULL,
	    k);
}

static int
parse_spec(const msg_spec *s)
{
	crdt_buf b;
	crdt__env e;
	tb_init(&b);
	write_msg(&b, s);
	int rc = parse(&b, &e, NULL);
	crdt_buf_fini(&b);
	return rc;
}

Test(envelope, plain_message_parses_to_what_was_written)
{
	static const dep_in deps[] = { { 2, 5 }, { 9, 1 } };
	msg_spec s = spec_plain();
	s.deps = deps;
	s.ndeps = 2;
	crdt_buf b;
	crdt__env e;
	sink k;
	memset(&k, 0, sizeof k);
	tb_init(&b);
	write_msg(&b, &s);

	cr_assert_eq(parse(&b, &e, &k), 0);
	cr_assert_eq(e.version, 2);
	crdt_replica_id want = test_id(7);
	cr_assert_eq(crdt_replica_id_cmp(&e.sender, &want), 0);
	cr_assert_eq(e.counter, 3);
	cr_assert_eq(e.hlc, 1000);
	cr_assert_eq(e.ndeps, 2);
	cr_assert_eq(k.calls, 1);
	cr_assert_eq(k.asked, 2);
	crdt_replica_id d0 = test_id(2), d1 = test_id(9);
	cr_assert_eq(crdt_replica_id_cmp(&k.v[0].id, &d0), 0);
	cr_assert_eq(k.v[0].c, 5);
	cr_assert_eq(crdt_replica_id_cmp(&k.v[1].id, &d1), 0);
	cr_assert_eq(k.v[1].c, 1);
	cr_assert(!e.sealed);
	cr_assert(!e.has_auth);
	cr_assert(bytes_eq(e.payload, e.plen, ops, sizeof ops));
	/* payload slot: bin8 header then the ops; auth slot: the final nil */
	cr_assert_eq(b.data[e.payload_off], 0xc4);
	cr_assert_eq(e.payload, b.data + e.payload_off + 2);
	cr_assert_eq(e.auth_off, b.len - 1);
	cr_assert_eq(b.data[e.auth_off], 0xc0);
	crdt_buf_fini(&b);
}

Test(envelope, sealed_payload_and_signature_slots)
{
	msg_spec s = spec_plain();
	s.sealed = true;
	s.epoch = 4;
	s.auth = true;
	crdt_buf b;
	crdt__env e;
	tb_init(&b);
	write_msg(&b, &s);
	cr_assert_eq(parse(&b, &e, NULL), 0);
	cr_assert(e.sealed);
	cr_assert_null(e.payload);
	cr_assert_eq(e.epoch, 4);
	cr_assert_eq(e.ctlen, 20);
	cr_assert(e.has_auth);
	cr_assert_eq(e.pk[0], 1);
	cr_assert_eq(e.sig[0], 2);
	cr_assert_eq(b.data[e.payload_off], 0x93);
	cr_assert_eq(b.data[e.auth_off], 0x92);
	crdt_buf_fini(&b);
}

Test(envelope, header_rules)
{
	msg_spec s = spec_plain();
	cr_assert_eq(parse_spec(&s), 0);
	s = spec_plain();
	s.kind = 6;
	cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED);
	s = spec_plain();
	s.version = 3;
	cr_assert_eq(parse_spec(&s), CRDT_EVERSION);
	s = spec_plain();
	s.version = 1; /* still read: it names no document */
	cr_assert_eq(parse_spec(&s), 0);
	s = spec_plain();
	s.counter = 0;
	cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED);
	s = spec_plain();
	s.extra_fields = 1;
	cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED);
}

Test(envelope, dependency_rules)
{
	static const dep_in descending[] = { { 9, 1 }, { 2, 1 } };
	static const dep_in twice[] = { { 2, 1 }, { 2, 3 } };
	static const dep_in on_sender[] = { { 7, 1 } };
	static const dep_in zero[] = { { 2, 0 } };
	static const struct {
		const dep_in *d;
		size_t n;
	} bad[] = { { descending, 2 }, { twice, 2 }, { on_sender, 1 },
		{ zero, 1 } };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		msg_spec s = spec_plain();
		s.deps = bad[i].d;
		s.ndeps = bad[i].n;
		cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED, "case %zu", i);
	}
	/* An odd-length dependency array. */
	crdt_buf b;
	crdt__env e;
	tb_init(&b);
	mp_array(&b, 8);
	mp_uint(&b, 2);
	mp_uint(&b, 5);
	mp_id(&b, test_id(7));
	mp_uint(&b, 1);
	mp_uint(&b, 1);
	mp_array(&b, 1);
	mp_id(&b, test_id(2));
	mp_bin(&b, ops, sizeof ops);
	mp_nil(&b);
	cr_assert_eq(parse(&b, &e, NULL), CRDT_EMALFORMED);
	crdt_buf_fini(&b);
}

Test(envelope, slot_shapes)
{
	msg_spec s = spec_plain();
	s.sealed = true;
	s.epoch = (uint64_t)UINT32_MAX + 1;
	cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED);
	s = spec_plain();
	s.sealed = true;
	s.nonce_len = 23;
	cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED);
	s = spec_plain();
	s.sealed = true;
	s.ct_len = 15; /* shorter than the tag */
	cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED);
	s = spec_plain();
	s.auth = true;
	s.pk_len = 31;
	cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED);
	s = spec_plain();
	s.auth = true;
	s.sig_len = 63;
	cr_assert_eq(parse_spec(&s), CRDT_EMALFORMED);
}

Test(envelope, every_truncation_and_trailing_byte_is_refused)
{
	static const dep_in deps[] = { { 2, 5 } };
	msg_spec s = spec_plain();
	s.deps = deps;
	s.ndeps = 1;
	s.auth = true;
	crdt_buf b;
	crdt__env e;
	tb_init(&b);
	write_msg(&b, &s);
	for (size_t n = 0; n < b.len; n++) {
		sink k;
		memset(&k, 0, sizeof k);
		cr_assert_neq(crdt__env_parse(&lim, b.data, n, &e, sink_room,
		    &k), 0, "prefix of %zu bytes accepted", n);
	}
	mp_nil(&b);
	cr_assert_eq(parse(&b, &e, NULL), CRDT_EMALFORMED);
	crdt_buf_fini(&b);
}

Test(envelope, hostile_dependency_count_never_reaches_the_sink)
{
	/* Claims 65535 dependency pairs and carries none. */
	crdt_buf b;
	crdt__env e;
	sink k;
	memset(&k, 0, sizeof k);
	tb_init(&b);
	mp_array(&b, 8);
	mp_uint(&b, 2);
	mp_uint(&b, 5);
	mp_id(&b, test_id(7));
	mp_uint(&b, 1);
	mp_uint(&b, 1);
	mp_array(&b, 2 * 32767);
	mp_bin(&b, ops, sizeof ops);
	mp_nil(&b);
	cr_assert_eq(parse(&b, &e, &k), CRDT_EMALFORMED);
	cr_assert_eq(k.calls, 0);
	/* A sink that has no room: out of memory, said as such. */
	static dep_in many[9];
	for (uint8_t i = 0; i < 9; i++)
		many[i] = (dep_in){ (uint8_t)(10 + i), 1 };
	msg_spec s = spec_plain();
	s.deps = many;
	s.ndeps = 9;
	crdt_buf_clear(&b);
	write_msg(&b, &s);
	memset(&k, 0, sizeof k);
	cr_assert_eq(parse(&b, &e, &k), CRDT_ENOMEM);
	cr_assert_eq(k.calls, 1);
	crdt_buf_fini(&b);
}

Test(envelope, signed_digest_is_bound_to_the_document)
{
	static const uint8_t m[] = "the bytes before the auth slot";
	crdt_doc_id zero, a, b;
	memset(&zero, 0, sizeof zero);
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	a.bytes[0] = 1;
	b.bytes[0] = 2;
	uint8_t ha[32], hb[32], hz[32], h1[32], ha2[32];
	cr_assert_eq(crdt__env_sig_digest(ha, 2, &a, m, sizeof m), 0);
	cr_assert_eq(crdt__env_sig_digest(ha2, 2, &a, m, sizeof m), 0);
	cr_assert_eq(crdt__env_sig_digest(hb, 2, &b, m, sizeof m), 0);
	cr_assert_eq(crdt__env_sig_digest(hz, 2, &zero, m, sizeof m), 0);
	cr_assert_eq(memcmp(ha, ha2, 32), 0);
	cr_assert_neq(memcmp(ha, hb, 32), 0);
	cr_assert_neq(memcmp(ha, hz, 32), 0);
	/* Version 1 names no document: only an unbound one verifies it. */
	cr_assert_eq(crdt__env_sig_digest(h1, 1, &a, m, sizeof m),
	    CRDT_EWRONGDOC);
	cr_assert_eq(crdt__env_sig_digest(h1, 1, &zero, m, sizeof m), 0);
	cr_assert_neq(memcmp(h1, hz, 32), 0);
	cr_assert(crdt__doc_id_zero(&zero));
	cr_assert(!crdt__doc_id_zero(&b));
}

Test(envelope, sealed_associated_data_is_bound_to_the_document)
{
	static const uint8_t hdr[] = "a message header";
	crdt_doc_id zero, a, b;
	memset(&zero, 0, sizeof zero);
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	a.bytes[5] = 1;
	b.bytes[5] = 2;
	uint8_t ba[32], bb[32];
	const uint8_t *ada, *adb;
	size_t la, lb;
	cr_assert_eq(crdt__env_ad(ba, 2, &a, hdr, sizeof hdr, &ada, &la), 0);
	cr_assert_eq(crdt__env_ad(bb, 2, &b, hdr, sizeof hdr, &adb, &lb), 0);
	cr_assert_eq(ada, ba);
	cr_assert_eq(la, 32);
	cr_assert_eq(lb, 32);
	cr_assert_neq(memcmp(ba, bb, 32), 0);
	/* Version 1: the header itself, and only without a document ID. */
	cr_assert_eq(crdt__env_ad(ba, 1, &a, hdr, sizeof hdr, &ada, &la),
	    CRDT_EWRONGDOC);
	cr_assert_eq(crdt__env_ad(ba, 1, &zero, hdr, sizeof hdr, &ada, &la),
	    0);
	cr_assert_eq(ada, hdr);
	cr_assert_eq(la, sizeof hdr);
}

Test(envelope, peek_reads_what_parse_reads)
{
	msg_spec s = spec_plain();
	s.counter = 41;
	s.hlc = 77;
	crdt_buf b;
	tb_init(&b);
	write_msg(&b, &s);
	crdt_dot dot;
	uint64_t hlc;
	cr_assert_eq(crdt_msg_peek(b.data, b.len, &dot, &hlc), 0);
	crdt_replica_id want = test_id(7);
	cr_assert_eq(crdt_replica_id_cmp(&dot.replica, &want), 0);
	cr_assert_eq(dot.counter, 41);
	cr_assert_eq(hlc, 77);
	b.data[2] = 6; /* the kind: a snapshot, not a message */
	cr_assert_eq(crdt_msg_peek(b.data, b.len, &dot, &hlc),
	    CRDT_EMALFORMED);
	crdt_buf_fini(&b);
}
