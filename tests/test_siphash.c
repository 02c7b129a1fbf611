/*
 * White-box: the tables' keyed hash (crdt/siphash.c). Its round function,
 * padding and key schedule are checked against libsodium's SipHash-2-4
 * (crypto_shorthash) on every length up to 100 bytes and every alignment,
 * so the 1-3 variant the tables use differs from a reference only in the
 * round counts. Linked against the library's objects.
 */
#include <sodium.h>
#include <string.h>

#include <criterion/criterion.h>

#include "internal.h"

TestSuite(siphash);

static uint64_t
ref24(const uint8_t key[16], const uint8_t *p, size_t n)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t h = 0;
	cr_assert_eq(crypto_shorthash(out, p, n, key), 0);
	for (int i = 7; i >= 0; i--)
		h = h << 8 | out[i];
	return h;
}

Test(siphash, the_2_4_rounds_match_libsodium_on_every_length)
{
	uint8_t key[16], buf[128];
	cr_assert(sodium_init() >= 0);
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)(i * 7 + 3);
	for (int i = 0; i < 128; i++)
		buf[i] = (uint8_t)(i * 31 + 11);
	for (size_t off = 0; off < 8; off++)
		for (size_t n = 0; n <= 100; n++)
			cr_assert_eq(crdt__siphash_rounds(key, buf + off, n, 2, 4),
			    ref24(key, buf + off, n), "n %zu off %zu", n, off);
}

/* The reference's published vector (key 00..0f, message 00..0e). */
Test(siphash, the_2_4_rounds_give_the_published_vector)
{
	uint8_t key[16], m[15];
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 15; i++)
		m[i] = (uint8_t)i;
	cr_assert_eq(crdt__siphash_rounds(key, m, 15, 2, 4),
	    UINT64_C(0xa129ca6149be45e5));
}

Test(siphash, the_tables_hash_is_1_3_and_depends_on_key_and_every_byte)
{
	uint8_t key[16] = { 1 }, key2[16] = { 2 }, m[24] = { 0 };
	uint64_t h = crdt__siphash(key, m, sizeof m);
	cr_assert_eq(h, crdt__siphash_rounds(key, m, sizeof m, 1, 3));
	cr_assert_neq(h, crdt__siphash_rounds(key, m, sizeof m, 2, 4));
	cr_assert_neq(h, crdt__siphash(key2, m, sizeof m));
	for (size_t i = 0; i < sizeof m; i++) {
		m[i] ^= 1;
		cr_assert_neq(crdt__siphash(key, m, sizeof m), h, "byte %zu", i);
		m[i] ^= 1;
	}
	/* The length is hashed: a zero byte more is another input. */
	cr_assert_neq(crdt__siphash(key, m, 23), crdt__siphash(key, m, 24));
}
