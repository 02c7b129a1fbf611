/*
 * Read-only checks without a document (include/crdt/inspect.h). The
 * digests and the associated data come from envelope.c, the same code the
 * document's ingest runs, so a tool never disagrees with a replica.
 */
#include "envelope.h"
#include "crdt/inspect.h"

static const crdt_doc_id zero_doc;

/*
 * Open `ct` (ctlen >= tag) into `out` at its end, in place (libsodium
 * allows the output to overlap the input exactly). A failed open wipes
 * what was copied, so no ciphertext or partial plaintext is left behind
 * past out->len.
 */
static int
open_into(crdt_buf *out, const uint8_t *ct, size_t ctlen, const uint8_t *ad,
    size_t adlen, const uint8_t *nonce, const uint8_t *key)
{
	size_t mark = out->len;

	CRDT_TRY(crdt_buf_append(out, ct, ctlen));
	uint8_t *p = out->data + mark;
	int rc = crdt__aead_open(p, p, ctlen, ad, adlen, nonce, key);
	if (rc < 0) {
		crdt__memzero(p, ctlen);
		out->len = mark;
		return rc;
	}
	out->len = mark + ctlen - CRDT__TAG_BYTES;
	return 0;
}

int
crdt_msg_verify(const void *msg, size_t len, const crdt_doc_id *doc,
    uint8_t pk_out[CRDT_PUBLIC_KEY_BYTES])
{
	crdt_config c;
	crdt__env e;
	crdt_replica_id id;
	uint8_t h[32];

	if (msg == NULL)
		return CRDT_EINVAL;
	if (doc == NULL)
		doc = &zero_doc;
	CRDT_TRY(crdt__crypto_init());
	crdt_config_default(&c);
	CRDT_TRY(crdt__env_parse(&c.limits, msg, len, &e, NULL, NULL));
	if (!e.has_auth)
		return CRDT_EBADSIG;
	CRDT_TRY(crdt_replica_id_from_public_key(e.pk, &id));
	if (crdt_replica_id_cmp(&id, &e.sender) != 0)
		return CRDT_EBADKEY;
	CRDT_TRY(crdt__env_sig_digest(h, e.version, doc, msg, e.auth_off));
	CRDT_TRY(crdt__verify(e.sig, h, sizeof h, e.pk));
	if (pk_out != NULL)
		memcpy(pk_out, e.pk, CRDT_PUBLIC_KEY_BYTES);
	return 0;
}

int
crdt_msg_payload(const void *msg, size_t len, const crdt_doc_id *doc,
    const uint8_t *key, crdt_buf *out, uint32_t *epoch_out)
{
	crdt_config c;
	crdt__env e;

	if (msg == NULL || out == NULL)
		return CRDT_EINVAL;
	if (doc == NULL)
		doc = &zero_doc;
	crdt_config_default(&c);
	CRDT_TRY(crdt__env_parse(&c.limits, msg, len, &e, NULL, NULL));
	if (!e.sealed) {
		CRDT_TRY(crdt_buf_append(out, e.payload, e.plen));
		if (epoch_out != NULL)
			*epoch_out = 0;
		return 0;
	}
	if (key == NULL)
		return CRDT_ENOKEY;
	CRDT_TRY(crdt__crypto_init());
	uint8_t adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	CRDT_TRY(crdt__env_ad(adbuf, e.version, doc, msg, e.payload_off, &ad,
	    &adlen));
	CRDT_TRY(open_into(out, e.ct, e.ctlen, ad, adlen, e.nonce, key));
	if (epoch_out != NULL)
		*epoch_out = e.epoch;
	return 0;
}

int
crdt_snapshot_unseal(const void *sealed, size_t len, const crdt_doc_id *doc,
    const uint8_t key[CRDT_DOC_KEY_BYTES], crdt_buf *out, uint32_t *epoch_out)
{
	crdt_config c;
	crdt__rd r;
	size_t n, nl, ctlen;
	uint64_t ep;
	unsigned ver;
	const uint8_t *nonce, *ct;

	if (sealed == NULL || key == NULL || out == NULL)
		return CRDT_EINVAL;
	if (doc == NULL)
		doc = &zero_doc;
	crdt_config_default(&c);
	/* The layout check mirrors snapshot.c's open_sealed_snapshot():
	 * [v, 10, [epoch, nonce, ct]], the associated data being the digest
	 * of the bytes before the inner array. */
	CRDT_TRY(crdt__rd_init(&r, &c.limits, sealed, len));
	CRDT_TRY(crdt__rd_header_v(&r, CRDT__KIND_SEALED_SNAP, &n, &ver));
	if (n != 3)
		return CRDT_EMALFORMED;
	size_t hdr = (size_t)(r.p - (const uint8_t *)sealed);
	CRDT_TRY(crdt__rd_array_n(&r, 3));
	CRDT_TRY(crdt__rd_uint(&r, &ep));
	CRDT_TRY(crdt__rd_bin(&r, &nonce, &nl));
	CRDT_TRY(crdt__rd_blob(&r, &ct, &ctlen));
	r.depth--;
	CRDT_TRY(crdt__rd_done(&r));
	if (ep > UINT32_MAX || nl != CRDT__NONCE_BYTES ||
	    ctlen < CRDT__TAG_BYTES)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__crypto_init());
	uint8_t adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	CRDT_TRY(crdt__env_ad(adbuf, ver, doc, sealed, hdr, &ad, &adlen));
	CRDT_TRY(open_into(out, ct, ctlen, ad, adlen, nonce, key));
	if (epoch_out != NULL)
		*epoch_out = (uint32_t)ep;
	return 0;
}
