/*
 * Decoders and apply_op against hostile input: seeded random byte strings
 * (raw, and msgpack-shaped so they get past the first byte), and valid
 * encodings mutated by bit flips, truncation, insertion, deletion and
 * splicing. Oracles:
 *   - never crash (ASan/UBSan build), only documented error codes;
 *   - a decoder that accepts x re-encodes to exactly x (canonical form);
 *   - a failed apply_op leaves the target's encoding unchanged, and an
 *     accepted op is idempotent (applying it again changes nothing);
 *   - nothing leaks.
 * Base seed: CRDT_TEST_SEED, printed with the input in every failure.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

#define DEFAULT_SEED UINT64_C(0xbadc0ffee)
#define RANDOM_INPUTS 12000
#define MUTATED_INPUTS 12000
#define CORPUS 48

typedef enum { T_GSET, T_LWW, T_MAP, T_VCLOCK } kind;

static crdt_config cfg, tight;
static test_clock clk;
static crdt_replica_id A;
static uint64_t base_seed;

static void
setup(void)
{
	test_alloc_reset();
	clk.ms = 1000;
	test_config(&cfg, &clk);
	/* Small limits on every other input, to reach the ETOOBIG paths. */
	tight = cfg;
	tight.limits.max_value_bytes = 6;
	tight.limits.max_elems = 12;
	tight.limits.max_bytes = 96;
	A = test_id(1);
	base_seed = test_seed(DEFAULT_SEED);
}

TestSuite(random_bytes, .init = setup);

static bool
documented_decode_error(int rc)
{
	return rc == CRDT_EMALFORMED || rc == CRDT_EVERSION ||
	    rc == CRDT_ETOOBIG;
}

/* ---- the objects behind a uniform face ---- */

static int
decode(kind k, const crdt_config *c, const uint8_t *b, size_t n, void **o)
{
	switch (k) {
	case T_GSET:
		return crdt_gset_decode(c, &A, b, n, (crdt_gset **)o);
	case T_LWW:
		return crdt_lww_decode(c, &A, b, n, (crdt_lww **)o);
	case T_MAP:
		return crdt_lww_map_decode(c, &A, b, n, (crdt_lww_map **)o);
	case T_VCLOCK:
		return crdt_vclock_decode(c, b, n, (crdt_vclock **)o);
	}
	return CRDT_EINVAL;
}

static int
encode(kind k, const void *o, crdt_buf *b)
{
	switch (k) {
	case T_GSET:
		return crdt_gset_encode(o, b);
	case T_LWW:
		return crdt_lww_encode(o, b);
	case T_MAP:
		return crdt_lww_map_encode(o, b);
	case T_VCLOCK:
		return crdt_vclock_encode(o, b);
	}
	return CRDT_EINVAL;
}

static void
free_obj(kind k, void *o)
{
	switch (k) {
	case T_GSET:
		crdt_gset_free(o);
		break;
	case T_LWW:
		crdt_lww_free(o);
		break;
	case T_MAP:
		crdt_lww_map_free(o);
		break;
	case T_VCLOCK:
		crdt_vclock_free(o);
		break;
	}
}

static int
new_obj(kind k, const crdt_config *c, void **o)
{
	switch (k) {
	case T_GSET:
		return crdt_gset_new(c, &A, (crdt_gset **)o);
	case T_LWW:
		return crdt_lww_new(c, &A, (crdt_lww **)o);
	case T_MAP:
		return crdt_lww_map_new(c, &A, (crdt_lww_map **)o);
	case T_VCLOCK:
		return crdt_vclock_new(c, (crdt_vclock **)o);
	}
	return CRDT_EINVAL;
}

static int
apply(kind k, void *o, const uint8_t *b, size_t n)
{
	switch (k) {
	case T_GSET:
		return crdt_gset_apply_op(o, b, n);
	case T_LWW:
		return crdt_lww_apply_op(o, b, n);
	case T_MAP:
		return crdt_lww_map_apply_op(o, b, n);
	case T_VCLOCK:
		break;
	}
	return CRDT_EINVAL;
}

/* ---- input generators ---- */

static void
rnd_bytes(test_rng *r, crdt_buf *b, size_t n)
{
	uint8_t tmp[64];
	while (n > 0) {
		size_t m = n < sizeof tmp ? n : sizeof tmp;
		test_rng_bytes(r, tmp, m);
		mp_raw(b, tmp, m);
		n -= m;
	}
}

/* One msgpack-ish token: mostly the shapes our formats use, sometimes in
 * non-minimal or foreign forms. */
static void
token(test_rng *r, crdt_buf *b, int depth)
{
	uint8_t tmp[20];
	switch (test_rng_below(r, 12)) {
	case 0:
		if (depth < 3) {
			uint32_t n = (uint32_t)test_rng_below(r, 7);
			mp_array(b, n);
			for (uint32_t i = 0; i < n; i++)
				token(r, b, depth + 1);
			break;
		}
		/* fall through */
	case 1:
		mp_uint(b, test_rng_below(r, 6));
		break;
	case 2: {
		static const uint8_t tags[] = { 0xcc, 0xcd, 0xce, 0xcf };
		unsigned t = (unsigned)test_rng_below(r, 4);
		mp_byte(b, tags[t]);
		rnd_bytes(r, b, (size_t)1 << t);
		break;
	}
	case 3:
		mp_uint(b, test_rng_next(r) >> test_rng_below(r, 64));
		break;
	case 4: {
		size_t n = (size_t)test_rng_below(r, 10);
		test_rng_bytes(r, tmp, n);
		mp_bin(b, tmp, n);
		break;
	}
	case 5:
	case 6: {
		crdt_replica_id id = test_id((uint8_t)test_rng_below(r, 4));
		if (test_rng_chance(r, 1, 8))
			memset(&id, 0, sizeof id);
		mp_id(b, id);
		break;
	}
	case 7:
		mp_nil(b);
		break;
	case 8:
		mp_byte(b, (uint8_t)test_rng_next(r));
		break;
	case 9: /* bin8/16/32 header with a length that may lie */
		mp_byte(b, (uint8_t)(0xc4 + test_rng_below(r, 3)));
		rnd_bytes(r, b, 1 + (size_t)test_rng_below(r, 4));
		break;
	case 10: /* array16/32 header with a count that may lie */
		mp_byte(b, (uint8_t)(0xdc + test_rng_below(r, 2)));
		rnd_bytes(r, b, 2 + 2 * (size_t)test_rng_below(r, 2));
		break;
	default:
		mp_uint(b, CRDT_HLC_PACK(1000 + test_rng_below(r, 3),
		    test_rng_below(r, 3)));
		break;
	}
}

static void
random_input(test_rng *r, crdt_buf *b)
{
	unsigned mode = (unsigned)test_rng_below(r, 8);
	if (mode == 0) {
		rnd_bytes(r, b, (size_t)test_rng_below(r, 80));
		return;
	}
	size_t n = (size_t)test_rng_below(r, 8);
	if (mode <= 5) {
		/* A plausible header: [version, kind, ...] */
		mp_array(b, (uint32_t)(n + 2));
		mp_uint(b, test_rng_chance(r, 7, 8) ? 1 : test_rng_below(r, 3));
		mp_uint(b, 1 + test_rng_below(r, 4));
	}
	for (size_t i = 0; i < n; i++)
		token(r, b, 1);
}

/* Valid encodings and ops built through the API. */
typedef struct corpus {
	crdt_buf v[CORPUS];
	size_t n;
} corpus;

static void
add_entry(corpus *c, const crdt_buf *b)
{
	cr_assert_lt(c->n, CORPUS);
	tb_init(&c->v[c->n]);
	mp_raw(&c->v[c->n], b->data, b->len);
	c->n++;
}

static void
rnd_str(test_rng *r, uint8_t *s, size_t *n)
{
	*n = (size_t)test_rng_below(r, 5);
	for (size_t i = 0; i < *n; i++)
		s[i] = (uint8_t)("ab\0\xff"[test_rng_below(r, 4)]);
}

/* `states`: encodings of random objects; `ops`: single ops. */
static void
build_corpus(kind k, test_rng *r, corpus *states, corpus *ops)
{
	states->n = ops->n = 0;
	for (int i = 0; i < CORPUS; i++) {
		crdt_replica_id self = test_id((uint8_t)(1 + i % 3));
		crdt_buf op, st;
		tb_init(&op);
		tb_init(&st);
		void *o = NULL;
		int writes = (int)test_rng_below(r, 6);
		uint8_t a[8], v[8];
		size_t an, vn;
		switch (k) {
		case T_GSET:
			cr_assert_eq(crdt_gset_new(&cfg, &self,
					 (crdt_gset **)&o), 0);
			for (int w = 0; w < writes; w++) {
				crdt_buf_clear(&op);
				rnd_str(r, a, &an);
				cr_assert_eq(crdt_gset_add(o, a, an, &op), 0);
			}
			break;
		case T_LWW:
			cr_assert_eq(crdt_lww_new(&cfg, &self,
					 (crdt_lww **)&o), 0);
			for (int w = 0; w < writes; w++) {
				crdt_buf_clear(&op);
				rnd_str(r, v, &vn);
				clk.ms = 1000 + test_rng_below(r, 300);
				cr_assert_eq(w % 3 == 2 ?
					crdt_lww_clear(o, &op) :
					crdt_lww_set(o, v, vn, &op),
				    0);
			}
			break;
		case T_MAP:
			cr_assert_eq(crdt_lww_map_new(&cfg, &self,
					 (crdt_lww_map **)&o), 0);
			for (int w = 0; w < writes; w++) {
				crdt_buf_clear(&op);
				rnd_str(r, a, &an);
				rnd_str(r, v, &vn);
				clk.ms = 1000 + test_rng_below(r, 300);
				cr_assert_eq(w % 3 == 2 ?
					crdt_lww_map_remove(o, a, an, &op) :
					crdt_lww_map_set(o, a, an, v, vn, &op),
				    0);
			}
			break;
		case T_VCLOCK:
			cr_assert_eq(crdt_vclock_new(&cfg,
					 (crdt_vclock **)&o), 0);
			for (int w = 0; w < writes; w++) {
				crdt_replica_id id =
				    test_id((uint8_t)test_rng_below(r, 256));
				cr_assert_eq(crdt_vclock_set(o, &id,
						 test_rng_next(r) >>
						     test_rng_below(r, 64)),
				    0);
			}
			break;
		}
		cr_assert_eq(encode(k, o, &st), 0);
		add_entry(states, &st);
		if (op.len > 0)
			add_entry(ops, &op);
		free_obj(k, o);
		crdt_buf_fini(&op);
		crdt_buf_fini(&st);
	}
}

static void
free_corpus(corpus *c)
{
	for (size_t i = 0; i < c->n; i++)
		crdt_buf_fini(&c->v[i]);
	c->n = 0;
}

/* Copy `src` into `out` with 1-3 random mutations. */
static void
mutate(test_rng *r, const crdt_buf *src, const corpus *pool, crdt_buf *out)
{
	tb_init(out);
	mp_raw(out, src->data, src->len);
	int rounds = 1 + (int)test_rng_below(r, 3);
	for (int i = 0; i < rounds; i++) {
		size_t n = out->len;
		size_t at = n ? (size_t)test_rng_below(r, n) : 0;
		switch (test_rng_below(r, 7)) {
		case 0: /* bit flip */
			if (n)
				out->data[at] ^= (uint8_t)(1u
				    << test_rng_below(r, 8));
			break;
		case 1: /* replace a byte */
			if (n)
				out->data[at] = (uint8_t)test_rng_next(r);
			break;
		case 2: /* truncate */
			out->len = n ? (size_t)test_rng_below(r, n) : 0;
			break;
		case 3: { /* insert 1-4 random bytes */
			uint8_t ins[4];
			size_t k = 1 + (size_t)test_rng_below(r, 4);
			test_rng_bytes(r, ins, k);
			crdt_buf t;
			tb_init(&t);
			mp_raw(&t, out->data, at);
			mp_raw(&t, ins, k);
			mp_raw(&t, out->data + at, n - at);
			crdt_buf_fini(out);
			*out = t;
			break;
		}
		case 4: /* delete a range */
			if (n) {
				size_t k = 1 + (size_t)test_rng_below(r,
				    n - at < 4 ? n - at : 4);
				memmove(out->data + at, out->data + at + k,
				    n - at - k);
				out->len -= k;
			}
			break;
		case 5: { /* splice in the tail of another valid input */
			const crdt_buf *o = &pool->v[test_rng_below(r,
			    pool->n)];
			size_t from = o->len ? (size_t)test_rng_below(r,
			    o->len) : 0;
			out->len = at;
			mp_raw(out, o->data + from, o->len - from);
			break;
		}
		default: /* append garbage */
			mp_byte(out, (uint8_t)test_rng_next(r));
			break;
		}
	}
}

/* ---- oracles ---- */

typedef struct stats {
	unsigned long accepted, rejected;
} stats;

static void
check_decode(kind k, const crdt_buf *in, uint64_t seed, unsigned long i,
    stats *st)
{
	const crdt_config *c = i % 2 ? &tight : &cfg;
	void *o = NULL;
	int rc = decode(k, c, in->data, in->len, &o);
	if (rc != 0) {
		cr_assert(documented_decode_error(rc),
		    "seed=0x%llx input %lu: %s for %s",
		    (unsigned long long)seed, i, crdt_err_name(rc),
		    hexs(in->data, in->len));
		cr_assert_null(o, "seed=0x%llx input %lu: *out set on error",
		    (unsigned long long)seed, i);
		st->rejected++;
		return;
	}
	crdt_buf re;
	tb_init(&re);
	cr_assert_eq(encode(k, o, &re), 0);
	cr_assert(bytes_eq(re.data, re.len, in->data, in->len),
	    "seed=0x%llx input %lu: accepted %s but re-encodes to %s",
	    (unsigned long long)seed, i, hexs(in->data, in->len),
	    hexs(re.data, re.len));
	crdt_buf_fini(&re);
	free_obj(k, o);
	st->accepted++;
}

static void
check_apply(kind k, void *target, const crdt_buf *in, uint64_t seed,
    unsigned long i, stats *st)
{
	crdt_buf before, after;
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(encode(k, target, &before), 0);
	int rc = apply(k, target, in->data, in->len);
	cr_assert_eq(encode(k, target, &after), 0);
	if (rc != 0) {
		cr_assert(documented_decode_error(rc),
		    "seed=0x%llx op %lu: %s for %s", (unsigned long long)seed,
		    i, crdt_err_name(rc), hexs(in->data, in->len));
		cr_assert(bytes_eq(before.data, before.len, after.data,
			      after.len),
		    "seed=0x%llx op %lu: rejected op %s changed the target",
		    (unsigned long long)seed, i, hexs(in->data, in->len));
		st->rejected++;
	} else {
		crdt_buf again;
		tb_init(&again);
		cr_assert_eq(apply(k, target, in->data, in->len), 0,
		    "seed=0x%llx op %lu: accepted once, refused twice",
		    (unsigned long long)seed, i);
		cr_assert_eq(encode(k, target, &again), 0);
		cr_assert(bytes_eq(after.data, after.len, again.data,
			      again.len),
		    "seed=0x%llx op %lu: op %s is not idempotent",
		    (unsigned long long)seed, i, hexs(in->data, in->len));
		crdt_buf_fini(&again);
		st->accepted++;
	}
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
}

static void
run_decoder(kind k, uint64_t salt)
{
	uint64_t seed = test_seed_mix(base_seed, salt);
	test_rng r;
	test_rng_init(&r, seed);
	corpus states, ops;
	build_corpus(k, &r, &states, &ops);
	stats st = { 0, 0 };
	for (unsigned long i = 0; i < RANDOM_INPUTS; i++) {
		crdt_buf in;
		tb_init(&in);
		random_input(&r, &in);
		check_decode(k, &in, seed, i, &st);
		crdt_buf_fini(&in);
	}
	for (unsigned long i = 0; i < MUTATED_INPUTS; i++) {
		crdt_buf in;
		mutate(&r, &states.v[test_rng_below(&r, states.n)], &states,
		    &in);
		check_decode(k, &in, seed, RANDOM_INPUTS + i, &st);
		crdt_buf_fini(&in);
	}
	/* The unmutated corpus must all be accepted (control). */
	for (size_t i = 0; i < states.n; i++) {
		void *o;
		cr_assert_eq(decode(k, &cfg, states.v[i].data, states.v[i].len,
				 &o),
		    0, "seed=0x%llx corpus %zu", (unsigned long long)seed, i);
		free_obj(k, o);
	}
	/* A harness that rejects everything would prove nothing. */
	cr_assert_gt(st.rejected, 0);
	cr_assert_gt(st.accepted, 0, "seed=0x%llx: nothing accepted",
	    (unsigned long long)seed);
	free_corpus(&states);
	free_corpus(&ops);
	ASSERT_NO_LEAKS();
}

static void
run_apply(kind k, uint64_t salt)
{
	uint64_t seed = test_seed_mix(base_seed, salt);
	test_rng r;
	test_rng_init(&r, seed);
	corpus states, ops;
	build_corpus(k, &r, &states, &ops);
	cr_assert_gt(ops.n, 0);
	/* Targets: a non-empty decoded state, and an empty object with
	 * tight limits. */
	void *targets[2];
	const crdt_buf *s = &states.v[test_rng_below(&r, states.n)];
	cr_assert_eq(decode(k, &cfg, s->data, s->len, &targets[0]), 0);
	cr_assert_eq(new_obj(k, &tight, &targets[1]), 0);
	stats st = { 0, 0 };
	for (unsigned long i = 0; i < RANDOM_INPUTS + MUTATED_INPUTS; i++) {
		crdt_buf in;
		if (i < RANDOM_INPUTS) {
			tb_init(&in);
			random_input(&r, &in);
		} else {
			mutate(&r, &ops.v[test_rng_below(&r, ops.n)], &ops,
			    &in);
		}
		check_apply(k, targets[i % 2], &in, seed, i, &st);
		crdt_buf_fini(&in);
	}
	for (size_t i = 0; i < ops.n; i++)
		cr_assert_eq(apply(k, targets[0], ops.v[i].data, ops.v[i].len),
		    0, "seed=0x%llx corpus op %zu", (unsigned long long)seed,
		    i);
	cr_assert_gt(st.rejected, 0);
	cr_assert_gt(st.accepted, 0, "seed=0x%llx: nothing accepted",
	    (unsigned long long)seed);
	free_obj(k, targets[0]);
	free_obj(k, targets[1]);
	free_corpus(&states);
	free_corpus(&ops);
	ASSERT_NO_LEAKS();
}

Test(random_bytes, vclock_decode_survives_garbage)
{
	run_decoder(T_VCLOCK, 1);
}

Test(random_bytes, gset_decode_survives_garbage)
{
	run_decoder(T_GSET, 2);
}

Test(random_bytes, lww_decode_survives_garbage)
{
	run_decoder(T_LWW, 3);
}

Test(random_bytes, map_decode_survives_garbage)
{
	run_decoder(T_MAP, 4);
}

Test(random_bytes, gset_apply_op_survives_garbage)
{
	run_apply(T_GSET, 5);
}

Test(random_bytes, lww_apply_op_survives_garbage)
{
	run_apply(T_LWW, 6);
}

Test(random_bytes, map_apply_op_survives_garbage)
{
	run_apply(T_MAP, 7);
}
