/*
 * The SQLite backend's schemas, versions 1 and 2 (read only to migrate
 * them) and version 3 (written), the migrations, and the checks on
 * open that look at the file's structure (quick_check, the exact
 * schema). docs/storage.md explains the layout; the row checks, which
 * need the message format, are in store_sqlite.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "crdt/error.h"

#include "store_sqlite_impl.h"

/* 'CRDT' */
#define SQ_APP_ID 0x43524454

/*
 * The strings are compared byte for byte with sqlite_schema on open, so
 * they are written exactly as SQLite keeps them: a table or index that
 * was dropped, added or altered is refused.
 */
static const char v1_msgs[] =
    "CREATE TABLE msgs(seq INTEGER PRIMARY KEY, "
    "replica BLOB NOT NULL CHECK(length(replica) = 16), "
    "counter INTEGER NOT NULL CHECK(counter <> 0), "
    "digest BLOB NOT NULL CHECK(length(digest) = 32), "
    "bytes BLOB NOT NULL)";
static const char v1_dot[] =
    "CREATE UNIQUE INDEX msgs_dot ON msgs(replica, counter, digest)";
static const char ck[] =
    "CREATE TABLE checkpoint(id INTEGER PRIMARY KEY CHECK(id = 1), "
    "clock_digest BLOB NOT NULL, clock BLOB NOT NULL, "
    "snap_digest BLOB NOT NULL, snap BLOB NOT NULL)";

/*
 * Version 2 keeps a replica ID once, in `replicas`, and a row carries
 * its small integer id; the dot index holds (rep, counter) and the rowid,
 * about 12 bytes instead of 60. The index is not unique: equivocation
 * variants share a dot, and the backend tells them apart by their bytes
 * (store_sqlite.c, sq_stored). The digest is 12 bytes: it detects damage
 * to trusted storage, it is not an identity (docs/storage.md).
 */
static const char v2_msgs[] =
    "CREATE TABLE msgs(seq INTEGER PRIMARY KEY, "
    "rep INTEGER NOT NULL, "
    "counter INTEGER NOT NULL CHECK(counter <> 0), "
    "digest BLOB NOT NULL CHECK(length(digest) = 12), "
    "bytes BLOB NOT NULL)";
static const char v2_dot[] = "CREATE INDEX msgs_dot ON msgs(rep, counter)";
static const char v2_reps[] =
    "CREATE TABLE replicas(id INTEGER PRIMARY KEY CHECK(id > 0), "
    "rid BLOB NOT NULL CHECK(length(rid) = 16))";
static const char v2_rid[] =
    "CREATE UNIQUE INDEX replicas_rid ON replicas(rid)";

/*
 * Version 3 adds the loaded snapshot records (docs/storage.md, "Loaded
 * snapshots"): a snapshot a document merged, written ahead of the merge
 * and dropped by the checkpoint that holds it. AUTOINCREMENT, so an id
 * is never reused once its row is dropped: a checkpoint drops the rows up
 * to the id it holds, and a reused id below it would be a record it does
 * not hold. That keeps the largest id in sqlite_sequence, which SQLite
 * creates with the table and which the schema check therefore expects.
 */
static const char v3_snaps[] =
    "CREATE TABLE snaps(id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "digest BLOB NOT NULL CHECK(length(digest) = 32), "
    "bytes BLOB NOT NULL)";
static const char v3_seq[] = "CREATE TABLE sqlite_sequence(name,seq)";

const crdt__sq_obj crdt__sq_schema_v1[] = {
	{ "checkpoint", ck },
	{ "msgs", v1_msgs },
	{ "msgs_dot", v1_dot },
};
const size_t crdt__sq_schema_v1_n = sizeof crdt__sq_schema_v1 /
    sizeof crdt__sq_schema_v1[0];

const crdt__sq_obj crdt__sq_schema_v2[] = {
	{ "checkpoint", ck },
	{ "msgs", v2_msgs },
	{ "msgs_dot", v2_dot },
	{ "replicas", v2_reps },
	{ "replicas_rid", v2_rid },
};
const size_t crdt__sq_schema_v2_n = sizeof crdt__sq_schema_v2 /
    sizeof crdt__sq_schema_v2[0];

const crdt__sq_obj crdt__sq_schema_v3[] = {
	{ "checkpoint", ck },
	{ "msgs", v2_msgs },
	{ "msgs_dot", v2_dot },
	{ "replicas", v2_reps },
	{ "replicas_rid", v2_rid },
	{ "snaps", v3_snaps },
	{ "sqlite_sequence", v3_seq },
};
const size_t crdt__sq_schema_v3_n = sizeof crdt__sq_schema_v3 /
    sizeof crdt__sq_schema_v3[0];

static int
run(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

int
crdt__sq_create_v3(sqlite3 *db)
{
	char sql[96];
	int rc;

	snprintf(sql, sizeof sql,
	    "PRAGMA application_id = %d; PRAGMA user_version = 3", SQ_APP_ID);
	if ((rc = run(db, v2_reps)) != SQLITE_OK ||
	    (rc = run(db, v2_rid)) != SQLITE_OK ||
	    (rc = run(db, v2_msgs)) != SQLITE_OK ||
	    (rc = run(db, v2_dot)) != SQLITE_OK ||
	    (rc = run(db, ck)) != SQLITE_OK ||
	    (rc = run(db, v3_snaps)) != SQLITE_OK)
		return rc;
	return run(db, sql);
}

/* Version 2 -> 3: the new table, nothing else changes (no row moves, so
 * no VACUUM follows). */
int
crdt__sq_migrate_v2(sqlite3 *db)
{
	int rc = run(db, v3_snaps);

	return rc != SQLITE_OK ? rc : run(db, "PRAGMA user_version = 3");
}

/*
 * Version 1 -> 2. The old dot index goes first so that its name is free
 * and the rename leaves no index behind that refers to msgs_v1; the new
 * msgs table is then created under its own name, so its sqlite_schema
 * text is exactly v2_msgs (a renamed table's text would be rewritten).
 * Rows keep their seq: a cursor a caller kept stays valid. The new dot
 * index is built after the copy, in one sorted pass. The checkpoint
 * table is the same in both versions and is not touched.
 */
int
crdt__sq_migrate_v1(sqlite3 *db)
{
	static const char *const steps[] = {
		"DROP INDEX msgs_dot",
		"ALTER TABLE msgs RENAME TO msgs_v1",
		v2_reps,
		v2_rid,
		"INSERT INTO replicas(rid) SELECT replica FROM msgs_v1 "
		"GROUP BY replica ORDER BY min(seq)",
		v2_msgs,
		"INSERT INTO msgs(seq, rep, counter, digest, bytes) "
		"SELECT m.seq, r.id, m.counter, substr(m.digest, 1, 12), "
		"m.bytes FROM msgs_v1 AS m JOIN replicas AS r "
		"ON r.rid = m.replica ORDER BY m.seq",
		"DROP TABLE msgs_v1",
		v2_dot,
		"PRAGMA user_version = 2",
	};
	int rc;

	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
		if ((rc = run(db, steps[i])) != SQLITE_OK)
			return rc;
	return SQLITE_OK;
}

/* The schema as sqlite_schema holds it must be exactly `want` (a missing
 * index would make lookups scan, or let duplicate replica rows in). */
int
crdt__sq_check_schema(sqlite3 *db, const crdt__sq_obj *want, size_t nwant)
{
	sqlite3_stmt *st;
	size_t i = 0;
	int rc = sqlite3_prepare_v2(db,
	    "SELECT name, sql FROM sqlite_master ORDER BY name", -1, &st,
	    NULL);

	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *n = (const char *)sqlite3_column_text(st, 0);
		const char *s = (const char *)sqlite3_column_text(st, 1);
		/* The rowid table's automatic index has no sql; ours has
		 * none (INTEGER PRIMARY KEY is the rowid). */
		if (i >= nwant || n == NULL ||
		    s == NULL || strcmp(n, want[i].name) != 0 ||
		    strcmp(s, want[i].sql) != 0) {
			sqlite3_finalize(st);
			return CRDT_ECORRUPT;
		}
		i++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return crdt__sq_err(rc);
	return i == nwant ? 0 : CRDT_ECORRUPT;
}

/* PRAGMA quick_check answers one row "ok", or rows naming problems. */
int
crdt__sq_quick_check(sqlite3 *db)
{
	sqlite3_stmt *st;
	const unsigned char *t;
	int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		t = sqlite3_column_text(st, 0);
		rc = t != NULL && strcmp((const char *)t, "ok") == 0 &&
			sqlite3_step(st) == SQLITE_DONE ?
		    0 :
		    CRDT_ECORRUPT;
	} else {
		rc = crdt__sq_err(rc);
		if (rc == 0)
			rc = CRDT_ECORRUPT;
	}
	sqlite3_finalize(st);
	return rc;
}

int
crdt__sq_reps_load(sqlite3 *db, crdt__sq_rep **out, size_t *n)
{
	sqlite3_stmt *st;
	sqlite3_int64 count = 0;
	size_t i = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM replicas", -1, &st,
	    NULL);
	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		count = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? CRDT_ECORRUPT : crdt__sq_err(rc);
	if (count <= 0)
		return 0;
	if ((uint64_t)count > SIZE_MAX / sizeof **out)
		return CRDT_ENOMEM;
	*out = sqlite3_malloc64((sqlite3_uint64)count * sizeof **out);
	if (*out == NULL)
		return CRDT_ENOMEM;
	rc = sqlite3_prepare_v2(db, "SELECT id, rid FROM replicas ORDER BY id",
	    -1, &st, NULL);
	if (rc != SQLITE_OK) {
		rc = crdt__sq_err(rc);
		goto fail;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* ids ascend from 1: since() walks the replicas from id 0
		 * up, so one at or below 0 would be skipped there */
		if (i >= (size_t)count ||
		    sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
		    sqlite3_column_int64(st, 0) <= 0 ||
		    sqlite3_column_type(st, 1) != SQLITE_BLOB ||
		    sqlite3_column_bytes(st, 1) != (int)sizeof (*out)[i].rid) {
			rc = CRDT_ECORRUPT;
			break;
		}
		(*out)[i].id = sqlite3_column_int64(st, 0);
		memcpy((*out)[i].rid, sqlite3_column_blob(st, 1),
		    sizeof (*out)[i].rid);
		i++;
	}
	sqlite3_finalize(st);
	rc = rc == SQLITE_DONE ? (i == (size_t)count ? 0 : CRDT_ECORRUPT) :
	    rc == SQLITE_ROW ? CRDT_ECORRUPT : rc < 0 ? rc : crdt__sq_err(rc);
	if (rc == 0) {
		*n = i;
		return 0;
	}
fail:
	sqlite3_free(*out);
	*out = NULL;
	return rc;
}

const uint8_t *
crdt__sq_rep_find(const crdt__sq_rep *t, size_t n, sqlite3_int64 id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t[mid].id == id)
			return t[mid].rid;
		if (t[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}
