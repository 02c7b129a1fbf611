/*
 * White-box: the causal buffer's structures (crdt/causal.h), below the
 * document:
 *   - a wait heap releases entries by ascending counter, each once;
 *   - the dot table finds every dot it holds and none it does not, across
 *     growth and backward-shift deletion (checked against a plain list);
 *   - a failed growth leaves the table as it was, and nothing leaks.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "causal.h"
#include "test_alloc.h"
#include "test_rng.h"

static void
setup(void)
{
	test_alloc_reset();
}

TestSuite(causal, .init = setup);

Test(causal, heap_releases_by_ascending_counter)
{
	test_rng rng;
	test_rng_init(&rng, test_seed(UINT64_C(0xca05a1)));
	crdt__wheap h;
	memset(&h, 0, sizeof h);
	enum { N = 1000 };
	static bool seen[N];
	for (uint32_t i = 0; i < N; i++) {
		cr_assert_eq(crdt__wheap_reserve(&h, test_alloc_hook()), 0);
		crdt__wheap_push(&h, (crdt__wait){ test_rng_below(&rng, 64),
		    i });
	}
	uint64_t prev = 0;
	for (size_t i = 0; i < N; i++) {
		crdt__wait w = crdt__wheap_pop(&h);
		cr_assert_geq(w.c, prev);
		cr_assert(w.msg < N && !seen[w.msg]);
		seen[w.msg] = true;
		prev = w.c;
	}
	cr_assert_eq(h.n, 0);
	crdt__wheap_fini(&h, test_alloc_hook());
	ASSERT_NO_LEAKS();
}

/* Pushes and pops mixed at random, heap sizes 0 .. ~600 (every shape of
 * a last level): each pop is the smallest counter a plain list holds. */
Test(causal, heap_matches_a_plain_list_under_mixed_pushes_and_pops)
{
	test_rng rng;
	test_rng_init(&rng, test_seed(UINT64_C(0xca05a2)));
	crdt__wheap h;
	memset(&h, 0, sizeof h);
	enum { OPS = 20000, MAXN = 700 };
	static uint64_t ref_c[MAXN];
	size_t rn = 0;
	for (uint32_t op = 0; op < OPS; op++) {
		/* Grow for the first half, shrink for the second. */
		bool push = rn == 0 || (rn < MAXN &&
		    test_rng_below(&rng, 100) < (op < OPS / 2 ? 60 : 40));
		if (push) {
			uint64_t c = test_rng_below(&rng, 1000);
			cr_assert_eq(crdt__wheap_reserve(&h, test_alloc_hook()),
			    0);
			crdt__wheap_push(&h, (crdt__wait){ c, op });
			ref_c[rn++] = c;
			continue;
		}
		size_t at = 0;
		for (size_t k = 1; k < rn; k++)
			if (ref_c[k] < ref_c[at])
				at = k;
		crdt__wait w = crdt__wheap_pop(&h);
		cr_assert_eq(w.c, ref_c[at], "op %u", op);
		ref_c[at] = ref_c[--rn];
		cr_assert_eq(h.n, rn);
	}
	crdt__wheap_fini(&h, test_alloc_hook());
	ASSERT_NO_LEAKS();
}

typedef struct ref {
	uint32_t r;
	uint64_t c;
	uint32_t msg;
} ref;

Test(causal, dot_table_matches_a_plain_list)
{
	test_rng rng;
	test_rng_init(&rng, test_seed(UINT64_C(0xd075)));
	crdt__dots t;
	cr_assert_eq(crdt__dots_init(&t, test_alloc_hook()), 0);
	enum { OPS = 4000, CAP = 600 };
	static ref live[CAP];
	size_t n = 0;
	for (uint32_t op = 0; op < OPS; op++) {
		/* few replicas and counters: probe chains collide often */
		uint32_t r = (uint32_t)test_rng_below(&rng, 4);
		uint64_t c = 1 + test_rng_below(&rng, 200);
		size_t at = n;
		for (size_t i = 0; i < n; i++)
			if (live[i].r == r && live[i].c == c)
				at = i;
		crdt__dotslot *s = crdt__dots_find(&t, r, c);
		cr_assert_eq(s != NULL, at < n);
		if (at < n) {
			cr_assert_eq(s->msg, live[at].msg);
			if (test_rng_chance(&rng, 1, 2)) {
				crdt__dots_remove(&t, s);
				live[at] = live[--n];
			}
		} else if (n < CAP) {
			cr_assert_eq(crdt__dots_reserve(&t), 0);
			crdt__dots_insert(&t, r, c, op);
			live[n++] = (ref){ r, c, op };
		}
		cr_assert_eq(t.n, n);
	}
	for (size_t i = 0; i < n; i++) {
		crdt__dotslot *s = crdt__dots_find(&t, live[i].r, live[i].c);
		cr_assert_not_null(s);
		cr_assert_eq(s->msg, live[i].msg);
	}
	crdt__dots_fini(&t);
	ASSERT_NO_LEAKS();
}

Test(causal, failed_growth_leaves_the_table_as_it_was)
{
	crdt__dots t;
	cr_assert_eq(crdt__dots_init(&t, test_alloc_hook()), 0);
	uint32_t k = 0;
	/* Fill to the growth point (half the slots), then fail it. */
	for (;;) {
		cr_assert_eq(crdt__dots_reserve(&t), 0);
		k++;
		crdt__dots_insert(&t, 1, k, k);
		size_t before = t.nslots;
		test_alloc_fail_at(0);
		int rc = crdt__dots_reserve(&t);
		test_alloc_disarm();
		if (rc != 0) {
			cr_assert_eq(rc, CRDT_ENOMEM);
			cr_assert_eq(t.nslots, before);
			break;
		}
		cr_assert(k < 1000);
	}
	for (uint32_t i = 1; i <= k; i++) {
		crdt__dotslot *s = crdt__dots_find(&t, 1, i);
		cr_assert_not_null(s);
		cr_assert_eq(s->msg, i);
	}
	cr_assert_eq(crdt__dots_reserve(&t), 0);
	crdt__dots_fini(&t);
	ASSERT_NO_LEAKS();
}
