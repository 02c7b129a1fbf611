#ifndef CRDT_STORE_SQLITE_IMPL_H
#define CRDT_STORE_SQLITE_IMPL_H

/*
 * Private to the SQLite backend (store_sqlite.c, store_sqlite_schema.c):
 * the schema of each version, as sqlite_schema keeps it, the steps from
 * version 1 to 2 and 2 to 3 (docs/storage.md, "Versions"), and the
 * loaded snapshot records (store_sqlite_snaps.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#include "crdt/common.h"

typedef struct crdt__sq_obj {
	const char *name, *sql;
} crdt__sq_obj;

/* sqlite_schema rows of each version, ordered by name. */
extern const crdt__sq_obj crdt__sq_schema_v1[];
extern const size_t crdt__sq_schema_v1_n;
extern const crdt__sq_obj crdt__sq_schema_v2[];
extern const size_t crdt__sq_schema_v2_n;
extern const crdt__sq_obj crdt__sq_schema_v3[];
extern const size_t crdt__sq_schema_v3_n;

/* Bytes of a message's digest in a version-2 row: the first 12 of its
 * BLAKE2b-256 (crdt_store_rec.digest). */
#define CRDT__SQ_MSG_DIGEST 12

/*
 * Rewrite a version-1 store (its schema already checked) into version 2,
 * inside the write transaction the caller holds: nothing is committed
 * here, so a failure or a crash anywhere leaves the version-1 file as it
 * was once the caller rolls back (or the WAL is recovered). Returns an
 * SQLite result code.
 */
int crdt__sq_migrate_v1(sqlite3 *db);
/* Version 2 -> 3 (the loaded snapshot records' table), the same way: in
 * the caller's transaction, an SQLite result code. */
int crdt__sq_migrate_v2(sqlite3 *db);

/* SQLite result -> CRDT code (primary codes; 0 for OK, ROW, DONE). */
int crdt__sq_err(int rc);

/* The schema as sqlite_schema holds it is exactly `want` (ordered by
 * name): 0, CRDT_ECORRUPT, or the mapped SQLite error. */
int crdt__sq_check_schema(sqlite3 *db, const crdt__sq_obj *want,
    size_t nwant);

/* PRAGMA quick_check answers "ok": 0, CRDT_ECORRUPT, or the mapped
 * SQLite error. */
int crdt__sq_quick_check(sqlite3 *db);

/* The replicas table in memory, ids ascending, for the check of every
 * row on open: a binary search per row instead of a b-tree probe (a
 * join), which made the full check at a million rows ~20 % slower.
 * `*out` is from sqlite3_malloc64 (sqlite3_free it; NULL when empty).
 * Returns 0, CRDT_ECORRUPT (a replica ID not 16 bytes), CRDT_ENOMEM, or
 * the mapped SQLite error. */
typedef struct crdt__sq_rep {
	sqlite3_int64 id;
	uint8_t rid[CRDT_REPLICA_ID_BYTES];
} crdt__sq_rep;
int crdt__sq_reps_load(sqlite3 *db, crdt__sq_rep **out, size_t *n);

/* The replica ID of rep id `id` in `t` (NULL: none, a damaged row). */
const uint8_t *crdt__sq_rep_find(const crdt__sq_rep *t, size_t n,
    sqlite3_int64 id);

/* Create version 3 in an empty database, in the caller's transaction. */
int crdt__sq_create_v3(sqlite3 *db);

/*
 * Loaded snapshot records (store_sqlite_snaps.c): the statements, prepared
 * once with the handle's others. put: one INSERT, its own transaction
 * (autocommit), `*id` its rowid. each: every row ascending by id, checked
 * against its digest (CRDT_ECORRUPT), to `fn`. drop: the rows up to
 * `upto`, inside the caller's transaction. check: every row, on open.
 * All return 0 or a CRDT code.
 */
typedef struct crdt__sq_snaps {
	sqlite3 *db;
	sqlite3_stmt *ins, *all, *drop;
} crdt__sq_snaps;
int crdt__sq_snaps_prep(crdt__sq_snaps *p, sqlite3 *db);
void crdt__sq_snaps_fini(crdt__sq_snaps *p);
int crdt__sq_snaps_put(crdt__sq_snaps *p, const uint8_t *snap, size_t len,
    uint64_t *id);
int crdt__sq_snaps_each(crdt__sq_snaps *p,
    int (*fn)(void *ud, uint64_t id, const uint8_t *b, size_t len), void *ud);
int crdt__sq_snaps_drop(crdt__sq_snaps *p, uint64_t upto);
int crdt__sq_snaps_check(sqlite3 *db);

#endif /* CRDT_STORE_SQLITE_IMPL_H */
