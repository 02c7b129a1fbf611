#ifndef CRDT_STORE_IMPL_H
#define CRDT_STORE_IMPL_H

/*
 * Private to the store modules (store.c, store_sqlite.c; doc_store.c for
 * crdt__store_put_checkpoint_bg): the BLAKE2b
 * personalisation of a message digest (crdt_store_rec.digest). The front
 * end computes it and the SQLite backend re-checks stored rows with it,
 * so both must use these 16 bytes.
 */
#define CRDT__STORE_PERS_MSG "crdt.store.msg\0\0"

#include "crdt/store.h"

/* The backend's put_checkpoint and put_checkpoint_upto may be called on
 * the store's writer thread (crdt_store_put_checkpoint_bg): they use no
 * cfg->alloc memory and no thread-bound state. Set by the SQLite backend
 * on its own handles. */
void crdt__store_allow_bg(crdt_store *s);

/* crdt_store_put_checkpoint_bg(), dropping the loaded snapshot records up
 * to `upto` with the checkpoint (crdt_store_put_checkpoint_upto()): what a
 * document's automatic checkpoint writes. */
int crdt__store_put_checkpoint_bg(crdt_store *s, crdt_buf *snap,
    const crdt_vclock *covers, uint64_t upto);

#endif /* CRDT_STORE_IMPL_H */
