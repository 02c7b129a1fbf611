#ifndef CRDT_SECURE_H
#define CRDT_SECURE_H

/*
 * Identities, signed mode and encrypted mode (libsodium underneath; no
 * libsodium type appears here). See docs/security.md for the threat model
 * and the exact bytes signed and authenticated.
 *
 * Signed mode: every message carries the author's Ed25519 public key and a
 * signature over the BLAKE2b-256 hash (personalisation "crdt.msg.v2", keyed
 * with the document ID crdt_config.doc_id) of every byte of the message
 * before the signature slot: header, causal dependencies and payload. A
 * message therefore verifies only in the document it was signed for. The
 * replica ID must be the first 16 bytes of
 * BLAKE2b (personalisation "crdt.id.v1") of the public key, so IDs are
 * self-certifying.
 *
 * Encrypted mode: the payload (the ops) is sealed with the document key of
 * an epoch (XChaCha20-Poly1305, random 24-byte nonce); a digest of the
 * header bytes keyed with the document ID is the associated data. A relay configured with no key verifies, buffers,
 * deduplicates, logs, syncs and forwards messages without reading them.
 */

#include "crdt/common.h"
#include "crdt/doc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CRDT_PUBLIC_KEY_BYTES 32
#define CRDT_SEED_BYTES 32
#define CRDT_DOC_KEY_BYTES 32

typedef struct crdt_identity crdt_identity;

/**
 * New random Ed25519 identity. `cfg` borrowed (allocator), NULL = libc.
 * `*out` transferred: crdt_identity_free() (wipes the secret key).
 * @return 0, CRDT_EINVAL, CRDT_ENOMEM, CRDT_ECRYPTO.
 */
CRDT_API CRDT_NODISCARD int crdt_identity_new(const crdt_config *cfg,
    crdt_identity **out);
/** Identity from a 32-byte seed (borrowed; the same seed gives the same key). */
CRDT_API CRDT_NODISCARD int crdt_identity_from_seed(const crdt_config *cfg,
    const uint8_t seed[CRDT_SEED_BYTES], crdt_identity **out);
/** Wipe and free; NULL is a no-op. */
CRDT_API void crdt_identity_free(crdt_identity *id);
/** Copy the public key into `pk`. */
CRDT_API void crdt_identity_public_key(const crdt_identity *id,
    uint8_t pk[CRDT_PUBLIC_KEY_BYTES]);
/** The replica ID derived from the public key. */
CRDT_API void crdt_identity_replica_id(const crdt_identity *id,
    crdt_replica_id *out);
/** Replica ID of a public key (borrowed). @return 0, CRDT_EINVAL, CRDT_ECRYPTO. */
CRDT_API CRDT_NODISCARD int crdt_replica_id_from_public_key(
    const uint8_t pk[CRDT_PUBLIC_KEY_BYTES], crdt_replica_id *out);
/** Fill `key` with a fresh random document key. @return 0 or CRDT_ECRYPTO. */
CRDT_API CRDT_NODISCARD int crdt_doc_key_generate(uint8_t key[CRDT_DOC_KEY_BYTES]);

/** Security settings of a document; every replica must agree on the modes. */
typedef struct crdt_doc_security {
	bool signed_mode;   /* refuse messages without a valid signature */
	const crdt_identity *identity; /* borrowed for the document's life;
					* signs local commits (required to
					* commit in signed mode); its replica
					* ID must be the document's */
	bool encrypted;     /* payloads are sealed */
	const uint8_t *key; /* 32 bytes (copied), or NULL in encrypted mode:
			     * a content-blind relay */
	uint32_t epoch;     /* epoch of `key`: sealing uses it */
	const uint8_t *admin_key; /* NULL, or the 32-byte public key of the
				   * admin: only writers it allows (and the
				   * admin) may write. Needs signed mode. */
	bool sync_snapshots; /* default false: trust sync peers with state.
			      * A snapshot is merged state, not signed
			      * messages. Unsigned, unencrypted: sync sends
			      * and takes plain snapshots whatever this says.
			      * Signed: only with this set (without it a
			      * lagging peer gets what the log holds, as
			      * messages). Encrypted: only sealed under the
			      * document key (never plaintext), taken by
			      * default, but with an allowlist (admin_key)
			      * only with this set: a key holder need not be
			      * a permitted writer. With it, any sync peer
			      * (encrypted: any key holder) can write any
			      * state as any writer. docs/security.md, Trust
			      * levels. */
} crdt_doc_security;

/**
 * Set the security settings, before the document holds data and, when
 * `admin_key` is given, before any object is registered (the allowlist is
 * a hidden object "__acl" registered first). All or nothing: on any
 * error nothing is set, so the same call can be retried.
 * @return 0, CRDT_EINVAL (identity does not match the replica ID, key
 *         without encryption, admin without signed mode), CRDT_ESTATE
 *         (data or objects already present), CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_set_security(crdt_doc *d,
    const crdt_doc_security *s);
/**
 * Add the key of another epoch (copied; key rotation). With `current`,
 * new messages are sealed under it from now on; older epochs stay readable
 * for as long as their keys are held.
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (not encrypted, or a relay),
 *         CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_add_key(crdt_doc *d, uint32_t epoch,
    const uint8_t key[CRDT_DOC_KEY_BYTES], bool current);
/**
 * Admin only: allow (or revoke) `writer`. Replicated like any change; a
 * message from a writer is judged by the allowlist as of the admin
 * messages it names and as of those in its own whole causal past, so
 * every replica decides alike (security.md, "Write permissions"). Messages from
 * writers not allowed are refused with CRDT_EPERM, before anything of
 * them is kept when the admin history they name is already here.
 * Staging follows doc.h (msg_out NULL inside a transaction).
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (no allowlist), CRDT_EPERM (not the
 *         admin), commit errors.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_allow(crdt_doc *d,
    const crdt_replica_id *writer, bool allowed, crdt_buf *msg_out);
/** Whether `writer` may write now (as of everything applied here).
 * Reads an index kept current by every commit, receive and load:
 * O(changes for `writer`), never allocates. */
CRDT_API bool crdt_doc_allowed(crdt_doc *d, const crdt_replica_id *writer);

/**
 * Append crdt_doc_save()'s snapshot sealed under the current key (for
 * storage at rest). crdt_doc_load() recognises and opens it.
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (no key), CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_save_sealed(const crdt_doc *d,
    crdt_buf *out);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_SECURE_H */
