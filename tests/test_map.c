/*
 * LWW map: per-key LWW registers with tombstones for removals, canonical
 * key order, and the codec. Injected clock for exact stamps.
 */
#include <stdio.h>
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

TestSuite(map, .init = setup);

static crdt_lww_map *
mk(crdt_replica_id self)
{
	crdt_lww_map *m;
	cr_assert_eq(crdt_lww_map_new(&cfg, &self, &m), 0);
	return m;
}

static crdt_buf
enc(const crdt_lww_map *m)
{
	crdt_buf b;
	tb_init(&b);
	cr_assert_eq(crdt_lww_map_encode(m, &b), 0);
	return b;
}

static void
put(crdt_lww_map *m, const char *k, const char *v)
{
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_map_set(m, k, strlen(k), v, strlen(v), &op), 0,
	    "set %s", k);
	crdt_buf_fini(&op);
}

static void
del(crdt_lww_map *m, const char *k)
{
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_map_remove(m, k, strlen(k), &op), 0);
	crdt_buf_fini(&op);
}

static void
apply(crdt_lww_map *m, const crdt_buf *op)
{
	int rc = crdt_lww_map_apply_op(m, op->data, op->len);
	cr_assert_eq(rc, 0, "apply: %s", crdt_err_name(rc));
}

static void
expect_value(const crdt_lww_map *m, const char *k, const char *want)
{
	const uint8_t *v = NULL;
	size_t n = 0;
	int rc = crdt_lww_map_get(m, k, strlen(k), &v, &n);
	if (want == NULL) {
		cr_assert_eq(rc, CRDT_ENOTFOUND, "%s: want absent, got %s", k,
		    crdt_err_name(rc));
		return;
	}
	cr_assert_eq(rc, 0, "%s: %s", k, crdt_err_name(rc));
	cr_assert(bytes_eq(v, n, want, strlen(want)), "%s: want %s", k, want);
}

static void
expect_same(const crdt_lww_map *x, const crdt_lww_map *y, const char *what)
{
	crdt_buf ex = enc(x), ey = enc(y);
	cr_assert(bytes_eq(ex.data, ex.len, ey.data, ey.len),
	    "%s: encodings differ", what);
	cr_assert(crdt_lww_map_equal(x, y), "%s", what);
	crdt_buf_fini(&ex);
	crdt_buf_fini(&ey);
}

static void
expect_apply_fails(crdt_lww_map *m, const void *op, size_t len, int want,
    const char *what)
{
	crdt_buf before = enc(m);
	size_t size = crdt_lww_map_size(m);
	int rc = crdt_lww_map_apply_op(m, op, len);
	cr_assert_eq(rc, want, "%s: got %s, want %s", what, crdt_err_name(rc),
	    crdt_err_name(want));
	crdt_buf after = enc(m);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len),
	    "%s: map changed", what);
	cr_assert_eq(crdt_lww_map_size(m), size);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
}

static void
expect_decode_fails(const crdt_config *c, const crdt_buf *b, int want,
    const char *what)
{
	crdt_lww_map *out = (crdt_lww_map *)&out;
	int rc = crdt_lww_map_decode(c, &A, b->data, b->len, &out);
	cr_assert_eq(rc, want, "%s: got %s, want %s (%s)", what,
	    crdt_err_name(rc), crdt_err_name(want), hexs(b->data, b->len));
	cr_assert_eq(out, (crdt_lww_map *)&out, "%s: *out written", what);
}

/* ---- construction ---- */

Test(map, new_is_empty)
{
	crdt_lww_map *m = mk(A);
	cr_assert_eq(crdt_lww_map_size(m), 0);
	expect_value(m, "k", NULL);
	crdt_lww_map_free(m);
	crdt_lww_map_free(NULL);
	cr_assert_eq(crdt_lww_map_new(NULL, &A, &m), 0);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

Test(map, new_refuses_null_and_partial_allocator)
{
	crdt_lww_map *m = NULL;
	cr_assert_eq(crdt_lww_map_new(&cfg, NULL, &m), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_new(&cfg, &A, NULL), CRDT_EINVAL);
	crdt_config bad = cfg;
	bad.alloc.free = NULL;
	cr_assert_eq(crdt_lww_map_new(&bad, &A, &m), CRDT_EINVAL);
	cr_assert_null(m);
	ASSERT_NO_LEAKS();
}

/* ---- local writes ---- */

Test(map, set_emits_documented_op)
{
	crdt_lww_map *m = mk(A);
	crdt_buf op, want;
	tb_init(&op);
	tb_init(&want);
	cr_assert_eq(crdt_lww_map_set(m, "k", 1, "v", 1, &op), 0);
	mk_map_op(&want, PACK(1000, 0), A, true, "v", 1, "k", 1);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len), "op %s",
	    hexs(op.data, op.len));
	cr_assert_eq(crdt_lww_map_remove(m, "k", 1, &op), 0);
	mk_map_op(&want, PACK(1000, 1), A, false, NULL, 0, "k", 1);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len), "op %s",
	    hexs(op.data, op.len));
	crdt_buf_fini(&op);
	crdt_buf_fini(&want);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

Test(map, set_get_overwrite_and_size)
{
	crdt_lww_map *m = mk(A);
	put(m, "a", "1");
	put(m, "b", "2");
	cr_assert_eq(crdt_lww_map_size(m), 2);
	expect_value(m, "a", "1");
	expect_value(m, "b", "2");
	put(m, "a", "3");
	expect_value(m, "a", "3");
	cr_assert_eq(crdt_lww_map_size(m), 2, "overwrite keeps size");
	expect_value(m, "c", NULL);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

Test(map, empty_key_and_empty_value_are_allowed)
{
	crdt_lww_map *m = mk(A);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_map_set(m, NULL, 0, NULL, 0, &op), 0);
	cr_assert_eq(crdt_lww_map_size(m), 1);
	size_t n = 9;
	cr_assert_eq(crdt_lww_map_get(m, "", 0, NULL, &n), 0);
	cr_assert_eq(n, 0);
	crdt_lww_map *o = mk(B);
	apply(o, &op);
	expect_same(m, o, "empty key/value replicated");
	crdt_buf_fini(&op);
	crdt_lww_map_free(m);
	crdt_lww_map_free(o);
	ASSERT_NO_LEAKS();
}

Test(map, remove_leaves_a_tombstone)
{
	crdt_lww_map *m = mk(A), *never = mk(A);
	put(m, "a", "1");
	put(m, "b", "2");
	del(m, "a");
	expect_value(m, "a", NULL);
	expect_value(m, "b", "2");
	cr_assert_eq(crdt_lww_map_size(m), 1);
	/* The tombstone is part of the state: not equal to a map that
	 * never had "a". */
	put(never, "b", "2");
	cr_assert_not(crdt_lww_map_equal(m, never));
	/* Removing an absent key is a write too (size stays 0). */
	crdt_lww_map *e = mk(A);
	del(e, "ghost");
	cr_assert_eq(crdt_lww_map_size(e), 0);
	crdt_buf enc_e = enc(e);
	cr_assert_gt(enc_e.len, 4, "tombstone encoded");
	/* Removing twice is fine; re-setting revives the key. */
	del(m, "a");
	cr_assert_eq(crdt_lww_map_size(m), 1);
	put(m, "a", "again");
	expect_value(m, "a", "again");
	cr_assert_eq(crdt_lww_map_size(m), 2);
	crdt_buf_fini(&enc_e);
	crdt_lww_map_free(m);
	crdt_lww_map_free(never);
	crdt_lww_map_free(e);
	ASSERT_NO_LEAKS();
}

Test(map, local_write_errors_change_nothing)
{
	crdt_config small = cfg;
	small.limits.max_value_bytes = 3;
	crdt_lww_map *m;
	cr_assert_eq(crdt_lww_map_new(&small, &A, &m), 0);
	put(m, "k", "v");
	crdt_buf before = enc(m);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_buf_append(&op, "pre", 3), 0);
	cr_assert_eq(crdt_lww_map_set(NULL, "k", 1, "v", 1, &op),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_set(m, "k", 1, "v", 1, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_set(m, NULL, 1, "v", 1, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_set(m, "k", 1, NULL, 1, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_remove(NULL, "k", 1, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_remove(m, NULL, 1, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_remove(m, "k", 1, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_set(m, "kkkk", 4, "v", 1, &op),
	    CRDT_ETOOBIG);
	cr_assert_eq(crdt_lww_map_set(m, "k", 1, "vvvv", 4, &op),
	    CRDT_ETOOBIG);
	cr_assert_eq(crdt_lww_map_remove(m, "kkkk", 4, &op), CRDT_ETOOBIG);
	clk.ms = CRDT_HLC_MAX_MS + 1;
	cr_assert_eq(crdt_lww_map_set(m, "k", 1, "w", 1, &op),
	    CRDT_EOVERFLOW);
	cr_assert_eq(crdt_lww_map_remove(m, "k", 1, &op), CRDT_EOVERFLOW);
	cr_assert(bytes_eq(op.data, op.len, "pre", 3), "op_out untouched");
	crdt_buf after = enc(m);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	expect_value(m, "k", "v");
	crdt_buf_fini(&op);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

/* ---- apply_op and merge ---- */

Test(map, concurrent_writes_per_key_resolve_by_stamp)
{
	crdt_lww_map *ma = mk(A), *mb = mk(B);
	crdt_buf oa, ob;
	tb_init(&oa);
	tb_init(&ob);
	/* Same ms on both replicas: B's ID wins key "k"; "only-a" is
	 * independent. */
	cr_assert_eq(crdt_lww_map_set(ma, "k", 1, "a", 1, &oa), 0);
	cr_assert_eq(crdt_lww_map_set(mb, "k", 1, "b", 1, &ob), 0);
	cr_assert_eq(crdt_lww_map_set(ma, "only-a", 6, "x", 1, &oa), 0);
	/* oa holds two ops back to back: split at the first op's length */
	crdt_buf first;
	tb_init(&first);
	mk_map_op(&first, PACK(1000, 0), A, true, "a", 1, "k", 1);
	crdt_buf second = oa;
	second.data += first.len;
	second.len -= first.len;
	apply(mb, &first);
	apply(mb, &second);
	apply(ma, &ob);
	expect_value(ma, "k", "b");
	expect_value(mb, "k", "b");
	expect_value(mb, "only-a", "x");
	expect_same(ma, mb, "after exchange");
	crdt_buf_fini(&first);
	crdt_buf_fini(&oa);
	crdt_buf_fini(&ob);
	crdt_lww_map_free(ma);
	crdt_lww_map_free(mb);
	ASSERT_NO_LEAKS();
}

/* A remove concurrent with a set: the greater stamp wins everywhere; a
 * tombstone for a key a replica never saw still beats an older set. */
Test(map, remove_and_set_race_by_stamp)
{
	crdt_buf rm, st;
	tb_init(&rm);
	tb_init(&st);
	mk_map_op(&rm, PACK(20, 0), B, false, NULL, 0, "k", 1);
	mk_map_op(&st, PACK(19, 9), C, true, "v", 1, "k", 1);
	crdt_lww_map *x = mk(A), *y = mk(A);
	apply(x, &rm);
	apply(x, &st);
	apply(y, &st);
	apply(y, &rm);
	expect_value(x, "k", NULL);
	expect_value(y, "k", NULL);
	cr_assert_eq(crdt_lww_map_size(x), 0);
	cr_assert_eq(crdt_lww_map_size(y), 0);
	expect_same(x, y, "remove vs set");
	crdt_buf_fini(&rm);
	crdt_buf_fini(&st);
	crdt_lww_map_free(x);
	crdt_lww_map_free(y);
	ASSERT_NO_LEAKS();
}

/* Same (hlc, replica) with different writes: deterministic in any order
 * (present beats absent, then bytewise greater value). */
Test(map, equal_stamp_ties_resolve_deterministically)
{
	const char *vals[] = { "b", NULL, "a", "ba", "" };
	enum { N = 5 };
	crdt_buf ops[N];
	for (int i = 0; i < N; i++) {
		tb_init(&ops[i]);
		mk_map_op(&ops[i], PACK(7, 7), B, vals[i] != NULL, vals[i],
		    vals[i] ? strlen(vals[i]) : 0, "k", 1);
	}
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < N; j++) {
			crdt_lww_map *x = mk(A), *y = mk(C);
			apply(x, &ops[i]);
			apply(x, &ops[j]);
			apply(y, &ops[j]);
			apply(y, &ops[i]);
			expect_same(x, y, "pairwise order");
			crdt_lww_map_free(x);
			crdt_lww_map_free(y);
		}
	}
	crdt_lww_map *x = mk(A);
	for (int i = 0; i < N; i++)
		apply(x, &ops[i]);
	expect_value(x, "k", "ba");
	crdt_lww_map_free(x);
	for (int i = 0; i < N; i++)
		crdt_buf_fini(&ops[i]);
	ASSERT_NO_LEAKS();
}

Test(map, apply_is_idempotent_including_own_ops)
{
	crdt_lww_map *m = mk(A), *o = mk(B);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_map_set(m, "k", 1, "v", 1, &op), 0);
	crdt_buf e1 = enc(m);
	apply(m, &op);
	apply(m, &op);
	crdt_buf e2 = enc(m);
	cr_assert(bytes_eq(e1.data, e1.len, e2.data, e2.len));
	cr_assert_eq(crdt_lww_map_size(m), 1);
	apply(o, &op);
	apply(o, &op);
	expect_same(m, o, "replicated");
	cr_assert_eq(crdt_lww_map_size(o), 1);
	crdt_buf_fini(&op);
	crdt_buf_fini(&e1);
	crdt_buf_fini(&e2);
	crdt_lww_map_free(m);
	crdt_lww_map_free(o);
	ASSERT_NO_LEAKS();
}

Test(map, local_write_after_apply_wins)
{
	crdt_lww_map *m = mk(A);
	crdt_buf op;
	tb_init(&op);
	mk_map_op(&op, PACK(9000, 3), B, true, "remote", 6, "k", 1);
	apply(m, &op);
	put(m, "k", "local");
	expect_value(m, "k", "local");
	crdt_buf_fini(&op);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

Test(map, apply_op_rejects_null_and_truncations)
{
	crdt_lww_map *m = mk(A);
	put(m, "keep", "1");
	crdt_buf op;
	tb_init(&op);
	mk_map_op(&op, PACK(77777, 300), B, true, "value", 5, "key", 3);
	cr_assert_eq(crdt_lww_map_apply_op(NULL, op.data, op.len),
	    CRDT_EINVAL);
	expect_apply_fails(m, NULL, 3, CRDT_EINVAL, "NULL op");
	for (size_t n = 0; n < op.len; n++)
		expect_apply_fails(m, op.data, n, CRDT_EMALFORMED, "prefix");
	crdt_buf_clear(&op);
	mk_map_op(&op, PACK(77777, 300), B, false, NULL, 0, "key", 3);
	for (size_t n = 0; n < op.len; n++)
		expect_apply_fails(m, op.data, n, CRDT_EMALFORMED,
		    "remove prefix");
	crdt_buf_fini(&op);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

Test(map, apply_op_rejects_malformed_ops)
{
	crdt_lww_map *m = mk(A);
	put(m, "keep", "1");
	crdt_buf b;
	uint64_t h = PACK(2000, 0);

	tb_init(&b);
	mk_map_op(&b, h, B, true, "v", 1, "k", 1);
	mp_byte(&b, 0x00);
	expect_apply_fails(m, b.data, b.len, CRDT_EMALFORMED, "trailing");
	crdt_buf_fini(&b);

	tb_init(&b);
	mk_lww_op(&b, h, B, true, "v", 1);
	expect_apply_fails(m, b.data, b.len, CRDT_EMALFORMED, "lww op");
	crdt_buf_fini(&b);

	tb_init(&b); /* right shape, wrong kind */
	mp_array(&b, 6);
	mp_uint(&b, 1);
	mp_uint(&b, 2);
	mp_uint(&b, h);
	mp_id(&b, B);
	mp_bin(&b, "v", 1);
	mp_bin(&b, "k", 1);
	expect_apply_fails(m, b.data, b.len, CRDT_EMALFORMED, "kind 2");
	crdt_buf_fini(&b);

	tb_init(&b); /* extra field */
	mp_array(&b, 7);
	mp_uint(&b, 1);
	mp_uint(&b, 3);
	mp_uint(&b, h);
	mp_id(&b, B);
	mp_bin(&b, "v", 1);
	mp_bin(&b, "k", 1);
	mp_nil(&b);
	expect_apply_fails(m, b.data, b.len, CRDT_EMALFORMED, "extra field");
	crdt_buf_fini(&b);

	tb_init(&b); /* nil key */
	mp_raw(&b, "\x96\x01\x03\x05", 4);
	mp_id(&b, B);
	mp_bin(&b, "v", 1);
	mp_nil(&b);
	expect_apply_fails(m, b.data, b.len, CRDT_EMALFORMED, "nil key");
	crdt_buf_fini(&b);

	tb_init(&b); /* a state is not an op */
	cr_assert_eq(crdt_lww_map_encode(m, &b), 0);
	expect_apply_fails(m, b.data, b.len, CRDT_EMALFORMED, "state");
	crdt_buf_fini(&b);

	tb_init(&b);
	mp_raw(&b, "\x96\x02\x03\x05", 4);
	mp_id(&b, B);
	mp_bin(&b, "v", 1);
	mp_bin(&b, "k", 1);
	expect_apply_fails(m, b.data, b.len, CRDT_EVERSION, "version 2");
	crdt_buf_fini(&b);

	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

Test(map, apply_op_enforces_limits)
{
	crdt_config small = cfg;
	small.limits.max_value_bytes = 2;
	crdt_lww_map *m;
	cr_assert_eq(crdt_lww_map_new(&small, &A, &m), 0);
	crdt_buf b;
	tb_init(&b);
	mk_map_op(&b, PACK(5, 0), B, true, "vvv", 3, "k", 1);
	expect_apply_fails(m, b.data, b.len, CRDT_ETOOBIG, "value");
	crdt_buf_clear(&b);
	mk_map_op(&b, PACK(5, 0), B, true, "v", 1, "kkk", 3);
	expect_apply_fails(m, b.data, b.len, CRDT_ETOOBIG, "key");
	crdt_buf_clear(&b);
	mk_map_op(&b, PACK(5, 0), B, true, "vv", 2, "kk", 2);
	apply(m, &b);
	crdt_lww_map_free(m);
	small = cfg;
	small.limits.max_bytes = b.len - 1;
	cr_assert_eq(crdt_lww_map_new(&small, &A, &m), 0);
	expect_apply_fails(m, b.data, b.len, CRDT_ETOOBIG, "max_bytes");
	crdt_lww_map_free(m);
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(map, merge_is_per_key_and_commutative)
{
	crdt_lww_map *x = mk(A), *y = mk(B);
	put(x, "x-only", "1");
	put(x, "both", "from-x");
	clk.ms = 1001;
	put(y, "both", "from-y"); /* later: wins */
	put(y, "y-only", "2");
	del(y, "x-only");         /* later remove beats x's set */
	crdt_lww_map *xy = mk(C), *yx = mk(C);
	cr_assert_eq(crdt_lww_map_merge(xy, x), 0);
	cr_assert_eq(crdt_lww_map_merge(xy, y), 0);
	cr_assert_eq(crdt_lww_map_merge(yx, y), 0);
	cr_assert_eq(crdt_lww_map_merge(yx, x), 0);
	expect_same(xy, yx, "merge order");
	expect_value(xy, "both", "from-y");
	expect_value(xy, "y-only", "2");
	expect_value(xy, "x-only", NULL);
	cr_assert_eq(crdt_lww_map_size(xy), 2);
	cr_assert_eq(crdt_lww_map_merge(x, y), 0);
	expect_same(x, xy, "merge into a writer");
	cr_assert_eq(crdt_lww_map_size(x), 2, "size follows tombstones");
	/* Idempotent, self-merge and empty-src merges change nothing. */
	crdt_lww_map *e = mk(C);
	cr_assert_eq(crdt_lww_map_merge(xy, yx), 0);
	cr_assert_eq(crdt_lww_map_merge(xy, xy), 0);
	cr_assert_eq(crdt_lww_map_merge(xy, e), 0);
	expect_same(xy, yx, "re-merge");
	cr_assert_eq(crdt_lww_map_merge(NULL, x), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_merge(x, NULL), CRDT_EINVAL);
	crdt_lww_map *ms[] = { x, y, xy, yx, e };
	for (int i = 0; i < 5; i++)
		crdt_lww_map_free(ms[i]);
	ASSERT_NO_LEAKS();
}

/* Merge advances the clock past merged stamps: the next local write on
 * the merged key wins. */
Test(map, merge_advances_local_clock)
{
	crdt_lww_map *x = mk(A), *y = mk(B);
	crdt_buf op;
	tb_init(&op);
	mk_map_op(&op, PACK(40000, 9), C, true, "late", 4, "k", 1);
	apply(y, &op);
	cr_assert_eq(crdt_lww_map_merge(x, y), 0);
	put(x, "k", "mine");
	expect_value(x, "k", "mine");
	crdt_buf_fini(&op);
	crdt_lww_map_free(x);
	crdt_lww_map_free(y);
	ASSERT_NO_LEAKS();
}

Test(map, merge_of_large_maps)
{
	crdt_lww_map *x = mk(A), *y = mk(B);
	char k[16];
	for (int i = 0; i < 400; i++) {
		snprintf(k, sizeof k, "k%d", i);
		put(i % 3 ? x : y, k, "v");
		if (i % 5 == 0)
			del(i % 3 ? y : x, k);
	}
	cr_assert_eq(crdt_lww_map_merge(x, y), 0);
	cr_assert_eq(crdt_lww_map_merge(y, x), 0);
	expect_same(x, y, "both directions");
	crdt_lww_map_free(x);
	crdt_lww_map_free(y);
	ASSERT_NO_LEAKS();
}

Test(map, get_error_paths)
{
	crdt_lww_map *m = mk(A);
	put(m, "k", "v");
	const uint8_t *v = (const uint8_t *)"untouched";
	size_t n = 42;
	cr_assert_eq(crdt_lww_map_get(NULL, "k", 1, &v, &n), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_get(m, NULL, 1, &v, &n), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_get(m, "x", 1, &v, &n), CRDT_ENOTFOUND);
	cr_assert_eq(crdt_lww_map_get(m, "k", 0, &v, &n), CRDT_ENOTFOUND);
	cr_assert_eq(n, 42, "outputs untouched on error");
	cr_assert_eq(crdt_lww_map_get(m, "k", 1, NULL, NULL), 0);
	cr_assert_eq(crdt_lww_map_size(NULL), 0);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

typedef struct visit {
	char keys[16][8];
	size_t klen[16];
	char vals[16][8];
	size_t vlen[16];
	size_t n, stop_at;
} visit;

static int
visitor(void *ud, const uint8_t *k, size_t klen, const uint8_t *v,
    size_t vlen)
{
	visit *s = ud;
	cr_assert_lt(s->n, 16);
	cr_assert_lt(klen, 8);
	cr_assert_lt(vlen, 8);
	memcpy(s->keys[s->n], k, klen);
	s->klen[s->n] = klen;
	memcpy(s->vals[s->n], v, vlen);
	s->vlen[s->n] = vlen;
	s->n++;
	return s->n == s->stop_at ? -77 : 0;
}

Test(map, foreach_visits_live_keys_in_order)
{
	crdt_lww_map *m = mk(A);
	static const char *in[] = { "b", "", "ab", "\xfe", "a", "dead" };
	for (size_t i = 0; i < 6; i++)
		put(m, in[i], in[i]);
	del(m, "dead");
	static const char *want[] = { "", "a", "ab", "b", "\xfe" };
	visit v = { .n = 0 };
	cr_assert_eq(crdt_lww_map_foreach(m, visitor, &v), 0);
	cr_assert_eq(v.n, 5, "tombstone skipped");
	for (size_t i = 0; i < 5; i++) {
		cr_assert(bytes_eq(v.keys[i], v.klen[i], want[i],
			      strlen(want[i])),
		    "position %zu", i);
		cr_assert(bytes_eq(v.vals[i], v.vlen[i], want[i],
		    strlen(want[i])));
	}
	visit s = { .n = 0, .stop_at = 3 };
	cr_assert_eq(crdt_lww_map_foreach(m, visitor, &s), -77,
	    "visitor's value is returned, even a negative one");
	cr_assert_eq(s.n, 3);
	cr_assert_eq(crdt_lww_map_foreach(NULL, visitor, &s), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_foreach(m, NULL, &s), CRDT_EINVAL);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

/* ---- encode / decode ---- */

Test(map, encoding_matches_wire_format)
{
	crdt_lww_map *m = mk(A);
	crdt_buf got = enc(m);
	cr_assert(bytes_eq(got.data, got.len, "\x93\x01\x03\x90", 4));
	crdt_buf_fini(&got);
	put(m, "z", "1");
	del(m, "a");
	crdt_buf want;
	tb_init(&want);
	mp_array(&want, 3);
	mp_uint(&want, 1);
	mp_uint(&want, 3);
	mp_array(&want, 8);
	mp_bin(&want, "a", 1);
	mp_uint(&want, PACK(1000, 1));
	mp_id(&want, A);
	mp_nil(&want);
	mp_bin(&want, "z", 1);
	mp_uint(&want, PACK(1000, 0));
	mp_id(&want, A);
	mp_bin(&want, "1", 1);
	got = enc(m);
	cr_assert(bytes_eq(got.data, got.len, want.data, want.len), "got %s",
	    hexs(got.data, got.len));
	cr_assert_eq(crdt_lww_map_encode(NULL, &got), CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_encode(m, NULL), CRDT_EINVAL);
	crdt_buf_fini(&got);
	crdt_buf_fini(&want);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

Test(map, decode_round_trips_with_tombstones)
{
	crdt_lww_map *m = mk(A);
	put(m, "k1", "v1");
	put(m, "k2", "");
	del(m, "k3");
	crdt_buf e1 = enc(m);
	crdt_lww_map *back;
	cr_assert_eq(crdt_lww_map_decode(&cfg, &B, e1.data, e1.len, &back),
	    0);
	expect_same(m, back, "decoded");
	cr_assert_eq(crdt_lww_map_size(back), 2);
	expect_value(back, "k2", "");
	expect_value(back, "k3", NULL);
	/* The restored clock is past every stored stamp. */
	put(back, "k1", "newer");
	expect_value(back, "k1", "newer");
	crdt_buf_fini(&e1);
	crdt_lww_map_free(m);
	crdt_lww_map_free(back);
	ASSERT_NO_LEAKS();
}

static void
entry(crdt_buf *b, const char *k, bool present, const char *v)
{
	mp_bin(b, k, strlen(k));
	mp_uint(b, 5);
	mp_id(b, B);
	if (present)
		mp_bin(b, v, strlen(v));
	else
		mp_nil(b);
}

Test(map, decode_rejects_noncanonical_states)
{
	crdt_buf b;
	crdt_lww_map *m;

	tb_init(&b);
	mp_raw(&b, "\x93\x01\x03\x98", 4);
	entry(&b, "a", true, "1");
	entry(&b, "b", false, NULL);
	cr_assert_eq(crdt_lww_map_decode(&cfg, &A, b.data, b.len, &m), 0,
	    "control case");
	crdt_lww_map_free(m);
	mp_byte(&b, 0x00);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "trailing");
	b.len--;
	size_t full = b.len;
	for (b.len = 0; b.len < full; b.len++)
		expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "prefix");
	b.len = full;
	crdt_config small = cfg;
	small.limits.max_bytes = full - 1;
	expect_decode_fails(&small, &b, CRDT_ETOOBIG, "max_bytes");
	crdt_buf_fini(&b);

	tb_init(&b);
	mp_raw(&b, "\x93\x01\x03\x98", 4);
	entry(&b, "b", true, "1");
	entry(&b, "a", true, "2");
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "unsorted keys");
	crdt_buf_fini(&b);

	tb_init(&b);
	mp_raw(&b, "\x93\x01\x03\x98", 4);
	entry(&b, "a", true, "1");
	entry(&b, "a", false, NULL);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "duplicate keys");
	crdt_buf_fini(&b);

	tb_init(&b);
	mp_raw(&b, "\x93\x01\x03\x93", 4);
	mp_bin(&b, "a", 1);
	mp_uint(&b, 5);
	mp_id(&b, B);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "item count");
	crdt_buf_fini(&b);

	static const char *const bad[] = {
		"\x94\x01\x03\x90\x90", "\x93\x01\x01\x90", "\x92\x01\x03",
		"\x93\x01\x03\xc0",
	};
	static const size_t bad_len[] = { 5, 4, 3, 4 };
	for (size_t i = 0; i < 4; i++) {
		tb_init(&b);
		mp_raw(&b, bad[i], bad_len[i]);
		expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "shape");
		crdt_buf_fini(&b);
	}
	tb_init(&b);
	mp_raw(&b, "\x93\x02\x03\x90", 4);
	expect_decode_fails(&cfg, &b, CRDT_EVERSION, "version 2");
	crdt_buf_fini(&b);

	tb_init(&b);
	mp_raw(&b, "\x93\x01\x03\x94", 4);
	entry(&b, "key", true, "1");
	small = cfg;
	small.limits.max_value_bytes = 2;
	expect_decode_fails(&small, &b, CRDT_ETOOBIG, "key > value limit");
	cr_assert_eq(crdt_lww_map_decode(&cfg, &A, b.data, b.len, NULL),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_decode(&cfg, NULL, b.data, b.len, &m),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_lww_map_decode(&cfg, &A, NULL, b.len, &m),
	    CRDT_EINVAL);
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(map, equal_includes_tombstones)
{
	crdt_lww_map *x = mk(A), *y = mk(A);
	cr_assert(crdt_lww_map_equal(x, y));
	del(x, "k");
	cr_assert_not(crdt_lww_map_equal(x, y));
	del(y, "k");
	cr_assert(crdt_lww_map_equal(x, y), "same tombstone stamp");
	put(y, "j", "v");
	cr_assert_not(crdt_lww_map_equal(x, y));
	cr_assert_not(crdt_lww_map_equal(y, x));
	cr_assert(crdt_lww_map_equal(NULL, NULL));
	cr_assert_not(crdt_lww_map_equal(x, NULL));
	crdt_lww_map_free(x);
	crdt_lww_map_free(y);
	ASSERT_NO_LEAKS();
}

/* Copying a key's own (borrowed) value onto itself and onto a new key
 * (which may grow the table) must copy before releasing anything. */
Test(map, set_from_own_borrowed_value)
{
	crdt_lww_map *m = mk(A);
	char k[8];
	for (int i = 0; i < 12; i++) {
		snprintf(k, sizeof k, "k%d", i);
		put(m, k, "shared value");
	}
	const uint8_t *v;
	size_t n;
	cr_assert_eq(crdt_lww_map_get(m, "k3", 2, &v, &n), 0);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_map_set(m, "k3", 2, v, n, &op), 0);
	expect_value(m, "k3", "shared value");
	cr_assert_eq(crdt_lww_map_get(m, "k3", 2, &v, &n), 0);
	cr_assert_eq(crdt_lww_map_set(m, "new", 3, v, n, &op), 0);
	expect_value(m, "new", "shared value");
	crdt_buf_fini(&op);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}

Test(map, merge_across_allocators)
{
	crdt_lww_map *libc_side;
	crdt_config plain;
	crdt_config_default(&plain);
	plain.clock = test_clock_read;
	plain.clock_ud = &clk;
	cr_assert_eq(crdt_lww_map_new(&plain, &B, &libc_side), 0);
	char k[8];
	crdt_buf op;
	tb_init(&op);
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof k, "k%d", i);
		cr_assert_eq(crdt_lww_map_set(libc_side, k, strlen(k), "v", 1,
				 &op),
		    0);
	}
	cr_assert_eq(crdt_lww_map_remove(libc_side, "k0", 2, &op), 0);
	crdt_lww_map *m = mk(A);
	put(m, "k5", "older");
	cr_assert_eq(crdt_lww_map_merge(m, libc_side), 0);
	crdt_lww_map_free(libc_side);
	cr_assert_eq(crdt_lww_map_size(m), 19);
	expect_value(m, "k5", "v");
	crdt_buf_fini(&op);
	crdt_lww_map_free(m);
	ASSERT_NO_LEAKS();
}
