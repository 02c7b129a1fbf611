/*
 * LWW register: writes ordered by (HLC, replica ID), clears as tombstone
 * writes, deterministic tie-breaks, the local clock, and the codec. All
 * replicas run on an injected clock so stamps are known exactly.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_util.h"

#define PACK CRDT_HLC_PACK

static crdt_config cfg;
static test_clock clk;
static crdt_replica_id A, B, C;

static void
setup(void)
{
	test_alloc_reset();
	clk.ms = 1000;
	clk.reads = 0;
	test_config(&cfg, &clk);
	A = test_id(1);
	B = test_id(2);
	C = test_id(3);
}

TestSuite(lww, .init = setup);

static crdt_lww *
mk(crdt_replica_id self)
{
	crdt_lww *r;
	cr_assert_eq(crdt_lww_new(&cfg, &self, &r), 0);
	return r;
}

static crdt_buf
enc(const crdt_lww *r)
{
	crdt_buf b;
	tb_init(&b);
	cr_assert_eq(crdt_lww_encode(r, &b), 0);
	return b;
}

static void
set(crdt_lww *r, const char *v)
{
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_set(r, v, strlen(v), &op), 0, "set %s", v);
	crdt_buf_fini(&op);
}

static void
apply(crdt_lww *r, const crdt_buf *op)
{
	int rc = crdt_lww_apply_op(r, op->data, op->len);
	cr_assert_eq(rc, 0, "apply: %s", crdt_err_name(rc));
}

/* The register holds `want` (NULL = no value). */
static void
expect_value(const crdt_lww *r, const char *want)
{
	const uint8_t *v = NULL;
	size_t n = 0;
	int rc = crdt_lww_get(r, &v, &n);
	if (want == NULL) {
		cr_assert_eq(rc, CRDT_ENOTFOUND, "want no value, got %s",
		    crdt_err_name(rc));
		return;
	}
	cr_assert_eq(rc, 0, "want %s, got %s", want, crdt_err_name(rc));
	cr_assert(bytes_eq(v, n, want, strlen(want)), "want %s", want);
}

static void
expect_apply_fails(crdt_lww *r, const void *op, size_t len, int want,
    const char *what)
{
	crdt_buf before = enc(r);
	uint64_t clock = crdt_lww_clock(r);
	int rc = crdt_lww_apply_op(r, op, len);
	cr_assert_eq(rc, want, "%s: got %s, want %s", what, crdt_err_name(rc),
	    crdt_err_name(want));
	crdt_buf after = enc(r);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len),
	    "%s: register changed", what);
	cr_assert_eq(crdt_lww_clock(r), clock, "%s: clock moved", what);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
}

static void
expect_decode_fails(const crdt_config *c, const crdt_buf *b, int want,
    const char *what)
{
	crdt_lww *out = (crdt_lww *)&out;
	int rc = crdt_lww_decode(c, &A, b->data, b->len, &out);
	cr_assert_eq(rc, want, "%s: got %s, want %s (%s)", what,
	    crdt_err_name(rc), crdt_err_name(want), hexs(b->data, b->len));
	cr_assert_eq(out, (crdt_lww *)&out, "%s: *out written", what);
}

/* ---- construction ---- */

Test(lww, new_is_unset)
{
	crdt_lww *r = mk(A);
	expect_value(r, NULL);
	uint64_t h = 7;
	cr_assert_eq(crdt_lww_stamp(r, &h, NULL), CRDT_ENOTFOUND);
	cr_assert_eq(h, 7);
	cr_assert_eq(crdt_lww_clock(r), 0);
	crdt_lww_free(r);
	crdt_lww_free(NULL);
	cr_assert_eq(crdt_lww_new(NULL, &A, &r), 0, "NULL cfg = defaults");
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

Test(lww, new_refuses_null_and_partial_allocator)
{
	crdt_lww *r = NULL;
	cr_assert_eq(crdt_lww_new(&cfg, NULL, &r), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_new(&cfg, &A, NULL), CRDT_EINVAL);
	crdt_config bad = cfg;
	bad.alloc.alloc = NULL;
	cr_assert_eq(crdt_lww_new(&bad, &A, &r), CRDT_EINVAL);
	cr_assert_null(r);
	ASSERT_NO_LEAKS();
}

/* ---- local writes ---- */

Test(lww, set_emits_documented_op_and_stamps_with_hlc)
{
	crdt_lww *r = mk(A);
	crdt_buf op, want;
	tb_init(&op);
	tb_init(&want);
	cr_assert_eq(crdt_lww_set(r, "v1", 2, &op), 0);
	mk_lww_op(&want, PACK(1000, 0), A, true, "v1", 2);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len), "op %s",
	    hexs(op.data, op.len));
	expect_value(r, "v1");
	uint64_t h;
	crdt_replica_id w;
	cr_assert_eq(crdt_lww_stamp(r, &h, &w), 0);
	cr_assert_eq(h, PACK(1000, 0));
	cr_assert_eq(crdt_replica_id_cmp(&w, &A), 0);
	cr_assert_eq(crdt_lww_clock(r), h);
	cr_assert_eq(crdt_lww_stamp(r, NULL, NULL), 0);
	/* Same millisecond: logical +1; the op is appended. */
	cr_assert_eq(crdt_lww_set(r, "v2", 2, &op), 0);
	mk_lww_op(&want, PACK(1000, 1), A, true, "v2", 2);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len));
	expect_value(r, "v2");
	crdt_buf_fini(&op);
	crdt_buf_fini(&want);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

Test(lww, empty_value_is_a_value)
{
	crdt_lww *r = mk(A);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_set(r, NULL, 0, &op), 0);
	size_t n = 99;
	cr_assert_eq(crdt_lww_get(r, NULL, &n), 0);
	cr_assert_eq(n, 0);
	crdt_lww *s = mk(B);
	apply(s, &op);
	cr_assert_eq(crdt_lww_get(s, NULL, &n), 0);
	cr_assert_eq(n, 0);
	crdt_buf_fini(&op);
	crdt_lww_free(r);
	crdt_lww_free(s);
	ASSERT_NO_LEAKS();
}

Test(lww, clear_writes_a_tombstone)
{
	crdt_lww *r = mk(A);
	set(r, "v");
	crdt_buf op, want;
	tb_init(&op);
	tb_init(&want);
	cr_assert_eq(crdt_lww_clear(r, &op), 0);
	mk_lww_op(&want, PACK(1000, 1), A, false, NULL, 0);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len), "op %s",
	    hexs(op.data, op.len));
	expect_value(r, NULL);
	/* Cleared is not "never written": it has a stamp. */
	uint64_t h;
	cr_assert_eq(crdt_lww_stamp(r, &h, NULL), 0);
	cr_assert_eq(h, PACK(1000, 1));
	/* A later set wins over the clear. */
	set(r, "again");
	expect_value(r, "again");
	crdt_buf_fini(&op);
	crdt_buf_fini(&want);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

Test(lww, local_write_errors_change_nothing)
{
	crdt_config small = cfg;
	small.limits.max_value_bytes = 3;
	crdt_lww *r;
	cr_assert_eq(crdt_lww_new(&small, &A, &r), 0);
	set(r, "abc");
	crdt_buf before = enc(r);
	uint64_t clock = crdt_lww_clock(r);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_buf_append(&op, "pre", 3), 0);
	cr_assert_eq(crdt_lww_set(NULL, "a", 1, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_set(r, "a", 1, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_set(r, NULL, 1, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_clear(NULL, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_clear(r, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_set(r, "abcd", 4, &op), CRDT_ETOOBIG);
	/* A physical clock past 2^48 ms cannot stamp anything. */
	clk.ms = CRDT_HLC_MAX_MS + 1;
	cr_assert_eq(crdt_lww_set(r, "x", 1, &op), CRDT_EOVERFLOW);
	cr_assert_eq(crdt_lww_clear(r, &op), CRDT_EOVERFLOW);
	cr_assert(bytes_eq(op.data, op.len, "pre", 3), "op_out untouched");
	crdt_buf after = enc(r);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	cr_assert_eq(crdt_lww_clock(r), clock);
	expect_value(r, "abc");
	crdt_buf_fini(&op);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

/* ---- apply_op and merge: the LWW order ---- */

Test(lww, newer_remote_write_wins_older_loses)
{
	crdt_lww *r = mk(A);
	set(r, "mine"); /* PACK(1000,0) */
	crdt_buf op;
	tb_init(&op);
	mk_lww_op(&op, PACK(999, 5), B, true, "old", 3);
	apply(r, &op);
	expect_value(r, "mine");
	crdt_buf_clear(&op);
	mk_lww_op(&op, PACK(1000, 1), B, true, "new", 3);
	apply(r, &op);
	expect_value(r, "new");
	uint64_t h;
	crdt_replica_id w;
	cr_assert_eq(crdt_lww_stamp(r, &h, &w), 0);
	cr_assert_eq(h, PACK(1000, 1));
	cr_assert_eq(crdt_replica_id_cmp(&w, &B), 0);
	crdt_buf_fini(&op);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

/* Equal HLC from two replicas: the greater replica ID wins, on every
 * replica and in every delivery order. */
Test(lww, concurrent_writes_resolve_by_hlc_then_replica_id)
{
	crdt_lww *ra = mk(A), *rb = mk(B);
	crdt_buf oa, ob;
	tb_init(&oa);
	tb_init(&ob);
	cr_assert_eq(crdt_lww_set(ra, "from-a", 6, &oa), 0);
	cr_assert_eq(crdt_lww_set(rb, "from-b", 6, &ob), 0);
	apply(ra, &ob);
	apply(rb, &oa);
	expect_value(ra, "from-b");
	expect_value(rb, "from-b");
	cr_assert(crdt_lww_equal(ra, rb));
	crdt_lww *fresh1 = mk(C), *fresh2 = mk(C);
	apply(fresh1, &oa);
	apply(fresh1, &ob);
	apply(fresh2, &ob);
	apply(fresh2, &oa);
	crdt_buf e1 = enc(fresh1), e2 = enc(fresh2), e3 = enc(ra);
	cr_assert(bytes_eq(e1.data, e1.len, e2.data, e2.len));
	cr_assert(bytes_eq(e1.data, e1.len, e3.data, e3.len));
	crdt_buf *bs[] = { &oa, &ob, &e1, &e2, &e3 };
	for (int i = 0; i < 5; i++)
		crdt_buf_fini(bs[i]);
	crdt_lww *rs[] = { ra, rb, fresh1, fresh2 };
	for (int i = 0; i < 4; i++)
		crdt_lww_free(rs[i]);
	ASSERT_NO_LEAKS();
}

/* Equal (hlc, replica) but different writes can only come from a faulty
 * replica; they must still resolve the same way in any order: a present
 * value beats a clear, then the bytewise greater value wins. */
Test(lww, equal_stamp_ties_resolve_deterministically)
{
	struct {
		bool present;
		const char *v;
	} w[] = { { true, "x" }, { true, "y" }, { false, NULL },
		{ true, "xx" }, { true, "" } };
	enum { N = 5 };
	crdt_buf ops[N];
	for (int i = 0; i < N; i++) {
		tb_init(&ops[i]);
		mk_lww_op(&ops[i], PACK(50, 0), B, w[i].present, w[i].v,
		    w[i].v ? strlen(w[i].v) : 0);
	}
	crdt_buf ref;
	tb_init(&ref);
	/* Every ordered pair, both orders, plus all ops forward/backward. */
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < N; j++) {
			crdt_lww *x = mk(A), *y = mk(A);
			apply(x, &ops[i]);
			apply(x, &ops[j]);
			apply(y, &ops[j]);
			apply(y, &ops[i]);
			crdt_buf ex = enc(x), ey = enc(y);
			cr_assert(bytes_eq(ex.data, ex.len, ey.data, ey.len),
			    "ops %d,%d depend on order", i, j);
			crdt_buf_fini(&ex);
			crdt_buf_fini(&ey);
			crdt_lww_free(x);
			crdt_lww_free(y);
		}
	}
	crdt_lww *fw = mk(A), *bw = mk(A);
	for (int i = 0; i < N; i++) {
		apply(fw, &ops[i]);
		apply(bw, &ops[N - 1 - i]);
	}
	expect_value(fw, "y");
	expect_value(bw, "y");
	/* present beats absent under an equal stamp */
	crdt_lww *p = mk(A);
	apply(p, &ops[2]);
	apply(p, &ops[4]);
	expect_value(p, "");
	crdt_lww_free(p);
	p = mk(A);
	apply(p, &ops[4]);
	apply(p, &ops[2]);
	expect_value(p, "");
	crdt_lww_free(p);
	/* "xx" vs "x": the longer (prefix-extended) one is greater */
	p = mk(A);
	apply(p, &ops[3]);
	apply(p, &ops[0]);
	expect_value(p, "xx");
	crdt_lww_free(p);
	crdt_lww_free(fw);
	crdt_lww_free(bw);
	crdt_buf_fini(&ref);
	for (int i = 0; i < N; i++)
		crdt_buf_fini(&ops[i]);
	ASSERT_NO_LEAKS();
}

Test(lww, clear_and_set_race_by_stamp)
{
	crdt_buf clr, st;
	tb_init(&clr);
	tb_init(&st);
	mk_lww_op(&clr, PACK(10, 0), B, false, NULL, 0);
	mk_lww_op(&st, PACK(9, 0), C, true, "v", 1);
	crdt_lww *x = mk(A), *y = mk(A);
	apply(x, &st);
	apply(x, &clr);
	apply(y, &clr);
	apply(y, &st);
	expect_value(x, NULL);
	expect_value(y, NULL);
	cr_assert(crdt_lww_equal(x, y));
	crdt_buf_fini(&clr);
	crdt_buf_fini(&st);
	crdt_lww_free(x);
	crdt_lww_free(y);
	ASSERT_NO_LEAKS();
}

Test(lww, apply_is_idempotent_including_own_ops)
{
	crdt_lww *r = mk(A), *s = mk(B);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_set(r, "v", 1, &op), 0);
	crdt_buf e1 = enc(r);
	uint64_t clock = crdt_lww_clock(r);
	apply(r, &op);
	apply(r, &op);
	crdt_buf e2 = enc(r);
	cr_assert(bytes_eq(e1.data, e1.len, e2.data, e2.len));
	expect_value(r, "v");
	cr_assert_geq(crdt_lww_clock(r), clock);
	apply(s, &op);
	crdt_buf e3 = enc(s);
	apply(s, &op);
	crdt_buf e4 = enc(s);
	cr_assert(bytes_eq(e3.data, e3.len, e4.data, e4.len));
	cr_assert(bytes_eq(e1.data, e1.len, e3.data, e3.len));
	crdt_buf *bs[] = { &op, &e1, &e2, &e3, &e4 };
	for (int i = 0; i < 5; i++)
		crdt_buf_fini(bs[i]);
	crdt_lww_free(r);
	crdt_lww_free(s);
	ASSERT_NO_LEAKS();
}

/* After applying a remote stamp ahead of our physical clock (within the
 * drift bound), our next local write still wins. */
Test(lww, local_write_after_apply_wins)
{
	crdt_lww *r = mk(A);
	crdt_buf op;
	tb_init(&op);
	mk_lww_op(&op, PACK(5000, 7), B, true, "remote", 6);
	apply(r, &op);
	cr_assert_geq(crdt_lww_clock(r), PACK(5000, 7));
	crdt_buf_clear(&op);
	cr_assert_eq(crdt_lww_set(r, "local", 5, &op), 0);
	expect_value(r, "local");
	uint64_t h;
	cr_assert_eq(crdt_lww_stamp(r, &h, NULL), 0);
	cr_assert_gt(h, PACK(5000, 7));
	crdt_buf_fini(&op);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

/* A stamp beyond the drift bound is applied (acceptance never depends on
 * the receiver's clock) but does not drag the local clock along. */
Test(lww, far_future_stamp_applies_but_does_not_move_clock)
{
	crdt_lww *r = mk(A);
	set(r, "mine");
	uint64_t clock = crdt_lww_clock(r);
	crdt_buf op;
	tb_init(&op);
	uint64_t far = PACK(1000 + 60000 + 1, 0);
	mk_lww_op(&op, far, B, true, "future", 6);
	apply(r, &op);
	expect_value(r, "future");
	cr_assert_eq(crdt_lww_clock(r), clock);
	crdt_buf_fini(&op);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

Test(lww, apply_op_rejects_null_and_truncations)
{
	crdt_lww *r = mk(A);
	set(r, "keep");
	crdt_buf op;
	tb_init(&op);
	mk_lww_op(&op, PACK(123456, 789), B, true, "value", 5);
	cr_assert_eq(crdt_lww_apply_op(NULL, op.data, op.len), CRDT_EINVAL);
	expect_apply_fails(r, NULL, 4, CRDT_EINVAL, "NULL op");
	for (size_t n = 0; n < op.len; n++)
		expect_apply_fails(r, op.data, n, CRDT_EMALFORMED, "prefix");
	crdt_buf_clear(&op);
	mk_lww_op(&op, PACK(123456, 789), B, false, NULL, 0);
	for (size_t n = 0; n < op.len; n++)
		expect_apply_fails(r, op.data, n, CRDT_EMALFORMED,
		    "clear prefix");
	crdt_buf_fini(&op);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

Test(lww, apply_op_rejects_malformed_ops)
{
	crdt_lww *r = mk(A);
	set(r, "keep");
	crdt_buf b;
	uint64_t h = PACK(2000, 0);

	tb_init(&b);
	mk_lww_op(&b, h, B, true, "x", 1);
	mp_byte(&b, 0x00);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "trailing");
	crdt_buf_fini(&b);

	tb_init(&b);
	mk_gset_op(&b, B, 1, "x", 1);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "gset op");
	crdt_buf_fini(&b);

	tb_init(&b);
	mk_map_op(&b, h, B, true, "x", 1, "k", 1);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "map op");
	crdt_buf_fini(&b);

	tb_init(&b); /* extra field */
	mp_array(&b, 6);
	mp_uint(&b, 1);
	mp_uint(&b, 2);
	mp_uint(&b, h);
	mp_id(&b, B);
	mp_bin(&b, "x", 1);
	mp_nil(&b);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "extra field");
	crdt_buf_fini(&b);

	tb_init(&b); /* the unset-state shape is not an op */
	mp_raw(&b, "\x92\x01\x02", 3);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "no write");
	crdt_buf_fini(&b);

	tb_init(&b); /* hlc as nil */
	mp_raw(&b, "\x95\x01\x02\xc0", 4);
	mp_id(&b, B);
	mp_bin(&b, "x", 1);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "nil hlc");
	crdt_buf_fini(&b);

	tb_init(&b); /* value as str */
	mp_raw(&b, "\x95\x01\x02\x05", 4);
	mp_id(&b, B);
	mp_raw(&b, "\xa1x", 2);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "str value");
	crdt_buf_fini(&b);

	tb_init(&b); /* non-minimal hlc */
	mp_raw(&b, "\x95\x01\x02\xcd\x00\x05", 6);
	mp_id(&b, B);
	mp_bin(&b, "x", 1);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "uint16 hlc");
	crdt_buf_fini(&b);

	tb_init(&b); /* zero writer */
	static const uint8_t zid[16];
	mp_raw(&b, "\x95\x01\x02\x05", 4);
	mp_bin(&b, zid, 16);
	mp_bin(&b, "x", 1);
	expect_apply_fails(r, b.data, b.len, CRDT_EMALFORMED, "zero id");
	crdt_buf_fini(&b);

	tb_init(&b);
	mp_raw(&b, "\x95\x02\x02\x05", 4);
	mp_id(&b, B);
	mp_bin(&b, "x", 1);
	expect_apply_fails(r, b.data, b.len, CRDT_EVERSION, "version 2");
	crdt_buf_fini(&b);

	expect_value(r, "keep");
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

Test(lww, apply_op_enforces_limits)
{
	crdt_config small = cfg;
	small.limits.max_value_bytes = 3;
	crdt_lww *r;
	cr_assert_eq(crdt_lww_new(&small, &A, &r), 0);
	crdt_buf b;
	tb_init(&b);
	mk_lww_op(&b, PACK(2000, 0), B, true, "abcd", 4);
	expect_apply_fails(r, b.data, b.len, CRDT_ETOOBIG, "value > limit");
	crdt_buf_clear(&b);
	mk_lww_op(&b, PACK(2000, 0), B, true, "abc", 3);
	apply(r, &b);
	crdt_lww_free(r);
	small = cfg;
	small.limits.max_bytes = b.len - 1;
	cr_assert_eq(crdt_lww_new(&small, &A, &r), 0);
	expect_apply_fails(r, b.data, b.len, CRDT_ETOOBIG, "op > max_bytes");
	crdt_lww_free(r);
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(lww, merge_keeps_the_winner)
{
	crdt_lww *x = mk(A), *y = mk(B), *u = mk(C);
	set(x, "x"); /* PACK(1000,0) A */
	set(y, "y"); /* PACK(1000,0) B: wins */
	crdt_lww *xy = mk(C), *yx = mk(C);
	cr_assert_eq(crdt_lww_merge(xy, x), 0);
	cr_assert_eq(crdt_lww_merge(xy, y), 0);
	cr_assert_eq(crdt_lww_merge(yx, y), 0);
	cr_assert_eq(crdt_lww_merge(yx, x), 0);
	expect_value(xy, "y");
	cr_assert(crdt_lww_equal(xy, yx));
	/* Unset src changes nothing; self-merge changes nothing. */
	crdt_buf e1 = enc(xy);
	cr_assert_eq(crdt_lww_merge(xy, u), 0);
	cr_assert_eq(crdt_lww_merge(xy, xy), 0);
	crdt_buf e2 = enc(xy);
	cr_assert(bytes_eq(e1.data, e1.len, e2.data, e2.len));
	/* Merging into an unset register copies the winner. */
	cr_assert_eq(crdt_lww_merge(u, xy), 0);
	cr_assert(crdt_lww_equal(u, xy));
	cr_assert_eq(crdt_lww_merge(NULL, x), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_merge(x, NULL), CRDT_EINVAL);
	/* Merge advances the clock like apply does. */
	cr_assert_geq(crdt_lww_clock(u), PACK(1000, 0));
	set(u, "later");
	expect_value(u, "later");
	crdt_buf_fini(&e1);
	crdt_buf_fini(&e2);
	crdt_lww *rs[] = { x, y, u, xy, yx };
	for (int i = 0; i < 5; i++)
		crdt_lww_free(rs[i]);
	ASSERT_NO_LEAKS();
}

Test(lww, get_and_stamp_error_paths)
{
	const uint8_t *v;
	size_t n;
	uint64_t h;
	crdt_replica_id w;
	cr_assert_eq(crdt_lww_get(NULL, &v, &n), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_stamp(NULL, &h, &w), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_clock(NULL), 0);
	crdt_lww *r = mk(A);
	cr_assert_eq(crdt_lww_get(r, NULL, NULL), CRDT_ENOTFOUND);
	set(r, "v");
	cr_assert_eq(crdt_lww_get(r, NULL, NULL), 0);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

/* ---- encode / decode ---- */

Test(lww, encoding_matches_wire_format)
{
	crdt_lww *r = mk(A);
	crdt_buf got = enc(r);
	cr_assert(bytes_eq(got.data, got.len, "\x92\x01\x02", 3),
	    "unset: %s", hexs(got.data, got.len));
	crdt_buf_fini(&got);
	set(r, "val");
	crdt_buf want;
	tb_init(&want);
	mk_lww_op(&want, PACK(1000, 0), A, true, "val", 3);
	got = enc(r);
	cr_assert(bytes_eq(got.data, got.len, want.data, want.len),
	    "a set state has the op's shape: %s", hexs(got.data, got.len));
	crdt_buf_fini(&got);
	crdt_buf_clear(&want);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_clear(r, &op), 0);
	mk_lww_op(&want, PACK(1000, 1), A, false, NULL, 0);
	got = enc(r);
	cr_assert(bytes_eq(got.data, got.len, want.data, want.len));
	cr_assert_eq(crdt_lww_encode(NULL, &got), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_encode(r, NULL), CRDT_EINVAL);
	crdt_buf_fini(&got);
	crdt_buf_fini(&want);
	crdt_buf_fini(&op);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

Test(lww, decode_round_trips_all_three_states)
{
	crdt_lww *r = mk(A);
	for (int step = 0; step < 3; step++) {
		if (step == 1)
			set(r, "v");
		if (step == 2) {
			crdt_buf op;
			tb_init(&op);
			cr_assert_eq(crdt_lww_clear(r, &op), 0);
			crdt_buf_fini(&op);
		}
		crdt_buf e1 = enc(r);
		crdt_lww *back;
		cr_assert_eq(crdt_lww_decode(&cfg, &B, e1.data, e1.len, &back),
		    0, "step %d", step);
		cr_assert(crdt_lww_equal(r, back), "step %d", step);
		crdt_buf e2 = enc(back);
		cr_assert(bytes_eq(e1.data, e1.len, e2.data, e2.len));
		crdt_buf_fini(&e1);
		crdt_buf_fini(&e2);
		crdt_lww_free(back);
	}
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

/* A restored register's clock is past the stored stamp, so the first
 * local write after a restore wins. */
Test(lww, decode_moves_clock_past_the_stored_stamp)
{
	crdt_buf st;
	tb_init(&st);
	mk_lww_op(&st, PACK(3000, 2), B, true, "stored", 6);
	crdt_lww *r;
	cr_assert_eq(crdt_lww_decode(&cfg, &A, st.data, st.len, &r), 0);
	cr_assert_geq(crdt_lww_clock(r), PACK(3000, 2));
	set(r, "new");
	expect_value(r, "new");
	crdt_buf_fini(&st);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

Test(lww, decode_rejects_bad_input)
{
	crdt_buf b;
	crdt_lww *r;
	tb_init(&b);
	mk_lww_op(&b, PACK(3000, 2), B, true, "stored", 6);
	cr_assert_eq(crdt_lww_decode(&cfg, &A, b.data, b.len, NULL),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_lww_decode(&cfg, NULL, b.data, b.len, &r),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_lww_decode(&cfg, &A, NULL, b.len, &r), CRDT_EINVAL);
	mp_byte(&b, 0xc0);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "trailing");
	b.len--;
	size_t full = b.len;
	for (b.len = 0; b.len < full; b.len++)
		expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "prefix");
	b.len = full;
	crdt_config small = cfg;
	small.limits.max_bytes = full - 1;
	expect_decode_fails(&small, &b, CRDT_ETOOBIG, "max_bytes");
	small = cfg;
	small.limits.max_value_bytes = 5;
	expect_decode_fails(&small, &b, CRDT_ETOOBIG, "max_value_bytes");
	crdt_buf_fini(&b);

	static const char *const bad[] = {
		"\x92\x01\x02\x00",          /* unset + trailing byte */
		"\x93\x01\x02\x05",          /* 3 fields */
		"\x94\x01\x02\x05\xc0",      /* 4 fields */
		"\x92\x01\x01",              /* gset kind */
		"\x92\x01\x03",              /* map kind */
		"\x91\x01",                  /* too short for a header */
		"\x90",                      /* empty array */
		"\xc0",                      /* nil */
		"\x92\xcc\x01\x02",          /* non-minimal version */
	};
	static const size_t bad_len[] = { 4, 4, 5, 3, 3, 2, 1, 1, 4 };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		tb_init(&b);
		mp_raw(&b, bad[i], bad_len[i]);
		expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, bad[i]);
		crdt_buf_fini(&b);
	}
	tb_init(&b);
	mp_raw(&b, "\x92\x02\x02", 3);
	expect_decode_fails(&cfg, &b, CRDT_EVERSION, "version 2");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(lww, equal_compares_winning_writes)
{
	crdt_lww *x = mk(A), *y = mk(B);
	cr_assert(crdt_lww_equal(x, y), "both unset");
	set(x, "v");
	cr_assert_not(crdt_lww_equal(x, y));
	set(y, "v");
	cr_assert_not(crdt_lww_equal(x, y), "same value, other writer");
	crdt_buf op;
	tb_init(&op);
	mk_lww_op(&op, PACK(1000, 0), A, true, "v", 1);
	crdt_lww *z = mk(C);
	apply(z, &op);
	cr_assert(crdt_lww_equal(x, z));
	cr_assert(crdt_lww_equal(NULL, NULL));
	cr_assert_not(crdt_lww_equal(x, NULL));
	cr_assert_not(crdt_lww_equal(NULL, x));
	crdt_buf_fini(&op);
	crdt_lww_free(x);
	crdt_lww_free(y);
	crdt_lww_free(z);
	ASSERT_NO_LEAKS();
}

/* Writing back the register's own (borrowed) value must copy it before
 * the old value is released. ASan turns a mistake into a crash. */
Test(lww, set_from_own_borrowed_value)
{
	crdt_lww *r = mk(A);
	set(r, "self-referential");
	const uint8_t *v;
	size_t n;
	cr_assert_eq(crdt_lww_get(r, &v, &n), 0);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_set(r, v, n, &op), 0);
	expect_value(r, "self-referential");
	crdt_buf_fini(&op);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

/* The config is copied at construction: later edits to the caller's
 * struct do not reach the object. */
Test(lww, config_is_copied)
{
	crdt_config c = cfg;
	c.limits.max_value_bytes = 4;
	crdt_lww *r;
	cr_assert_eq(crdt_lww_new(&c, &A, &r), 0);
	c.limits.max_value_bytes = 1;
	c.clock = NULL;
	set(r, "four");
	uint64_t h;
	cr_assert_eq(crdt_lww_stamp(r, &h, NULL), 0);
	cr_assert_eq(h, PACK(1000, 0), "still on the injected clock");
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}

/* Merging from a register on another allocator copies into dst's: the
 * counting allocator sees every byte it hands out come back with the
 * right size. */
Test(lww, merge_across_allocators)
{
	crdt_lww *libc_side;
	crdt_config plain;
	crdt_config_default(&plain);
	plain.clock = test_clock_read;
	plain.clock_ud = &clk;
	cr_assert_eq(crdt_lww_new(&plain, &B, &libc_side), 0);
	clk.ms = 2000;
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_set(libc_side, "from libc", 9, &op), 0);
	crdt_lww *r = mk(A);
	cr_assert_eq(crdt_lww_merge(r, libc_side), 0);
	crdt_lww_free(libc_side);
	expect_value(r, "from libc");
	crdt_buf_fini(&op);
	crdt_lww_free(r);
	ASSERT_NO_LEAKS();
}
