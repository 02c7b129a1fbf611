#include <stdlib.h>

#include "test_rng.h"

uint64_t
test_seed(uint64_t dflt)
{
	const char *e = getenv("CRDT_TEST_SEED");
	if (e == NULL || *e == '\0')
		return dflt;
	char *end;
	unsigned long long v = strtoull(e, &end, 0);
	return *end == '\0' ? (uint64_t)v : dflt;
}

void
test_rng_init(test_rng *r, uint64_t seed)
{
	r->s = seed;
}

uint64_t
test_rng_next(test_rng *r)
{
	uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Rejection sampling: no modulo bias, which matters for tiny ranges
 * drawn millions of times. */
uint64_t
test_rng_below(test_rng *r, uint64_t n)
{
	uint64_t lim = UINT64_MAX - UINT64_MAX % n;
	uint64_t v;
	do
		v = test_rng_next(r);
	while (v >= lim);
	return v % n;
}

int
test_rng_chance(test_rng *r, unsigned num, unsigned den)
{
	return test_rng_below(r, den) < num;
}

void
test_rng_bytes(test_rng *r, void *out, size_t n)
{
	uint8_t *p = out;
	while (n > 0) {
		uint64_t v = test_rng_next(r);
		for (int i = 0; i < 8 && n > 0; i++, n--) {
			*p++ = (uint8_t)v;
			v >>= 8;
		}
	}
}

uint64_t
test_seed_mix(uint64_t seed, uint64_t i)
{
	test_rng r = { seed ^ (i * UINT64_C(0xD1B54A32D192ED03)) };
	return test_rng_next(&r);
}
