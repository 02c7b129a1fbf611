/*
 * White-box: a G-Set whose elements name their own dot (an identity of 24
 * bytes, as chat records do: crdt__gset_key_prefix) stores no dot per
 * element, only the exceptions: an element without an identity, or one
 * whose recorded dot is not its own (a merged state said so, or a write
 * lowered it). Whatever the mix, every element reports the dot a plain
 * set (dots stored per entry) reports for the same writes; undo, merge,
 * conversion of a populated set and allocation failures keep that.
 * Linked against the library's objects to reach the crdt__ symbols.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "internal.h"
#include "test_alloc.h"
#include "test_util.h"

static crdt_config cfg;
static test_clock clk;
static const uint8_t hkey[16] = { 1, 2, 3 };

static void
setup(void)
{
	test_alloc_reset();
	clk.ms = 1000;
	test_config(&cfg, &clk);
}

TestSuite(gset_implied, .init = setup);

/* Elements "D" + 16-byte replica + 8-byte counter (big-endian) + tail
 * name that dot; any other element has no identity. */
static size_t
ident(const uint8_t *p, size_t len, uint8_t *out)
{
	if (len < 25 || p[0] != 'D')
		return 0;
	memcpy(out, p + 1, 24);
	return 24;
}

static crdt_dot
dot(uint8_t r, uint64_t c)
{
	crdt_dot d = { test_id(r), c };
	return d;
}

/* Element k: named by dot (r, c) when `named`, else a bare string. */
static size_t
elem(uint8_t *b, bool named, crdt_dot d, unsigned k)
{
	if (!named)
		return (size_t)snprintf((char *)b, 32, "bare-%u", k);
	b[0] = 'D';
	memcpy(b + 1, d.replica.bytes, 16);
	for (int i = 0; i < 8; i++)
		b[17 + i] = (uint8_t)(d.counter >> (56 - 8 * i));
	return 25 + (size_t)snprintf((char *)b + 25, 16, "#%u", k);
}

static crdt_gset *
set_new(bool implied)
{
	crdt_gset *s;
	crdt_replica_id self = test_id(9);
	cr_assert_eq(crdt_gset_new(&cfg, &self, &s), 0);
	if (implied)
		cr_assert_eq(crdt__gset_key_prefix(s, ident, hkey), 0);
	return s;
}

static void
encode(const crdt_gset *s, crdt_buf *b)
{
	crdt_buf_clear(b);
	cr_assert_eq(crdt_gset_encode(s, b), 0);
}

static void
assert_same(const crdt_gset *a, const crdt_gset *b, const char *when)
{
	crdt_buf x, y;
	tb_init(&x);
	tb_init(&y);
	encode(a, &x);
	encode(b, &y);
	cr_assert(x.len == y.len && memcmp(x.data, y.data, x.len) == 0,
	    "%s: the sets encode differently", when);
	cr_assert(crdt_gset_equal(a, b), "%s: not equal", when);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

/* Write element k with `d` into both sets. */
static void
put_both(crdt_gset *p, crdt_gset *q, bool named, crdt_dot own, unsigned k,
    crdt_dot d)
{
	uint8_t b[64];
	size_t n = elem(b, named, own, k);
	cr_assert_eq(crdt__gset_write(p, b, n, d, NULL, 0), 0);
	cr_assert_eq(crdt__gset_write(q, b, n, d, NULL, 0), 0);
}

/* Own dots, other dots, bare elements, lowered dots: the implied set
 * reports what the plain one does, element by element. */
Test(gset_implied, every_kind_of_element_reports_the_plain_sets_dot)
{
	crdt_gset *plain = set_new(false), *imp = set_new(true);
	for (unsigned k = 0; k < 600; k++) {
		crdt_dot own = dot((uint8_t)(1 + k % 3), 10 + k);
		switch (k % 4) {
		case 0: /* its own dot: no exception */
			put_both(plain, imp, true, own, k, own);
			break;
		case 1: /* a later dot than its own */
			put_both(plain, imp, true, own, k, dot(4, 1000 + k));
			break;
		case 2: /* no identity */
			put_both(plain, imp, false, own, k, dot(5, 1 + k));
			break;
		default: /* own, then lowered below it, then a higher one
			  * that must not raise it */
			put_both(plain, imp, true, own, k, own);
			put_both(plain, imp, true, own, k, dot(1, 1));
			put_both(plain, imp, true, own, k, dot(8, 1 << 20));
			break;
		}
	}
	assert_same(plain, imp, "after the writes");
	for (unsigned k = 0; k < 600; k++) {
		uint8_t b[64];
		crdt_dot own = dot((uint8_t)(1 + k % 3), 10 + k), x, y;
		size_t n = elem(b, k % 4 != 2, own, k);
		cr_assert_eq(crdt_gset_lookup(plain, b, n, &x), 0);
		cr_assert_eq(crdt_gset_lookup(imp, b, n, &y), 0);
		cr_assert_eq(crdt_dot_cmp(x, y), 0, "element %u", k);
	}
	crdt_gset_free(plain);
	crdt_gset_free(imp);
	ASSERT_NO_LEAKS();
}

/* A rolled-back transaction restores lowered dots and removes new
 * elements; an element inserted later at a popped element's index does
 * not inherit the popped one's exception. */
Test(gset_implied, rollback_restores_dots_and_leaves_no_stale_exception)
{
	crdt_gset *plain = set_new(false), *imp = set_new(true);
	put_both(plain, imp, true, dot(1, 5), 0, dot(1, 5));
	put_both(plain, imp, true, dot(1, 6), 1, dot(2, 9));
	crdt__undo u = { .a = &cfg.alloc };
	uint8_t b[64];
	size_t n = elem(b, true, dot(1, 5), 0);
	cr_assert_eq(crdt__gset_write(imp, b, n, dot(1, 1), &u, 0), 0);
	n = elem(b, true, dot(1, 6), 1);
	cr_assert_eq(crdt__gset_write(imp, b, n, dot(1, 2), &u, 0), 0);
	n = elem(b, true, dot(3, 7), 2); /* new, with another dot */
	cr_assert_eq(crdt__gset_write(imp, b, n, dot(3, 1), &u, 0), 0);
	crdt__undo_rollback(&u);
	assert_same(plain, imp, "after the rollback");
	/* The popped element's index, now with its own dot. */
	put_both(plain, imp, true, dot(3, 8), 3, dot(3, 8));
	assert_same(plain, imp, "after an insert at the popped index");
	crdt__undo_fini(&u);
	crdt_gset_free(plain);
	crdt_gset_free(imp);
	ASSERT_NO_LEAKS();
}

/* Merges between every pairing of plain and implied sets agree, new
 * elements and lowered ones alike. */
Test(gset_implied, merges_agree_with_plain_sets)
{
	for (int mode = 0; mode < 4; mode++) {
		crdt_gset *pd = set_new(false), *ps = set_new(false);
		crdt_gset *id = set_new(mode & 1), *is = set_new(mode & 2);
		for (unsigned k = 0; k < 200; k++) {
			crdt_dot own = dot(1, 100 + k);
			if (k % 3 != 0)
				put_both(pd, id, k % 5 != 0, own, k,
				    k % 2 ? own : dot(2, 500 + k));
			if (k % 2 == 0)
				put_both(ps, is, k % 5 != 0, own, k,
				    k % 4 ? dot(1, 1 + k) : own);
		}
		cr_assert_eq(crdt_gset_merge(pd, ps), 0);
		cr_assert_eq(crdt_gset_merge(id, is), 0);
		assert_same(pd, id, "merged");
		crdt_gset_free(pd);
		crdt_gset_free(ps);
		crdt_gset_free(id);
		crdt_gset_free(is);
	}
	ASSERT_NO_LEAKS();
}

/* A populated plain set converts in place: same dots, same encoding, and
 * it keeps working. Out of memory at any step leaves it as it was. */
Test(gset_implied, converting_a_populated_set_keeps_every_dot)
{
	crdt_gset *ref = set_new(false);
	for (unsigned k = 0; k < 300; k++)
		put_both(ref, ref, k % 7 != 0, dot(2, 1 + k), k,
		    k % 3 ? dot(2, 1 + k) : dot(6, k + 1));
	crdt_buf want, got;
	tb_init(&want);
	tb_init(&got);
	encode(ref, &want);
	bool done = false;
	for (long f = 0; !done && f < 64; f++) {
		crdt_gset *s;
		crdt_buf enc;
		tb_init(&enc);
		crdt_replica_id self = test_id(9);
		cr_assert_eq(crdt_gset_new(&cfg, &self, &s), 0);
		cr_assert_eq(crdt_gset_merge(s, ref), 0);
		test_alloc_fail_at(f);
		int rc = crdt__gset_key_prefix(s, ident, hkey);
		bool fired = test_alloc_fired();
		test_alloc_disarm();
		if (fired) {
			cr_assert_eq(rc, CRDT_ENOMEM, "failure %ld: %d", f, rc);
		} else {
			cr_assert_eq(rc, 0);
			done = true;
		}
		encode(s, &got);
		cr_assert(got.len == want.len &&
		    memcmp(got.data, want.data, got.len) == 0,
		    "failure %ld: the set changed", f);
		/* Still usable: a new element and a lowered one. */
		uint8_t b[64];
		size_t n = elem(b, true, dot(2, 1), 0);
		cr_assert_eq(crdt__gset_write(s, b, n, dot(1, 1), NULL, 0), 0);
		crdt_dot x;
		cr_assert_eq(crdt_gset_lookup(s, b, n, &x), 0);
		cr_assert_eq(crdt_dot_cmp(x, dot(1, 1)), 0);
		crdt_buf_fini(&enc);
		crdt_gset_free(s);
	}
	cr_assert(done, "the conversion never succeeded");
	crdt_buf_fini(&want);
	crdt_buf_fini(&got);
	crdt_gset_free(ref);
	ASSERT_NO_LEAKS();
}

/* An element named by its own dot costs a bare key: the implied set of
 * 4,096 such elements holds about half the entry bytes of the plain one. */
Test(gset_implied, own_dots_are_not_stored)
{
	size_t live[2];
	for (int imp = 0; imp < 2; imp++) {
		test_alloc_reset();
		crdt_gset *s = set_new(imp);
		size_t base = test_alloc_live_bytes();
		for (unsigned k = 0; k < 4096; k++) {
			uint8_t b[64];
			size_t n = elem(b, true, dot(1, 1 + k), k);
			cr_assert_eq(crdt__gset_write(s, b, n, dot(1, 1 + k),
			    NULL, 0), 0);
		}
		live[imp] = test_alloc_live_bytes() - base;
		crdt_gset_free(s);
	}
	/* 4,096 entries: 48 bytes each in a plain set, 24 here. */
	cr_assert_geq(live[0] - live[1], 4096 * 24,
	    "plain %zu bytes, implied %zu", live[0], live[1]);
	ASSERT_NO_LEAKS();
}

/* What the last write tells the chat index: 0 when no element shared the
 * new element's identity (the fold then skips looking for a node with
 * its dot), the number that did otherwise, SIZE_MAX without an identity
 * prefix. A rival of a known identity must never read 0. */
Test(gset_implied, the_last_write_counts_elements_of_its_identity)
{
	crdt_gset *s = set_new(true), *plain = set_new(false);
	uint8_t b[64];
	size_t n;
	for (unsigned k = 0; k < 50; k++) {
		n = elem(b, true, dot(1, 1 + k), k);
		cr_assert_eq(crdt__gset_write(s, b, n, dot(1, 1 + k), NULL, 0),
		    0);
		cr_assert_eq(crdt__gset_last_chain(s), 0, "element %u", k);
		cr_assert_eq(crdt__gset_write(plain, b, n, dot(1, 1 + k), NULL,
		    0), 0);
		cr_assert_eq(crdt__gset_last_chain(plain), SIZE_MAX);
	}
	/* Rivals: the same identity, other bytes. */
	for (unsigned v = 1; v <= 3; v++) {
		n = elem(b, true, dot(1, 7), 100 + v);
		cr_assert_eq(crdt__gset_write(s, b, n, dot(1, 7), NULL, 0), 0);
		cr_assert_eq(crdt__gset_last_chain(s), v, "rival %u", v);
	}
	/* A bare element is hashed whole: it shares no identity. */
	n = elem(b, false, dot(1, 1), 7);
	cr_assert_eq(crdt__gset_write(s, b, n, dot(2, 1), NULL, 0), 0);
	cr_assert_eq(crdt__gset_last_chain(s), 0);
	crdt_gset_free(s);
	crdt_gset_free(plain);
	ASSERT_NO_LEAKS();
}

/* The entries of one identity, found through the set's own table (the
 * chat index's dot -> node): every rival, nothing of another identity,
 * before and after the table grows. */
Test(gset_implied, the_entries_of_an_identity_are_found_by_its_hash)
{
	crdt_gset *s = set_new(true);
	uint8_t b[64], id[24];
	size_t n;
	for (unsigned k = 0; k < 300; k++) {
		n = elem(b, true, dot(1, 1 + k), k);
		cr_assert_eq(crdt__gset_write(s, b, n, dot(1, 1 + k), NULL, 0),
		    0);
		if (k % 50 == 7) { /* a rival of the same dot */
			n = elem(b, true, dot(1, 1 + k), 1000 + k);
			cr_assert_eq(crdt__gset_write(s, b, n, dot(1, 1 + k),
			    NULL, 0), 0);
		}
	}
	for (unsigned k = 0; k < 301; k++) {
		n = elem(b, true, dot(1, 1 + k), k);
		memcpy(id, b + 1, 24);
		uint32_t h = (uint32_t)(crdt__siphash(hkey, id, 24) >> 32);
		size_t pos = 0, i, found = 0;
		while ((i = crdt__gset_ident_next(s, id, 24, h, &pos)) !=
		    SIZE_MAX) {
			const crdt__key *e = crdt__gset_entry_key(s, i);
			cr_assert(memcmp(e->ptr + 1, id, 24) == 0);
			found++;
		}
		size_t want = k == 300 ? 0 : k % 50 == 7 ? 2 : 1;
		cr_assert_eq(found, want, "dot %u: %zu entries", k, found);
	}
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}

/* A table's slot keeps an entry index in 27 bits and a tag of the hash
 * above it: the table refuses to grow past CRDT__TABLE_MAX entries
 * (white-box: the count is set as if the table held that many) and
 * changes nothing; a lookup's tag never hides an entry (every element
 * written is found, rivals sharing a hash included). */
Test(gset_implied, a_table_stops_at_its_index_bits_and_its_tags_hide_nothing)
{
	crdt__table t;
	cr_assert_eq(crdt__table_init(&t, &cfg.alloc, sizeof(crdt__key)), 0);
	cr_assert_eq(crdt__table_reserve(&t, 4), 0);
	size_t n0 = t.n, cap0 = t.cap, ns0 = t.nslots;
	t.n = CRDT__TABLE_MAX;
	cr_assert_eq(crdt__table_reserve(&t, 1), CRDT_ETOOBIG);
	cr_assert_eq(t.cap, cap0);
	cr_assert_eq(t.nslots, ns0);
	t.n = CRDT__TABLE_MAX - 1;
	cr_assert_eq(crdt__table_reserve(&t, 2), CRDT_ETOOBIG);
	t.n = n0;
	crdt__table_fini(&t, NULL);

	crdt_gset *s = set_new(true);
	uint8_t b[64];
	for (unsigned k = 0; k < 5000; k++) {
		size_t n = elem(b, k % 3 != 0, dot(2, 1 + k / 2), k);
		cr_assert_eq(crdt__gset_write(s, b, n, dot(2, 1 + k / 2), NULL,
		    0), 0);
	}
	for (unsigned k = 0; k < 5000; k++) {
		size_t n = elem(b, k % 3 != 0, dot(2, 1 + k / 2), k);
		cr_assert(crdt_gset_contains(s, b, n), "element %u lost", k);
	}
	cr_assert_eq(crdt_gset_size(s), 5000);
	crdt_gset_free(s);
	ASSERT_NO_LEAKS();
}
