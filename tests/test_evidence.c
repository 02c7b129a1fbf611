/*
 * White-box: the equivocation evidence store (crdt/evidence.h), below the
 * document. What every replica keeps, saves and sends of a signer that
 * signed one dot twice, so:
 *   - variants of a dot are kept once each, in byte order, and a dot left
 *     with one variant is dropped (remove, prune);
 *   - the bounds hold before anything is allocated: variants per dot,
 *     dots in all, bytes in all and a quarter of them per signer, so one
 *     signer cannot crowd out the others;
 *   - the written list is every variant, ascending by (dot, bytes);
 *   - a failed add changes nothing, and nothing leaks.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "evidence.h"
#include "test_alloc.h"
#include "test_util.h"

static crdt__evstore s;

static void
setup(void)
{
	test_alloc_reset();
}

TestSuite(evidence, .init = setup);

static crdt_dot
dot(uint8_t r, uint64_t c)
{
	crdt_dot d = { test_id(r), c };
	return d;
}

static int
add(crdt_dot d, uint32_t signer, const char *v)
{
	return crdt__ev_add(&s, d, signer, (const uint8_t *)v, strlen(v));
}

static void
done(void)
{
	crdt__ev_fini(&s);
	ASSERT_NO_LEAKS();
}

Test(evidence, variants_are_kept_once_in_byte_order)
{
	crdt__ev_init(&s, test_alloc_hook(), 16, 4, 1 << 20);
	cr_assert_eq(add(dot(1, 5), 0, "bbb"), 1);
	cr_assert_eq(add(dot(1, 5), 0, "aaa"), 1);
	cr_assert_eq(add(dot(1, 5), 0, "bbb"), 0); /* known */
	cr_assert_eq(add(dot(1, 2), 0, "zz"), 1);
	cr_assert_eq(add(dot(1, 2), 0, "yy"), 1);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(crdt__ev_variants(&s), 4);
	size_t at;
	const crdt__evid *e = crdt__ev_find(&s, dot(1, 5), &at);
	cr_assert_not_null(e);
	cr_assert_eq(at, 1); /* after (1, 2) */
	cr_assert(bytes_eq(e->v[0].bytes, e->v[0].len, "aaa", 3));
	cr_assert(bytes_eq(e->v[1].bytes, e->v[1].len, "bbb", 3));
	cr_assert(crdt__ev_has(e, (const uint8_t *)"aaa", 3));
	cr_assert(!crdt__ev_has(e, (const uint8_t *)"aa", 2));
	cr_assert(!crdt__ev_has(NULL, (const uint8_t *)"aaa", 3));
	cr_assert_null(crdt__ev_find(&s, dot(1, 3), &at));
	cr_assert_eq(at, 1);
	cr_assert_eq(s.bytes, 10);
	cr_assert_eq(s.signer[0], 10);
	done();
}

Test(evidence, a_dot_left_with_one_variant_goes)
{
	crdt__ev_init(&s, test_alloc_hook(), 16, 4, 1 << 20);
	cr_assert_eq(add(dot(1, 5), 3, "a"), 1);
	cr_assert_eq(add(dot(1, 5), 3, "b"), 1);
	cr_assert_eq(add(dot(2, 1), 3, "lone"), 1);
	crdt__ev_remove(&s, dot(1, 5), (const uint8_t *)"b", 1);
	size_t at;
	cr_assert_null(crdt__ev_find(&s, dot(1, 5), &at));
	cr_assert_not_null(crdt__ev_find(&s, dot(2, 1), &at));
	crdt__ev_prune(&s);
	cr_assert_eq(s.n, 0);
	cr_assert_eq(s.bytes, 0);
	cr_assert_eq(s.signer[3], 0);
	done();
}

Test(evidence, bounds_hold_before_anything_is_allocated)
{
	/* 2 dots, 3 variants a dot. */
	crdt__ev_init(&s, test_alloc_hook(), 2, 3, 1 << 20);
	cr_assert_eq(add(dot(1, 1), 0, "a"), 1);
	cr_assert_eq(add(dot(1, 1), 0, "b"), 1);
	cr_assert_eq(add(dot(1, 1), 0, "c"), 1);
	unsigned long calls = test_alloc_calls();
	cr_assert_eq(add(dot(1, 1), 0, "d"), CRDT_ETOOBIG); /* per dot */
	cr_assert_eq(add(dot(1, 2), 0, "e"), 1);
	calls = test_alloc_calls();
	cr_assert_eq(add(dot(1, 3), 1, "f"), CRDT_EBUFFULL); /* dots */
	cr_assert_eq(crdt__ev_fits(&s, dot(1, 2), 0, 1, 3), CRDT_ETOOBIG);
	cr_assert_eq(test_alloc_calls(), calls, "allocated before refusing");
	/* (1, 2)'s lone variant is kept but proves nothing: not counted. */
	cr_assert_eq(crdt__ev_variants(&s), 3);
	done();
}

/* A dot holding one variant is neither counted nor written, so every
 * evidence list written has two variants a dot or more and loads again
 * (a snapshot's buffered variant released with nothing to compare with
 * once made the save unloadable: fuzz/regressions/load). */
Test(evidence, a_lone_variant_is_kept_but_not_written)
{
	crdt__ev_init(&s, test_alloc_hook(), 8, 4, 1 << 20);
	cr_assert_eq(add(dot(1, 1), 0, "a"), 1);
	cr_assert_eq(add(dot(1, 1), 0, "b"), 1);
	cr_assert_eq(add(dot(2, 7), 0, "lone"), 1);
	cr_assert_eq(crdt__ev_variants(&s), 2);
	crdt_buf w;
	crdt_buf_init(&w, NULL);
	cr_assert_eq(crdt__ev_write(&s, &w), 0);
	/* [bin "a", bin "b"]: fixarray 2, then two 1-byte bins. */
	static const uint8_t want[] = { 0x92, 0xc4, 1, 'a', 0xc4, 1, 'b' };
	cr_assert(bytes_eq(w.data, w.len, want, sizeof want));
	/* It pairs with a second variant that comes later. */
	cr_assert_eq(add(dot(2, 7), 0, "more"), 1);
	cr_assert_eq(crdt__ev_variants(&s), 4);
	crdt_buf_fini(&w);
	done();
}

Test(evidence, one_signer_cannot_crowd_out_the_others)
{
	/* 400 bytes in all, so 100 a signer. */
	crdt__ev_init(&s, test_alloc_hook(), 64, 4, 400);
	char half[51];
	memset(half, 'x', 50);
	half[50] = 0;
	for (uint32_t r = 0; r < 4; r++) {
		half[0] = 'a';
		cr_assert_eq(add(dot((uint8_t)(r + 1), 1), r, half), 1);
		half[0] = 'b';
		cr_assert_eq(add(dot((uint8_t)(r + 1), 1), r, half), 1);
		/* Its share is full; a new dot of its own does not help. */
		half[0] = 'c';
		cr_assert_eq(add(dot((uint8_t)(r + 1), 2), r, half),
		    CRDT_ETOOBIG, "signer %u", r);
	}
	cr_assert_eq(s.bytes, 400);
	/* Everything is full now, whoever signs. */
	cr_assert_eq(crdt__ev_fits(&s, dot(9, 1), 8, 1, 1), CRDT_ETOOBIG);
	/* Signer 0's dot loses a variant, and with one left it goes: its
	 * bytes come off the total and off its share. Then a variant signed
	 * by no known replica is held to the total bound only. */
	half[0] = 'b';
	crdt__ev_remove(&s, dot(1, 1), (const uint8_t *)half, 50);
	cr_assert_eq(s.bytes, 300);
	cr_assert_eq(s.signer[0], 0);
	cr_assert_eq(crdt__ev_fits(&s, dot(9, 1), UINT32_MAX, 100, 2), 0);
	done();
}

Test(evidence, the_list_is_every_variant_by_dot_then_bytes)
{
	crdt__ev_init(&s, test_alloc_hook(), 16, 4, 1 << 20);
	cr_assert_eq(add(dot(2, 1), 0, "q"), 1);
	cr_assert_eq(add(dot(1, 9), 1, "n"), 1);
	cr_assert_eq(add(dot(2, 1), 0, "p"), 1);
	cr_assert_eq(add(dot(1, 9), 1, "m"), 1);
	crdt_buf out, want;
	tb_init(&out);
	tb_init(&want);
	cr_assert_eq(crdt__ev_write(&s, &out), 0);
	mp_array(&want, 4);
	mp_bin(&want, "m", 1);
	mp_bin(&want, "n", 1);
	mp_bin(&want, "p", 1);
	mp_bin(&want, "q", 1);
	cr_assert(bytes_eq(out.data, out.len, want.data, want.len), "%s",
	    hexs(out.data, out.len));
	crdt_buf_fini(&out);
	crdt_buf_fini(&want);
	done();
}

Test(evidence, a_failed_add_changes_nothing)
{
	crdt__ev_init(&s, test_alloc_hook(), 16, 4, 1 << 20);
	cr_assert_eq(add(dot(1, 1), 0, "a"), 1);
	int rc = 0;
	long n;
	for (n = 0; n < 16; n++) {
		test_alloc_fail_at(n);
		rc = add(dot(2, 1), 5, "new dot");
		bool fired = test_alloc_fired();
		test_alloc_disarm();
		if (!fired)
			break;
		cr_assert_eq(rc, CRDT_ENOMEM);
		size_t at;
		cr_assert_null(crdt__ev_find(&s, dot(2, 1), &at));
		cr_assert_eq(s.n, 1);
		cr_assert_eq(s.bytes, 1);
	}
	cr_assert_eq(rc, 1, "succeeded once no allocation failed");
	cr_assert_gt(n, 0);
	done();
}
