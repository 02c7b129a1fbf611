/*
 * Epoch keys (keyring.h).
 */
#include "keyring.h"
#include "envelope.h"

void
crdt__keys_init(crdt__keyring *kr, const crdt_allocator *a)
{
	memset(kr, 0, sizeof *kr);
	kr->a = a;
}

void
crdt__keys_fini(crdt__keyring *kr)
{
	if (kr->v != NULL) {
		crdt__memzero(kr->v, kr->cap * sizeof *kr->v);
		crdt__free(kr->a, kr->v, kr->cap * sizeof *kr->v);
	}
	kr->v = NULL;
	kr->n = kr->cap = 0;
}

const crdt__epoch_key *
crdt__keys_find(const crdt__keyring *kr, uint32_t epoch)
{
	for (size_t i = 0; i < kr->n; i++)
		if (kr->v[i].epoch == epoch)
			return &kr->v[i];
	return NULL;
}

int
crdt__keys_reserve(crdt__keyring *kr)
{
	if (kr->n < kr->cap)
		return 0;
	/* Grow by copy so the old block can be wiped, not just freed. */
	size_t ncap = kr->cap ? kr->cap * 2 : 4;
	crdt__epoch_key *v = crdt__malloc(kr->a, ncap * sizeof *v);
	if (v == NULL)
		return CRDT_ENOMEM;
	if (kr->v != NULL) {
		memcpy(v, kr->v, kr->n * sizeof *v);
		crdt__memzero(kr->v, kr->cap * sizeof *kr->v);
		crdt__free(kr->a, kr->v, kr->cap * sizeof *kr->v);
	}
	kr->v = v;
	kr->cap = ncap;
	return 0;
}

int
crdt__keys_put(crdt__keyring *kr, uint32_t epoch, const uint8_t *key)
{
	for (size_t i = 0; i < kr->n; i++) {
		if (kr->v[i].epoch == epoch) {
			memcpy(kr->v[i].key, key, CRDT_DOC_KEY_BYTES);
			return 0;
		}
	}
	CRDT_TRY(crdt__keys_reserve(kr));
	kr->v[kr->n].epoch = epoch;
	memcpy(kr->v[kr->n].key, key, CRDT_DOC_KEY_BYTES);
	kr->n++;
	return 0;
}

int
crdt__keys_seal(const crdt__keyring *kr, const crdt_doc_id *doc,
    crdt_buf *out, size_t mark, const uint8_t *plain, size_t n)
{
	const crdt__epoch_key *k = crdt__keys_find(kr, kr->cur);
	uint8_t nonce[CRDT__NONCE_BYTES], adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	if (k == NULL)
		return CRDT_ENOKEY;
	/* The header, up to the payload, bound to the document. */
	CRDT_TRY(crdt__env_ad(adbuf, CRDT__DOC_FORMAT_VERSION, doc,
	    out->data + mark, out->len - mark, &ad, &adlen));
	CRDT_TRY(crdt__random(nonce, sizeof nonce));
	CRDT_TRY(crdt__w_array(out, 3));
	CRDT_TRY(crdt__w_uint(out, k->epoch));
	CRDT_TRY(crdt__w_bin(out, nonce, sizeof nonce));
	CRDT_TRY(crdt__w_bin_header(out, n + CRDT__TAG_BYTES));
	/* Room for the ciphertext first: appending may move out->data. */
	size_t at = out->len;
	CRDT_TRY(crdt_buf_append(out, plain, n));
	CRDT_TRY(crdt_buf_append(out, nonce, CRDT__TAG_BYTES));
	return crdt__aead_seal(out->data + at, plain, n, ad, adlen, nonce,
	    k->key);
}
