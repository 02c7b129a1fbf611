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

/* ---- signatures, hashes and AEAD for signed and encrypted modes ---- */

int
crdt__hash_personal(uint8_t *out, size_t outlen, const void *in, size_t inlen,
    const char personal[16])
{
	static const uint8_t salt[crypto_generichash_blake2b_SALTBYTES];
	uint8_t pers[crypto_generichash_blake2b_PERSONALBYTES];

	CRDT_TRY(crdt__crypto_init());
	memcpy(pers, personal, sizeof pers);
	return crypto_generichash_blake2b_salt_personal(out, outlen, in, inlen,
		   NULL, 0, salt, pers) == 0 ?
	    0 :
	    CRDT_ECRYPTO;
}

_Static_assert(sizeof(crypto_generichash_blake2b_state) <=
    sizeof(((crdt__hstate *)0)->opaque), "room for BLAKE2b's state");

int
crdt__hash_begin(crdt__hstate *h, size_t outlen, const char personal[16])
{
	static const uint8_t salt[crypto_generichash_blake2b_SALTBYTES];
	uint8_t pers[crypto_generichash_blake2b_PERSONALBYTES];

	CRDT_TRY(crdt__crypto_init());
	memcpy(pers, personal, sizeof pers);
	h->outlen = outlen;
	return crypto_generichash_blake2b_init_salt_personal(
		   (crypto_generichash_blake2b_state *)(void *)h->opaque, NULL, 0,
		   outlen, salt, pers) == 0 ?
	    0 :
	    CRDT_ECRYPTO;
}

void
crdt__hash_add(crdt__hstate *h, const void *in, size_t inlen)
{
	/* Cannot fail once the state was made (libsodium checks only the
	 * state's own fields). */
	(void)crypto_generichash_blake2b_update(
	    (crypto_generichash_blake2b_state *)(void *)h->opaque, in, inlen);
}

void
crdt__hash_end(crdt__hstate *h, uint8_t *out)
{
	(void)crypto_generichash_blake2b_final(
	    (crypto_generichash_blake2b_state *)(void *)h->opaque, out,
	    h->outlen);
}

int
crdt__sign_seed_keypair(uint8_t pk[32], uint8_t sk[64], const uint8_t seed[32])
{
	CRDT_TRY(crdt__crypto_init());
	return crypto_sign_seed_keypair(pk, sk, seed) == 0 ? 0 : CRDT_ECRYPTO;
}

void
crdt__sign(uint8_t sig[64], const uint8_t *m, size_t mlen,
    const uint8_t sk[64])
{
	crypto_sign_detached(sig, NULL, m, mlen, sk);
}

int
crdt__verify(const uint8_t sig[64], const uint8_t *m, size_t mlen,
    const uint8_t pk[32])
{
	/* Never say why verification failed. */
	return crypto_sign_verify_detached(sig, m, mlen, pk) == 0 ?
	    0 :
	    CRDT_EBADSIG;
}

int
crdt__aead_seal(uint8_t *c, const uint8_t *m, size_t mlen, const uint8_t *ad,
    size_t adlen, const uint8_t nonce[24], const uint8_t key[32])
{
	unsigned long long clen;
	return crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, m, mlen,
		   ad, adlen, NULL, nonce, key) == 0 ?
	    0 :
	    CRDT_ECRYPTO;
}

int
crdt__aead_open(uint8_t *m, const uint8_t *c, size_t clen, const uint8_t *ad,
    size_t adlen, const uint8_t nonce[24], const uint8_t key[32])
{
	unsigned long long mlen;
	if (clen < crypto_aead_xchacha20poly1305_ietf_ABYTES)
		return CRDT_EDECRYPT;
	return crypto_aead_xchacha20poly1305_ietf_decrypt(m, &mlen, NULL, c,
		   clen, ad, adlen, nonce, key) == 0 ?
	    0 :
	    CRDT_EDECRYPT;
}

void
crdt__memzero(void *p, size_t n)
{
	sodium_memzero(p, n);
}

int
crdt__hash_keyed(uint8_t *out, size_t outlen, const void *in, size_t inlen,
    const uint8_t *key, size_t keylen, const char personal[16])
{
	static const uint8_t salt[crypto_generichash_blake2b_SALTBYTES];
	uint8_t pers[crypto_generichash_blake2b_PERSONALBYTES];

	CRDT_TRY(crdt__crypto_init());
	memcpy(pers, personal, sizeof pers);
	return crypto_generichash_blake2b_salt_personal(out, outlen, in, inlen,
		   key, keylen, salt, pers) == 0 ?
	    0 :
	    CRDT_ECRYPTO;
}
