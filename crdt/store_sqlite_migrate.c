/*
 * The SQLite backend's schemas, version 1 (read only to migrate it) and
 * version 2 (written), and the migration between them. docs/storage.md
 * explains the layout; store_sqlite.c checks a file against these rows.
 */
#include <stdio.h>

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
    "CREATE TABLE replicas(id INTEGER PRIMARY KEY, "
    "rid BLOB NOT NULL CHECK(length(rid) = 16))";
static const char v2_rid[] =
    "CREATE UNIQUE INDEX replicas_rid ON replicas(rid)";

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

static int
run(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

int
crdt__sq_create_v2(sqlite3 *db)
{
	char sql[96];
	int rc;

	snprintf(sql, sizeof sql,
	    "PRAGMA application_id = %d; PRAGMA user_version = 2", SQ_APP_ID);
	if ((rc = run(db, v2_reps)) != SQLITE_OK ||
	    (rc = run(db, v2_rid)) != SQLITE_OK ||
	    (rc = run(db, v2_msgs)) != SQLITE_OK ||
	    (rc = run(db, v2_dot)) != SQLITE_OK ||
	    (rc = run(db, ck)) != SQLITE_OK)
		return rc;
	return run(db, sql);
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
