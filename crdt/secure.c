/* Identities: Ed25519 keypairs and the replica IDs derived from them. */
#include "internal.h"
#include "crdt/secure.h"

struct crdt_identity {
	crdt_allocator a;
	uint8_t pk[CRDT_PUBLIC_KEY_BYTES];
	uint8_t sk[CRDT__SK_BYTES];
	crdt_replica_id id;
};

int
crdt_replica_id_from_public_key(const uint8_t pk[CRDT_PUBLIC_KEY_BYTES],
    crdt_replica_id *out)
{
	uint8_t h[32];
	if (pk == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__hash_personal(h, sizeof h, pk, CRDT_PUBLIC_KEY_BYTES,
	    "crdt.id.v1\0\0\0\0\0"));
	/* An all-zero prefix is as likely as guessing a key; keep the
	 * invariant that IDs are never zero anyway. */
	if (crdt_replica_id_from_bytes(out, h, CRDT_REPLICA_ID_BYTES) != 0)
		h[0] = 1, memcpy(out->bytes, h, CRDT_REPLICA_ID_BYTES);
	return 0;
}

int
crdt_identity_from_seed(const crdt_config *cfg,
    const uint8_t seed[CRDT_SEED_BYTES], crdt_identity **out)
{
	crdt_config c;
	if (seed == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	crdt_identity *id = crdt__malloc(&c.alloc, sizeof *id);
	if (id == NULL)
		return CRDT_ENOMEM;
	id->a = c.alloc;
	int rc = crdt__sign_seed_keypair(id->pk, id->sk, seed);
	if (rc == 0)
		rc = crdt_replica_id_from_public_key(id->pk, &id->id);
	if (rc < 0) {
		crdt_identity_free(id);
		return rc;
	}
	*out = id;
	return 0;
}

int
crdt_identity_new(const crdt_config *cfg, crdt_identity **out)
{
	uint8_t seed[CRDT_SEED_BYTES];
	if (out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__random(seed, sizeof seed));
	int rc = crdt_identity_from_seed(cfg, seed, out);
	crdt__memzero(seed, sizeof seed);
	return rc;
}

void
crdt_identity_free(crdt_identity *id)
{
	if (id == NULL)
		return;
	crdt_allocator a = id->a;
	crdt__memzero(id, sizeof *id);
	crdt__free(&a, id, sizeof *id);
}

void
crdt_identity_public_key(const crdt_identity *id,
    uint8_t pk[CRDT_PUBLIC_KEY_BYTES])
{
	if (id != NULL && pk != NULL)
		memcpy(pk, id->pk, CRDT_PUBLIC_KEY_BYTES);
}

void
crdt_identity_replica_id(const crdt_identity *id, crdt_replica_id *out)
{
	if (id != NULL && out != NULL)
		*out = id->id;
}

const uint8_t *
crdt__identity_sk(const crdt_identity *id)
{
	return id->sk;
}

const uint8_t *
crdt__identity_pk(const crdt_identity *id)
{
	return id->pk;
}

int
crdt_doc_key_generate(uint8_t key[CRDT_DOC_KEY_BYTES])
{
	if (key == NULL)
		return CRDT_EINVAL;
	return crdt__random(key, CRDT_DOC_KEY_BYTES);
}
