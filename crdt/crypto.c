/* The only file that talks to libsodium. */
#include <sodium.h>

#include "internal.h"

int
crdt__crypto_init(void)
{
	/* sodium_init() is idempotent and thread-safe; 1 = already done. */
	return sodium_init() < 0 ? CRDT_ECRYPTO : 0;
}

int
crdt__random(void *buf, size_t n)
{
	CRDT_TRY(crdt__crypto_init());
	randombytes_buf(buf, n);
	return 0;
}

uint64_t
crdt__siphash(const uint8_t key[16], const void *p, size_t n)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, p, n, key);
	memcpy(&h, out, sizeof h);
	return h;
}
