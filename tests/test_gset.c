/*
 * G-Set: every public function, its error paths, and the rules that make
 * replicas converge (smallest dot wins, canonical order, counter resume).
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_util.h"

static crdt_config cfg;
static crdt_replica_id A, B, C;

static void
setup(void)
{
	test_alloc_reset();
	test_config(&cfg, NULL);
	A = test_id(1);
	B = test_id(2);
	C = test_id(3);
}

TestSuite(gset, .init = setup);

static crdt_gset *
mk(crdt_replica_id self)
{
	crdt_gset *s;
	cr_assert_eq(crdt_gset_new(&cfg, &self, &s), 0);
	return s;
}

static void
add(crdt_gset *s, const char *e)
{
	crdt_buf op;
	crdt_buf_init(&op, test_alloc_hook());
	cr_assert_eq(crdt_gset_add(s, e, strlen(e), &op), 0, "add %s", e);
	crdt_buf_fini(&op);
}

/* Encoding into a fresh buffer owned by the caller (libc: scaffolding). */
static crdt_buf
enc(const crdt_gset *s)
{
	crdt_buf b;
	tb_init(&b);
	cr_assert_eq(crdt_gset_encode(s, &b), 0);
	return b;
}

static void
assert_same(const crdt_buf *x, const crdt_buf *y, const char *what)
{
	cr_assert(bytes_eq(x->data, x->len, y->data, y->len),
	    "%s: encodings differ", what);
}

/* apply_op must fail with `want` and leave the set's encoding as it was. */
static void
expect_apply_fails(crdt_gset *s, const void *op, size_t len, int want,
    const char *what)
{
	crdt_buf before = enc(s);
	int rc = crdt_gset_apply_op(s, op, len);
	cr_assert_eq(rc, want, "%s: got %s, want %s", what, crdt_err_name(rc),
	    crdt_err_name(want));
	crdt_buf after = enc(s);
	assert_same(&before, &after, what);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
}

static void
expect_decode_fails(const crdt_config *c, const crdt_buf *b, int want,
    const char *what)
{
	crdt_gset *out = (crdt_gset *)&out;
	int rc = crdt_gset_decode(c, &A, b->data, b->len, &out);
	cr_assert_eq(rc, want, "%s: got %s, want %s (%s)", what,
	    crdt_err_name(rc), crdt_err_name(want), hexs(b->data, b->len));
	cr_assert_eq(out, (crdt_gset *)&out, "%s: *out written", what);
}

/* ---- construction ---- */

Test(gset, new_and_free)
{
	crdt_gset *s = mk(A);
	cr_assert_eq(crdt_gset_size(s), 0);
	cr_assert_gt(test_alloc_live_blocks(), 0, "built on the hook");
	crdt_gset_free(s);
	crdt_gset_free(NULL);
	cr_assert_eq(crdt_gset_new(NULL, &A, &s), 0, "NULL cfg = defaults");
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

Test(gset, new_refuses_null_and_partial_allocator)
{
	crdt_gset *s = NULL;
	cr_assert_eq(crdt_gset_new(&cfg, NULL, &s), CRDT_EINVAL);
	cr_assert_eq(crdt_gset_new(&cfg, &A, NULL), CRDT_EINVAL);
	crdt_config bad = cfg;
	bad.alloc.realloc = NULL;
	cr_assert_eq(crdt_gset_new(&bad, &A, &s), CRDT_EINVAL);
	cr_assert_null(s);
	/* Limits of 4 GiB or more do not fit the 32-bit lengths inside. */
	bad = cfg;
	bad.limits.max_bytes = UINT32_MAX;
	cr_assert_eq(crdt_gset_new(&bad, &A, &s), CRDT_EINVAL);
	bad = cfg;
	bad.limits.max_value_bytes = (size_t)UINT32_MAX + 1;
	cr_assert_eq(crdt_gset_new(&bad, &A, &s), CRDT_EINVAL);
	cr_assert_null(s);
	bad.limits.max_value_bytes = UINT32_MAX - 1;
	cr_assert_eq(crdt_gset_new(&bad, &A, &s), 0);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

/* ---- add ---- */

Test(gset, add_emits_the_documented_op)
{
	crdt_gset *s = mk(A);
	crdt_buf op, want;
	crdt_buf_init(&op, test_alloc_hook());
	tb_init(&want);
	cr_assert_eq(crdt_gset_add(s, "x", 1, &op), 0);
	mk_gset_op(&want, A, 1, "x", 1);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len), "op %s",
	    hexs(op.data, op.len));
	/* A second add appends to op_out with the next counter. */
	cr_assert_eq(crdt_gset_add(s, "yz", 2, &op), 0);
	mk_gset_op(&want, A, 2, "yz", 2);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len));
	cr_assert_eq(crdt_gset_size(s), 2);
	cr_assert(crdt_gset_contains(s, "x", 1));
	cr_assert(crdt_gset_contains(s, "yz", 2));
	cr_assert_not(crdt_gset_contains(s, "y", 1));
	crdt_dot d;
	cr_assert_eq(crdt_gset_lookup(s, "yz", 2, &d), 0);
	cr_assert_eq(crdt_replica_id_cmp(&d.replica, &A), 0);
	cr_assert_eq(d.counter, 2);
	crdt_buf_fini(&op);
	crdt_buf_fini(&want);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

/* Re-adding is a valid op with a fresh dot, but the element keeps the
 * smaller (first) dot. */
Test(gset, readd_keeps_first_dot_and_size)
{
	crdt_gset *s = mk(A);
	add(s, "e");
	add(s, "e");
	cr_assert_eq(crdt_gset_size(s), 1);
	crdt_dot d;
	cr_assert_eq(crdt_gset_lookup(s, "e", 1, &d), 0);
	cr_assert_eq(d.counter, 1);
	/* The counter still moved on. */
	crdt_buf op, want;
	tb_init(&op);
	tb_init(&want);
	cr_assert_eq(crdt_gset_add(s, "f", 1, &op), 0);
	mk_gset_op(&want, A, 3, "f", 1);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len));
	crdt_buf_fini(&op);
	crdt_buf_fini(&want);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

Test(gset, empty_element_is_an_element)
{
	crdt_gset *s = mk(A);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_gset_add(s, NULL, 0, &op), 0);
	cr_assert(crdt_gset_contains(s, "", 0));
	cr_assert(crdt_gset_contains(s, NULL, 0));
	cr_assert_eq(crdt_gset_size(s), 1);
	crdt_gset *t = mk(B);
	cr_assert_eq(crdt_gset_apply_op(t, op.data, op.len), 0);
	cr_assert(crdt_gset_contains(t, "", 0));
	crdt_buf_fini(&op);
	crdt_gset_free(s);
	crdt_gset_free(t);
	ASSERT_NO_LEAKS();
}

Test(gset, add_error_paths_change_nothing)
{
	crdt_config small = cfg;
	small.limits.max_value_bytes = 8;
	crdt_gset *s;
	cr_assert_eq(crdt_gset_new(&small, &A, &s), 0);
	add(s, "keep");
	crdt_buf before = enc(s);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_buf_append(&op, "pre", 3), 0);
	cr_assert_eq(crdt_gset_add(NULL, "a", 1, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_gset_add(s, "a", 1, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_gset_add(s, NULL, 1, &op), CRDT_EINVAL);
	cr_assert_eq(crdt_gset_add(s, "123456789", 9, &op), CRDT_ETOOBIG);
	cr_assert(bytes_eq(op.data, op.len, "pre", 3), "op_out untouched");
	crdt_buf after = enc(s);
	assert_same(&before, &after, "after failed adds");
	/* Exactly at the limit is fine, and the failed calls did not use
	 * up a counter. */
	cr_assert_eq(crdt_gset_add(s, "12345678", 8, &op), 0);
	crdt_dot d;
	cr_assert_eq(crdt_gset_lookup(s, "12345678", 8, &d), 0);
	cr_assert_eq(d.counter, 2);
	crdt_buf_fini(&op);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

/* A replica whose counter reached UINT64_MAX (here through an op of its
 * own that it applies) cannot add: never reuse a dot. */
Test(gset, exhausted_counter_is_eoverflow)
{
	crdt_gset *s = mk(A);
	crdt_buf op;
	tb_init(&op);
	mk_gset_op(&op, A, UINT64_MAX, "last", 4);
	cr_assert_eq(crdt_gset_apply_op(s, op.data, op.len), 0);
	crdt_buf before = enc(s);
	crdt_buf_clear(&op);
	cr_assert_eq(crdt_gset_add(s, "more", 4, &op), CRDT_EOVERFLOW);
	cr_assert_eq(op.len, 0);
	crdt_buf after = enc(s);
	assert_same(&before, &after, "after EOVERFLOW");
	cr_assert_not(crdt_gset_contains(s, "more", 4));
	crdt_buf_fini(&op);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

/* ---- apply_op ---- */

Test(gset, apply_op_adds_remote_element_with_its_dot)
{
	crdt_gset *s = mk(A);
	crdt_buf op;
	tb_init(&op);
	mk_gset_op(&op, B, 7, "rem", 3);
	cr_assert_eq(crdt_gset_apply_op(s, op.data, op.len), 0);
	crdt_dot d;
	cr_assert_eq(crdt_gset_lookup(s, "rem", 3, &d), 0);
	cr_assert_eq(crdt_replica_id_cmp(&d.replica, &B), 0);
	cr_assert_eq(d.counter, 7);
	/* Another replica's counter does not move ours. */
	crdt_buf_clear(&op);
	cr_assert_eq(crdt_gset_add(s, "own", 3, &op), 0);
	cr_assert_eq(crdt_gset_lookup(s, "own", 3, &d), 0);
	cr_assert_eq(d.counter, 1);
	crdt_buf_fini(&op);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

Test(gset, apply_of_own_op_is_idempotent)
{
	crdt_gset *s = mk(A), *t = mk(B);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_gset_add(s, "x", 1, &op), 0);
	crdt_buf e1 = enc(s);
	cr_assert_eq(crdt_gset_apply_op(s, op.data, op.len), 0);
	cr_assert_eq(crdt_gset_apply_op(s, op.data, op.len), 0);
	crdt_buf e2 = enc(s);
	assert_same(&e1, &e2, "own op re-applied");
	cr_assert_eq(crdt_gset_apply_op(t, op.data, op.len), 0);
	crdt_buf e3 = enc(t);
	cr_assert_eq(crdt_gset_apply_op(t, op.data, op.len), 0);
	crdt_buf e4 = enc(t);
	assert_same(&e3, &e4, "remote op re-applied");
	assert_same(&e1, &e3, "same state on both replicas");
	crdt_buf *bs[] = { &op, &e1, &e2, &e3, &e4 };
	for (size_t i = 0; i < 5; i++)
		crdt_buf_fini(bs[i]);
	crdt_gset_free(s);
	crdt_gset_free(t);
	ASSERT_NO_LEAKS();
}

/* Two replicas add the same element concurrently: everyone keeps the
 * smaller dot, whatever the delivery order. */
Test(gset, concurrent_adds_keep_smallest_dot_in_any_order)
{
	crdt_buf ob, oc;
	tb_init(&ob);
	tb_init(&oc);
	mk_gset_op(&ob, B, 9, "same", 4);
	mk_gset_op(&oc, C, 1, "same", 4);
	crdt_gset *x = mk(A), *y = mk(A);
	cr_assert_eq(crdt_gset_apply_op(x, ob.data, ob.len), 0);
	cr_assert_eq(crdt_gset_apply_op(x, oc.data, oc.len), 0);
	cr_assert_eq(crdt_gset_apply_op(y, oc.data, oc.len), 0);
	cr_assert_eq(crdt_gset_apply_op(y, ob.data, ob.len), 0);
	crdt_dot dx, dy;
	cr_assert_eq(crdt_gset_lookup(x, "same", 4, &dx), 0);
	cr_assert_eq(crdt_gset_lookup(y, "same", 4, &dy), 0);
	cr_assert_eq(crdt_dot_cmp(dx, dy), 0);
	cr_assert_eq(crdt_replica_id_cmp(&dx.replica, &B), 0,
	    "B < C, so B's dot is smaller despite its larger counter");
	cr_assert(crdt_gset_equal(x, y));
	/* Same replica, two counters: the smaller counter wins. */
	crdt_buf_clear(&ob);
	mk_gset_op(&ob, B, 3, "same", 4);
	cr_assert_eq(crdt_gset_apply_op(x, ob.data, ob.len), 0);
	cr_assert_eq(crdt_gset_lookup(x, "same", 4, &dx), 0);
	cr_assert_eq(dx.counter, 3);
	cr_assert_not(crdt_gset_equal(x, y), "dots now differ");
	crdt_buf_fini(&ob);
	crdt_buf_fini(&oc);
	crdt_gset_free(x);
	crdt_gset_free(y);
	ASSERT_NO_LEAKS();
}

Test(gset, apply_op_rejects_null_and_truncations)
{
	crdt_gset *s = mk(A);
	add(s, "keep");
	crdt_buf op;
	tb_init(&op);
	mk_gset_op(&op, B, 300, "element", 7);
	cr_assert_eq(crdt_gset_apply_op(NULL, op.data, op.len), CRDT_EINVAL);
	expect_apply_fails(s, NULL, 5, CRDT_EINVAL, "NULL op with length");
	for (size_t n = 0; n < op.len; n++)
		expect_apply_fails(s, op.data, n, CRDT_EMALFORMED, "prefix");
	crdt_buf_fini(&op);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

Test(gset, apply_op_rejects_malformed_ops)
{
	crdt_gset *s = mk(A);
	add(s, "keep");
	crdt_buf b;

	tb_init(&b);
	mk_gset_op(&b, B, 1, "x", 1);
	mp_byte(&b, 0xc0);
	expect_apply_fails(s, b.data, b.len, CRDT_EMALFORMED, "trailing");
	crdt_buf_fini(&b);

	tb_init(&b); /* an LWW op */
	mk_lww_op(&b, 5, B, true, "x", 1);
	expect_apply_fails(s, b.data, b.len, CRDT_EMALFORMED, "lww kind");
	crdt_buf_fini(&b);

	tb_init(&b); /* [1,1,id,c,elem,extra] */
	mp_array(&b, 6);
	mp_uint(&b, 1);
	mp_uint(&b, 1);
	mp_id(&b, B);
	mp_uint(&b, 1);
	mp_bin(&b, "x", 1);
	mp_uint(&b, 0);
	expect_apply_fails(s, b.data, b.len, CRDT_EMALFORMED, "extra field");
	crdt_buf_fini(&b);

	tb_init(&b); /* [1,1,id,c] */
	mp_array(&b, 4);
	mp_uint(&b, 1);
	mp_uint(&b, 1);
	mp_id(&b, B);
	mp_uint(&b, 1);
	expect_apply_fails(s, b.data, b.len, CRDT_EMALFORMED, "missing field");
	crdt_buf_fini(&b);

	tb_init(&b);
	mk_gset_op(&b, B, 0, "x", 1);
	expect_apply_fails(s, b.data, b.len, CRDT_EMALFORMED, "counter 0");
	crdt_buf_fini(&b);

	tb_init(&b); /* counter 1 as uint8 */
	mp_raw(&b, "\x95\x01\x01", 3);
	mp_id(&b, B);
	mp_raw(&b, "\xcc\x01", 2);
	mp_bin(&b, "x", 1);
	expect_apply_fails(s, b.data, b.len, CRDT_EMALFORMED, "non-minimal");
	crdt_buf_fini(&b);

	tb_init(&b); /* element as a str, not bin */
	mp_raw(&b, "\x95\x01\x01", 3);
	mp_id(&b, B);
	mp_uint(&b, 1);
	mp_raw(&b, "\xa1x", 2);
	expect_apply_fails(s, b.data, b.len, CRDT_EMALFORMED, "str element");
	crdt_buf_fini(&b);

	tb_init(&b); /* version 2 */
	mp_raw(&b, "\x95\x02\x01", 3);
	mp_id(&b, B);
	mp_uint(&b, 1);
	mp_bin(&b, "x", 1);
	expect_apply_fails(s, b.data, b.len, CRDT_EVERSION, "version 2");
	crdt_buf_fini(&b);

	tb_init(&b); /* a state, not an op */
	cr_assert_eq(crdt_gset_encode(s, &b), 0);
	expect_apply_fails(s, b.data, b.len, CRDT_EMALFORMED, "state as op");
	crdt_buf_fini(&b);

	cr_assert_eq(crdt_gset_size(s), 1);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

Test(gset, apply_op_enforces_limits)
{
	crdt_config small = cfg;
	small.limits.max_value_bytes = 4;
	crdt_gset *s;
	cr_assert_eq(crdt_gset_new(&small, &A, &s), 0);
	crdt_buf b;
	tb_init(&b);
	mk_gset_op(&b, B, 1, "12345", 5);
	expect_apply_fails(s, b.data, b.len, CRDT_ETOOBIG, "element > limit");
	crdt_buf_clear(&b);
	/* The replica ID is a fixed-size field, not a value: a small value
	 * limit must not make every op undecodable. */
	mk_gset_op(&b, B, 1, "1234", 4);
	cr_assert_eq(crdt_gset_apply_op(s, b.data, b.len), 0);
	crdt_gset_free(s);

	small = cfg;
	small.limits.max_bytes = b.len - 1;
	cr_assert_eq(crdt_gset_new(&small, &A, &s), 0);
	expect_apply_fails(s, b.data, b.len, CRDT_ETOOBIG, "op > max_bytes");
	crdt_gset_free(s);
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

/* ---- merge ---- */

Test(gset, merge_is_union_and_commutative)
{
	crdt_gset *x = mk(A), *y = mk(B);
	add(x, "a");
	add(x, "shared");
	add(y, "b");
	add(y, "shared");
	crdt_gset *xy = mk(C), *yx = mk(C);
	cr_assert_eq(crdt_gset_merge(xy, x), 0);
	cr_assert_eq(crdt_gset_merge(xy, y), 0);
	cr_assert_eq(crdt_gset_merge(yx, y), 0);
	cr_assert_eq(crdt_gset_merge(yx, x), 0);
	cr_assert_eq(crdt_gset_size(xy), 3);
	cr_assert(crdt_gset_equal(xy, yx));
	crdt_buf e1 = enc(xy), e2 = enc(yx);
	assert_same(&e1, &e2, "merge order");
	crdt_dot d;
	cr_assert_eq(crdt_gset_lookup(xy, "shared", 6, &d), 0);
	cr_assert_eq(crdt_replica_id_cmp(&d.replica, &A), 0, "smaller dot");
	/* merge into x directly equals the 3-way result */
	cr_assert_eq(crdt_gset_merge(x, y), 0);
	cr_assert(crdt_gset_equal(x, xy));
	cr_assert_eq(crdt_gset_size(y), 2, "src untouched");
	crdt_buf_fini(&e1);
	crdt_buf_fini(&e2);
	crdt_gset *all[] = { x, y, xy, yx };
	for (int i = 0; i < 4; i++)
		crdt_gset_free(all[i]);
	ASSERT_NO_LEAKS();
}

Test(gset, merge_is_idempotent_and_accepts_self)
{
	crdt_gset *x = mk(A), *y = mk(B);
	add(x, "a");
	add(y, "b");
	cr_assert_eq(crdt_gset_merge(x, y), 0);
	crdt_buf e1 = enc(x);
	cr_assert_eq(crdt_gset_merge(x, y), 0);
	cr_assert_eq(crdt_gset_merge(x, x), 0);
	crdt_buf e2 = enc(x);
	assert_same(&e1, &e2, "re-merge");
	cr_assert_eq(crdt_gset_merge(NULL, x), CRDT_EINVAL);
	cr_assert_eq(crdt_gset_merge(x, NULL), CRDT_EINVAL);
	crdt_buf_fini(&e1);
	crdt_buf_fini(&e2);
	crdt_gset_free(x);
	crdt_gset_free(y);
	ASSERT_NO_LEAKS();
}

/* Merging a state that holds our own dots (e.g. a backup of ourselves)
 * moves our counter past them: a later add never reuses a dot. */
Test(gset, merge_of_own_dots_resumes_counter)
{
	crdt_gset *old = mk(A);
	add(old, "1");
	add(old, "2");
	crdt_gset *fresh = mk(A);
	cr_assert_eq(crdt_gset_merge(fresh, old), 0);
	add(fresh, "3");
	crdt_dot d;
	cr_assert_eq(crdt_gset_lookup(fresh, "3", 1, &d), 0);
	cr_assert_eq(d.counter, 3);
	crdt_gset_free(old);
	crdt_gset_free(fresh);
	ASSERT_NO_LEAKS();
}

/* Enough elements to force several table growths on both sides. */
Test(gset, merge_of_large_sets)
{
	crdt_gset *x = mk(A), *y = mk(B);
	char e[16];
	for (int i = 0; i < 500; i++) {
		snprintf(e, sizeof e, "e%d", i);
		add(i % 2 ? x : y, e);
		if (i % 7 == 0)
			add(i % 2 ? y : x, e);
	}
	cr_assert_eq(crdt_gset_merge(x, y), 0);
	cr_assert_eq(crdt_gset_size(x), 500);
	for (int i = 0; i < 500; i++) {
		snprintf(e, sizeof e, "e%d", i);
		cr_assert(crdt_gset_contains(x, e, strlen(e)), "%s", e);
	}
	crdt_gset_free(x);
	crdt_gset_free(y);
	ASSERT_NO_LEAKS();
}

/* ---- reads ---- */

Test(gset, lookup_and_contains_error_paths)
{
	crdt_gset *s = mk(A);
	add(s, "a");
	crdt_dot d = { B, 99 };
	cr_assert_eq(crdt_gset_lookup(s, "b", 1, &d), CRDT_ENOTFOUND);
	cr_assert_eq(d.counter, 99, "dot untouched");
	cr_assert_eq(crdt_gset_lookup(s, "a", 1, NULL), 0);
	cr_assert_eq(crdt_gset_lookup(NULL, "a", 1, &d), CRDT_EINVAL);
	cr_assert_eq(crdt_gset_lookup(s, NULL, 1, &d), CRDT_EINVAL);
	cr_assert_not(crdt_gset_contains(NULL, "a", 1));
	cr_assert_not(crdt_gset_contains(s, NULL, 1));
	cr_assert_not(crdt_gset_contains(s, "a", 0), "prefix is not member");
	cr_assert_not(crdt_gset_contains(s, "ab", 2));
	cr_assert_eq(crdt_gset_size(NULL), 0);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

typedef struct visit {
	char seen[16][8];
	size_t lens[16];
	crdt_dot dots[16];
	size_t n;
	size_t stop_at; /* return 42 on this visit (1-based), 0 = never */
} visit;

static int
visitor(void *ud, const uint8_t *elem, size_t len, crdt_dot dot)
{
	visit *v = ud;
	cr_assert_lt(v->n, 16);
	cr_assert_lt(len, 8);
	memcpy(v->seen[v->n], elem, len);
	v->lens[v->n] = len;
	v->dots[v->n] = dot;
	v->n++;
	return v->n == v->stop_at ? 42 : 0;
}

Test(gset, foreach_visits_in_canonical_order)
{
	crdt_gset *s = mk(A);
	/* Inserted in a scrambled order; \xff checks unsigned bytes. */
	static const char *in[] = { "b", "ab", "\xff", "a", "", "ba", "\x01",
		"aa" };
	static const char *want[] = { "", "\x01", "a", "aa", "ab", "b", "ba",
		"\xff" };
	for (size_t i = 0; i < 8; i++)
		add(s, in[i]);
	visit v = { .n = 0 };
	cr_assert_eq(crdt_gset_foreach(s, visitor, &v), 0);
	cr_assert_eq(v.n, 8);
	for (size_t i = 0; i < 8; i++) {
		cr_assert(bytes_eq(v.seen[i], v.lens[i], want[i],
			      strlen(want[i])),
		    "position %zu", i);
		crdt_dot d;
		cr_assert_eq(crdt_gset_lookup(s, want[i], strlen(want[i]), &d),
		    0);
		cr_assert_eq(crdt_dot_cmp(d, v.dots[i]), 0);
	}
	/* The sorted view is rebuilt after a modification; "ab\0" sorts
	 * right after its prefix "ab" (strlen would stop at the NUL). */
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_gset_add(s, "ab\0", 3, &op), 0);
	crdt_buf_fini(&op);
	v.n = 0;
	cr_assert_eq(crdt_gset_foreach(s, visitor, &v), 0);
	cr_assert_eq(v.n, 9);
	cr_assert(bytes_eq(v.seen[4], v.lens[4], "ab", 2));
	cr_assert(bytes_eq(v.seen[5], v.lens[5], "ab\0", 3));
	cr_assert(bytes_eq(v.seen[6], v.lens[6], "b", 1));
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

Test(gset, foreach_stops_on_nonzero_and_returns_it)
{
	crdt_gset *s = mk(A);
	add(s, "c");
	add(s, "a");
	add(s, "b");
	visit v = { .n = 0, .stop_at = 2 };
	cr_assert_eq(crdt_gset_foreach(s, visitor, &v), 42);
	cr_assert_eq(v.n, 2);
	cr_assert(bytes_eq(v.seen[1], v.lens[1], "b", 1));
	cr_assert_eq(crdt_gset_foreach(NULL, visitor, &v), CRDT_EINVAL);
	cr_assert_eq(crdt_gset_foreach(s, NULL, &v), CRDT_EINVAL);
	crdt_gset *e = mk(A);
	v.n = 0;
	cr_assert_eq(crdt_gset_foreach(e, visitor, &v), 0);
	cr_assert_eq(v.n, 0);
	crdt_gset_free(s);
	crdt_gset_free(e);
	ASSERT_NO_LEAKS();
}

/* ---- encode / decode ---- */

Test(gset, encoding_matches_wire_format)
{
	crdt_gset *s = mk(A);
	add(s, "b");
	add(s, "a");
	crdt_buf want;
	tb_init(&want);
	mp_array(&want, 3);
	mp_uint(&want, 1);
	mp_uint(&want, 1);
	mp_array(&want, 6);
	mp_bin(&want, "a", 1);
	mp_id(&want, A);
	mp_uint(&want, 2);
	mp_bin(&want, "b", 1);
	mp_id(&want, A);
	mp_uint(&want, 1);
	crdt_buf got = enc(s);
	assert_same(&got, &want, "state bytes");
	crdt_buf_fini(&got);
	crdt_buf_fini(&want);
	crdt_gset *e = mk(A);
	got = enc(e);
	cr_assert(bytes_eq(got.data, got.len, "\x93\x01\x01\x90", 4));
	crdt_buf_fini(&got);
	cr_assert_eq(crdt_gset_encode(NULL, &got), CRDT_EINVAL);
	cr_assert_eq(crdt_gset_encode(s, NULL), CRDT_EINVAL);
	crdt_gset_free(s);
	crdt_gset_free(e);
	ASSERT_NO_LEAKS();
}

Test(gset, encoding_does_not_depend_on_op_order)
{
	crdt_buf ops[5];
	const char *el[5] = { "q", "w", "e", "r", "q" };
	for (int i = 0; i < 5; i++) {
		tb_init(&ops[i]);
		mk_gset_op(&ops[i], test_id((uint8_t)(i + 1)), 1, el[i], 1);
	}
	crdt_gset *x = mk(A), *y = mk(B);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(crdt_gset_apply_op(x, ops[i].data, ops[i].len), 0);
		cr_assert_eq(crdt_gset_apply_op(y, ops[4 - i].data,
				 ops[4 - i].len),
		    0);
	}
	crdt_buf ex = enc(x), ey = enc(y);
	assert_same(&ex, &ey, "reverse delivery");
	crdt_buf_fini(&ex);
	crdt_buf_fini(&ey);
	for (int i = 0; i < 5; i++)
		crdt_buf_fini(&ops[i]);
	crdt_gset_free(x);
	crdt_gset_free(y);
	ASSERT_NO_LEAKS();
}

Test(gset, decode_round_trips)
{
	crdt_gset *s = mk(A);
	add(s, "one");
	add(s, "");
	crdt_buf op;
	tb_init(&op);
	mk_gset_op(&op, B, 1000, "two", 3);
	cr_assert_eq(crdt_gset_apply_op(s, op.data, op.len), 0);
	crdt_buf e1 = enc(s);
	crdt_gset *back;
	cr_assert_eq(crdt_gset_decode(&cfg, &C, e1.data, e1.len, &back), 0);
	cr_assert(crdt_gset_equal(s, back));
	crdt_buf e2 = enc(back);
	assert_same(&e1, &e2, "re-encode");
	crdt_buf_fini(&op);
	crdt_buf_fini(&e1);
	crdt_buf_fini(&e2);
	crdt_gset_free(s);
	crdt_gset_free(back);
	ASSERT_NO_LEAKS();
}

/* Restoring our own state must not hand out a dot we already used. */
Test(gset, decode_of_own_state_resumes_counter)
{
	crdt_gset *s = mk(A);
	add(s, "1");
	add(s, "2");
	add(s, "3");
	crdt_buf e = enc(s);
	crdt_gset *back;
	cr_assert_eq(crdt_gset_decode(&cfg, &A, e.data, e.len, &back), 0);
	crdt_buf op, want;
	tb_init(&op);
	tb_init(&want);
	cr_assert_eq(crdt_gset_add(back, "4", 1, &op), 0);
	mk_gset_op(&want, A, 4, "4", 1);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len),
	    "expected counter 4: %s", hexs(op.data, op.len));
	/* Under another identity the counter starts afresh. */
	crdt_gset *other;
	cr_assert_eq(crdt_gset_decode(&cfg, &B, e.data, e.len, &other), 0);
	crdt_buf_clear(&op);
	crdt_buf_clear(&want);
	cr_assert_eq(crdt_gset_add(other, "4", 1, &op), 0);
	mk_gset_op(&want, B, 1, "4", 1);
	cr_assert(bytes_eq(op.data, op.len, want.data, want.len));
	crdt_buf_fini(&op);
	crdt_buf_fini(&want);
	crdt_buf_fini(&e);
	crdt_gset_free(s);
	crdt_gset_free(back);
	crdt_gset_free(other);
	ASSERT_NO_LEAKS();
}

/* [1, 1, [e0, id0, c0, ...]] */
static void
state_bytes(crdt_buf *b, size_t n, const char *const *el, const uint64_t *cs)
{
	tb_init(b);
	mp_array(b, 3);
	mp_uint(b, 1);
	mp_uint(b, 1);
	mp_array(b, (uint32_t)(3 * n));
	for (size_t i = 0; i < n; i++) {
		mp_bin(b, el[i], strlen(el[i]));
		mp_id(b, B);
		mp_uint(b, cs[i]);
	}
}

Test(gset, decode_rejects_noncanonical_states)
{
	static const uint64_t cs[] = { 1, 2, 3 };
	crdt_buf b;
	const char *ok[] = { "a", "ab", "b" };
	state_bytes(&b, 3, ok, cs);
	crdt_gset *s;
	cr_assert_eq(crdt_gset_decode(&cfg, &A, b.data, b.len, &s), 0,
	    "control case");
	crdt_gset_free(s);
	crdt_buf_fini(&b);

	const char *unsorted[] = { "b", "a" };
	state_bytes(&b, 2, unsorted, cs);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "unsorted");
	crdt_buf_fini(&b);
	const char *prefix_last[] = { "ab", "a" };
	state_bytes(&b, 2, prefix_last, cs);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "longer first");
	crdt_buf_fini(&b);
	const char *dup[] = { "a", "a" };
	state_bytes(&b, 2, dup, cs);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "duplicate");
	crdt_buf_fini(&b);
	static const uint64_t zero[] = { 0 };
	state_bytes(&b, 1, ok, zero);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "counter 0");
	crdt_buf_fini(&b);

	tb_init(&b); /* items not a multiple of 3 */
	mp_raw(&b, "\x93\x01\x01\x92", 4);
	mp_bin(&b, "a", 1);
	mp_id(&b, B);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "item count");
	crdt_buf_fini(&b);

	tb_init(&b);
	mp_raw(&b, "\x94\x01\x01\x90\x90", 5);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "extra field");
	crdt_buf_fini(&b);
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x02\x90", 4);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "lww kind");
	crdt_buf_fini(&b);
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\x90", 4);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "vclock kind");
	crdt_buf_fini(&b);
	tb_init(&b);
	mp_raw(&b, "\x93\x02\x01\x90", 4);
	expect_decode_fails(&cfg, &b, CRDT_EVERSION, "version 2");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(gset, decode_rejects_trailing_and_truncated)
{
	static const uint64_t cs[] = { 1, 200 };
	const char *el[] = { "x", "y" };
	crdt_buf b;
	state_bytes(&b, 2, el, cs);
	mp_byte(&b, 0x90);
	expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "trailing");
	b.len--;
	size_t full = b.len;
	for (b.len = 0; b.len < full; b.len++)
		expect_decode_fails(&cfg, &b, CRDT_EMALFORMED, "prefix");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(gset, decode_null_and_limits)
{
	static const uint64_t cs[] = { 1 };
	const char *el[] = { "12345" };
	crdt_buf b;
	state_bytes(&b, 1, el, cs);
	crdt_gset *s;
	cr_assert_eq(crdt_gset_decode(&cfg, &A, b.data, b.len, NULL),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_gset_decode(&cfg, NULL, b.data, b.len, &s),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_gset_decode(&cfg, &A, NULL, b.len, &s),
	    CRDT_EINVAL);
	crdt_config small = cfg;
	small.limits.max_bytes = b.len - 1;
	expect_decode_fails(&small, &b, CRDT_ETOOBIG, "max_bytes");
	small = cfg;
	small.limits.max_value_bytes = 4;
	expect_decode_fails(&small, &b, CRDT_ETOOBIG, "max_value_bytes");
	small.limits.max_value_bytes = 5;
	cr_assert_eq(crdt_gset_decode(&small, &A, b.data, b.len, &s), 0);
	crdt_gset_free(s);
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(gset, equal_compares_elements_and_dots)
{
	crdt_gset *x = mk(A), *y = mk(B), *z = mk(A);
	cr_assert(crdt_gset_equal(x, y), "both empty");
	add(x, "a");
	cr_assert_not(crdt_gset_equal(x, y));
	cr_assert_not(crdt_gset_equal(y, x));
	add(y, "a");
	cr_assert_not(crdt_gset_equal(x, y), "same element, other dot");
	add(z, "a");
	cr_assert(crdt_gset_equal(x, z));
	cr_assert(crdt_gset_equal(x, x));
	cr_assert(crdt_gset_equal(NULL, NULL));
	cr_assert_not(crdt_gset_equal(x, NULL));
	cr_assert_not(crdt_gset_equal(NULL, x));
	crdt_gset_free(x);
	crdt_gset_free(y);
	crdt_gset_free(z);
	ASSERT_NO_LEAKS();
}

Test(gset, merge_across_allocators)
{
	crdt_gset *libc_side;
	cr_assert_eq(crdt_gset_new(NULL, &B, &libc_side), 0);
	char e[8];
	crdt_buf op;
	tb_init(&op);
	for (int i = 0; i < 20; i++) {
		snprintf(e, sizeof e, "e%d", i);
		cr_assert_eq(crdt_gset_add(libc_side, e, strlen(e), &op), 0);
	}
	crdt_gset *s = mk(A);
	add(s, "e3");
	add(s, "mine");
	cr_assert_eq(crdt_gset_merge(s, libc_side), 0);
	crdt_gset_free(libc_side);
	cr_assert_eq(crdt_gset_size(s), 21);
	cr_assert(crdt_gset_contains(s, "e19", 3));
	crdt_buf_fini(&op);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

Test(gset, config_is_copied)
{
	crdt_config c = cfg;
	c.limits.max_value_bytes = 4;
	crdt_gset *s;
	cr_assert_eq(crdt_gset_new(&c, &A, &s), 0);
	c.limits.max_value_bytes = 1;
	c.alloc.alloc = NULL;
	add(s, "four");
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

/* Thousands of distinct elements: every member found with its dot, and
 * near-misses (one extra byte, one byte changed) are not. Exercises
 * table growth and probing well past the first few rehashes. */
Test(gset, large_set_membership_is_exact)
{
	crdt_gset *s = mk(A);
	crdt_buf op;
	tb_init(&op);
	uint8_t e[9];
	for (uint32_t i = 0; i < 3000; i++) {
		memcpy(e, &i, 4);
		memcpy(e + 4, "elem", 4);
		crdt_buf_clear(&op);
		cr_assert_eq(crdt_gset_add(s, e, 8, &op), 0);
	}
	cr_assert_eq(crdt_gset_size(s), 3000);
	for (uint32_t i = 0; i < 3000; i++) {
		memcpy(e, &i, 4);
		memcpy(e + 4, "elem", 4);
		crdt_dot d;
		cr_assert_eq(crdt_gset_lookup(s, e, 8, &d), 0, "%u", i);
		cr_assert_eq(d.counter, i + 1);
		e[8] = 0;
		cr_assert_not(crdt_gset_contains(s, e, 9));
		e[7] ^= 1;
		cr_assert_not(crdt_gset_contains(s, e, 8));
	}
	crdt_buf_fini(&op);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

/* Elements past 255 and 65535 bytes take bin16/bin32; both round-trip,
 * and a short element in a longer-than-needed bin form is refused. */
Test(gset, long_elements_use_wider_bin_forms)
{
	static uint8_t big[70000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 31);
	crdt_gset *s = mk(A);
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_gset_add(s, big, 300, &op), 0);
	cr_assert_eq(crdt_gset_add(s, big, sizeof big, &op), 0);
	crdt_buf e = enc(s);
	crdt_gset *back;
	cr_assert_eq(crdt_gset_decode(&cfg, &A, e.data, e.len, &back), 0);
	cr_assert(crdt_gset_contains(back, big, 300));
	cr_assert(crdt_gset_contains(back, big, sizeof big));
	crdt_buf e2 = enc(back);
	cr_assert(bytes_eq(e.data, e.len, e2.data, e2.len));
	crdt_gset *t = mk(B);
	cr_assert_eq(crdt_gset_apply_op(t, op.data, op.len), CRDT_EMALFORMED,
	    "two ops back to back are one op plus trailing bytes");
	crdt_buf_fini(&op);

	tb_init(&op); /* "x" as bin16 */
	mp_raw(&op, "\x95\x01\x01", 3);
	mp_id(&op, B);
	mp_uint(&op, 1);
	mp_raw(&op, "\xc5\x00\x01x", 4);
	expect_apply_fails(t, op.data, op.len, CRDT_EMALFORMED, "bin16");
	crdt_buf_clear(&op);
	mp_raw(&op, "\x95\x01\x01", 3); /* "x" as bin32 */
	mp_id(&op, B);
	mp_uint(&op, 1);
	mp_raw(&op, "\xc6\x00\x00\x00\x01x", 6);
	expect_apply_fails(t, op.data, op.len, CRDT_EMALFORMED, "bin32");
	crdt_buf_fini(&op);
	crdt_buf_fini(&e);
	crdt_buf_fini(&e2);
	crdt_gset_free(s);
	crdt_gset_free(back);
	crdt_gset_free(t);
	ASSERT_NO_LEAKS();
}
