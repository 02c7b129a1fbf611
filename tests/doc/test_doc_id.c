/*
 * Document binding: a message, a sealed payload or a snapshot made for one
 * document is refused by every other, whatever else they share (admin,
 * schema, key); version-1 input, which names no document, is read by
 * unbound documents only; crdt_msg_peek() checks a header as strictly as
 * receive does.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_util.h"

static const uint8_t key[32] = { 7, 7, 7 };

typedef struct node {
	crdt_doc *d;
	crdt_identity *ident;
	test_clock clk;
	uint32_t title;
} node;

/* A replica of document `docno` (0 = unbound) with identity `seed`. The
 * admin of every document is `admin_pk` (NULL = no allowlist). */
static void
node_new(node *n, uint8_t seed, uint8_t docno, bool sign, bool enc,
    const uint8_t *admin_pk)
{
	uint8_t s[32] = { 0 };
	crdt_replica_id id;
	crdt_config cfg;

	s[0] = seed;
	n->clk.ms = UINT64_C(1700000000000);
	test_config(&cfg, &n->clk);
	memset(cfg.doc_id.bytes, docno, sizeof cfg.doc_id.bytes);
	cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
	crdt_identity_replica_id(n->ident, &id);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &n->d), 0);
	crdt_doc_security sec = { .signed_mode = sign,
		.identity = sign ? n->ident : NULL,
		.encrypted = enc,
		.key = enc ? key : NULL,
		.epoch = 1,
		.admin_key = admin_pk };
	cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	cr_assert_eq(crdt_doc_register(n->d, "title", CRDT_OBJ_LWW, &n->title),
	    0);
}

static void
node_free(node *n)
{
	crdt_doc_free(n->d);
	crdt_identity_free(n->ident);
}

static void
set_title(node *n, const char *v, crdt_buf *msg)
{
	tb_init(msg);
	cr_assert_eq(crdt_doc_lww_set(n->d, n->title, v, strlen(v), msg), 0);
}

static bool
title_is(const node *n, const char *v)
{
	const crdt_lww *r;
	const uint8_t *p;
	size_t len;
	cr_assert_eq(crdt_doc_lww(n->d, n->title, &r), 0);
	if (crdt_lww_get(r, &p, &len) != 0)
		return v == NULL;
	return v != NULL && bytes_eq(p, len, v, strlen(v));
}

/* `bytes` refused with `want` and the document byte-identical after. */
static void
refused(node *n, const uint8_t *bytes, size_t len, int want)
{
	crdt_buf before, after;
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(crdt_doc_save(n->d, &before), 0);
	int rc = crdt_doc_receive(n->d, bytes, len, NULL);
	cr_assert_eq(rc, want, "got %s, want %s", crdt_err_name(rc),
	    crdt_err_name(want));
	cr_assert_eq(crdt_doc_save(n->d, &after), 0);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
}

Test(doc_id, config_default_is_unbound_and_resolve_keeps_it)
{
	crdt_config c;
	crdt_config_default(&c);
	for (size_t i = 0; i < CRDT_DOC_ID_BYTES; i++)
		cr_assert_eq(c.doc_id.bytes[i], 0);
	node a, b;
	node_new(&a, 1, 9, true, false, NULL);
	node_new(&b, 2, 9, true, false, NULL);
	crdt_buf m;
	set_title(&a, "same document", &m);
	cr_assert_eq(crdt_doc_receive(b.d, m.data, m.len, NULL), 0);
	cr_assert(title_is(&b, "same document"));
	crdt_buf_fini(&m);
	node_free(&a);
	node_free(&b);
}

Test(doc_id, a_grant_signed_for_one_document_gives_nothing_in_another)
{
	node admin1, admin2, bob2;
	uint8_t pk[CRDT_PUBLIC_KEY_BYTES];
	uint8_t s[32] = { 1 };
	crdt_identity *ai;
	cr_assert_eq(crdt_identity_from_seed(NULL, s, &ai), 0);
	crdt_identity_public_key(ai, pk);
	crdt_identity_free(ai);

	/* The same admin runs documents 1 and 2 with the same schema. */
	node_new(&admin1, 1, 1, true, false, pk);
	node_new(&admin2, 1, 2, true, false, pk);
	node_new(&bob2, 2, 2, true, false, pk);
	node mallory;
	node_new(&mallory, 3, 1, true, false, pk);
	crdt_buf grant;
	tb_init(&grant);
	cr_assert_eq(crdt_doc_allow(admin1.d, crdt_doc_self(mallory.d), true,
	    &grant), 0);

	/* Replayed into document 2: a forgery there, on every replica. */
	refused(&admin2, grant.data, grant.len, CRDT_EBADSIG);
	refused(&bob2, grant.data, grant.len, CRDT_EBADSIG);
	cr_assert(!crdt_doc_allowed(bob2.d, crdt_doc_self(mallory.d)));
	/* In its own document it works. */
	cr_assert_eq(crdt_doc_receive(mallory.d, grant.data, grant.len, NULL),
	    0);
	cr_assert(crdt_doc_allowed(mallory.d, crdt_doc_self(mallory.d)));
	crdt_buf_fini(&grant);
	node_free(&admin1);
	node_free(&admin2);
	node_free(&bob2);
	node_free(&mallory);
}

Test(doc_id, a_sealed_payload_opens_in_its_own_document_only)
{
	node a1, b1, b2;
	/* Encrypted, unsigned: the AEAD alone must bind the document. */
	node_new(&a1, 1, 1, false, true, NULL);
	node_new(&b1, 2, 1, false, true, NULL);
	node_new(&b2, 2, 2, false, true, NULL);
	crdt_buf m;
	set_title(&a1, "sealed for 1", &m);
	refused(&b2, m.data, m.len, CRDT_EDECRYPT);
	cr_assert_eq(crdt_doc_receive(b1.d, m.data, m.len, NULL), 0);
	cr_assert(title_is(&b1, "sealed for 1"));

	/* Sealed snapshots too. */
	crdt_buf snap;
	tb_init(&snap);
	cr_assert_eq(crdt_doc_save_sealed(a1.d, &snap), 0);
	cr_assert_eq(crdt_doc_load(b2.d, snap.data, snap.len, NULL),
	    CRDT_EDECRYPT);
	cr_assert(title_is(&b2, NULL));
	crdt_buf_fini(&snap);
	crdt_buf_fini(&m);
	node_free(&a1);
	node_free(&b1);
	node_free(&b2);
}

Test(doc_id, load_refuses_another_documents_snapshot_and_changes_nothing)
{
	node a1, b2, u;
	node_new(&a1, 1, 1, false, false, NULL);
	node_new(&b2, 2, 2, false, false, NULL);
	node_new(&u, 3, 0, false, false, NULL);
	crdt_buf m, m2, snap, before, after;
	set_title(&a1, "one", &m);
	set_title(&b2, "two", &m2);
	tb_init(&snap);
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(crdt_doc_save(a1.d, &snap), 0);
	cr_assert_eq(crdt_doc_save(b2.d, &before), 0);
	cr_assert_eq(crdt_doc_load(b2.d, snap.data, snap.len, NULL),
	    CRDT_EWRONGDOC);
	cr_assert_eq(crdt_doc_save(b2.d, &after), 0);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	/* Unbound is a document ID too: it does not take a bound one's. */
	cr_assert_eq(crdt_doc_load(u.d, snap.data, snap.len, NULL),
	    CRDT_EWRONGDOC);
	/* The same document does. */
	node a1b;
	node_new(&a1b, 4, 1, false, false, NULL);
	cr_assert_eq(crdt_doc_load(a1b.d, snap.data, snap.len, NULL), 0);
	cr_assert(title_is(&a1b, "one"));
	crdt_buf_fini(&m);
	crdt_buf_fini(&m2);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	node_free(&a1);
	node_free(&b2);
	node_free(&u);
	node_free(&a1b);
}

/* A version-1 message: the same layout; unsigned, so only the version
 * byte differs (`98 02 05` -> `98 01 05`). */
Test(doc_id, version_1_input_is_read_by_unbound_documents_only)
{
	node a, u, bound;
	node_new(&a, 1, 0, false, false, NULL);
	node_new(&u, 2, 0, false, false, NULL);
	node_new(&bound, 3, 5, false, false, NULL);
	crdt_buf m;
	set_title(&a, "old peer", &m);
	cr_assert_eq(m.data[0], 0x98);
	cr_assert_eq(m.data[1], 2, "writers write version 2");
	m.data[1] = 1;
	refused(&bound, m.data, m.len, CRDT_EWRONGDOC);
	cr_assert_eq(crdt_doc_receive(u.d, m.data, m.len, NULL), 0);
	cr_assert(title_is(&u, "old peer"));
	m.data[1] = 3;
	node fresh;
	node_new(&fresh, 4, 0, false, false, NULL);
	refused(&fresh, m.data, m.len, CRDT_EVERSION);
	crdt_buf_fini(&m);
	node_free(&a);
	node_free(&u);
	node_free(&bound);
	node_free(&fresh);
}

/* Hand-made envelope: [2, 5, sender, counter, hlc, deps..., payload, auth]
 * with `deps` written by the caller between hlc and the payload. */
static void
env_head(crdt_buf *b, uint32_t fields, crdt_replica_id sender)
{
	tb_init(b);
	mp_array(b, fields);
	mp_uint(b, 2);
	mp_uint(b, 5);
	mp_id(b, sender);
	mp_uint(b, 1);
	mp_uint(b, 1000);
}

static void
env_tail(crdt_buf *b)
{
	static const uint8_t ops[] = { 0x90 };
	mp_bin(b, ops, sizeof ops);
	mp_nil(b);
}

static void
peek_is(const crdt_buf *b, int want, const char *what)
{
	crdt_dot dot;
	uint64_t hlc;
	int rc = crdt_msg_peek(b->data, b->len, &dot, &hlc);
	cr_assert_eq(rc, want, "%s: got %s, want %s", what, crdt_err_name(rc),
	    crdt_err_name(want));
}

Test(doc_id, peek_checks_the_envelope_like_receive)
{
	crdt_replica_id s = test_id(5), a = test_id(1), c = test_id(9);
	crdt_buf b;

	env_head(&b, 8, s);
	mp_array(&b, 2);
	mp_id(&b, a);
	mp_uint(&b, 3);
	env_tail(&b);
	peek_is(&b, 0, "well formed");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* cut right after the stamp */
	peek_is(&b, CRDT_EMALFORMED, "cut after the stamp");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* deps as a map */
	mp_byte(&b, 0x81);
	mp_id(&b, a);
	mp_uint(&b, 3);
	env_tail(&b);
	peek_is(&b, CRDT_EMALFORMED, "deps as a map");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* non-minimal array header */
	mp_byte(&b, 0xdc);
	mp_byte(&b, 0);
	mp_byte(&b, 2);
	mp_id(&b, a);
	mp_uint(&b, 3);
	env_tail(&b);
	peek_is(&b, CRDT_EMALFORMED, "array16 for 2 items");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* claims more deps than bytes left */
	mp_array(&b, 4000);
	mp_id(&b, a);
	mp_uint(&b, 3);
	env_tail(&b);
	peek_is(&b, CRDT_EMALFORMED, "over-long deps");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* zero counter in a dependency */
	mp_array(&b, 2);
	mp_id(&b, a);
	mp_uint(&b, 0);
	env_tail(&b);
	peek_is(&b, CRDT_EMALFORMED, "zero dep counter");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* zero replica ID in a dependency */
	mp_array(&b, 2);
	mp_bin(&b, (const uint8_t[16]){ 0 }, 16);
	mp_uint(&b, 1);
	env_tail(&b);
	peek_is(&b, CRDT_EMALFORMED, "zero dep ID");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* the sender itself */
	mp_array(&b, 2);
	mp_id(&b, s);
	mp_uint(&b, 1);
	env_tail(&b);
	peek_is(&b, CRDT_EMALFORMED, "sender in its own deps");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* unsorted */
	mp_array(&b, 4);
	mp_id(&b, c);
	mp_uint(&b, 1);
	mp_id(&b, a);
	mp_uint(&b, 1);
	env_tail(&b);
	peek_is(&b, CRDT_EMALFORMED, "deps out of order");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* trailing byte */
	mp_array(&b, 0);
	env_tail(&b);
	mp_byte(&b, 0xc0);
	peek_is(&b, CRDT_EMALFORMED, "trailing byte");
	crdt_buf_fini(&b);

	env_head(&b, 8, s); /* auth with a short key */
	mp_array(&b, 0);
	mp_bin(&b, (const uint8_t[1]){ 0x90 }, 1);
	mp_array(&b, 2);
	mp_bin(&b, (const uint8_t[31]){ 1 }, 31);
	mp_bin(&b, (const uint8_t[64]){ 1 }, 64);
	peek_is(&b, CRDT_EMALFORMED, "31-byte public key");
	crdt_buf_fini(&b);
}

Test(doc_id, peek_agrees_with_receive_on_every_cut_of_a_real_message)
{
	node a, r;
	node_new(&a, 1, 3, true, true, NULL);
	crdt_buf m;
	set_title(&a, "cut me anywhere", &m);
	for (size_t n = 0; n < m.len; n++) {
		crdt_dot dot;
		cr_assert_neq(crdt_msg_peek(m.data, n, &dot, NULL), 0,
		    "a %zu-byte prefix of %zu passed peek", n, m.len);
	}
	crdt_dot dot;
	cr_assert_eq(crdt_msg_peek(m.data, m.len, &dot, NULL), 0);
	cr_assert_eq(dot.counter, 1);
	node_new(&r, 2, 3, true, true, NULL);
	cr_assert_eq(crdt_doc_receive(r.d, m.data, m.len, NULL), 0);
	crdt_buf_fini(&m);
	node_free(&a);
	node_free(&r);
}

/* Skip one value of the msgpack subset the library writes; NULL if the
 * bytes are not one. Independent of the library's reader, which reads by
 * position and would not notice an array header that miscounts. */
static const uint8_t *
mp_skip(const uint8_t *p, const uint8_t *end, int depth)
{
	if (p >= end || depth > 32)
		return NULL;
	uint8_t t = *p++;
	size_t n = 0, w = 0;
	if (t <= 0x7f || t == 0xc0)
		return p;
	if (t >= 0xcc && t <= 0xcf) {
		size_t k = (size_t)1 << (t - 0xcc);
		return (size_t)(end - p) >= k ? p + k : NULL;
	}
	if (t >= 0xc4 && t <= 0xc6)
		w = (size_t)1 << (t - 0xc4);
	else if (t == 0xdc || t == 0xdd)
		w = t == 0xdc ? 2 : 4;
	else if ((t & 0xf0) == 0x90)
		n = t & 0x0f;
	else
		return NULL;
	if ((size_t)(end - p) < w)
		return NULL;
	for (size_t i = 0; i < w; i++)
		n = n << 8 | *p++;
	if (t >= 0xc4 && t <= 0xc6)
		return (size_t)(end - p) >= n ? p + n : NULL;
	for (size_t i = 0; i < n && p != NULL; i++)
		p = mp_skip(p, end, depth + 1);
	return p;
}

/* Every frame the document writes is exactly one well-formed msgpack
 * value: a snapshot once said 8 elements and held 9 (the stamps field
 * was added without its count), which the library's own positional
 * reader did not notice. */
Test(doc_id, every_frame_is_one_whole_msgpack_value)
{
	uint8_t s[32] = { 9 };
	crdt_identity *ai;
	uint8_t pk[CRDT_PUBLIC_KEY_BYTES];
	cr_assert_eq(crdt_identity_from_seed(NULL, s, &ai), 0);
	crdt_identity_public_key(ai, pk);
	crdt_identity_free(ai);
	for (int mode = 0; mode < 3; mode++) {
		node a, b;
		const uint8_t *admin = mode == 2 ? pk : NULL;
		node_new(&a, 9, 4, mode > 0, mode == 1, admin);
		node_new(&b, 8, 4, mode > 0, mode == 1, admin);
		crdt_buf m, snap, hello, data;
		set_title(&a, "counted", &m);
		tb_init(&snap);
		tb_init(&hello);
		tb_init(&data);
		cr_assert_eq(crdt_doc_save(a.d, &snap), 0);
		cr_assert_eq(crdt_doc_sync_start(b.d, &hello), 0);
		cr_assert_eq(crdt_doc_sync_handle(a.d, hello.data, hello.len,
				 NULL, &data),
		    0);
		const crdt_buf *all[] = { &m, &snap, &hello, &data };
		for (size_t i = 0; i < 4; i++)
			cr_assert(mp_skip(all[i]->data, all[i]->data + all[i]->len,
					  0) == all[i]->data + all[i]->len,
			    "mode %d, frame %zu is not one msgpack value", mode,
			    i);
		crdt_buf_fini(&m);
		crdt_buf_fini(&snap);
		crdt_buf_fini(&hello);
		crdt_buf_fini(&data);
		node_free(&a);
		node_free(&b);
	}
}
