/*
 * White-box: the allowlist index (crdt/acl.h), below the document. It
 * decides whether a writer may write as of an admin counter, on every
 * replica alike, so:
 *   - a writer's grants and revokes apply by admin counter whatever the
 *     order they are folded in, and at equal counters a revoke wins;
 *   - after room is made for a record, folding it in cannot fail (the
 *     document folds after its commit point);
 *   - building an index from an allowlist G-Set is all or nothing, and a
 *     malformed record changes nothing;
 *   - nothing leaks.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "acl.h"
#include "test_alloc.h"
#include "test_util.h"

static crdt__table t;

static void
setup(void)
{
	test_alloc_reset();
}

TestSuite(acl, .init = setup);

/* Record [writer, admin counter, allowed] into b (cleared first). */
static void
rec(crdt_buf *b, uint8_t w, uint64_t c, bool allowed)
{
	crdt_buf_clear(b);
	mp_array(b, 3);
	mp_id(b, test_id(w));
	mp_uint(b, c);
	mp_uint(b, allowed ? 1 : 0);
}

static int
fold(uint8_t w, uint64_t c, bool allowed)
{
	crdt_buf b;
	tb_init(&b);
	rec(&b, w, c, allowed);
	int rc = crdt__acl_add(&t, b.data, b.len);
	crdt_buf_fini(&b);
	return rc;
}

static bool
allows(uint8_t w, uint64_t a)
{
	crdt_replica_id id = test_id(w);
	return crdt__acl_allows(&t, &id, a);
}

Test(acl, history_applies_by_admin_counter_in_any_fold_order)
{
	static const struct {
		uint64_t c;
		bool allowed;
	} h[] = { { 3, true }, { 7, false }, { 9, true } };
	static const int orders[6][3] = { { 0, 1, 2 }, { 0, 2, 1 },
		{ 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };
	for (int o = 0; o < 6; o++) {
		cr_assert_eq(crdt__acl_init(&t, test_alloc_hook()), 0);
		for (int i = 0; i < 3; i++)
			cr_assert_eq(fold(5, h[orders[o][i]].c,
			    h[orders[o][i]].allowed), 0);
		cr_assert(!allows(5, 2), "order %d", o);
		cr_assert(allows(5, 3) && allows(5, 6), "order %d", o);
		cr_assert(!allows(5, 7) && !allows(5, 8), "order %d", o);
		cr_assert(allows(5, 9) && allows(5, UINT64_MAX), "order %d", o);
		cr_assert(!allows(6, UINT64_MAX)); /* never listed */
		crdt__acl_fini(&t);
	}
	ASSERT_NO_LEAKS();
}

Test(acl, a_revoke_wins_at_an_equal_counter)
{
	cr_assert_eq(crdt__acl_init(&t, test_alloc_hook()), 0);
	cr_assert_eq(fold(5, 4, false), 0);
	cr_assert_eq(fold(5, 4, true), 0);
	cr_assert(!allows(5, 4));
	cr_assert_eq(fold(6, 4, true), 0);
	cr_assert_eq(fold(6, 4, false), 0);
	cr_assert(!allows(6, 4));
	crdt__acl_fini(&t);
	ASSERT_NO_LEAKS();
}

Test(acl, folding_after_room_cannot_fail)
{
	cr_assert_eq(crdt__acl_init(&t, test_alloc_hook()), 0);
	crdt_buf a, b;
	tb_init(&a);
	tb_init(&b);
	rec(&a, 5, 1, true);
	rec(&b, 5, 2, false); /* two records of one writer in one message */
	cr_assert_eq(crdt__acl_room(&t, a.data, a.len), 0);
	cr_assert_eq(crdt__acl_room(&t, b.data, b.len), 0);
	test_alloc_fail_from(0);
	cr_assert_eq(crdt__acl_add(&t, a.data, a.len), 0);
	cr_assert_eq(crdt__acl_add(&t, b.data, b.len), 0);
	cr_assert(!test_alloc_fired(), "folding allocated");
	test_alloc_disarm();
	crdt__acl_settle(&t, a.data, a.len);
	crdt__acl_settle(&t, b.data, b.len);
	cr_assert(allows(5, 1));
	cr_assert(!allows(5, 2));
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	crdt__acl_fini(&t);
	ASSERT_NO_LEAKS();
}

Test(acl, a_malformed_record_changes_nothing)
{
	cr_assert_eq(crdt__acl_init(&t, test_alloc_hook()), 0);
	cr_assert_eq(fold(5, 1, true), 0);
	crdt_buf b;
	tb_init(&b);
	rec(&b, 5, 2, false);
	for (size_t n = 0; n < b.len; n++)
		cr_assert_lt(crdt__acl_add(&t, b.data, n), 0, "prefix %zu", n);
	cr_assert(allows(5, 2));
	cr_assert_eq(t.n, 1);
	crdt_buf_fini(&b);
	crdt__acl_fini(&t);
	ASSERT_NO_LEAKS();
}

Test(acl, building_from_a_gset_is_all_or_nothing)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	crdt_replica_id self = test_id(1);
	crdt_gset *g;
	cr_assert_eq(crdt_gset_new(&cfg, &self, &g), 0);
	crdt_buf b;
	tb_init(&b);
	for (uint8_t w = 2; w < 12; w++) {
		rec(&b, w, w, true);
		crdt_dot d = { self, w };
		cr_assert_eq(crdt__gset_write(g, b.data, b.len, d, NULL, 0), 0);
	}
	crdt_buf_fini(&b);
	cr_assert_eq(crdt__acl_init(&t, test_alloc_hook()), 0);
	cr_assert_eq(fold(40, 1, true), 0);
	int rc = CRDT_ENOMEM;
	for (long n = 0; rc != 0 && n < 200; n++) {
		crdt__table nt;
		test_alloc_fail_at(n);
		rc = crdt__acl_build(&nt, test_alloc_hook(), g);
		test_alloc_disarm();
		if (rc == 0) {
			crdt__acl_swap(&t, &nt);
			break;
		}
		cr_assert_eq(rc, CRDT_ENOMEM);
		/* the old index is untouched */
		cr_assert(allows(40, 1) && !allows(2, 2));
	}
	cr_assert_eq(rc, 0);
	for (uint8_t w = 2; w < 12; w++)
		cr_assert(allows(w, w) && !allows(w, (uint64_t)w - 1));
	cr_assert(!allows(40, 1)); /* replaced */
	crdt__acl_fini(&t);
	crdt_gset_free(g);
	ASSERT_NO_LEAKS();
}
