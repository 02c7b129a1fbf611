/*
 * White-box: the undo log behind atomic document transactions
 * (crdt__gset_write / crdt__lww_write / crdt__map_write with a crdt__undo,
 * then rollback or commit). The document runtime relies on it to make a
 * message all-or-nothing, so:
 *   - rollback restores every object exactly: same canonical encoding,
 *     same size, and the hash slots still find every old entry and none
 *     of the rolled-back ones (crdt__table_pop's LIFO argument);
 *   - commit gives the same state as applying the writes as ops;
 *   - an allocation failure inside a transaction is ENOMEM, records
 *     nothing half-done, and rollback still restores the start;
 *   - objects stay usable afterwards and nothing leaks.
 * Linked against the library's objects to reach the crdt__ symbols.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "internal.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

#define ROUNDS 1500
#define MAX_WRITES 12
#define DEFAULT_SEED UINT64_C(0x0dd0c0de)

static crdt_config cfg;
static test_clock clk;
static crdt_replica_id ids[3];

static void
setup(void)
{
	test_alloc_reset();
	clk.ms = 1000;
	test_config(&cfg, &clk);
	for (int i = 0; i < 3; i++)
		ids[i] = test_id((uint8_t)(i + 1));
}

TestSuite(undo, .init = setup);

typedef struct objs {
	crdt_gset *g;
	crdt_lww *r;
	crdt_lww_map *m;
} objs;

typedef struct encs {
	crdt_buf g, r, m;
	size_t gsize, msize;
} encs;

static void
snap(const objs *o, encs *e)
{
	tb_init(&e->g);
	tb_init(&e->r);
	tb_init(&e->m);
	cr_assert_eq(crdt_gset_encode(o->g, &e->g), 0);
	cr_assert_eq(crdt_lww_encode(o->r, &e->r), 0);
	cr_assert_eq(crdt_lww_map_encode(o->m, &e->m), 0);
	e->gsize = crdt_gset_size(o->g);
	e->msize = crdt_lww_map_size(o->m);
}

static void
encs_fini(encs *e)
{
	crdt_buf_fini(&e->g);
	crdt_buf_fini(&e->r);
	crdt_buf_fini(&e->m);
}

static void
objs_from(const encs *e, objs *o)
{
	cr_assert_eq(crdt_gset_decode(&cfg, &ids[0], e->g.data, e->g.len,
			 &o->g), 0);
	cr_assert_eq(crdt_lww_decode(&cfg, &ids[0], e->r.data, e->r.len,
			 &o->r), 0);
	cr_assert_eq(crdt_lww_map_decode(&cfg, &ids[0], e->m.data, e->m.len,
			 &o->m), 0);
}

static void
objs_free(objs *o)
{
	crdt_gset_free(o->g);
	crdt_lww_free(o->r);
	crdt_lww_map_free(o->m);
}

/* Same state, checked both ways: encodings (entry arrays, sorted) and
 * equal() (which looks every entry of `ref` up through `o`'s slots). */
static void
expect_state(const objs *o, const objs *ref, uint64_t seed, int round,
    const char *what)
{
	encs a, b;
	snap(o, &a);
	snap(ref, &b);
	cr_assert(bytes_eq(a.g.data, a.g.len, b.g.data, b.g.len),
	    "seed=0x%llx round %d %s: gset differs", (unsigned long long)seed,
	    round, what);
	cr_assert(bytes_eq(a.r.data, a.r.len, b.r.data, b.r.len),
	    "seed=0x%llx round %d %s: lww differs", (unsigned long long)seed,
	    round, what);
	cr_assert(bytes_eq(a.m.data, a.m.len, b.m.data, b.m.len),
	    "seed=0x%llx round %d %s: map differs", (unsigned long long)seed,
	    round, what);
	cr_assert_eq(a.gsize, b.gsize, "round %d %s", round, what);
	cr_assert_eq(a.msize, b.msize, "round %d %s: map size", round, what);
	cr_assert(crdt_gset_equal(ref->g, o->g), "round %d %s", round, what);
	cr_assert(crdt_gset_equal(o->g, ref->g), "round %d %s", round, what);
	cr_assert(crdt_lww_equal(o->r, ref->r), "round %d %s", round, what);
	cr_assert(crdt_lww_map_equal(ref->m, o->m), "round %d %s", round,
	    what);
	cr_assert(crdt_lww_map_equal(o->m, ref->m), "round %d %s", round,
	    what);
	encs_fini(&a);
	encs_fini(&b);
}

static size_t
rnd_str(test_rng *r, uint8_t *s, size_t max)
{
	size_t n = (size_t)test_rng_below(r, max + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = (uint8_t)("abc\0"[test_rng_below(r, 4)]);
	return n;
}

/* One random write, recorded in `u` on `o` and also appended as an
 * equivalent op to `ops` (kind byte first) for the reference objects. */
typedef struct op_rec {
	int kind; /* 0 gset, 1 lww, 2 map */
	crdt_buf bytes;
} op_rec;

static int
random_write(test_rng *r, objs *o, crdt__undo *u, op_rec *rec)
{
	uint8_t a[4], b[4];
	size_t an = rnd_str(r, a, 3), bn = rnd_str(r, b, 3);
	crdt_replica_id id = ids[test_rng_below(r, 3)];
	uint64_t hlc = CRDT_HLC_PACK(1000 + test_rng_below(r, 3),
	    test_rng_below(r, 3));
	bool present = !test_rng_chance(r, 1, 4);
	rec->kind = (int)test_rng_below(r, 3);
	tb_init(&rec->bytes);
	switch (rec->kind) {
	case 0: {
		crdt_dot d = { id, 1 + test_rng_below(r, 4) };
		mk_gset_op(&rec->bytes, id, d.counter, a, an);
		return crdt__gset_write(o->g, a, an, d, u, 0);
	}
	case 1:
		mk_lww_op(&rec->bytes, hlc, id, present, b, bn);
		return crdt__lww_write(o->r, hlc, &id, present, b, bn, u, 1);
	default:
		mk_map_op(&rec->bytes, hlc, id, present, b, bn, a, an);
		return crdt__map_write(o->m, a, an, hlc, &id, present, b, bn,
		    u, 2);
	}
}

static void
apply_rec(objs *o, const op_rec *rec)
{
	int rc = rec->kind == 0 ?
	    crdt_gset_apply_op(o->g, rec->bytes.data, rec->bytes.len) :
	    rec->kind == 1 ?
	    crdt_lww_apply_op(o->r, rec->bytes.data, rec->bytes.len) :
	    crdt_lww_map_apply_op(o->m, rec->bytes.data, rec->bytes.len);
	cr_assert_eq(rc, 0, "reference apply: %s", crdt_err_name(rc));
}

/* Start state: a few committed-looking entries through the public API. */
static void
initial(test_rng *r, objs *o)
{
	cr_assert_eq(crdt_gset_new(&cfg, &ids[0], &o->g), 0);
	cr_assert_eq(crdt_lww_new(&cfg, &ids[0], &o->r), 0);
	cr_assert_eq(crdt_lww_map_new(&cfg, &ids[0], &o->m), 0);
	int n = (int)test_rng_below(r, 20);
	crdt__undo u = { .a = &cfg.alloc };
	for (int i = 0; i < n; i++) {
		op_rec rec;
		cr_assert_eq(random_write(r, o, &u, &rec), 0);
		crdt_buf_fini(&rec.bytes);
	}
	crdt__undo_commit(&u);
	crdt__undo_fini(&u);
}

static void
run(bool inject_oom)
{
	uint64_t seed = test_seed(DEFAULT_SEED) ^ (inject_oom ? 1 : 0);
	test_rng r;
	test_rng_init(&r, seed);
	for (int round = 0; round < ROUNDS; round++) {
		objs o, before, expect;
		encs e0;
		initial(&r, &o);
		snap(&o, &e0);
		objs_from(&e0, &before);
		objs_from(&e0, &expect);

		crdt__undo u = { .a = &cfg.alloc };
		op_rec recs[MAX_WRITES];
		int nw = 1 + (int)test_rng_below(&r, MAX_WRITES);
		bool failed = false;
		if (inject_oom)
			test_alloc_fail_at((long)test_rng_below(&r, 12));
		for (int i = 0; i < nw; i++) {
			int rc = random_write(&r, &o, &u, &recs[i]);
			if (rc != 0) {
				cr_assert_eq(rc, CRDT_ENOMEM, "round %d: %s",
				    round, crdt_err_name(rc));
				cr_assert(test_alloc_fired());
				failed = true;
				nw = i + 1;
				break;
			}
		}
		test_alloc_disarm();
		if (!failed)
			for (int i = 0; i < nw; i++)
				apply_rec(&expect, &recs[i]);
		if (failed || test_rng_chance(&r, 1, 2)) {
			crdt__undo_rollback(&u);
			cr_assert_eq(u.n, 0);
			expect_state(&o, &before, seed, round, "rollback");
			/* usable afterwards: same writes on both sides */
			for (int i = 0; i < nw; i++) {
				apply_rec(&o, &recs[i]);
				apply_rec(&before, &recs[i]);
			}
			expect_state(&o, &before, seed, round,
			    "writes after rollback");
		} else {
			crdt__undo_commit(&u);
			cr_assert_eq(u.n, 0);
			expect_state(&o, &expect, seed, round, "commit");
		}
		crdt__undo_fini(&u);
		for (int i = 0; i < nw; i++)
			crdt_buf_fini(&recs[i].bytes);
		encs_fini(&e0);
		objs_free(&o);
		objs_free(&before);
		objs_free(&expect);
		cr_assert_eq(test_alloc_live_bytes(), 0,
		    "seed=0x%llx round %d: %zu bytes leaked",
		    (unsigned long long)seed, round, test_alloc_live_bytes());
	}
	ASSERT_NO_LEAKS();
}

Test(undo, rollback_restores_and_commit_equals_applying_ops)
{
	run(false);
}

Test(undo, allocation_failure_mid_transaction_rolls_back_cleanly)
{
	run(true);
}

/* Inserting many entries in one transaction forces rehashes; popping
 * them all in reverse must leave a table whose probes still work. */
Test(undo, rollback_across_rehashes)
{
	objs o, before;
	cr_assert_eq(crdt_gset_new(&cfg, &ids[0], &o.g), 0);
	cr_assert_eq(crdt_lww_new(&cfg, &ids[0], &o.r), 0);
	cr_assert_eq(crdt_lww_map_new(&cfg, &ids[0], &o.m), 0);
	crdt__undo u = { .a = &cfg.alloc };
	char k[16];
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof k, "base%d", i);
		crdt_dot d = { ids[1], (uint64_t)i + 1 };
		cr_assert_eq(crdt__gset_write(o.g, (uint8_t *)k, strlen(k), d,
				 &u, 0), 0);
		cr_assert_eq(crdt__map_write(o.m, (uint8_t *)k, strlen(k), 5,
				 &ids[1], true, (uint8_t *)"v", 1, &u, 1),
		    0);
	}
	crdt__undo_commit(&u);
	encs e0;
	snap(&o, &e0);
	objs_from(&e0, &before);
	for (int i = 0; i < 500; i++) {
		snprintf(k, sizeof k, "txn%d", i);
		crdt_dot d = { ids[2], (uint64_t)i + 1 };
		cr_assert_eq(crdt__gset_write(o.g, (uint8_t *)k, strlen(k), d,
				 &u, 0), 0);
		cr_assert_eq(crdt__map_write(o.m, (uint8_t *)k, strlen(k), 6,
				 &ids[2], i % 3 != 0, (uint8_t *)"w", 1, &u, 1),
		    0);
		/* and overwrite an old key now and then */
		snprintf(k, sizeof k, "base%d", i % 10);
		cr_assert_eq(crdt__map_write(o.m, (uint8_t *)k, strlen(k),
				 (uint64_t)7 + i, &ids[2], i % 2, (uint8_t *)"x",
				 1, &u, 1),
		    0);
	}
	crdt__undo_rollback(&u);
	expect_state(&o, &before, 0, 0, "rollback of 1500 writes");
	for (int i = 0; i < 500; i++) {
		snprintf(k, sizeof k, "txn%d", i);
		cr_assert_not(crdt_gset_contains(o.g, k, strlen(k)), "%s", k);
		cr_assert_eq(crdt_lww_map_get(o.m, k, strlen(k), NULL, NULL),
		    CRDT_ENOTFOUND);
	}
	crdt__undo_fini(&u);
	encs_fini(&e0);
	objs_free(&o);
	objs_free(&before);
	ASSERT_NO_LEAKS();
}
