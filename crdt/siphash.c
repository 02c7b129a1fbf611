/*
 * The keyed hash of every hash table and treap priority: SipHash-1-3.
 *
 * Why not libsodium's crypto_shorthash (SipHash-2-4), which this file
 * replaced: the tables hash what peers choose (dots, replica IDs, record
 * identities), so the hash must be keyed, but it runs several times per
 * received message (the G-Set's record identity, the causal buffer's dot
 * table on every find, insert, regrowth and deletion, the chat index's
 * tables), and 2-4 through libsodium's two calls cost about 115
 * instructions for 12 bytes, 11 % of a shuffled delivery's instructions
 * (docs/performance.md, *The causal buffer*). SipHash-1-3 (one
 * compression round per 8-byte word, three to finish) is what Rust's
 * standard hash tables use against hash flooding: a peer that does not
 * know the key still cannot choose inputs that collide. Nothing derived
 * from this hash is stored or sent: each table draws its key at random
 * when it is made and rehashes under it.
 *
 * The implementation is generic in the round counts so the tests check it
 * against libsodium's SipHash-2-4 on every length (tests/test_siphash.c):
 * same rounds, same padding, same words.
 */
#include "internal.h"

static inline uint64_t
rotl(uint64_t x, unsigned b)
{
	return x << b | x >> (64 - b);
}

static inline uint64_t
le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

#define SIPROUND(v0, v1, v2, v3)                                        \
	do {                                                            \
		v0 += v1;                                               \
		v1 = rotl(v1, 13);                                      \
		v1 ^= v0;                                               \
		v0 = rotl(v0, 32);                                      \
		v2 += v3;                                               \
		v3 = rotl(v3, 16);                                      \
		v3 ^= v2;                                               \
		v0 += v3;                                               \
		v3 = rotl(v3, 21);                                      \
		v3 ^= v0;                                               \
		v2 += v1;                                               \
		v1 = rotl(v1, 17);                                      \
		v1 ^= v2;                                               \
		v2 = rotl(v2, 32);                                      \
	} while (0)

static inline uint64_t
sip(const uint8_t key[16], const uint8_t *p, size_t n, unsigned cr,
    unsigned dr)
{
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v0 = k0 ^ UINT64_C(0x736f6d6570736575);
	uint64_t v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
	uint64_t v2 = k0 ^ UINT64_C(0x6c7967656e657261);
	uint64_t v3 = k1 ^ UINT64_C(0x7465646279746573);
	const uint8_t *end = p + (n & ~(size_t)7);

	for (; p != end; p += 8) {
		uint64_t m = le64(p);
		v3 ^= m;
		for (unsigned i = 0; i < cr; i++)
			SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	/* The last word: the 0..7 bytes left and the length's low byte. */
	uint64_t b = (uint64_t)n << 56;
	for (unsigned i = 0; i < (n & 7); i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	for (unsigned i = 0; i < cr; i++)
		SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (unsigned i = 0; i < dr; i++)
		SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t
crdt__siphash(const uint8_t key[16], const void *p, size_t n)
{
	return sip(key, p, n, 1, 3);
}

uint64_t
crdt__siphash_rounds(const uint8_t key[16], const void *p, size_t n,
    unsigned c, unsigned d)
{
	return sip(key, p, n, c, d);
}
