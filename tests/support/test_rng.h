#ifndef CRDT_TEST_RNG_H
#define CRDT_TEST_RNG_H

/*
 * Seeded PRNG for property tests (splitmix64: tiny, full-period, good
 * enough statistically for picking test cases). Deterministic for a seed,
 * so a failure reproduces with CRDT_TEST_SEED=<seed printed>.
 */

#include <stddef.h>
#include <stdint.h>

typedef struct test_rng {
	uint64_t s;
} test_rng;

/* The base seed: $CRDT_TEST_SEED (decimal or 0x hex) or `dflt`. */
uint64_t test_seed(uint64_t dflt);
void test_rng_init(test_rng *r, uint64_t seed);
uint64_t test_rng_next(test_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t test_rng_below(test_rng *r, uint64_t n);
/* True with probability num/den. */
int test_rng_chance(test_rng *r, unsigned num, unsigned den);
void test_rng_bytes(test_rng *r, void *out, size_t n);
/* Derive an independent seed for sub-case `i` of a run with base `seed`. */
uint64_t test_seed_mix(uint64_t seed, uint64_t i);

#endif /* CRDT_TEST_RNG_H */
