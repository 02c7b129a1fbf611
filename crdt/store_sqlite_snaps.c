/*
 * The SQLite backend's loaded snapshot records (schema version 3, table
 * snaps; docs/storage.md, "Loaded snapshots"). A document attached to the
 * store writes each snapshot it merges here before the merge is visible,
 * as it writes a message before applying it; a restart merges the
 * records after the checkpoint; a checkpoint that holds them drops them
 * in its own transaction (store_sqlite.c, sq_put_checkpoint_upto).
 *
 * Each row carries a BLAKE2b-256 digest of its bytes (personalisation
 * crdt.store.load), checked on open and whenever a row is handed out, as
 * for messages and the checkpoint: damage is reported, never merged.
 */
#include <sqlite3.h>

#include "internal.h"
#include "store_sqlite_impl.h"

static const char pers_load[16] = "crdt.store.load\0";

int
crdt__sq_snaps_prep(crdt__sq_snaps *p, sqlite3 *db)
{
	static const char *const sql[3] = {
		"INSERT INTO snaps(digest, bytes) VALUES(?1, ?2)",
		"SELECT id, digest, bytes FROM snaps ORDER BY id",
		"DELETE FROM snaps WHERE id <= ?1",
	};
	sqlite3_stmt **st[3] = { &p->ins, &p->all, &p->drop };

	p->db = db;
	for (size_t i = 0; i < 3; i++) {
		int rc = sqlite3_prepare_v3(db, sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, st[i], NULL);
		if (rc != SQLITE_OK)
			return crdt__sq_err(rc);
	}
	return 0;
}

void
crdt__sq_snaps_fini(crdt__sq_snaps *p)
{
	sqlite3_finalize(p->ins);
	sqlite3_finalize(p->all);
	sqlite3_finalize(p->drop);
	p->ins = p->all = p->drop = NULL;
}

int
crdt__sq_snaps_put(crdt__sq_snaps *p, const uint8_t *snap, size_t len,
    uint64_t *id)
{
	uint8_t h[32];
	int rc;

	CRDT_TRY(crdt__hash_personal(h, sizeof h, snap, len, pers_load));
	if (sqlite3_bind_blob(p->ins, 1, h, sizeof h, SQLITE_STATIC) !=
	    SQLITE_OK) {
		sqlite3_clear_bindings(p->ins);
		return CRDT_ENOMEM;
	}
	rc = sqlite3_bind_blob64(p->ins, 2, len ? snap : (const void *)"",
	    len, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(p->ins);
	sqlite3_reset(p->ins);
	sqlite3_clear_bindings(p->ins);
	/* One statement in autocommit mode: its own transaction, rolled
	 * back by SQLite on any failure. */
	if (rc != SQLITE_DONE)
		return crdt__sq_err(rc);
	*id = (uint64_t)sqlite3_last_insert_rowid(p->db);
	return 0;
}

/* A row (id, digest, bytes) as stored: id positive, bytes a blob whose
 * digest matches. */
static bool
row_ok(sqlite3_stmt *st)
{
	uint8_t h[32];
	const void *b = sqlite3_column_blob(st, 2);
	size_t bl = (size_t)sqlite3_column_bytes(st, 2);
	const void *d = sqlite3_column_blob(st, 1);

	if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
	    sqlite3_column_int64(st, 0) <= 0 ||
	    sqlite3_column_type(st, 2) != SQLITE_BLOB ||
	    sqlite3_column_type(st, 1) != SQLITE_BLOB || d == NULL ||
	    sqlite3_column_bytes(st, 1) != (int)sizeof h)
		return false;
	if (crdt__hash_personal(h, sizeof h, bl ? b : "", bl, pers_load) != 0)
		return false;
	return memcmp(h, d, sizeof h) == 0;
}

int
crdt__sq_snaps_each(crdt__sq_snaps *p,
    int (*fn)(void *ud, uint64_t id, const uint8_t *b, size_t len), void *ud)
{
	int rc;

	while ((rc = sqlite3_step(p->all)) == SQLITE_ROW) {
		if (!row_ok(p->all)) {
			sqlite3_reset(p->all);
			return CRDT_ECORRUPT;
		}
		size_t bl = (size_t)sqlite3_column_bytes(p->all, 2);
		const uint8_t *b = sqlite3_column_blob(p->all, 2);
		rc = fn(ud, (uint64_t)sqlite3_column_int64(p->all, 0),
		    bl ? b : (const uint8_t *)"", bl);
		if (rc < 0) {
			sqlite3_reset(p->all);
			return rc;
		}
	}
	sqlite3_reset(p->all);
	return rc == SQLITE_DONE ? 0 : crdt__sq_err(rc);
}

int
crdt__sq_snaps_drop(crdt__sq_snaps *p, uint64_t upto)
{
	int rc;

	/* ids are rowids, at most INT64_MAX */
	if (sqlite3_bind_int64(p->drop, 1, upto > (uint64_t)INT64_MAX ?
		INT64_MAX : (sqlite3_int64)upto) != SQLITE_OK) {
		sqlite3_reset(p->drop);
		return CRDT_ENOMEM;
	}
	rc = sqlite3_step(p->drop);
	sqlite3_reset(p->drop);
	return rc == SQLITE_DONE ? 0 : crdt__sq_err(rc);
}

int
crdt__sq_snaps_check(sqlite3 *db)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db,
	    "SELECT id, digest, bytes FROM snaps", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (!row_ok(st)) {
			sqlite3_finalize(st);
			return CRDT_ECORRUPT;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : crdt__sq_err(rc);
}
