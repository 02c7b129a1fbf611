#ifndef CRDT_STORE_SQLITE_IMPL_H
#define CRDT_STORE_SQLITE_IMPL_H

/*
 * Private to the SQLite backend (store_sqlite.c, store_sqlite_schema.c):
 * the schema of each version, as sqlite_schema keeps it, and the step
 * from version 1 to version 2 (docs/storage.md, "Versions").
 */
#include <stddef.h>
#include <sqlite3.h>

typedef struct crdt__sq_obj {
	const char *name, *sql;
} crdt__sq_obj;

/* sqlite_schema rows of each version, ordered by name. */
extern const crdt__sq_obj crdt__sq_schema_v1[];
extern const size_t crdt__sq_schema_v1_n;
extern const crdt__sq_obj crdt__sq_schema_v2[];
extern const size_t crdt__sq_schema_v2_n;

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

/* SQLite result -> CRDT code (primary codes; 0 for OK, ROW, DONE). */
int crdt__sq_err(int rc);

/* The schema as sqlite_schema holds it is exactly `want` (ordered by
 * name): 0, CRDT_ECORRUPT, or the mapped SQLite error. */
int crdt__sq_check_schema(sqlite3 *db, const crdt__sq_obj *want,
    size_t nwant);

/* PRAGMA quick_check answers "ok": 0, CRDT_ECORRUPT, or the mapped
 * SQLite error. */
int crdt__sq_quick_check(sqlite3 *db);

/* Create version 2 in an empty database, in the caller's transaction. */
int crdt__sq_create_v2(sqlite3 *db);

#endif /* CRDT_STORE_SQLITE_IMPL_H */
