/*
 * CRDT laws as seeded property tests (STYLE.md point 26).
 *
 * For each type, HISTORIES random histories run on 3 replicas: local
 * writes (with physical clocks that jitter, stall and go backwards, so
 * stamps collide and replica IDs break ties; sometimes one replica's
 * clock is beyond the others' drift bound), hand-crafted "faulty
 * replica" ops that reuse stamps/dots, op deliveries in random order with
 * duplicates, and state merges. Afterwards:
 *   (a) merge is commutative, associative and idempotent, compared on
 *       canonical encodings byte for byte;
 *   (b) all ops delivered to fresh replicas in random permutations with
 *       duplicates give identical encodings;
 *   (c) encode -> decode -> encode is the identity;
 *   (d) merging the replicas' states equals delivering all ops, and every
 *       replica equals a fresh one fed exactly the ops it has seen.
 * Base seed: CRDT_TEST_SEED (decimal or 0x...), printed in every failure.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

#define HISTORIES 5000
#define NREP 3
#define MAX_STEPS 36 /* 3 replicas x up to 12 ops */
#define MAX_OPS MAX_STEPS
#define DEFAULT_SEED UINT64_C(0x5eedc0ffee)

static char where[160]; /* "gset seed=... history=..." for messages */

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			char m__[256];                                    \
			snprintf(m__, sizeof m__, __VA_ARGS__);           \
			cr_assert_fail("%s: %s", where, m__);             \
		}                                                         \
	} while (0)

/* ---- a uniform face over the three types ---- */

typedef struct ty {
	const char *name;
	int (*mk)(const crdt_config *c, const crdt_replica_id *id, void **o);
	void (*fr)(void *o);
	int (*apply)(void *o, const uint8_t *op, size_t len);
	int (*merge)(void *dst, const void *src);
	int (*enc)(const void *o, crdt_buf *out);
	int (*dec)(const crdt_config *c, const crdt_replica_id *id,
	    const uint8_t *b, size_t len, void **o);
	int (*local)(void *o, test_rng *r, crdt_buf *op);
	void (*craft)(test_rng *r, const crdt_replica_id *ids, crdt_buf *op);
	bool (*eq)(const void *a, const void *b);
	/* size() agrees with what foreach visits (-1: no such notion) */
	long (*size)(const void *o);
	long (*count)(const void *o);
} ty;

/* Short byte strings over a 4-symbol alphabet incl. 0x00 and 0xff, so
 * equal and prefix-related strings are common. */
static size_t
rnd_str(test_rng *r, uint8_t *out, size_t maxlen)
{
	static const uint8_t alpha[] = { 'a', 'b', 0x00, 0xff };
	size_t n = (size_t)test_rng_below(r, maxlen + 1);
	for (size_t i = 0; i < n; i++)
		out[i] = alpha[test_rng_below(r, 4)];
	return n;
}

/* Stamps near the replicas' clocks (1000..1003 ms) so crafted writes
 * collide with real ones. */
static uint64_t
rnd_stamp(test_rng *r)
{
	return CRDT_HLC_PACK(1000 + test_rng_below(r, 4),
	    test_rng_below(r, 3));
}

/* gset */
static int
g_mk(const crdt_config *c, const crdt_replica_id *id, void **o)
{
	return crdt_gset_new(c, id, (crdt_gset **)o);
}
static void
g_fr(void *o)
{
	crdt_gset_free(o);
}
static int
g_apply(void *o, const uint8_t *op, size_t len)
{
	return crdt_gset_apply_op(o, op, len);
}
static int
g_merge(void *d, const void *s)
{
	return crdt_gset_merge(d, s);
}
static int
g_enc(const void *o, crdt_buf *out)
{
	return crdt_gset_encode(o, out);
}
static int
g_dec(const crdt_config *c, const crdt_replica_id *id, const uint8_t *b,
    size_t len, void **o)
{
	return crdt_gset_decode(c, id, b, len, (crdt_gset **)o);
}
static int
g_local(void *o, test_rng *r, crdt_buf *op)
{
	uint8_t e[4];
	size_t n = rnd_str(r, e, 3);
	return crdt_gset_add(o, e, n, op);
}
/* A faulty replica: arbitrary (possibly reused) dots on any element. */
static void
g_craft(test_rng *r, const crdt_replica_id *ids, crdt_buf *op)
{
	uint8_t e[4];
	size_t n = rnd_str(r, e, 3);
	mk_gset_op(op, ids[test_rng_below(r, NREP)],
	    1 + test_rng_below(r, 4), e, n);
}

/* lww */
static int
l_mk(const crdt_config *c, const crdt_replica_id *id, void **o)
{
	return crdt_lww_new(c, id, (crdt_lww **)o);
}
static void
l_fr(void *o)
{
	crdt_lww_free(o);
}
static int
l_apply(void *o, const uint8_t *op, size_t len)
{
	return crdt_lww_apply_op(o, op, len);
}
static int
l_merge(void *d, const void *s)
{
	return crdt_lww_merge(d, s);
}
static int
l_enc(const void *o, crdt_buf *out)
{
	return crdt_lww_encode(o, out);
}
static int
l_dec(const crdt_config *c, const crdt_replica_id *id, const uint8_t *b,
    size_t len, void **o)
{
	return crdt_lww_decode(c, id, b, len, (crdt_lww **)o);
}
static int
l_local(void *o, test_rng *r, crdt_buf *op)
{
	if (test_rng_chance(r, 1, 4))
		return crdt_lww_clear(o, op);
	uint8_t v[4];
	size_t n = rnd_str(r, v, 3);
	return crdt_lww_set(o, v, n, op);
}
static void
l_craft(test_rng *r, const crdt_replica_id *ids, crdt_buf *op)
{
	uint8_t v[4];
	size_t n = rnd_str(r, v, 3);
	mk_lww_op(op, rnd_stamp(r), ids[test_rng_below(r, NREP)],
	    !test_rng_chance(r, 1, 4), v, n);
}

/* map */
static int
m_mk(const crdt_config *c, const crdt_replica_id *id, void **o)
{
	return crdt_lww_map_new(c, id, (crdt_lww_map **)o);
}
static void
m_fr(void *o)
{
	crdt_lww_map_free(o);
}
static int
m_apply(void *o, const uint8_t *op, size_t len)
{
	return crdt_lww_map_apply_op(o, op, len);
}
static int
m_merge(void *d, const void *s)
{
	return crdt_lww_map_merge(d, s);
}
static int
m_enc(const void *o, crdt_buf *out)
{
	return crdt_lww_map_encode(o, out);
}
static int
m_dec(const crdt_config *c, const crdt_replica_id *id, const uint8_t *b,
    size_t len, void **o)
{
	return crdt_lww_map_decode(c, id, b, len, (crdt_lww_map **)o);
}
static int
m_local(void *o, test_rng *r, crdt_buf *op)
{
	uint8_t k[4], v[4];
	size_t kn = rnd_str(r, k, 2);
	if (test_rng_chance(r, 1, 4))
		return crdt_lww_map_remove(o, k, kn, op);
	size_t vn = rnd_str(r, v, 3);
	return crdt_lww_map_set(o, k, kn, v, vn, op);
}
static void
m_craft(test_rng *r, const crdt_replica_id *ids, crdt_buf *op)
{
	uint8_t k[4], v[4];
	size_t kn = rnd_str(r, k, 2), vn = rnd_str(r, v, 3);
	mk_map_op(op, rnd_stamp(r), ids[test_rng_below(r, NREP)],
	    !test_rng_chance(r, 1, 4), v, vn, k, kn);
}

static int
count_elem(void *ud, const uint8_t *e, size_t len, crdt_dot dot)
{
	(void)e;
	(void)len;
	(void)dot;
	++*(long *)ud;
	return 0;
}
static int
count_kv(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	(void)k;
	(void)kl;
	(void)v;
	(void)vl;
	++*(long *)ud;
	return 0;
}
static bool
g_eq(const void *a, const void *b)
{
	return crdt_gset_equal(a, b);
}
static long
g_size(const void *o)
{
	return (long)crdt_gset_size(o);
}
static long
g_count(const void *o)
{
	long n = 0;
	if (crdt_gset_foreach(o, count_elem, &n) != 0)
		return -2;
	return n;
}
static bool
l_eq(const void *a, const void *b)
{
	return crdt_lww_equal(a, b);
}
/* A register "has size" 1 when get() finds a value. */
static long
l_size(const void *o)
{
	return crdt_lww_get(o, NULL, NULL) == 0;
}
static long
l_count(const void *o)
{
	const uint8_t *v;
	size_t n;
	uint64_t h;
	int rc = crdt_lww_get(o, &v, &n);
	if (rc == 0)
		return crdt_lww_stamp(o, &h, NULL) == 0 ? 1 : -2;
	return rc == CRDT_ENOTFOUND ? 0 : -2;
}
static bool
m_eq(const void *a, const void *b)
{
	return crdt_lww_map_equal(a, b);
}
static long
m_size(const void *o)
{
	return (long)crdt_lww_map_size(o);
}
static long
m_count(const void *o)
{
	long n = 0;
	if (crdt_lww_map_foreach(o, count_kv, &n) != 0)
		return -2;
	return n;
}

static const ty GSET = { "gset", g_mk, g_fr, g_apply, g_merge, g_enc,
	g_dec, g_local, g_craft, g_eq, g_size, g_count };
static const ty LWW = { "lww", l_mk, l_fr, l_apply, l_merge, l_enc, l_dec,
	l_local, l_craft, l_eq, l_size, l_count };
static const ty MAP = { "map", m_mk, m_fr, m_apply, m_merge, m_enc, m_dec,
	m_local, m_craft, m_eq, m_size, m_count };

/* ---- one history ---- */

typedef struct replica {
	void *obj;
	test_clock clk;
	uint64_t skew; /* ms added to this replica's physical clock */
	crdt_config cfg;
	crdt_replica_id id;
	bool seen[MAX_OPS];
} replica;

typedef struct world {
	const ty *t;
	test_rng rng;
	replica rep[NREP];
	crdt_replica_id ids[NREP];
	crdt_replica_id outsider; /* self of fresh replicas */
	crdt_config cfg;          /* for fresh replicas */
	crdt_buf ops[MAX_OPS];
	size_t nops;
} world;

/* Canonical encoding into a libc buffer the caller finis. */
static crdt_buf
enc_of(const world *w, const void *o)
{
	crdt_buf b;
	tb_init(&b);
	int rc = w->t->enc(o, &b);
	CHECK(rc == 0, "encode: %s", crdt_err_name(rc));
	return b;
}

static bool
same_enc(const world *w, const void *x, const void *y)
{
	crdt_buf a = enc_of(w, x), b = enc_of(w, y);
	bool eq = bytes_eq(a.data, a.len, b.data, b.len);
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	return eq;
}

/* Copy through the codec; checks (c) encode(decode(x)) == x on the way. */
static void *
clone_of(const world *w, const void *o)
{
	crdt_buf a = enc_of(w, o);
	void *c;
	int rc = w->t->dec(&w->cfg, &w->outsider, a.data, a.len, &c);
	CHECK(rc == 0, "decode of own encoding: %s", crdt_err_name(rc));
	crdt_buf b = enc_of(w, c);
	CHECK(bytes_eq(a.data, a.len, b.data, b.len),
	    "encode(decode(x)) != x for %s", hexs(a.data, a.len));
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	return c;
}

static void
merge_ok(const world *w, void *dst, const void *src)
{
	int rc = w->t->merge(dst, src);
	CHECK(rc == 0, "merge: %s", crdt_err_name(rc));
}

static void
apply_ok(const world *w, void *o, size_t k)
{
	int rc = w->t->apply(o, w->ops[k].data, w->ops[k].len);
	CHECK(rc == 0, "apply op %zu (%s): %s", k,
	    hexs(w->ops[k].data, w->ops[k].len), crdt_err_name(rc));
}

static void *
fresh(const world *w)
{
	void *o;
	int rc = w->t->mk(&w->cfg, &w->outsider, &o);
	CHECK(rc == 0, "new: %s", crdt_err_name(rc));
	return o;
}

static void
shuffle(test_rng *r, size_t *v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)test_rng_below(r, i);
		size_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* A fresh replica fed the ops with mask[k] set (all when mask is NULL),
 * each 1-3 times, in a random order. */
static void *
deliver(world *w, const bool *mask)
{
	size_t order[MAX_OPS * 3], n = 0;
	for (size_t k = 0; k < w->nops; k++) {
		if (mask != NULL && !mask[k])
			continue;
		size_t copies = 1 + (size_t)test_rng_below(&w->rng, 3);
		for (size_t c = 0; c < copies; c++)
			order[n++] = k;
	}
	shuffle(&w->rng, order, n);
	void *o = fresh(w);
	for (size_t i = 0; i < n; i++)
		apply_ok(w, o, order[i]);
	return o;
}

static void
random_id(test_rng *r, crdt_replica_id *id)
{
	do
		test_rng_bytes(r, id->bytes, sizeof id->bytes);
	while (crdt_replica_id_from_bytes(id, id->bytes, 16) != 0);
}

static void
run_history(world *w)
{
	test_rng *r = &w->rng;
	test_config(&w->cfg, NULL);
	random_id(r, &w->outsider);
	for (int i = 0; i < NREP; i++) {
		replica *p = &w->rep[i];
		memset(p->seen, 0, sizeof p->seen);
		random_id(r, &w->ids[i]);
		p->id = w->ids[i];
		/* One history in four has a replica whose clock runs past
		 * the others' drift bound (60 s): its stamps are applied
		 * everywhere but must not drag the other clocks along. */
		p->skew = i == 2 && test_rng_chance(r, 1, 4) ? 61000 : 0;
		p->clk.ms = 1000 + p->skew;
		p->clk.reads = 0;
		test_config(&p->cfg, &p->clk);
		int rc = w->t->mk(&p->cfg, &p->id, &p->obj);
		CHECK(rc == 0, "new: %s", crdt_err_name(rc));
	}
	w->nops = 0;

	size_t steps = 1 + (size_t)test_rng_below(r, MAX_STEPS);
	for (size_t s = 0; s < steps; s++) {
		int ri = (int)test_rng_below(r, NREP);
		replica *p = &w->rep[ri];
		unsigned x = (unsigned)test_rng_below(r, 16);
		if (x < 8 && w->nops < MAX_OPS) {
			/* Local write, or (1 in 8) a crafted faulty op. */
			crdt_buf *op = &w->ops[w->nops];
			tb_init(op);
			p->clk.ms = 1000 + p->skew + test_rng_below(r, 4);
			if (x < 7) {
				int rc = w->t->local(p->obj, r, op);
				CHECK(rc == 0, "local op on replica %d: %s",
				    ri, crdt_err_name(rc));
			} else {
				w->t->craft(r, w->ids, op);
				apply_ok(w, p->obj, w->nops);
			}
			p->seen[w->nops++] = true;
		} else if (x < 14) {
			if (w->nops == 0)
				continue;
			size_t k = (size_t)test_rng_below(r, w->nops);
			apply_ok(w, p->obj, k);
			p->seen[k] = true;
		} else {
			int si = (int)test_rng_below(r, NREP);
			if (si == ri)
				continue;
			merge_ok(w, p->obj, w->rep[si].obj);
			for (size_t k = 0; k < w->nops; k++)
				p->seen[k] |= w->rep[si].seen[k];
		}
	}

	void *S[NREP];
	for (int i = 0; i < NREP; i++)
		S[i] = w->rep[i].obj;

	/* (a) commutativity, pairwise */
	for (int i = 0; i < NREP; i++) {
		for (int j = i + 1; j < NREP; j++) {
			void *ij = clone_of(w, S[i]), *ji = clone_of(w, S[j]);
			merge_ok(w, ij, S[j]);
			merge_ok(w, ji, S[i]);
			CHECK(same_enc(w, ij, ji),
			    "merge(%d,%d) != merge(%d,%d)", i, j, j, i);
			w->t->fr(ij);
			w->t->fr(ji);
		}
	}
	/* (a) associativity: (S0 S1) S2 == S0 (S1 S2) */
	void *left = clone_of(w, S[0]);
	merge_ok(w, left, S[1]);
	merge_ok(w, left, S[2]);
	void *inner = clone_of(w, S[1]);
	merge_ok(w, inner, S[2]);
	void *right = clone_of(w, S[0]);
	merge_ok(w, right, inner);
	CHECK(same_enc(w, left, right), "merge is not associative");
	/* (a) idempotence: x merge x == x, and re-merging changes nothing */
	for (int i = 0; i < NREP; i++) {
		void *x = clone_of(w, S[i]);
		merge_ok(w, x, S[i]);
		CHECK(same_enc(w, x, S[i]), "merge(S%d, S%d) != S%d", i, i,
		    i);
		merge_ok(w, x, x);
		CHECK(same_enc(w, x, S[i]), "self-merge changed S%d", i);
		w->t->fr(x);
	}
	void *again = clone_of(w, left);
	merge_ok(w, again, S[1]);
	merge_ok(w, again, right);
	CHECK(same_enc(w, again, left), "re-merge changed the result");

	/* (b) all ops, two random orders with duplicates */
	void *f1 = deliver(w, NULL), *f2 = deliver(w, NULL);
	CHECK(same_enc(w, f1, f2), "delivery order changed the state");
	/* (d) state merge == op delivery */
	CHECK(same_enc(w, left, f1), "merged states != all ops delivered");
	/* (d) each replica == the ops it has seen, delivered afresh */
	for (int i = 0; i < NREP; i++) {
		void *g = deliver(w, w->rep[i].seen);
		CHECK(same_enc(w, g, S[i]),
		    "replica %d differs from its seen ops", i);
		w->t->fr(g);
	}
	/* equal() agrees with canonical encodings; size() with foreach */
	void *all[] = { S[0], S[1], S[2], left, f1 };
	for (int i = 0; i < 5; i++) {
		for (int j = 0; j < 5; j++)
			CHECK(w->t->eq(all[i], all[j]) ==
				same_enc(w, all[i], all[j]),
			    "equal(%d,%d) disagrees with the encodings", i, j);
		CHECK(w->t->size(all[i]) == w->t->count(all[i]),
		    "object %d: size %ld, foreach/get sees %ld", i,
		    w->t->size(all[i]), w->t->count(all[i]));
	}
	/* (c) on the final states too (clone_of checks it) */
	void *c = clone_of(w, f1);
	w->t->fr(c);

	void *tmp[] = { left, inner, right, again, f1, f2 };
	for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++)
		w->t->fr(tmp[i]);
	for (int i = 0; i < NREP; i++)
		w->t->fr(w->rep[i].obj);
	for (size_t k = 0; k < w->nops; k++)
		crdt_buf_fini(&w->ops[k]);
}

static void
run_laws(const ty *t)
{
	uint64_t base = test_seed(DEFAULT_SEED);
	test_alloc_reset();
	for (int h = 0; h < HISTORIES; h++) {
		world w;
		memset(&w, 0, sizeof w);
		w.t = t;
		test_rng_init(&w.rng, test_seed_mix(base, (uint64_t)h));
		snprintf(where, sizeof where,
		    "%s CRDT_TEST_SEED=0x%llx history=%d", t->name,
		    (unsigned long long)base, h);
		run_history(&w);
		CHECK(test_alloc_live_bytes() == 0,
		    "leak: %zu bytes live after the history",
		    test_alloc_live_bytes());
	}
	ASSERT_NO_LEAKS();
}

Test(laws, gset_histories_converge)
{
	run_laws(&GSET);
}

Test(laws, lww_histories_converge)
{
	run_laws(&LWW);
}

Test(laws, map_histories_converge)
{
	run_laws(&MAP);
}
