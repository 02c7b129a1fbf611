/*
 * Variant digests (sync version 4, docs/document.md, "Variant digests"):
 * two replicas whose clocks are equal but which hold different variants
 * of an equivocated dot find it and end a sync round with the union;
 * hostile digest fields are refused whole; a peer that lies about its
 * digests gets one answer per frame and no loop; version-3 frames still
 * sync.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "crdt/secure.h"
#include "test_util.h"

#define T0 UINT64_C(1700000000000)

typedef struct node {
	crdt_doc *d;
	crdt_identity *ident; /* NULL: unsigned mode */
	test_clock clk;
} node;

/* Replica `seed`: signed (its identity from the seed) or unsigned (the
 * replica ID test_id(seed)); two nodes of one seed are two devices of one
 * writer. Object "notes" is a G-Set. */
static void
node_cfg(node *n, uint8_t seed, bool sig, const crdt_config *base)
{
	crdt_config cfg;
	crdt_replica_id id;
	memset(n, 0, sizeof *n);
	n->clk.ms = T0;
	if (base != NULL)
		cfg = *base;
	else
		test_config(&cfg, NULL);
	cfg.clock = test_clock_read;
	cfg.clock_ud = &n->clk;
	if (sig) {
		uint8_t s[32] = { seed };
		cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
		crdt_identity_replica_id(n->ident, &id);
	} else {
		id = test_id(seed);
	}
	cr_assert_eq(crdt_doc_new(&cfg, &id, &n->d), 0);
	if (sig) {
		crdt_doc_security sec = { true, n->ident, false, NULL, 0, NULL,
			false };
		cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	}
	cr_assert_eq(crdt_doc_register(n->d, "notes", CRDT_OBJ_GSET, NULL), 0);
}

static void
node_new(node *n, uint8_t seed, bool sig)
{
	node_cfg(n, seed, sig, NULL);
}

static void
node_free(node *n)
{
	crdt_doc_free(n->d);
	crdt_identity_free(n->ident);
}

static void
note(node *n, const char *s, crdt_buf *out)
{
	uint32_t on;
	tb_init(out);
	cr_assert_eq(crdt_doc_lookup(n->d, "notes", &on), 0);
	n->clk.ms++;
	cr_assert_eq(crdt_doc_gset_add(n->d, on, s, strlen(s), out), 0);
}

static bool
has_note(const node *n, const char *s)
{
	uint32_t on;
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_lookup(n->d, "notes", &on), 0);
	cr_assert_eq(crdt_doc_gset(n->d, on, &g), 0);
	return crdt_gset_contains(g, s, strlen(s));
}

static void
recv_ok(node *n, const crdt_buf *m)
{
	int rc = crdt_doc_receive(n->d, m->data, m->len, NULL);
	cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
}

static void
save(const node *n, crdt_buf *out)
{
	tb_init(out);
	cr_assert_eq(crdt_doc_save(n->d, out), 0);
}

static bool
same_saves(const node *a, const node *b)
{
	crdt_buf x, y;
	save(a, &x);
	save(b, &y);
	bool same = bytes_eq(x.data, x.len, y.data, y.len);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	return same;
}

/* One sync round started by `a`, run to its end (every frame handled
 * without error); returns how many frames it took, at most `max`. */
static int
round_of(node *a, node *b, int max)
{
	crdt_buf f, r;
	node *to = b, *from = a;
	int frames = 1;
	tb_init(&f);
	cr_assert_eq(crdt_doc_sync_start(a->d, &f), 0);
	for (; f.len > 0; frames++) {
		cr_assert_leq(frames, max, "the round ends");
		tb_init(&r);
		int rc = crdt_doc_sync_handle(to->d, f.data, f.len, NULL, &r);
		cr_assert_eq(rc, 0, "frame %d: %s", frames, crdt_err_name(rc));
		crdt_buf_fini(&f);
		f = r;
		node *t = to;
		to = from;
		from = t;
	}
	crdt_buf_fini(&f);
	return frames;
}

/* X holds B's first variant of (B, 1), Y the second; their clocks are
 * equal and neither holds evidence. One round makes them identical. */
static void
equal_clocks_converge(bool sig)
{
	node x, y, b0, b1;
	crdt_buf v1, v2, hx, hy;
	node_new(&x, 1, sig);
	node_new(&y, 2, sig);
	node_new(&b0, 9, sig);
	node_new(&b1, 9, sig); /* B's second device, or a second tab */
	note(&b0, "fork 0", &v1);
	note(&b1, "fork 1", &v2);
	recv_ok(&x, &v1);
	recv_ok(&y, &v2);
	cr_assert(!same_saves(&x, &y), "the variants differ");
	/* Clocks alone see nothing: a version-3-style comparison would end
	 * the round with the HELLO's answer. */
	int n = round_of(&x, &y, 16);
	cr_assert(same_saves(&x, &y), "byte-identical after one round");
	cr_assert(has_note(&x, "fork 0") && has_note(&x, "fork 1"));
	cr_assert(has_note(&y, "fork 0") && has_note(&y, "fork 1"));
	/* And the next round finds nothing more: HELLO, one answer. */
	cr_assert_leq(round_of(&y, &x, 16), 3);
	cr_assert_gt(n, 2, "the variants travelled");
	save(&x, &hx);
	save(&y, &hy);
	crdt_buf *bufs[] = { &v1, &v2, &hx, &hy };
	for (size_t i = 0; i < 4; i++)
		crdt_buf_fini(bufs[i]);
	node *ns[] = { &x, &y, &b0, &b1 };
	for (size_t i = 0; i < 4; i++)
		node_free(ns[i]);
}

Test(sync_variants, equal_clocks_converge_in_signed_mode)
{
	equal_clocks_converge(true);
}

Test(sync_variants, equal_clocks_converge_in_unsigned_mode)
{
	equal_clocks_converge(false);
}

/* v1 to X, v2 to Y, then the same (B, 2) to both: the later identical
 * message hides nothing, the digest covers every counter of the run. */
Test(sync_variants, an_equivocation_behind_later_identical_messages_is_found)
{
	node x, y, b0, b1;
	crdt_buf v1, v2, m2;
	node_new(&x, 1, true);
	node_new(&y, 2, true);
	node_new(&b0, 9, true);
	node_new(&b1, 9, true);
	note(&b0, "fork 0", &v1);
	note(&b1, "fork 1", &v2);
	note(&b0, "later, to both", &m2);
	recv_ok(&x, &v1);
	recv_ok(&y, &v2);
	recv_ok(&x, &m2);
	recv_ok(&y, &m2);
	cr_assert(has_note(&y, "later, to both"));
	cr_assert(!same_saves(&x, &y));
	(void)round_of(&y, &x, 16);
	cr_assert(same_saves(&x, &y));
	cr_assert(has_note(&x, "fork 1") && has_note(&y, "fork 0"));
	crdt_buf *bufs[] = { &v1, &v2, &m2 };
	for (size_t i = 0; i < 3; i++)
		crdt_buf_fini(bufs[i]);
	node *ns[] = { &x, &y, &b0, &b1 };
	for (size_t i = 0; i < 4; i++)
		node_free(ns[i]);
}

/* Twenty equivocated dots behind a small frame budget: the range is
 * served in pages (DATA_MORE), each answer's digest starting past what
 * was already re-sent, and one round still ends with the union. */
Test(sync_variants, a_range_larger_than_a_frame_is_paged)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.sync_max_bytes = 2048;
	node x, y, b0, b1;
	node_cfg(&x, 1, true, &cfg);
	node_cfg(&y, 2, true, &cfg);
	node_new(&b0, 9, true);
	node_new(&b1, 9, true);
	for (int i = 0; i < 20; i++) {
		char s[32];
		crdt_buf m0, m1;
		snprintf(s, sizeof s, "fork 0 note %d", i);
		note(&b0, s, &m0);
		snprintf(s, sizeof s, "fork 1 note %d", i);
		note(&b1, s, &m1);
		recv_ok(&x, &m0);
		recv_ok(&y, &m1);
		crdt_buf_fini(&m0);
		crdt_buf_fini(&m1);
	}
	(void)round_of(&x, &y, 200);
	cr_assert(same_saves(&x, &y), "the union, after one round");
	cr_assert(has_note(&x, "fork 1 note 19") && has_note(&y,
	    "fork 0 note 0"));
	node *ns[] = { &x, &y, &b0, &b1 };
	for (size_t i = 0; i < 4; i++)
		node_free(ns[i]);
}

/* X cannot keep evidence (its bound is one byte): the digests keep
 * differing, and still every round ends within a few frames, without an
 * error, however often it is started. */
Test(sync_variants, a_replica_that_cannot_keep_the_variant_still_ends_rounds)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.max_evidence_bytes = 1;
	node x, y, b0, b1;
	crdt_buf v1, v2;
	node_cfg(&x, 1, true, &cfg);
	node_new(&y, 2, true);
	node_new(&b0, 9, true);
	node_new(&b1, 9, true);
	note(&b0, "fork 0", &v1);
	note(&b1, "fork 1", &v2);
	recv_ok(&x, &v1);
	recv_ok(&y, &v2);
	for (int i = 0; i < 4; i++) {
		cr_assert_leq(round_of(&x, &y, 6), 6);
		cr_assert_leq(round_of(&y, &x, 6), 6);
	}
	cr_assert(!has_note(&x, "fork 1"), "x could keep nothing");
	/* y could: it holds both variants, as evidence. */
	cr_assert(has_note(&y, "fork 0") && has_note(&y, "fork 1"));
	crdt_buf_fini(&v1);
	crdt_buf_fini(&v2);
	node *ns[] = { &x, &y, &b0, &b1 };
	for (size_t i = 0; i < 4; i++)
		node_free(ns[i]);
}

/* ---- hand-made frames ---- */

/* [5, 4, 7, doc_id (unbound), [id, c], digests...]: a HELLO of version 4
 * whose clock names replica `who` at counter `c`; the caller writes the
 * digests field. */
static void
hello_head(crdt_buf *f, crdt_replica_id who, uint64_t c)
{
	static const uint8_t unbound[CRDT_DOC_ID_BYTES];
	tb_init(f);
	mp_array(f, 5);
	mp_uint(f, 4);
	mp_uint(f, 7);
	mp_bin(f, unbound, sizeof unbound);
	mp_array(f, 2);
	mp_id(f, who);
	mp_uint(f, c);
}

static void
dg_entry(crdt_buf *f, crdt_replica_id id, uint64_t lo, size_t dglen)
{
	uint8_t dg[32];
	memset(dg, 0x5a, sizeof dg);
	mp_id(f, id);
	mp_uint(f, lo);
	mp_bin(f, dg, dglen);
}

static crdt_replica_id
rid(const node *n)
{
	crdt_replica_id id;
	crdt_identity_replica_id(n->ident, &id);
	return id;
}

/* Every malformation of the digests field is CRDT_EMALFORMED, with no
 * reply and no change; a well-formed lying digest is answered. */
Test(sync_variants, hostile_digest_fields_are_refused_and_change_nothing)
{
	node x, b;
	crdt_buf m1, m2, before, after;
	node_new(&x, 1, true);
	node_new(&b, 9, true);
	note(&b, "one", &m1);
	note(&b, "two", &m2);
	recv_ok(&x, &m1);
	recv_ok(&x, &m2);
	crdt_replica_id bid = rid(&b);
	crdt_replica_id low, high = bid;
	memset(&low, 0, sizeof low);
	low.bytes[15] = 1; /* below any ID a key gives */
	high.bytes[15] ^= 0x01; /* another ID, not in the clock */
	save(&x, &before);
	enum { N = 12 };
	for (int k = 0; k < N; k++) {
		crdt_buf f, r;
		hello_head(&f, bid, 2);
		switch (k) {
		case 0: /* not an array */
			mp_nil(&f);
			break;
		case 1: /* not triples */
			mp_array(&f, 2);
			mp_id(&f, bid);
			mp_uint(&f, 1);
			break;
		case 2: /* lo = 0 */
			mp_array(&f, 3);
			dg_entry(&f, bid, 0, 16);
			break;
		case 3: /* lo past the clock entry (lo > hi) */
			mp_array(&f, 3);
			dg_entry(&f, bid, 3, 16);
			break;
		case 4: /* a writer the frame's clock does not name */
			mp_array(&f, 3);
			dg_entry(&f, high, 1, 16);
			break;
		case 5: /* a short digest */
			mp_array(&f, 3);
			dg_entry(&f, bid, 1, 15);
			break;
		case 6: /* a long one */
			mp_array(&f, 3);
			dg_entry(&f, bid, 1, 17);
			break;
		case 7: /* duplicate writers */
			mp_array(&f, 6);
			dg_entry(&f, bid, 1, 16);
			dg_entry(&f, bid, 1, 16);
			break;
		case 8: /* unsorted writers (both named by no clock: the order
			 * is checked first) */
			mp_array(&f, 6);
			dg_entry(&f, bid, 1, 16);
			dg_entry(&f, low, 1, 16);
			break;
		case 9: /* a non-minimal lo */
			mp_array(&f, 3);
			mp_id(&f, bid);
			mp_byte(&f, 0xcc);
			mp_byte(&f, 0x01);
			mp_bin(&f, "0123456789abcdef", 16);
			break;
		case 10: /* a count the bytes cannot hold */
			mp_byte(&f, 0xdd);
			mp_byte(&f, 0x00);
			mp_byte(&f, 0x00);
			mp_byte(&f, 0x30);
			mp_byte(&f, 0x00);
			dg_entry(&f, bid, 1, 16);
			break;
		default: /* trailing bytes */
			mp_array(&f, 3);
			dg_entry(&f, bid, 1, 16);
			mp_uint(&f, 0);
			break;
		}
		tb_init(&r);
		int rc = crdt_doc_sync_handle(x.d, f.data, f.len, NULL, &r);
		cr_assert_eq(rc, CRDT_EMALFORMED, "case %d: %s", k,
		    crdt_err_name(rc));
		cr_assert_eq(r.len, 0, "case %d: no reply", k);
		save(&x, &after);
		cr_assert(bytes_eq(before.data, before.len, after.data,
		    after.len), "case %d changed nothing", k);
		crdt_buf_fini(&after);
		crdt_buf_fini(&f);
		crdt_buf_fini(&r);
	}
	/* Well-formed but wrong: answered with B's run from lo (one DATA
	 * frame), nothing changed. */
	crdt_buf f, r;
	hello_head(&f, bid, 2);
	mp_array(&f, 3);
	dg_entry(&f, bid, 1, 16);
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_handle(x.d, f.data, f.len, NULL, &r), 0);
	cr_assert_gt(r.len, m1.len + m2.len, "the range is served");
	cr_assert_neq(memmem(r.data, r.len, m1.data, m1.len), NULL);
	cr_assert_neq(memmem(r.data, r.len, m2.data, m2.len), NULL);
	save(&x, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	/* An equal clock without a digest asks for nothing. */
	crdt_buf_fini(&f);
	crdt_buf_fini(&r);
	hello_head(&f, bid, 2);
	mp_array(&f, 0);
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_handle(x.d, f.data, f.len, NULL, &r), 0);
	cr_assert_eq(memmem(r.data, r.len, m1.data, m1.len), NULL);
	crdt_buf *bufs[] = { &f, &r, &m1, &m2, &before, &after };
	for (size_t i = 0; i < 6; i++)
		crdt_buf_fini(bufs[i]);
	node_free(&x);
	node_free(&b);
}

/* The DATA frame's digests are decoded before anything in the frame is
 * applied: a bad digest refuses the messages with it. */
Test(sync_variants, a_data_frame_with_a_bad_digest_applies_nothing)
{
	node x, y, w;
	crdt_buf mw, m, h, d, before, after, r;
	node_new(&x, 1, true);
	node_new(&y, 2, true);
	node_new(&w, 3, true);
	note(&w, "from w", &mw);
	recv_ok(&x, &mw);
	recv_ok(&y, &mw);
	note(&x, "from x", &m);
	tb_init(&h);
	tb_init(&d);
	cr_assert_eq(crdt_doc_sync_start(y.d, &h), 0);
	cr_assert_eq(crdt_doc_sync_handle(x.d, h.data, h.len, NULL, &d), 0);
	/* x's digests close the frame, for the one writer whose clock entry
	 * y's HELLO shares: [w, 1, digest] (38 bytes); lo = 0 */
	size_t dg = 1 + 18 + 1 + 18;
	cr_assert_eq(d.data[d.len - dg], 0x93);
	cr_assert_eq(d.data[d.len - 18 - 1], 0x01);
	save(&y, &before);
	d.data[d.len - 18 - 1] = 0x00;
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_handle(y.d, d.data, d.len, NULL, &r),
	    CRDT_EMALFORMED);
	cr_assert_eq(r.len, 0);
	save(&y, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	cr_assert(!has_note(&y, "from x"));
	d.data[d.len - 18 - 1] = 0x01;
	cr_assert_eq(crdt_doc_sync_handle(y.d, d.data, d.len, NULL, &r), 0);
	cr_assert(has_note(&y, "from x"));
	crdt_buf *bufs[] = { &mw, &m, &h, &d, &before, &after, &r };
	for (size_t i = 0; i < 7; i++)
		crdt_buf_fini(bufs[i]);
	node_free(&x);
	node_free(&y);
	node_free(&w);
}

/* Flip every digest byte of a frame (its last field; `n` entries of 38
 * bytes, lo < 128). */
static void
lie(crdt_buf *f, size_t n)
{
	size_t at = f->len;
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < 16; k++)
			f->data[at - 1 - k] ^= 0xff;
		at -= 38;
	}
}

/*
 * A liar L holds what X holds and states wrong digests in every frame.
 * X answers each of L's frames at most once, stops answering once L's
 * frames neither ask (DATA_REPLY) nor bring anything, and honest frames
 * still work: X and an honest Y converge after it.
 */
Test(sync_variants, a_lying_peer_cannot_loop_a_round_or_fail_honest_frames)
{
	node x, y, l, b0, b1;
	crdt_buf v1, v2, f, r;
	node_new(&x, 1, true);
	node_new(&y, 2, true);
	node_new(&l, 3, true);
	node_new(&b0, 9, true);
	node_new(&b1, 9, true);
	note(&b0, "fork 0", &v1);
	note(&b1, "fork 1", &v2);
	recv_ok(&x, &v1);
	recv_ok(&l, &v1);
	recv_ok(&y, &v2);
	/* L's HELLO, digests flipped (one writer: B). */
	tb_init(&f);
	cr_assert_eq(crdt_doc_sync_start(l.d, &f), 0);
	lie(&f, 1);
	int answered = 0;
	for (int i = 0; i < 40 && f.len > 0; i++) {
		tb_init(&r);
		cr_assert_eq(crdt_doc_sync_handle(x.d, f.data, f.len, NULL,
				 &r), 0, "a lie is not an error");
		crdt_buf_fini(&f);
		if (r.len == 0) {
			f = r;
			break;
		}
		answered++;
		/* L answers X honestly, then lies about its digests. */
		tb_init(&f);
		cr_assert_eq(crdt_doc_sync_handle(l.d, r.data, r.len, NULL,
				 &f), 0);
		crdt_buf_fini(&r);
		if (f.len > 0)
			lie(&f, 1);
	}
	crdt_buf_fini(&f);
	cr_assert_leq(answered, 2, "no loop: %d answers", answered);
	/* X is unharmed: an honest round with Y brings the union. */
	(void)round_of(&x, &y, 16);
	cr_assert(same_saves(&x, &y));
	crdt_buf *bufs[] = { &v1, &v2 };
	for (size_t i = 0; i < 2; i++)
		crdt_buf_fini(bufs[i]);
	node *ns[] = { &x, &y, &l, &b0, &b1 };
	for (size_t i = 0; i < 5; i++)
		node_free(ns[i]);
}

/* A version-3 HELLO (no digests) is still answered, and its sender gets
 * what it lacks. */
Test(sync_variants, a_version_3_hello_still_syncs)
{
	node x, y;
	crdt_buf m, h, d, r;
	static const uint8_t unbound[CRDT_DOC_ID_BYTES];
	node_new(&x, 1, true);
	node_new(&y, 2, true);
	note(&x, "from x", &m);
	tb_init(&h);
	mp_array(&h, 4);
	mp_uint(&h, 3);
	mp_uint(&h, 7);
	mp_bin(&h, unbound, sizeof unbound);
	mp_array(&h, 0);
	tb_init(&d);
	cr_assert_eq(crdt_doc_sync_handle(x.d, h.data, h.len, NULL, &d), 0);
	cr_assert_eq(d.data[1], 4, "answered in version 4");
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_handle(y.d, d.data, d.len, NULL, &r), 0);
	cr_assert(has_note(&y, "from x"));
	crdt_buf *bufs[] = { &m, &h, &d, &r };
	for (size_t i = 0; i < 4; i++)
		crdt_buf_fini(bufs[i]);
	node_free(&x);
	node_free(&y);
}

/* Whole 256-counter blocks' digests are cached by the rounds that hash
 * them. Writer B (two tabs of one ID, unsigned) has 600 notes at X and Y
 * and up-to-date rounds have cached blocks 0 and 1 on both; then B's
 * second tab sends its first 10 notes (other variants of counters 1..10,
 * in cached block 0) to Y alone, and later a third replica's message
 * moves nothing of B's. The next round must still see Y's new variants
 * and bring them to X: a cached block is only used while the log and the
 * evidence are as they were when it was hashed. */
Test(sync_variants, a_variant_in_a_cached_block_is_still_found)
{
	node x, y, b0, b1, z;
	crdt_buf m, c;
	node_new(&x, 1, false);
	node_new(&y, 2, false);
	node_new(&b0, 9, false);
	node_new(&b1, 9, false);
	node_new(&z, 3, false);
	for (int i = 0; i < 600; i++) {
		char s[32];
		snprintf(s, sizeof s, "b0 note %d", i);
		note(&b0, s, &m);
		recv_ok(&x, &m);
		recv_ok(&y, &m);
		crdt_buf_fini(&m);
	}
	for (int k = 0; k < 3; k++) {
		cr_assert_leq(round_of(&x, &y, 16), 3, "up to date");
		cr_assert_leq(round_of(&y, &x, 16), 3, "up to date");
	}
	cr_assert(same_saves(&x, &y));
	{
		crdt_buf hx, hy;
		tb_init(&hx);
		tb_init(&hy);
		cr_assert_eq(crdt_doc_sync_start(x.d, &hx), 0);
		cr_assert_eq(crdt_doc_sync_start(y.d, &hy), 0);
		cr_assert(bytes_eq(hx.data, hx.len, hy.data, hy.len),
		    "the same holdings state the same digests");
		crdt_buf_fini(&hx);
		crdt_buf_fini(&hy);
	}
	for (int i = 0; i < 10; i++) {
		char s[32];
		snprintf(s, sizeof s, "b1 note %d", i);
		note(&b1, s, &m);
		recv_ok(&y, &m); /* a variant: kept as evidence, ops joined */
		crdt_buf_fini(&m);
	}
	note(&z, "z", &c);
	recv_ok(&x, &c);
	recv_ok(&y, &c);
	cr_assert(!same_saves(&x, &y), "Y holds variants X lacks");
	/* Equal clocks, one document: the HELLOs differ only by what they
	 * state of B's variants, and Y's must say it holds others now. */
	crdt_buf hx, hy;
	tb_init(&hx);
	tb_init(&hy);
	cr_assert_eq(crdt_doc_sync_start(x.d, &hx), 0);
	cr_assert_eq(crdt_doc_sync_start(y.d, &hy), 0);
	cr_assert(!bytes_eq(hx.data, hx.len, hy.data, hy.len),
	    "Y's digest of B still reads as before its new variants");
	crdt_buf_fini(&hx);
	crdt_buf_fini(&hy);
	int n = round_of(&x, &y, 64);
	cr_assert_gt(n, 2, "the variants travelled");
	cr_assert(same_saves(&x, &y), "byte-identical after the round");
	cr_assert(has_note(&x, "b1 note 9") && has_note(&x, "b0 note 9"));
	cr_assert_leq(round_of(&y, &x, 16), 3, "and up to date again");
	crdt_buf_fini(&c);
	node *ns[] = { &x, &y, &b0, &b1, &z };
	for (size_t i = 0; i < 5; i++)
		node_free(ns[i]);
}
