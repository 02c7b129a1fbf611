#ifndef CRDT_STORE_IMPL_H
#define CRDT_STORE_IMPL_H

/*
 * Private to the store modules (store.c, store_sqlite.c): the BLAKE2b
 * personalisation of a message digest (crdt_store_rec.digest). The front
 * end computes it and the SQLite backend re-checks stored rows with it,
 * so both must use these 16 bytes.
 */
#define CRDT__STORE_PERS_MSG "crdt.store.msg\0\0"

#endif /* CRDT_STORE_IMPL_H */
