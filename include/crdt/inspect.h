#ifndef CRDT_INSPECT_H
#define CRDT_INSPECT_H

/*
 * Read-only checks on a message or a sealed snapshot without a document:
 * what a tool (the `crdt` command, docs/cli.md), an archive or an auditor
 * uses to verify a signature or read a payload it holds the key for. The
 * rules are the document's own (docs/security.md): the same strict
 * envelope parse as crdt_msg_peek(), the same signed digest and the same
 * associated data, so a message these accept is one a document with that
 * ID and key accepts as far as signature and sealing go (its ops are not
 * decoded here).
 *
 * Every input is bytes borrowed for the call, bounded by the default
 * limits (crdt_config_default()); nothing is allocated except what is
 * appended to a caller's buffer. `doc` NULL means the zero (unbound)
 * document ID.
 */

#include "crdt/common.h"
#include "crdt/secure.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Check the signature of a signed message for document `doc`: the public
 * key must derive the sender ID and the Ed25519 signature must verify over
 * the document-bound digest of every byte before the signature slot.
 * Cost: one envelope parse, two BLAKE2b hashes, one Ed25519 verify.
 * @param pk_out  receives the signer's public key on 0 (may be NULL).
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG (the
 *         envelope), CRDT_EBADSIG (unsigned, or the signature fails),
 *         CRDT_EBADKEY (the key is not the sender's), CRDT_EWRONGDOC (a
 *         version-1 message, which names no document, with a non-zero
 *         `doc`), CRDT_ECRYPTO.
 */
CRDT_API CRDT_NODISCARD int crdt_msg_verify(const void *msg, size_t len,
    const crdt_doc_id *doc, uint8_t pk_out[CRDT_PUBLIC_KEY_BYTES]);

/**
 * Append a message's ops payload (msgpack `[op, ...]`, docs/document.md)
 * to `out`: a copy for a plaintext message; for a sealed one, the payload
 * opened with `key` (32 bytes, borrowed; the caller picks the key of the
 * message's epoch) under the document-bound associated data.
 * The signature is not checked (crdt_msg_verify()).
 * @param epoch_out  receives the epoch of a sealed payload, 0 for a
 *                   plaintext one (may be NULL).
 * @return 0, CRDT_EINVAL, the envelope's errors, CRDT_ENOKEY (sealed and
 *         `key` NULL), CRDT_EDECRYPT (wrong key, or forged or corrupted
 *         bytes), CRDT_EWRONGDOC, CRDT_ECRYPTO, CRDT_ENOMEM; on error
 *         out->len is restored and nothing of the plaintext remains in
 *         `out`.
 */
CRDT_API CRDT_NODISCARD int crdt_msg_payload(const void *msg, size_t len,
    const crdt_doc_id *doc, const uint8_t *key, crdt_buf *out,
    uint32_t *epoch_out);

/**
 * Append the plain snapshot a sealed snapshot (crdt_doc_save_sealed(),
 * kind 10) holds to `out`, opened with `key` (32 bytes, borrowed).
 * @param epoch_out  receives the epoch it was sealed under (may be NULL).
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG,
 *         CRDT_EDECRYPT, CRDT_EWRONGDOC, CRDT_ECRYPTO, CRDT_ENOMEM; on
 *         error out->len is restored.
 */
CRDT_API CRDT_NODISCARD int crdt_snapshot_unseal(const void *sealed,
    size_t len, const crdt_doc_id *doc, const uint8_t key[CRDT_DOC_KEY_BYTES],
    crdt_buf *out, uint32_t *epoch_out);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_INSPECT_H */
