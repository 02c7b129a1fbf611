/*
 * SQLite store schema versions (docs/storage.md, "Versions"): a version-1
 * or version-2 store is migrated to version 3 on open, in one
 * transaction, keeping
 * every message byte-exact under its seq, its variants, its checkpoint
 * and its dedup; a migration that fails (a full quota, a damaged row) or
 * is killed leaves the version-1 file as it was; damage to what version 2
 * added (the replicas table, a row's rep id) is refused on open and when
 * handed out.
 *
 * The version-1 files are made here, independently of the library: a
 * version-2 store written through the API is rewritten by SQL into the
 * version-1 layout (32-byte BLAKE2b digests computed with libsodium),
 * and its sqlite_schema compared with the version-1 text.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sodium.h>
#include <sqlite3.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_stream.h"
#include "test_util.h"

static char tmpdir[TEST_DIR_MAX];
static char dbpath[TEST_DB_MAX];
static char tplpath[300];

static void
setup(void)
{
	test_tmpdb("migrate", tmpdir, dbpath);
	snprintf(tplpath, sizeof tplpath, "%s/t.db", tmpdir);
	test_alloc_reset();
}

static void
teardown(void)
{
	test_rm_db(tplpath);
	test_tmpdb_remove(tmpdir, dbpath);
}

TestSuite(migrate, .init = setup, .fini = teardown);

/* ---- real messages ---- */

#define MAXM TEST_STREAM_MAX

static int
open_opts(const char *path, const crdt_store_sqlite_opts *o, crdt_store **st)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	return crdt_store_open_sqlite(&cfg, path, o, st);
}

static crdt_store *
open_ok(const crdt_store_sqlite_opts *o)
{
	crdt_store *st = NULL;
	int rc = open_opts(dbpath, o, &st);
	cr_assert_eq(rc, 0, "open: %s", crdt_err_name(rc));
	return st;
}

static void
expect_refused(const crdt_store_sqlite_opts *o, int want, const char *what)
{
	crdt_store *st = (crdt_store *)&st;
	crdt_store *keep = st;
	int rc = open_opts(dbpath, o, &st);
	cr_assert_eq(rc, want, "%s: got %s", what, crdt_err_name(rc));
	cr_assert_eq(st, keep, "%s: no handle", what);
}

/* ---- what since() hands out ---- */


/* since(empty clock) from `cursor`: every message, in append order. */
static int
all_from(crdt_store *st, uint64_t cursor, test_got *g)
{
	crdt_vclock *v;
	bool more = true;
	memset(g, 0, sizeof *g);
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	int rc = crdt_store_since(st, v, &cursor, SIZE_MAX, test_collect, g, &more);
	crdt_vclock_free(v);
	if (rc == 0)
		cr_assert(!more);
	return rc;
}

/* The store hands out exactly s[from..s->n), in order, byte-exact. */
static void
expect_all(crdt_store *st, const test_stream *s, uint64_t cursor, size_t from)
{
	test_got g;
	cr_assert_eq(all_from(st, cursor, &g), 0);
	cr_assert_eq(g.n, s->n - from, "handed out %zu, want %zu", g.n,
	    s->n - from);
	for (size_t i = 0; i < g.n; i++)
		cr_assert(bytes_eq(g.m[i].data, g.m[i].len, s->m[from + i].data,
			      s->m[from + i].len),
		    "message %zu", i);
	test_got_free(&g);
}

/* ---- raw SQL on the file ---- */

static sqlite3 *
raw_open(const char *path)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	return db;
}

static void
raw_exec(sqlite3 *db, const char *q)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, q, NULL, NULL, &err);
	cr_assert_eq(rc, SQLITE_OK, "%s: %s", q, err ? err : "");
}

static void
sql(const char *path, const char *q)
{
	sqlite3 *db = raw_open(path);
	raw_exec(db, q);
	sqlite3_close(db);
}

static int64_t
sql_int(const char *path, const char *q)
{
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st;
	cr_assert_eq(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK, "%s",
	    q);
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", q);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* The version-1 schema, as the version-1 library wrote it. */
static const char *const v1_schema[][2] = {
	{ "checkpoint",
	    "CREATE TABLE checkpoint(id INTEGER PRIMARY KEY CHECK(id = 1), "
	    "clock_digest BLOB NOT NULL, clock BLOB NOT NULL, "
	    "snap_digest BLOB NOT NULL, snap BLOB NOT NULL)" },
	{ "msgs",
	    "CREATE TABLE msgs(seq INTEGER PRIMARY KEY, "
	    "replica BLOB NOT NULL CHECK(length(replica) = 16), "
	    "counter INTEGER NOT NULL CHECK(counter <> 0), "
	    "digest BLOB NOT NULL CHECK(length(digest) = 32), "
	    "bytes BLOB NOT NULL)" },
	{ "msgs_dot",
	    "CREATE UNIQUE INDEX msgs_dot ON msgs(replica, counter, digest)" },
};

/* The file's sqlite_schema is exactly the version-1 text. */
static void
expect_v1_schema(const char *path)
{
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st;
	size_t i = 0;
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT name, sql FROM "
				 "sqlite_master ORDER BY name",
			 -1, &st, NULL),
	    SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		cr_assert_lt(i, 3);
		cr_assert_str_eq((const char *)sqlite3_column_text(st, 0),
		    v1_schema[i][0]);
		cr_assert_str_eq((const char *)sqlite3_column_text(st, 1),
		    v1_schema[i][1]);
		i++;
	}
	cr_assert_eq(i, 3);
	sqlite3_finalize(st);
	sqlite3_close(db);
	cr_assert_eq(sql_int(path, "PRAGMA user_version"), 1);
}

/* d32(bytes): the version-1 digest, BLAKE2b-256 personalised as the
 * store's message digest. */
static void
fn_d32(sqlite3_context *c, int n, sqlite3_value **v)
{
	static const uint8_t salt[16];
	static const char pers[16] = "crdt.store.msg\0\0";
	uint8_t h[32];
	(void)n;
	cr_assert_eq(crypto_generichash_blake2b_salt_personal(h, sizeof h,
			 sqlite3_value_blob(v[0]),
			 (unsigned long long)sqlite3_value_bytes(v[0]), NULL, 0,
			 salt, (const uint8_t *)pers),
	    0);
	sqlite3_result_blob(c, h, sizeof h, SQLITE_TRANSIENT);
}

/* The version-2 objects, which version 3 keeps unchanged: copied by
 * their own sqlite_schema text, so a rebuilt file holds exactly version
 * 2's schema. Tables before indexes. */
static const char v2_objs[] =
    "SELECT sql FROM s.sqlite_master WHERE name IN ('checkpoint', "
    "'msgs', 'msgs_dot', 'replicas', 'replicas_rid') ORDER BY type DESC, "
    "name";

/* Rewrite the (closed) version-3 store at `path` into version 2 by SQL:
 * a new file with version 2's tables and every row of them. (Dropping
 * the snaps table would not do: the sqlite_sequence table SQLite made
 * for it cannot be dropped.) */
static void
to_v2(const char *path)
{
	char old[400], q[512];
	snprintf(old, sizeof old, "%s.v3", path);
	test_rm_db(old);
	cr_assert_eq(rename(path, old), 0);
	test_rm_db(path);
	sqlite3 *db = raw_open(path);
	/* as the store writes its files: a WAL-mode header */
	raw_exec(db, "PRAGMA page_size = 4096");
	raw_exec(db, "PRAGMA journal_mode = WAL");
	snprintf(q, sizeof q, "ATTACH '%s' AS s", old);
	raw_exec(db, q);
	raw_exec(db, "BEGIN");
	sqlite3_stmt *st;
	cr_assert_eq(sqlite3_prepare_v2(db, v2_objs, -1, &st, NULL), SQLITE_OK);
	int n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		raw_exec(db, (const char *)sqlite3_column_text(st, 0));
		n++;
	}
	sqlite3_finalize(st);
	cr_assert_eq(n, 5);
	raw_exec(db, "INSERT INTO main.replicas SELECT * FROM s.replicas");
	raw_exec(db, "INSERT INTO main.msgs SELECT * FROM s.msgs");
	raw_exec(db, "INSERT INTO main.checkpoint SELECT * FROM s.checkpoint");
	raw_exec(db, "PRAGMA main.application_id = 1129464916");
	raw_exec(db, "PRAGMA main.user_version = 2");
	raw_exec(db, "COMMIT");
	raw_exec(db, "DETACH s");
	sqlite3_close(db);
	test_rm_db(old);
	cr_assert_eq(sql_int(path, "PRAGMA user_version"), 2);
	cr_assert_eq(sql_int(path, "SELECT count(*) FROM sqlite_master"), 5);
}

/* A version-2 store at `path` holding `s` (appended in one batch) and a
 * checkpoint "snap" at {replica 1: 2}. */
static void
make_v2_file(const char *path, const test_stream *s)
{
	crdt_store *st = NULL;
	cr_assert_eq(open_opts(path, NULL, &st), 0);
	size_t added = 0;
	cr_assert_eq(test_stream_put(st, s, 0, s->n, &added), 0);
	crdt_vclock *v;
	crdt_replica_id a = test_id(1);
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	cr_assert_eq(crdt_vclock_set(v, &a, 2), 0);
	cr_assert_eq(crdt_store_put_checkpoint(st, "snap", 4, v), 0);
	crdt_vclock_free(v);
	crdt_store_close(st);
	to_v2(path);
}

/* A version-1 store at `path` holding `s` (appended in one batch) and a
 * checkpoint "snap" at {replica 1: 2}. */
static void
make_v1(const char *path, const test_stream *s)
{
	make_v2_file(path, s);
	sqlite3 *db = raw_open(path);
	cr_assert_eq(sqlite3_create_function(db, "d32", 1, SQLITE_UTF8, NULL,
			 fn_d32, NULL, NULL),
	    SQLITE_OK);
	raw_exec(db, "BEGIN");
	raw_exec(db, "DROP INDEX msgs_dot");
	raw_exec(db, "ALTER TABLE msgs RENAME TO m2");
	raw_exec(db, v1_schema[1][1]);
	raw_exec(db, "INSERT INTO msgs SELECT m.seq, r.rid, m.counter, "
		     "d32(m.bytes), m.bytes FROM m2 AS m JOIN replicas AS r "
		     "ON r.id = m.rep ORDER BY m.seq");
	raw_exec(db, "DROP TABLE m2");
	raw_exec(db, "DROP TABLE replicas");
	raw_exec(db, v1_schema[2][1]);
	raw_exec(db, "PRAGMA user_version = 1");
	raw_exec(db, "COMMIT");
	raw_exec(db, "VACUUM");
	sqlite3_close(db);
	expect_v1_schema(path);
	cr_assert_eq(sql_int(path, "SELECT count(*) FROM msgs"),
	    (int64_t)s->n);
}

/* The whole main file, to show a refused migration wrote nothing. */
static size_t
slurp(const char *path, uint8_t **out)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	cr_assert_gt(n, 0);
	rewind(f);
	*out = malloc((size_t)n);
	cr_assert_not_null(*out);
	cr_assert_eq(fread(*out, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return (size_t)n;
}

static void
expect_file_is(const char *path, const uint8_t *want, size_t n)
{
	uint8_t *b;
	size_t m = slurp(path, &b);
	cr_assert(bytes_eq(b, m, want, n), "the file is unchanged");
	free(b);
}

static void
copy_file(const char *from, const char *to)
{
	uint8_t *b;
	size_t n = slurp(from, &b);
	test_rm_db(to);
	FILE *f = fopen(to, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(b, 1, n, f), n);
	cr_assert_eq(fclose(f), 0);
	free(b);
}

/* A, B interleaved, and a second variant of A1. */
static void
mixed_stream(test_stream *s, size_t per, size_t vlen)
{
	test_stream_add(s, 1, per, vlen, 0);
	test_stream_add(s, 2, per, vlen, 0);
	test_stream_add(s, 1, 1, vlen, 99);
}

/* ---- tests ---- */

Test(migrate, a_version_1_store_is_migrated_on_open_and_keeps_everything)
{
	test_stream s = { 0 };
	mixed_stream(&s, 200, 60);
	make_v1(dbpath, &s);
	long v1_size = 0;
	{
		struct stat sb;
		cr_assert_eq(stat(dbpath, &sb), 0);
		v1_size = (long)sb.st_size;
	}

	crdt_store *st = open_ok(NULL);
	/* every message, in the same order, under the same seq: a cursor
	 * kept from before the migration still means the same place */
	expect_all(st, &s, 0, 0);
	expect_all(st, &s, 7, 7);
	/* the checkpoint */
	crdt_buf snap;
	tb_init(&snap);
	crdt_vclock *cv = NULL;
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), 0);
	cr_assert(bytes_eq(snap.data, snap.len, "snap", 4));
	crdt_replica_id a = test_id(1);
	cr_assert_eq(crdt_vclock_get(cv, &a), 2);
	crdt_vclock_free(cv);
	crdt_buf_fini(&snap);
	/* dedup still holds for every stored variant, and a third variant
	 * of A1 is new */
	size_t added = 1;
	cr_assert_eq(test_stream_put(st, &s, 0, s.n, &added), 0);
	cr_assert_eq(added, 0, "everything migrated is already stored");
	test_stream more = { 0 };
	test_stream_add(&more, 1, 1, 300, 42);
	cr_assert_eq(test_stream_put(st, &more, 0, 1, &added), 0);
	cr_assert_eq(added, 1);
	crdt_store_close(st);

	cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 3);
	cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM replicas"), 2);
	cr_assert_eq(sql_int(dbpath, "PRAGMA freelist_count"), 0,
	    "the old table's pages were given back");
	{
		struct stat sb;
		cr_assert_eq(stat(dbpath, &sb), 0);
		cr_assert_lt((long)sb.st_size, v1_size, "smaller than v1");
	}
	/* and it opens again as a version-3 store, checks included */
	st = open_ok(NULL);
	s.m[s.n] = more.m[0];
	s.n++;
	more.n = 0;
	expect_all(st, &s, 0, 0);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(migrate, quick_open_migrates_too)
{
	test_stream s = { 0 };
	mixed_stream(&s, 5, 50);
	make_v1(dbpath, &s);
	crdt_store_sqlite_opts o = { .quick_open = true };
	crdt_store *st = open_ok(&o);
	expect_all(st, &s, 0, 0);
	crdt_store_close(st);
	cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 3);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* The migration needs room for the new table while the old one is still
 * there: under a quota of the file's own size it fails with CRDT_EFULL,
 * and the version-1 file is exactly as it was; lifting the quota, the
 * next open migrates. */
Test(migrate, a_migration_that_runs_out_of_room_leaves_the_v1_file_intact)
{
	test_stream s = { 0 };
	mixed_stream(&s, 40, 600);
	make_v1(dbpath, &s);
	uint8_t *before;
	size_t n = slurp(dbpath, &before);
	crdt_store_sqlite_opts o = {
		.max_pages = (uint32_t)sql_int(dbpath, "PRAGMA page_count")
	};
	expect_refused(&o, CRDT_EFULL, "quota");
	expect_file_is(dbpath, before, n);
	expect_v1_schema(dbpath);
	free(before);
	crdt_store *st = open_ok(NULL);
	expect_all(st, &s, 0, 0);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* A damaged version-1 row fails the version-2 checks the migration runs
 * before it commits: refused, and nothing written. */
Test(migrate, a_damaged_v1_row_is_refused_and_the_file_left_as_it_was)
{
	test_stream s = { 0 };
	mixed_stream(&s, 3, 50);
	make_v1(dbpath, &s);
	sql(dbpath, "UPDATE msgs SET bytes = (SELECT bytes FROM msgs "
		    "WHERE seq = 4) WHERE seq = 1");
	uint8_t *before;
	size_t n = slurp(dbpath, &before);
	expect_refused(NULL, CRDT_ECORRUPT, "damaged v1 row");
	expect_file_is(dbpath, before, n);
	expect_v1_schema(dbpath);
	free(before);
	/* an altered version-1 schema is not migrated either */
	test_rm_db(dbpath);
	make_v1(dbpath, &s);
	sql(dbpath, "DROP INDEX msgs_dot");
	expect_refused(NULL, CRDT_ECORRUPT, "v1 without its index");
	cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 1);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/*
 * A child opens (so migrates) a copy of a version-`from` store made by
 * `make` and is killed with SIGKILL after a random delay within about one
 * migration's time. Whatever the moment, the file is then either still
 * version `from` or version 3, never between, and opens with every
 * message byte-exact.
 */
#define KILL_ITERS 24
static void
kill_migrations(void (*make)(const char *, const test_stream *),
    int64_t from, uint64_t seed)
{
	test_stream s = { 0 };
	mixed_stream(&s, 200, 2000);
	make(tplpath, &s);

	/* one migration's time, to aim the kills (steering, not asserted) */
	copy_file(tplpath, dbpath);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	crdt_store *st = open_ok(NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	crdt_store_close(st);
	long span_us = (t1.tv_sec - t0.tv_sec) * 1000000L +
	    (t1.tv_nsec - t0.tv_nsec) / 1000L;
	if (span_us < 1000)
		span_us = 1000;

	test_rng r;
	test_rng_init(&r, seed);
	unsigned seen_old = 0, seen_new = 0;
	for (int it = 0; it < KILL_ITERS; it++) {
		copy_file(tplpath, dbpath);
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			crdt_store *cs;
			crdt_store_sqlite_opts o = { 0 };
			if (crdt_store_open_sqlite(NULL, dbpath, &o, &cs) != 0)
				_exit(3);
			crdt_store_close(cs);
			_exit(0);
		}
		struct timespec d = { 0,
			(long)test_rng_below(&r, (uint64_t)span_us) * 1000L };
		nanosleep(&d, NULL);
		kill(pid, SIGKILL);
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(!WIFEXITED(status) || WEXITSTATUS(status) == 0,
		    "child failed: %d", WEXITSTATUS(status));
		int64_t ver = sql_int(dbpath, "PRAGMA user_version");
		cr_assert(ver == from || ver == 3, "it %d: version %lld", it,
		    (long long)ver);
		if (ver == from) {
			if (from == 1)
				expect_v1_schema(dbpath);
			else
				cr_assert_eq(sql_int(dbpath, "SELECT count(*) "
						 "FROM sqlite_master"), 5);
			seen_old++;
		} else {
			seen_new++;
		}
		st = open_ok(NULL);
		expect_all(st, &s, 0, 0);
		crdt_store_close(st);
		cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 3);
	}
	cr_log_info("killed %d migrations: %u left at v%lld, %u at v3",
	    KILL_ITERS, seen_old, (long long)from, seen_new);
	test_stream_free(&s);
}

Test(migrate, a_migration_killed_at_any_point_leaves_v1_or_v3, .timeout = 120)
{
	kill_migrations(make_v1, 1, 0x5c4e3a2);
	ASSERT_NO_LEAKS();
}

Test(migrate, a_v2_migration_killed_at_any_point_leaves_v2_or_v3,
    .timeout = 120)
{
	kill_migrations(make_v2_file, 2, 0x7a11e2);
	ASSERT_NO_LEAKS();
}

/* ---- version 2 -> 3: the loaded snapshot records ---- */

/* A current store at dbpath holding `s` (the name is older than version
 * 3: the file is a version-3 one). */
static void
make_v2(const test_stream *s)
{
	crdt_store *st = open_ok(NULL);
	size_t added = 0;
	cr_assert_eq(test_stream_put(st, s, 0, s->n, &added), 0);
	cr_assert_eq(added, s->n);
	crdt_store_close(st);
}


static int
rec_collect(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	test_got *g = ud;
	(void)id;
	cr_assert_lt(g->n, MAXM);
	tb_init(&g->m[g->n]);
	cr_assert_eq(crdt_buf_append(&g->m[g->n], b, len), 0);
	g->n++;
	return 0;
}

/* Migrated on open, in one transaction: every message under its seq, the
 * checkpoint and dedup kept, no record yet; records then go in with ids
 * from 1 and are dropped by a checkpoint up to the id it names, and a
 * dropped id is not reused. */
Test(migrate, a_version_2_store_is_migrated_to_3_and_keeps_everything)
{
	test_stream s = { 0 };
	mixed_stream(&s, 100, 60);
	make_v2_file(dbpath, &s);
	crdt_store *st = open_ok(NULL);
	expect_all(st, &s, 0, 0);
	expect_all(st, &s, 5, 5);
	crdt_buf snap;
	tb_init(&snap);
	crdt_vclock *cv = NULL;
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), 0);
	cr_assert(bytes_eq(snap.data, snap.len, "snap", 4));
	size_t added = 1;
	cr_assert_eq(test_stream_put(st, &s, 0, s.n, &added), 0);
	cr_assert_eq(added, 0, "everything migrated is already stored");
	test_got g;
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_snapshots(st, rec_collect, &g), 0);
	cr_assert_eq(g.n, 0);
	uint64_t id1 = 0, id2 = 0, id3 = 0;
	cr_assert_eq(crdt_store_put_snapshot(st, "one", 3, &id1), 0);
	cr_assert_eq(crdt_store_put_snapshot(st, "two", 3, &id2), 0);
	cr_assert_eq(id1, 1);
	cr_assert_eq(id2, 2);
	crdt_store_close(st);
	cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 3);

	/* reopened with every check: the records are there, in order */
	st = open_ok(NULL);
	cr_assert_eq(crdt_store_snapshots(st, rec_collect, &g), 0);
	cr_assert_eq(g.n, 2);
	cr_assert(bytes_eq(g.m[0].data, g.m[0].len, "one", 3));
	cr_assert(bytes_eq(g.m[1].data, g.m[1].len, "two", 3));
	test_got_free(&g);
	/* a checkpoint up to id 1 drops that one only, in its transaction */
	cr_assert_eq(crdt_store_put_checkpoint_upto(st, "ck2", 3, cv, id1), 0);
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_snapshots(st, rec_collect, &g), 0);
	cr_assert_eq(g.n, 1);
	cr_assert(bytes_eq(g.m[0].data, g.m[0].len, "two", 3));
	test_got_free(&g);
	cr_assert_eq(crdt_store_put_checkpoint_upto(st, "ck3", 3, cv, id2), 0);
	cr_assert_eq(crdt_store_put_snapshot(st, "three", 5, &id3), 0);
	cr_assert_eq(id3, 3, "a dropped id is not reused");
	crdt_buf_clear(&snap);
	crdt_vclock_free(cv);
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), 0);
	cr_assert(bytes_eq(snap.data, snap.len, "ck3", 3));
	crdt_vclock_free(cv);
	crdt_buf_fini(&snap);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* The new table needs a page: under a quota of the file's own size the
 * migration fails with CRDT_EFULL and the version-2 file is exactly as it
 * was; an altered version-2 schema is not migrated. */
Test(migrate, a_v2_migration_that_runs_out_of_room_leaves_the_file_intact)
{
	test_stream s = { 0 };
	mixed_stream(&s, 20, 100);
	make_v2_file(dbpath, &s);
	uint8_t *before;
	size_t n = slurp(dbpath, &before);
	crdt_store_sqlite_opts o = {
		.max_pages = (uint32_t)sql_int(dbpath, "PRAGMA page_count")
	};
	expect_refused(&o, CRDT_EFULL, "quota");
	expect_file_is(dbpath, before, n);
	cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 2);
	free(before);
	crdt_store *st = open_ok(NULL);
	expect_all(st, &s, 0, 0);
	crdt_store_close(st);
	test_rm_db(dbpath);
	make_v2_file(dbpath, &s);
	sql(dbpath, "DROP INDEX replicas_rid");
	expect_refused(NULL, CRDT_ECORRUPT, "v2 without its index");
	cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 2);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* A damaged record is refused on open and, with quick_open, when handed
 * out (never merged); an altered snaps table is refused on open. */
Test(migrate, damage_to_a_loaded_snapshot_record_is_refused)
{
	static const char *const damage[][2] = {
		{ "UPDATE snaps SET bytes = x'00' WHERE id = 2",
		    "bytes altered" },
		{ "UPDATE snaps SET digest = zeroblob(32) WHERE id = 1",
		    "digest zeroed" },
		{ "UPDATE snaps SET bytes = 'text' WHERE id = 1",
		    "bytes that are text" },
		{ "DROP TABLE snaps", "the table dropped" },
		{ "CREATE INDEX extra ON snaps(digest)", "an index added" },
	};
	test_stream s = { 0 };
	mixed_stream(&s, 2, 20);
	for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
		make_v2(&s);
		crdt_store *st = open_ok(NULL);
		uint64_t id;
		cr_assert_eq(crdt_store_put_snapshot(st, "one", 3, &id), 0);
		cr_assert_eq(crdt_store_put_snapshot(st, "two", 3, &id), 0);
		crdt_store_close(st);
		sql(dbpath, damage[i][0]);
		expect_refused(NULL, CRDT_ECORRUPT, damage[i][1]);
		if (i < 3) {
			crdt_store_sqlite_opts o = { .quick_open = true };
			st = open_ok(&o);
			test_got g;
			memset(&g, 0, sizeof g);
			cr_assert_eq(crdt_store_snapshots(st, rec_collect, &g),
			    CRDT_ECORRUPT, "%s", damage[i][1]);
			test_got_free(&g);
			crdt_store_close(st);
		}
		test_rm_db(dbpath);
	}
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- damage to what version 2 added ---- */

Test(migrate, damage_to_the_replicas_table_or_a_rep_id_is_refused)
{
	static const char *const damage[][2] = {
		{ "UPDATE msgs SET rep = 99 WHERE seq = 2",
		    "a row pointing at a missing replica" },
		{ "DELETE FROM replicas WHERE id = 2",
		    "a replica's row deleted" },
		{ "UPDATE msgs SET rep = 2 WHERE seq = 1",
		    "a row pointing at another replica" },
		{ "UPDATE replicas SET rid = zeroblob(16) WHERE id = 1",
		    "a replica ID altered" },
		{ "UPDATE replicas SET id = 7 WHERE id = 2",
		    "a replica renumbered" },
		{ "DROP INDEX replicas_rid", "the replica index dropped" },
		{ "CREATE INDEX extra ON replicas(id, rid)", "an index added" },
		{ "UPDATE msgs SET digest = zeroblob(12) WHERE seq = 3",
		    "a digest zeroed" },
		{ "UPDATE msgs SET counter = 9 WHERE seq = 1",
		    "a counter altered" },
		{ "UPDATE msgs SET rep = 'x' WHERE seq = 1",
		    "a rep id that is text" },
	};
	test_stream s = { 0 };
	mixed_stream(&s, 3, 50);
	for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
		make_v2(&s);
		sql(dbpath, damage[i][0]);
		expect_refused(NULL, CRDT_ECORRUPT, damage[i][1]);
		test_rm_db(dbpath);
	}
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* With quick_open the rows are checked when handed out: a row whose rep
 * id lost its replica is refused there, never skipped. */
Test(migrate, a_row_without_its_replica_is_caught_when_handed_out)
{
	test_stream s = { 0 };
	mixed_stream(&s, 3, 50);
	make_v2(&s);
	sql(dbpath, "UPDATE msgs SET rep = 99 WHERE seq = 5");
	crdt_store_sqlite_opts o = { .quick_open = true };
	crdt_store *st = open_ok(&o);
	test_got g;
	cr_assert_eq(all_from(st, 0, &g), CRDT_ECORRUPT);
	cr_assert_eq(g.n, 4, "the intact rows before it were handed out");
	test_got_free(&g);
	/* a peer lacking only B's messages: the dot index finds B's rows,
	 * and the damaged one (B2) is refused, not skipped */
	crdt_vclock *v;
	crdt_replica_id a = test_id(1);
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	cr_assert_eq(crdt_vclock_set(v, &a, 3), 0);
	uint64_t cur = 0;
	bool more;
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    CRDT_ECORRUPT);
	test_got_free(&g);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* The version number: 3 for a new store; a newer one is refused. */
Test(migrate, a_new_store_is_version_3_and_a_newer_one_is_refused)
{
	test_stream s = { 0 };
	mixed_stream(&s, 2, 20);
	make_v2(&s);
	cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 3);
	sql(dbpath, "PRAGMA user_version = 4");
	expect_refused(NULL, CRDT_EVERSION, "version 4");
	sql(dbpath, "PRAGMA user_version = 0");
	expect_refused(NULL, CRDT_ECORRUPT, "version 0 with tables");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* Dedup compares the bytes once the digest prefixes agree: a stored row
 * whose digest column is made to equal a second variant's (the stand-in
 * for a 96-bit collision) does not make that variant a duplicate. */
Test(migrate, a_digest_match_is_confirmed_on_the_bytes)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 1, 40, 0);  /* A1 */
	test_stream_add(&s, 1, 1, 40, 77); /* A1': same dot, other bytes */
	crdt_store *st = open_ok(NULL);
	size_t added = 0;
	cr_assert_eq(test_stream_put(st, &s, 0, 1, &added), 0);
	cr_assert_eq(added, 1);

	sqlite3 *db = raw_open(dbpath);
	cr_assert_eq(sqlite3_create_function(db, "d32", 1, SQLITE_UTF8, NULL,
			 fn_d32, NULL, NULL),
	    SQLITE_OK);
	sqlite3_stmt *q;
	cr_assert_eq(sqlite3_prepare_v2(db, "UPDATE msgs SET digest = "
				 "substr(d32(?1), 1, 12) WHERE seq = 1",
			 -1, &q, NULL),
	    SQLITE_OK);
	cr_assert_eq(sqlite3_bind_blob(q, 1, s.m[1].data, (int)s.m[1].len,
			 SQLITE_STATIC),
	    SQLITE_OK);
	cr_assert_eq(sqlite3_step(q), SQLITE_DONE);
	cr_assert_eq(sqlite3_changes(db), 1);
	sqlite3_finalize(q);
	sqlite3_close(db);

	cr_assert_eq(test_stream_put(st, &s, 1, 1, &added), 0);
	cr_assert_eq(added, 1, "the second variant is new: its bytes differ");
	cr_assert_eq(test_stream_put(st, &s, 1, 1, &added), 0);
	cr_assert_eq(added, 0, "and then stored");
	crdt_store_close(st);
	cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM msgs"), 2);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* Two processes opening one version-1 store at once: the write lock
 * orders them, one migrates and the other finds version 2 when it gets
 * the lock (it looks again), and both handles serve every message. */
Test(migrate, two_processes_opening_a_v1_store_at_once_both_succeed,
    .timeout = 120)
{
	test_stream s = { 0 };
	mixed_stream(&s, 150, 1000);
	make_v1(tplpath, &s);
	for (int it = 0; it < 4; it++) {
		copy_file(tplpath, dbpath);
		int go[2];
		cr_assert_eq(pipe(go), 0);
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			char c;
			crdt_store *cs;
			close(go[1]);
			if (read(go[0], &c, 1) != 1)
				_exit(4);
			if (crdt_store_open_sqlite(NULL, dbpath, NULL, &cs) != 0)
				_exit(3);
			crdt_vclock *v;
			uint64_t cur = 0;
			bool more;
			size_t n = 0;
			if (crdt_vclock_new(NULL, &v) != 0)
				_exit(5);
			test_got *g = calloc(1, sizeof *g);
			if (g == NULL || crdt_store_since(cs, v, &cur, SIZE_MAX,
					     test_collect, g, &more) != 0)
				_exit(6);
			n = g->n;
			test_got_free(g);
			free(g);
			crdt_vclock_free(v);
			crdt_store_close(cs);
			_exit(n == s.n ? 0 : 7);
		}
		close(go[0]);
		cr_assert_eq(write(go[1], "x", 1), 1);
		close(go[1]);
		crdt_store *st = open_ok(NULL);
		expect_all(st, &s, 0, 0);
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "it %d: the other process: status %d", it, status);
		crdt_store_close(st);
		cr_assert_eq(sql_int(dbpath, "PRAGMA user_version"), 3);
		cr_assert_eq(sql_int(dbpath, "SELECT count(*) FROM msgs"),
		    (int64_t)s.n);
	}
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}
