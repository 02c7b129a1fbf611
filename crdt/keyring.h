#ifndef CRDT_KEYRING_H
#define CRDT_KEYRING_H
/*
 * Epoch keys of an encrypted document (secure.h): every key added, by
 * epoch, and the current epoch that new messages and sealed snapshots
 * are sealed under. Below the document: it sees no crdt_doc. Keys are
 * wiped when they are dropped or their block moves.
 */
#include "internal.h"
#include "crdt/secure.h"

typedef struct crdt__epoch_key {
	uint32_t epoch;
	uint8_t key[CRDT_DOC_KEY_BYTES];
} crdt__epoch_key;

typedef struct crdt__keyring {
	const crdt_allocator *a;
	crdt__epoch_key *v;
	size_t n, cap;
	uint32_t cur; /* the epoch new payloads are sealed under */
} crdt__keyring;

void crdt__keys_init(crdt__keyring *kr, const crdt_allocator *a);
/* Wipes and frees every key. */
void crdt__keys_fini(crdt__keyring *kr);
/* The key of `epoch`, or NULL. O(keys): a handful per document. */
const crdt__epoch_key *crdt__keys_find(const crdt__keyring *kr,
    uint32_t epoch);
/* Room for one more key: crdt__keys_put() of a new epoch then cannot
 * fail. CRDT_ENOMEM. */
int crdt__keys_reserve(crdt__keyring *kr);
/* Add the key of `epoch`, or replace it. CRDT_ENOMEM (nothing changed). */
int crdt__keys_put(crdt__keyring *kr, uint32_t epoch, const uint8_t *key);
/*
 * Seal `plain` (n bytes) into `out` as [epoch, nonce, ciphertext] under
 * the current epoch's key, with out's bytes from `mark` on (the header,
 * bound to document `doc`) as associated data.
 * @return 0, CRDT_ENOKEY, CRDT_ENOMEM or CRDT_ECRYPTO.
 */
int crdt__keys_seal(const crdt__keyring *kr, const crdt_doc_id *doc,
    crdt_buf *out, size_t mark, const uint8_t *plain, size_t n);

#endif /* CRDT_KEYRING_H */
