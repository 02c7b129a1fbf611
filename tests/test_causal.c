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

/* Every dot of the reference list is found with its message, and
 * nothing else is. */
static void
check_all(const crdt__dots *t, const ref *live, size_t n)
{
	uint32_t m;
	cr_assert_eq(t->total, n);
	for (size_t i = 0; i < n; i++) {
		cr_assert(crdt__dots_get(t, live[i].r, live[i].c, &m),
		    "dot (%u, %llu) lost", live[i].r,
		    (unsigned long long)live[i].c);
		cr_assert_eq(m, live[i].msg);
	}
}

/*
 * Random inserts, lookups, head changes and removals against a plain
 * list. Counters are mostly dense per replica (the rings), some near the
 * window's edges, some far ahead or far behind (the hash table), and
 * removals come both from the bottom (release order) and anywhere.
 */
Test(causal, dot_table_matches_a_plain_list)
{
	test_rng rng;
	test_rng_init(&rng, test_seed(UINT64_C(0xd075)));
	crdt__dots t;
	cr_assert_eq(crdt__dots_init(&t, test_alloc_hook()), 0);
	enum { OPS = 20000, CAP = 900 };
	static ref live[CAP];
	size_t n = 0;
	uint64_t base[5] = { 1, 1, 1, 1, 1 };
	for (uint32_t op = 0; op < OPS; op++) {
		uint32_t r = (uint32_t)test_rng_below(&rng, 5);
		uint64_t c;
		unsigned kind = (unsigned)test_rng_below(&rng, 100);
		if (kind < 80)
			c = base[r] + test_rng_below(&rng, 300);
		else if (kind < 90)
			c = base[r] + test_rng_below(&rng, 1u << 20);
		else if (kind < 95)
			c = UINT64_MAX - test_rng_below(&rng, 4);
		else
			c = 1 + test_rng_below(&rng, 8);
		size_t at = n;
		for (size_t i = 0; i < n; i++)
			if (live[i].r == r && live[i].c == c)
				at = i;
		uint32_t m;
		cr_assert_eq(crdt__dots_get(&t, r, c, &m), at < n);
		if (at < n) {
			cr_assert_eq(m, live[at].msg);
			unsigned what = (unsigned)test_rng_below(&rng, 3);
			if (what == 0) {
				crdt__dots_set(&t, r, c, op);
				live[at].msg = op;
			} else if (what == 1) {
				crdt__dots_remove(&t, r, c);
				live[at] = live[--n];
			}
		} else if (n < CAP) {
			cr_assert_eq(crdt__dots_reserve(&t, r, c, 0), 0);
			crdt__dots_insert(&t, r, c, 0, op);
			live[n++] = (ref){ r, c, op };
		}
		/* Release order: replica r's lowest dot leaves. */
		if (test_rng_chance(&rng, 1, 3)) {
			size_t lo = n;
			for (size_t i = 0; i < n; i++)
				if (live[i].r == r &&
				    (lo == n || live[i].c < live[lo].c))
					lo = i;
			if (lo < n) {
				crdt__dots_remove(&t, r, live[lo].c);
				if (live[lo].c < UINT64_MAX - 8)
					base[r] = live[lo].c + 1;
				live[lo] = live[--n];
			}
		}
		if (op % 500 == 0)
			check_all(&t, live, n);
	}
	check_all(&t, live, n);
	/* Drain: everything goes, and the table is usable again. */
	while (n > 0) {
		crdt__dots_remove(&t, live[n - 1].r, live[n - 1].c);
		n--;
	}
	cr_assert_eq(t.total, 0);
	cr_assert_eq(t.n, 0);
	crdt__dots_fini(&t);
	cr_assert_eq(crdt__dots_reserve(&t, 3, 7, 0), 0);
	crdt__dots_insert(&t, 3, 7, 0, 1);
	check_all(&t, &(ref){ 3, 7, 1 }, 1);
	crdt__dots_fini(&t);
	ASSERT_NO_LEAKS();
}

/* A writer's counters far apart go to the hash table, so a ring is never
 * much larger than the dots it holds; a dense run stays in the ring. */
Test(causal, rings_stay_within_four_cells_a_dot)
{
	crdt__dots t;
	cr_assert_eq(crdt__dots_init(&t, test_alloc_hook()), 0);
	for (uint64_t i = 0; i < 1000; i++) {
		uint64_t c = 1 + i * 7; /* sparser than 4 cells a dot */
		cr_assert_eq(crdt__dots_reserve(&t, 0, c, 0), 0);
		crdt__dots_insert(&t, 0, c, 0, (uint32_t)i);
		cr_assert_leq(t.rg[0].cap, 2 * (4 * t.rg[0].n + 8));
	}
	cr_assert_geq(t.n, 990, "sparse counters are hashed");
	for (uint64_t c = 5000000; c < 5010000; c++) { /* dense */
		cr_assert_eq(crdt__dots_reserve(&t, 1, c, 0), 0);
		crdt__dots_insert(&t, 1, c, 0, (uint32_t)c);
	}
	cr_assert_eq(t.rg[1].n, 10000, "a dense run stays in its ring");
	cr_assert_leq(t.rg[1].cap, 16384);
	uint32_t m;
	for (uint64_t i = 0; i < 1000; i++)
		cr_assert(crdt__dots_get(&t, 0, 1 + i * 7, &m) && m == i);
	/* Released in counter order, the window follows. */
	for (uint64_t c = 5000000; c < 5010000; c++) {
		crdt__dots_remove(&t, 1, c);
		cr_assert(!crdt__dots_get(&t, 1, c, &m));
	}
	cr_assert_eq(t.rg[1].n, 0);
	/* With `allow` (the replica's buffered bytes / 8), counters spread
	 * over a range that size stay in the ring, and never more. */
	test_rng rng;
	test_rng_init(&rng, test_seed(UINT64_C(0xd076)));
	for (uint32_t i = 0; i < 2000; i++) {
		uint64_t c = 1 + test_rng_below(&rng, 100000);
		if (crdt__dots_get(&t, 2, c, &m))
			continue;
		cr_assert_eq(crdt__dots_reserve(&t, 2, c, 100000), 0);
		crdt__dots_insert(&t, 2, c, 100000, i);
	}
	cr_assert_gt(t.rg[2].n, 1900, "spread counters within `allow`");
	cr_assert_leq(t.rg[2].cap, 131072);
	size_t hashed = t.n;
	cr_assert_eq(crdt__dots_reserve(&t, 2, 300000, 100000), 0);
	crdt__dots_insert(&t, 2, 300000, 100000, 1);
	cr_assert_eq(t.n, hashed + 1, "beyond `allow`: hashed");
	cr_assert_leq(t.rg[2].cap, 131072);
	crdt__dots_fini(&t);
	ASSERT_NO_LEAKS();
}

/* Every allocation a reserve makes (the replica array, a ring's growth,
 * the hash table's) fails cleanly: CRDT_ENOMEM, every dot still found,
 * and the next reserve succeeds. */
Test(causal, failed_growth_leaves_the_table_as_it_was)
{
	crdt__dots t;
	cr_assert_eq(crdt__dots_init(&t, test_alloc_hook()), 0);
	static ref live[3000];
	size_t n = 0, fails = 0;
	for (uint32_t k = 0; k < 3000; k++) {
		/* Replicas 0..39 (the replica array grows), dense counters
		 * (rings grow) and every tenth far ahead (the hash). */
		uint32_t r = k % 40;
		uint64_t c = k % 10 == 9 ? (uint64_t)k << 30 : 1 + k / 40;
		test_alloc_fail_at(0);
		int rc = crdt__dots_reserve(&t, r, c, 0);
		test_alloc_disarm();
		if (rc != 0) {
			cr_assert_eq(rc, CRDT_ENOMEM);
			fails++;
			check_all(&t, live, n);
			cr_assert_eq(crdt__dots_reserve(&t, r, c, 0), 0);
		}
		crdt__dots_insert(&t, r, c, 0, k);
		live[n++] = (ref){ r, c, k };
	}
	cr_assert_gt(fails, 10);
	check_all(&t, live, n);
	crdt__dots_fini(&t);
	ASSERT_NO_LEAKS();
}
