/*
 * Vector clock: value semantics (absent == 0), sorted entries, pointwise
 * merge, causal comparison, and the strict canonical codec.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

static crdt_config cfg;

static void
setup(void)
{
	test_alloc_reset();
	test_config(&cfg, NULL);
}

TestSuite(vclock, .init = setup);

static crdt_vclock *
mk(size_t n, const uint8_t *ids, const uint64_t *counters)
{
	crdt_vclock *vc;
	cr_assert_eq(crdt_vclock_new(&cfg, &vc), 0);
	for (size_t i = 0; i < n; i++) {
		crdt_replica_id id = test_id(ids[i]);
		cr_assert_eq(crdt_vclock_set(vc, &id, counters[i]), 0);
	}
	return vc;
}

static uint64_t
get(const crdt_vclock *vc, uint8_t n)
{
	crdt_replica_id id = test_id(n);
	return crdt_vclock_get(vc, &id);
}

static void
encode(const crdt_vclock *vc, crdt_buf *out)
{
	crdt_buf_init(out, test_alloc_hook());
	cr_assert_eq(crdt_vclock_encode(vc, out), 0);
}

/* Expect decode to fail with `want` and leave `*out` alone. */
static void
expect_reject(const crdt_config *c, const crdt_buf *b, int want,
    const char *what)
{
	crdt_vclock *out = (crdt_vclock *)&out;
	int rc = crdt_vclock_decode(c, b->data, b->len, &out);
	cr_assert_eq(rc, want, "%s: got %s, want %s (%s)", what,
	    crdt_err_name(rc), crdt_err_name(want), hexs(b->data, b->len));
	cr_assert_eq(out, (crdt_vclock *)&out, "%s: *out written", what);
}

Test(vclock, new_and_free)
{
	crdt_vclock *vc;
	cr_assert_eq(crdt_vclock_new(&cfg, &vc), 0);
	cr_assert_eq(crdt_vclock_size(vc), 0);
	cr_assert_gt(test_alloc_live_bytes(), 0, "built on the hook");
	crdt_vclock_free(vc);
	crdt_vclock_free(NULL);
	cr_assert_eq(crdt_vclock_new(NULL, &vc), 0, "NULL cfg = defaults");
	crdt_vclock_free(vc);
	ASSERT_NO_LEAKS();
}

Test(vclock, new_refuses_null_out_and_partial_allocator)
{
	crdt_vclock *vc = NULL;
	cr_assert_eq(crdt_vclock_new(&cfg, NULL), CRDT_EINVAL);
	crdt_config bad = cfg;
	bad.alloc.free = NULL;
	cr_assert_eq(crdt_vclock_new(&bad, &vc), CRDT_EINVAL);
	cr_assert_null(vc);
	ASSERT_NO_LEAKS();
}

Test(vclock, get_set_and_zero_removes)
{
	crdt_vclock *vc = mk(0, NULL, NULL);
	cr_assert_eq(get(vc, 1), 0, "absent reads as 0");
	crdt_replica_id a = test_id(1), b = test_id(2);
	cr_assert_eq(crdt_vclock_set(vc, &a, 5), 0);
	cr_assert_eq(crdt_vclock_set(vc, &b, 9), 0);
	cr_assert_eq(get(vc, 1), 5);
	cr_assert_eq(get(vc, 2), 9);
	cr_assert_eq(crdt_vclock_size(vc), 2);
	/* set is assignment, not max */
	cr_assert_eq(crdt_vclock_set(vc, &b, 3), 0);
	cr_assert_eq(get(vc, 2), 3);
	cr_assert_eq(crdt_vclock_set(vc, &a, 0), 0);
	cr_assert_eq(get(vc, 1), 0);
	cr_assert_eq(crdt_vclock_size(vc), 1, "0 removes the entry");
	cr_assert_eq(crdt_vclock_set(vc, &a, 0), 0, "removing absent is ok");
	cr_assert_eq(crdt_vclock_size(vc), 1);
	cr_assert_eq(crdt_vclock_set(vc, &b, UINT64_MAX), 0);
	cr_assert_eq(get(vc, 2), UINT64_MAX);
	crdt_vclock_free(vc);
	ASSERT_NO_LEAKS();
}

/* A clock that had an entry removed equals (and encodes like) one that
 * never had it. */
Test(vclock, removed_entry_is_indistinguishable_from_absent)
{
	uint8_t ids[] = { 1, 2 };
	uint64_t cs[] = { 4, 6 };
	crdt_vclock *a = mk(2, ids, cs), *b = mk(1, ids + 1, cs + 1);
	crdt_replica_id one = test_id(1);
	cr_assert_eq(crdt_vclock_set(a, &one, 0), 0);
	cr_assert_eq(crdt_vclock_compare(a, b), CRDT_ORDER_EQUAL);
	crdt_buf ea, eb;
	encode(a, &ea);
	encode(b, &eb);
	cr_assert(bytes_eq(ea.data, ea.len, eb.data, eb.len));
	crdt_buf_fini(&ea);
	crdt_buf_fini(&eb);
	crdt_vclock_free(a);
	crdt_vclock_free(b);
	ASSERT_NO_LEAKS();
}

Test(vclock, null_arguments)
{
	crdt_vclock *vc = mk(0, NULL, NULL);
	crdt_replica_id a = test_id(1);
	cr_assert_eq(crdt_vclock_set(NULL, &a, 1), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_set(vc, NULL, 1), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_get(NULL, &a), 0);
	cr_assert_eq(crdt_vclock_get(vc, NULL), 0);
	cr_assert_eq(crdt_vclock_size(NULL), 0);
	cr_assert_eq(crdt_vclock_merge(NULL, vc), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_merge(vc, NULL), CRDT_EINVAL);
	crdt_vclock *c;
	cr_assert_eq(crdt_vclock_clone(NULL, &c), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_clone(vc, NULL), CRDT_EINVAL);
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	cr_assert_eq(crdt_vclock_encode(NULL, &b), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_encode(vc, NULL), CRDT_EINVAL);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(crdt_vclock_decode(&cfg, "\x93", 1, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_decode(&cfg, NULL, 3, &c), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_size(vc), 0);
	crdt_vclock_free(vc);
	ASSERT_NO_LEAKS();
}

Test(vclock, entries_iterate_in_replica_id_order)
{
	uint8_t ids[] = { 9, 3, 200, 1, 77, 4 };
	uint64_t cs[] = { 1, 2, 3, 4, 5, 6 };
	crdt_vclock *vc = mk(6, ids, cs);
	cr_assert_eq(crdt_vclock_size(vc), 6);
	static const uint8_t want_ids[] = { 1, 3, 4, 9, 77, 200 };
	static const uint64_t want_cs[] = { 4, 2, 6, 1, 5, 3 };
	for (size_t i = 0; i < 6; i++) {
		crdt_replica_id id;
		uint64_t c;
		cr_assert_eq(crdt_vclock_entry(vc, i, &id, &c), 0);
		crdt_replica_id w = test_id(want_ids[i]);
		cr_assert_eq(crdt_replica_id_cmp(&id, &w), 0, "entry %zu", i);
		cr_assert_eq(c, want_cs[i], "entry %zu", i);
	}
	cr_assert_eq(crdt_vclock_entry(vc, 0, NULL, NULL), 0);
	crdt_replica_id id = test_id(55);
	uint64_t c = 1234;
	cr_assert_eq(crdt_vclock_entry(vc, 6, &id, &c), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_entry(vc, SIZE_MAX, &id, &c), CRDT_EINVAL);
	cr_assert_eq(crdt_vclock_entry(NULL, 0, &id, &c), CRDT_EINVAL);
	crdt_replica_id w = test_id(55);
	cr_assert_eq(crdt_replica_id_cmp(&id, &w), 0, "outputs untouched");
	cr_assert_eq(c, 1234);
	crdt_vclock_free(vc);
	ASSERT_NO_LEAKS();
}

Test(vclock, merge_is_pointwise_max)
{
	uint8_t ia[] = { 1, 2, 4 };
	uint64_t ca[] = { 3, 5, 10 };
	uint8_t ib[] = { 2, 3, 4 };
	uint64_t cb[] = { 7, 1, 2 };
	crdt_vclock *a = mk(3, ia, ca), *b = mk(3, ib, cb);
	cr_assert_eq(crdt_vclock_merge(a, b), 0);
	cr_assert_eq(crdt_vclock_size(a), 4);
	cr_assert_eq(get(a, 1), 3);
	cr_assert_eq(get(a, 2), 7);
	cr_assert_eq(get(a, 3), 1);
	cr_assert_eq(get(a, 4), 10);
	cr_assert_eq(crdt_vclock_size(b), 3, "src untouched");
	cr_assert_eq(get(b, 4), 2);
	crdt_vclock_free(a);
	crdt_vclock_free(b);
	ASSERT_NO_LEAKS();
}

/* When src adds no replica, merge updates in place. */
Test(vclock, merge_of_subset_updates_in_place)
{
	uint8_t ia[] = { 1, 2, 3 };
	uint64_t ca[] = { 3, 5, 4 };
	uint8_t ib[] = { 2, 3 };
	uint64_t cb[] = { 9, 1 };
	crdt_vclock *a = mk(3, ia, ca), *b = mk(2, ib, cb);
	cr_assert_eq(crdt_vclock_merge(a, b), 0);
	cr_assert_eq(crdt_vclock_size(a), 3);
	cr_assert_eq(get(a, 1), 3);
	cr_assert_eq(get(a, 2), 9);
	cr_assert_eq(get(a, 3), 4, "max, never lowered");
	crdt_vclock *e = mk(0, NULL, NULL);
	cr_assert_eq(crdt_vclock_merge(a, e), 0);
	cr_assert_eq(crdt_vclock_size(a), 3);
	cr_assert_eq(crdt_vclock_merge(e, a), 0);
	cr_assert_eq(crdt_vclock_compare(e, a), CRDT_ORDER_EQUAL);
	cr_assert_eq(crdt_vclock_merge(a, a), 0, "self merge");
	cr_assert_eq(crdt_vclock_compare(e, a), CRDT_ORDER_EQUAL);
	crdt_vclock_free(a);
	crdt_vclock_free(b);
	crdt_vclock_free(e);
	ASSERT_NO_LEAKS();
}

Test(vclock, compare_covers_all_four_orders)
{
	crdt_vclock *e1 = mk(0, NULL, NULL), *e2 = mk(0, NULL, NULL);
	cr_assert_eq(crdt_vclock_compare(e1, e2), CRDT_ORDER_EQUAL);

	uint8_t i12[] = { 1, 2 };
	uint64_t c35[] = { 3, 5 }, c36[] = { 3, 6 }, c45[] = { 4, 5 };
	uint64_t c44[] = { 4, 4 };
	crdt_vclock *a = mk(2, i12, c35), *a2 = mk(2, i12, c35);
	crdt_vclock *b = mk(2, i12, c36), *c = mk(2, i12, c45);
	crdt_vclock *d = mk(2, i12, c44);
	cr_assert_eq(crdt_vclock_compare(a, a2), CRDT_ORDER_EQUAL);
	cr_assert_eq(crdt_vclock_compare(a, b), CRDT_ORDER_BEFORE);
	cr_assert_eq(crdt_vclock_compare(b, a), CRDT_ORDER_AFTER);
	cr_assert_eq(crdt_vclock_compare(b, c), CRDT_ORDER_CONCURRENT);
	cr_assert_eq(crdt_vclock_compare(c, b), CRDT_ORDER_CONCURRENT);
	cr_assert_eq(crdt_vclock_compare(a, d), CRDT_ORDER_CONCURRENT);

	/* Missing entries count as 0. */
	cr_assert_eq(crdt_vclock_compare(e1, a), CRDT_ORDER_BEFORE);
	cr_assert_eq(crdt_vclock_compare(a, e1), CRDT_ORDER_AFTER);
	uint8_t i1[] = { 1 }, i3[] = { 3 };
	uint64_t c3[] = { 3 }, c1[] = { 1 };
	crdt_vclock *only1 = mk(1, i1, c3), *only3 = mk(1, i3, c1);
	cr_assert_eq(crdt_vclock_compare(only1, a), CRDT_ORDER_BEFORE);
	cr_assert_eq(crdt_vclock_compare(a, only1), CRDT_ORDER_AFTER);
	cr_assert_eq(crdt_vclock_compare(only3, a), CRDT_ORDER_CONCURRENT);
	cr_assert_eq(crdt_vclock_compare(a, only3), CRDT_ORDER_CONCURRENT);
	cr_assert_eq(crdt_vclock_compare(only1, only3),
	    CRDT_ORDER_CONCURRENT);

	crdt_vclock *all[] = { e1, e2, a, a2, b, c, d, only1, only3 };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		crdt_vclock_free(all[i]);
	ASSERT_NO_LEAKS();
}

Test(vclock, covers_means_counter_seen)
{
	uint8_t ids[] = { 1 };
	uint64_t cs[] = { 5 };
	crdt_vclock *vc = mk(1, ids, cs);
	crdt_dot d = { test_id(1), 5 };
	cr_assert(crdt_vclock_covers(vc, d));
	d.counter = 1;
	cr_assert(crdt_vclock_covers(vc, d));
	d.counter = 6;
	cr_assert_not(crdt_vclock_covers(vc, d));
	crdt_dot other = { test_id(2), 1 };
	cr_assert_not(crdt_vclock_covers(vc, other));
	crdt_vclock_free(vc);
	ASSERT_NO_LEAKS();
}

Test(vclock, clone_is_deep_and_equal)
{
	uint8_t ids[] = { 5, 1, 3 };
	uint64_t cs[] = { 50, 10, 30 };
	crdt_vclock *vc = mk(3, ids, cs), *c;
	cr_assert_eq(crdt_vclock_clone(vc, &c), 0);
	cr_assert_eq(crdt_vclock_compare(vc, c), CRDT_ORDER_EQUAL);
	crdt_replica_id one = test_id(1), nine = test_id(9);
	cr_assert_eq(crdt_vclock_set(c, &one, 11), 0);
	cr_assert_eq(crdt_vclock_set(c, &nine, 1), 0);
	cr_assert_eq(get(vc, 1), 10, "original unaffected");
	cr_assert_eq(crdt_vclock_size(vc), 3);
	crdt_vclock_free(vc);
	cr_assert_eq(get(c, 5), 50, "clone outlives the original");
	crdt_vclock *e = mk(0, NULL, NULL), *ec;
	cr_assert_eq(crdt_vclock_clone(e, &ec), 0);
	cr_assert_eq(crdt_vclock_size(ec), 0);
	crdt_vclock_free(c);
	crdt_vclock_free(e);
	crdt_vclock_free(ec);
	ASSERT_NO_LEAKS();
}

/* Wire format pinned against an independent writer: [1, 4, [id, c, ...]]
 * with ids ascending and smallest integer forms. */
Test(vclock, encoding_matches_wire_format)
{
	uint8_t ids[] = { 2, 1, 3 };
	uint64_t cs[] = { 300, 7, UINT64_C(1) << 40 };
	crdt_vclock *vc = mk(3, ids, cs);
	crdt_buf want;
	tb_init(&want);
	mp_array(&want, 3);
	mp_uint(&want, 1);
	mp_uint(&want, 4);
	mp_array(&want, 6);
	mp_id(&want, test_id(1));
	mp_uint(&want, 7);
	mp_id(&want, test_id(2));
	mp_uint(&want, 300);
	mp_id(&want, test_id(3));
	mp_uint(&want, UINT64_C(1) << 40);
	crdt_buf got;
	encode(vc, &got);
	cr_assert(bytes_eq(got.data, got.len, want.data, want.len),
	    "got %s", hexs(got.data, got.len));
	/* Empty clock: [1, 4, []] */
	crdt_vclock *e = mk(0, NULL, NULL);
	crdt_buf_clear(&got);
	cr_assert_eq(crdt_vclock_encode(e, &got), 0);
	cr_assert(bytes_eq(got.data, got.len, "\x93\x01\x04\x90", 4));
	crdt_buf_fini(&got);
	crdt_buf_fini(&want);
	crdt_vclock_free(vc);
	crdt_vclock_free(e);
	ASSERT_NO_LEAKS();
}

Test(vclock, encode_appends_after_existing_bytes)
{
	crdt_vclock *e = mk(0, NULL, NULL);
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	cr_assert_eq(crdt_buf_append(&b, "ab", 2), 0);
	cr_assert_eq(crdt_vclock_encode(e, &b), 0);
	cr_assert(bytes_eq(b.data, b.len, "ab\x93\x01\x04\x90", 6));
	crdt_buf_fini(&b);
	crdt_vclock_free(e);
	ASSERT_NO_LEAKS();
}

Test(vclock, decode_round_trips_bytes_and_value)
{
	uint8_t ids[] = { 200, 1, 17, 3 };
	uint64_t cs[] = { 1, 0x7f, 0x80, UINT64_MAX };
	crdt_vclock *vc = mk(4, ids, cs), *back;
	crdt_buf b1, b2;
	encode(vc, &b1);
	cr_assert_eq(crdt_vclock_decode(&cfg, b1.data, b1.len, &back), 0);
	cr_assert_eq(crdt_vclock_compare(vc, back), CRDT_ORDER_EQUAL);
	cr_assert_eq(crdt_vclock_size(back), 4);
	cr_assert_eq(get(back, 3), UINT64_MAX);
	encode(back, &b2);
	cr_assert(bytes_eq(b1.data, b1.len, b2.data, b2.len));
	crdt_buf_fini(&b1);
	crdt_buf_fini(&b2);
	crdt_vclock_free(vc);
	crdt_vclock_free(back);
	/* Empty clock too. */
	cr_assert_eq(crdt_vclock_decode(&cfg, "\x93\x01\x04\x90", 4, &back),
	    0);
	cr_assert_eq(crdt_vclock_size(back), 0);
	crdt_vclock_free(back);
	ASSERT_NO_LEAKS();
}

/* Build [1, kind, [pairs...]] with the given header fields. */
static void
vc_bytes(crdt_buf *b, uint64_t version, uint64_t kind, size_t n,
    const uint8_t *ids, const uint64_t *cs)
{
	tb_init(b);
	mp_array(b, 3);
	mp_uint(b, version);
	mp_uint(b, kind);
	mp_array(b, (uint32_t)(2 * n));
	for (size_t i = 0; i < n; i++) {
		mp_id(b, test_id(ids[i]));
		mp_uint(b, cs[i]);
	}
}

Test(vclock, decode_rejects_unsorted_duplicate_and_zero_entries)
{
	crdt_buf b;
	uint8_t ok_ids[] = { 1, 2 };
	uint64_t ok_cs[] = { 1, 2 };
	vc_bytes(&b, 1, 4, 2, ok_ids, ok_cs);
	crdt_vclock *vc;
	cr_assert_eq(crdt_vclock_decode(&cfg, b.data, b.len, &vc), 0,
	    "control case");
	crdt_vclock_free(vc);
	crdt_buf_fini(&b);

	uint8_t unsorted[] = { 2, 1 };
	vc_bytes(&b, 1, 4, 2, unsorted, ok_cs);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "unsorted ids");
	crdt_buf_fini(&b);

	uint8_t dup[] = { 1, 1 };
	vc_bytes(&b, 1, 4, 2, dup, ok_cs);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "duplicate ids");
	crdt_buf_fini(&b);

	uint64_t zero[] = { 1, 0 };
	vc_bytes(&b, 1, 4, 2, ok_ids, zero);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "zero counter");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(vclock, decode_rejects_noncanonical_integers_and_shapes)
{
	crdt_buf b;
	crdt_replica_id one = test_id(1);

	/* counter 5 as uint8 (0xcc 0x05) instead of fixint */
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\x92", 4);
	mp_id(&b, one);
	mp_raw(&b, "\xcc\x05", 2);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "uint8 for a fixint");
	crdt_buf_fini(&b);

	/* counter 200 as uint16 */
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\x92", 4);
	mp_id(&b, one);
	mp_raw(&b, "\xcd\x00\xc8", 3);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "uint16 for a uint8");
	crdt_buf_fini(&b);

	/* version 1 as uint8 */
	tb_init(&b);
	mp_raw(&b, "\x93\xcc\x01\x04\x90", 5);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "uint8 version");
	crdt_buf_fini(&b);

	/* inner array as array16 */
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\xdc\x00\x00", 6);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "array16 for fixarray");
	crdt_buf_fini(&b);

	/* odd element count */
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\x91", 4);
	mp_id(&b, one);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "odd pair array");
	crdt_buf_fini(&b);

	/* extra top-level field */
	tb_init(&b);
	mp_raw(&b, "\x94\x01\x04\x90\x00", 5);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "extra field");
	crdt_buf_fini(&b);

	/* missing field */
	tb_init(&b);
	mp_raw(&b, "\x92\x01\x04", 3);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "missing field");
	crdt_buf_fini(&b);

	/* 15-byte and all-zero replica ids */
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\x92", 4);
	mp_bin(&b, one.bytes, 15);
	mp_uint(&b, 1);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "short id");
	crdt_buf_fini(&b);
	static const uint8_t zid[16];
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\x92", 4);
	mp_bin(&b, zid, 16);
	mp_uint(&b, 1);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "zero id");
	crdt_buf_fini(&b);

	/* a counter that is not an unsigned integer (nil, negative fixint) */
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\x92", 4);
	mp_id(&b, one);
	mp_nil(&b);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "nil counter");
	crdt_buf_fini(&b);
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\x92", 4);
	mp_id(&b, one);
	mp_byte(&b, 0xff);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "negative counter");
	crdt_buf_fini(&b);

	/* not an array at all; empty input */
	tb_init(&b);
	mp_raw(&b, "\x01", 1);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "scalar");
	crdt_buf_fini(&b);
	tb_init(&b);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "empty");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(vclock, decode_rejects_trailing_and_truncated_input)
{
	uint8_t ids[] = { 1, 9 };
	uint64_t cs[] = { 1000, 3 };
	crdt_buf b;
	vc_bytes(&b, 1, 4, 2, ids, cs);
	mp_byte(&b, 0x00);
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "trailing byte");
	b.len--;
	for (size_t n = 0; n < b.len; n++) {
		crdt_vclock *out = NULL;
		int rc = crdt_vclock_decode(&cfg, b.data, n, &out);
		cr_assert_eq(rc, CRDT_EMALFORMED, "prefix %zu of %zu: %s", n,
		    b.len, crdt_err_name(rc));
		cr_assert_null(out);
	}
	crdt_vclock *out;
	cr_assert_eq(crdt_vclock_decode(&cfg, b.data, b.len, &out), 0,
	    "the whole input is fine");
	crdt_vclock_free(out);
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(vclock, decode_rejects_wrong_kind_and_version)
{
	uint8_t ids[] = { 1 };
	uint64_t cs[] = { 1 };
	crdt_buf b;
	for (uint64_t kind = 0; kind < 8; kind++) {
		if (kind == 4)
			continue;
		vc_bytes(&b, 1, kind, 1, ids, cs);
		expect_reject(&cfg, &b, CRDT_EMALFORMED, "wrong kind");
		crdt_buf_fini(&b);
	}
	vc_bytes(&b, 2, 4, 1, ids, cs);
	expect_reject(&cfg, &b, CRDT_EVERSION, "version 2");
	crdt_buf_fini(&b);
	vc_bytes(&b, 0, 4, 1, ids, cs);
	expect_reject(&cfg, &b, CRDT_EVERSION, "version 0");
	crdt_buf_fini(&b);
	vc_bytes(&b, 1000, 4, 1, ids, cs);
	expect_reject(&cfg, &b, CRDT_EVERSION, "version 1000");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(vclock, decode_enforces_limits)
{
	uint8_t ids[] = { 1, 2, 3 };
	uint64_t cs[] = { 1, 2, 3 };
	crdt_buf b;
	vc_bytes(&b, 1, 4, 3, ids, cs);
	crdt_config small = cfg;
	small.limits.max_bytes = b.len - 1;
	expect_reject(&small, &b, CRDT_ETOOBIG, "max_bytes");
	small.limits.max_bytes = b.len;
	crdt_vclock *vc;
	cr_assert_eq(crdt_vclock_decode(&small, b.data, b.len, &vc), 0,
	    "exactly at the limit");
	crdt_vclock_free(vc);
	small = cfg;
	small.limits.max_elems = 4; /* 3 outer + 6 inner elements */
	expect_reject(&small, &b, CRDT_ETOOBIG, "max_elems");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

/* A header claiming far more elements than bytes follow must be refused
 * before anything is allocated for it. */
Test(vclock, decode_refuses_lying_counts_without_allocating)
{
	crdt_buf b;
	tb_init(&b);
	mp_raw(&b, "\x93\x01\x04\xdd\x7f\xff\xff\xfe", 8);
	unsigned long before = test_alloc_calls();
	expect_reject(&cfg, &b, CRDT_EMALFORMED, "array32 count lies");
	cr_assert_leq(test_alloc_calls() - before, 1,
	    "only the object itself may be allocated");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

/* Seeded random set/merge/compare against a plain array model of the
 * same clock (ids test_id(0..NID-1)). */
#define NID 24

static crdt_order
model_cmp(const uint64_t *a, const uint64_t *b)
{
	bool less = false, greater = false;
	for (int i = 0; i < NID; i++) {
		less |= a[i] < b[i];
		greater |= a[i] > b[i];
	}
	return less && greater ? CRDT_ORDER_CONCURRENT :
	    less               ? CRDT_ORDER_BEFORE :
	    greater            ? CRDT_ORDER_AFTER :
				 CRDT_ORDER_EQUAL;
}

static void
expect_model(const crdt_vclock *vc, const uint64_t *m, uint64_t seed, int it)
{
	size_t n = 0;
	for (int i = 0; i < NID; i++) {
		cr_assert_eq(get(vc, (uint8_t)i), m[i],
		    "seed=0x%llx step %d id %d", (unsigned long long)seed, it,
		    i);
		n += m[i] != 0;
	}
	cr_assert_eq(crdt_vclock_size(vc), n, "seed=0x%llx step %d",
	    (unsigned long long)seed, it);
	/* entries ascend and list exactly the non-zero model slots */
	size_t e = 0;
	for (int i = 0; i < NID; i++) {
		if (m[i] == 0)
			continue;
		crdt_replica_id id;
		uint64_t c;
		cr_assert_eq(crdt_vclock_entry(vc, e++, &id, &c), 0);
		crdt_replica_id w = test_id((uint8_t)i);
		cr_assert_eq(crdt_replica_id_cmp(&id, &w), 0);
		cr_assert_eq(c, m[i]);
	}
}

Test(vclock, random_operations_match_a_naive_model)
{
	uint64_t seed = test_seed(UINT64_C(0x7c10c4));
	test_rng r;
	test_rng_init(&r, seed);
	crdt_vclock *vc[3];
	uint64_t m[3][NID];
	memset(m, 0, sizeof m);
	for (int k = 0; k < 3; k++)
		cr_assert_eq(crdt_vclock_new(&cfg, &vc[k]), 0);
	for (int it = 0; it < 20000; it++) {
		int a = (int)test_rng_below(&r, 3), b = (int)test_rng_below(&r, 3);
		switch (test_rng_below(&r, 4)) {
		case 0:
		case 1: {
			int i = (int)test_rng_below(&r, NID);
			uint64_t c = test_rng_chance(&r, 1, 5) ? 0 :
			    test_rng_below(&r, 6) + (test_rng_chance(&r, 1, 20) ?
				UINT64_MAX - 6 : 0);
			crdt_replica_id id = test_id((uint8_t)i);
			cr_assert_eq(crdt_vclock_set(vc[a], &id, c), 0);
			m[a][i] = c;
			break;
		}
		case 2:
			cr_assert_eq(crdt_vclock_merge(vc[a], vc[b]), 0);
			for (int i = 0; i < NID; i++)
				if (m[b][i] > m[a][i])
					m[a][i] = m[b][i];
			break;
		default: {
			cr_assert_eq(crdt_vclock_compare(vc[a], vc[b]),
			    model_cmp(m[a], m[b]), "seed=0x%llx step %d",
			    (unsigned long long)seed, it);
			crdt_dot d = { test_id((uint8_t)test_rng_below(&r, NID)),
				test_rng_below(&r, 7) };
			cr_assert_eq(crdt_vclock_covers(vc[a], d),
			    m[a][d.replica.bytes[0]] >= d.counter);
			break;
		}
		}
		expect_model(vc[a], m[a], seed, it);
		if (it % 500 == 0) {
			crdt_buf e;
			encode(vc[a], &e);
			crdt_vclock *back;
			cr_assert_eq(crdt_vclock_decode(&cfg, e.data, e.len,
					 &back), 0);
			expect_model(back, m[a], seed, it);
			crdt_vclock_free(back);
			crdt_buf_fini(&e);
		}
	}
	for (int k = 0; k < 3; k++)
		crdt_vclock_free(vc[k]);
	ASSERT_NO_LEAKS();
}
