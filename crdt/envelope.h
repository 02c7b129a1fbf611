#ifndef CRDT_ENVELOPE_H
#define CRDT_ENVELOPE_H
/*
 * Message envelope: the strict parse of the bytes every message shares
 * (header, causal dependencies, payload slot, auth slot) and the document
 * binding of what is signed and sealed. Below the document runtime: it
 * sees no crdt_doc, so crdt_msg_peek() and doc.c's ingest run the same
 * checks on the same bytes.
 *
 * Layout (docs/wire-format.md, "Message"):
 *   [version, 5, sender, counter, hlc, deps, payload, auth]
 *   deps    = [id, c, id, c, ...], IDs strictly ascending, c >= 1, never
 *             the sender
 *   payload = bin(ops) | [epoch, nonce(24), bin(ciphertext + tag)]
 *   auth    = nil | [public key(32), signature(64)]
 */
#include "internal.h"

/* One causal dependency (a replica ID and the counter needed from it). */
typedef struct crdt__iddep {
	crdt_replica_id id;
	uint64_t c;
} crdt__iddep;

/*
 * Room for `n` dependencies, or NULL (CRDT_ENOMEM). Called once per
 * message, after `n` was checked against the bytes left, so a hostile
 * count never sizes an allocation beyond the input.
 */
typedef crdt__iddep *(*crdt__deps_fn)(void *ud, size_t n);

/* A parsed envelope: views into the caller's bytes. */
typedef struct crdt__env {
	unsigned version; /* 1: names no document (envelope.h) */
	crdt_replica_id sender;
	uint64_t counter, hlc;
	size_t ndeps;
	size_t payload_off; /* first byte of the payload slot */
	size_t auth_off;    /* first byte of the auth slot */
	bool sealed, has_auth;
	const uint8_t *payload; /* plaintext ops; NULL when sealed */
	size_t plen;
	uint32_t epoch; /* sealed only */
	const uint8_t *nonce, *ct;
	size_t ctlen;
	const uint8_t *pk, *sig; /* has_auth only */
} crdt__env;

/*
 * Parse and check the whole envelope of `len` bytes under `lim` (every
 * count, length, minimal encoding, ordering; trailing bytes refused).
 * Dependencies go to the array `deps(ud, n)` returns, or are only checked
 * when `deps` is NULL. Ops and signatures are not looked at.
 * @return 0, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG, CRDT_ENOMEM.
 */
int crdt__env_parse(const crdt_limits *lim, const void *bytes, size_t len,
    crdt__env *e, crdt__deps_fn deps, void *ud);

/*
 * What a signature signs: BLAKE2b-256 (personal "crdt.msg.v2") of the
 * bytes before the auth slot, keyed with the document ID, so a message
 * verifies in its own document only. Version 1 signed the unkeyed
 * "crdt.msg.v1" hash; it is verified that way for documents whose ID is
 * zero, and refused (CRDT_EWRONGDOC) by every other.
 * @return 0, CRDT_EWRONGDOC or CRDT_ECRYPTO.
 */
int crdt__env_sig_digest(uint8_t out[32], unsigned version,
    const crdt_doc_id *doc, const void *bytes, size_t len);

/*
 * Associated data of a sealed payload or sealed snapshot whose header is
 * `len` bytes: version 2 authenticates the 32-byte digest (personal
 * "crdt.ad.v2", keyed with the document ID) of the header, version 1 the
 * header itself. *ad points at `buf` or at `bytes`.
 * @return 0, CRDT_EWRONGDOC or CRDT_ECRYPTO.
 */
int crdt__env_ad(uint8_t buf[32], unsigned version, const crdt_doc_id *doc,
    const void *bytes, size_t len, const uint8_t **ad, size_t *adlen);

/* Whether `doc` is the zero ID (an unbound document). */
bool crdt__doc_id_zero(const crdt_doc_id *doc);

#endif /* CRDT_ENVELOPE_H */
