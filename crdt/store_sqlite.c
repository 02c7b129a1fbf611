/*
 * SQLite store backend (include/crdt/store.h, docs/storage.md).
 *
 * One file, WAL journal, synchronous FULL unless asked otherwise, one
 * IMMEDIATE transaction per batch, statements prepared once for the
 * handle's life. A file is trusted only after it passed the checks on
 * open: quick_check, the exact schema, and every row against its digest
 * and dot; rows are checked again when handed out, so damage that
 * happens while the handle is open is still never passed on as data.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#include <sqlite3.h>
#include <stdio.h>

#include "internal.h"
#include "crdt/store.h"
#include "store_impl.h"
#include "store_sqlite_impl.h"

/* 'CRDT' in PRAGMA application_id: tells our files from other SQLite
 * databases, which are refused rather than written into. */
#define SQ_APP_ID 0x43524454
#define SQ_VERSION 3
#define SQ_BUSY_DEFAULT_MS 5000u

/* seq (the rowid) is append order, never reused because rows are never
 * deleted; counter holds the uint64 bit pattern (only equality and the
 * order within one sign half are used). The schemas are in
 * store_sqlite_schema.c. */
static const char sq_pers_msg[16] = CRDT__STORE_PERS_MSG;
static const char sq_pers_snap[16] = "crdt.store.snap\0";
static const char sq_pers_clock[16] = "crdt.store.clk\0\0";

typedef struct sq {
	crdt_allocator alloc;
	sqlite3 *db;
	sqlite3_stmt *begin, *commit, *rollback;
	sqlite3_stmt *ins;    /* one message */
	sqlite3_stmt *variants; /* digest, bytes of the rows of one dot */
	sqlite3_stmt *find_rep, *add_rep; /* replica ID <-> its rep id */
	sqlite3_stmt *scan;   /* seq, replica, counter after a cursor */
	sqlite3_stmt *fetch;  /* digest, bytes of one seq */
	sqlite3_stmt *next_rep; /* the next stored replica after ?1 */
	sqlite3_stmt *min_seq;  /* first seq of a replica in a counter range */
	sqlite3_stmt *put_ck, *get_ck;
	crdt__sq_snaps snaps; /* loaded snapshot records */
	/* The last replica appended and its rep id. Valid once committed
	 * (replicas rows are never deleted or changed); dropped when a
	 * transaction fails, since its rep id may not exist then. */
	bool rep_cached;
	uint8_t rep_rid[CRDT_REPLICA_ID_BYTES];
	sqlite3_int64 rep_id;
} sq;

/* SQLite result -> CRDT code. Primary codes only: the extended ones
 * (SQLITE_IOERR_WRITE, ...) all map like their primary. */
int
crdt__sq_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return CRDT_ENOMEM;
	case SQLITE_FULL:
		return CRDT_EFULL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return CRDT_EBUSY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_FORMAT:
	case SQLITE_CONSTRAINT: /* our CHECKs only fail on a damaged file */
	case SQLITE_SCHEMA:
	case SQLITE_MISMATCH:
		return CRDT_ECORRUPT;
	case SQLITE_TOOBIG:
		return CRDT_ETOOBIG;
	default: /* IOERR, CANTOPEN, READONLY, PROTOCOL, PERM, ... */
		return CRDT_EIO;
	}
}

static int
sq_prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
	    NULL);
	if (rc != SQLITE_OK) {
		*st = NULL;
		/* A statement over our own schema fails to prepare only when
		 * the file is not what the schema check saw: damage. */
		return (rc & 0xff) == SQLITE_ERROR ? CRDT_ECORRUPT : crdt__sq_err(rc);
	}
	return 0;
}

/* Run a statement without results once (pragmas, DDL). */
static int
sq_exec(sqlite3 *db, const char *sql)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : crdt__sq_err(rc);
}

/* One-row, one-column query giving an integer or text (pragmas). */
static int
sq_query_int(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	rc = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CRDT_ECORRUPT :
	    crdt__sq_err(rc);
	sqlite3_finalize(st);
	return rc;
}

static int
sq_query_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
	sqlite3_stmt *st;
	const unsigned char *t;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	out[0] = '\0';
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		t = sqlite3_column_text(st, 0);
		if (t != NULL) {
			size_t n = strlen((const char *)t);
			n = n < cap - 1 ? n : cap - 1;
			memcpy(out, t, n);
			out[n] = '\0';
		}
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? 0 : crdt__sq_err(rc);
	}
	sqlite3_finalize(st);
	return rc;
}

/* `digest` (`dlen` bytes, which must be `want`) is the first `want`
 * bytes of the BLAKE2b-256 of `bytes`. */
static bool
sq_digest_ok(const void *bytes, size_t len, const void *digest,
    size_t dlen, size_t want, const char pers[16])
{
	uint8_t h[CRDT_STORE_DIGEST_BYTES];

	if (dlen != want || want > sizeof h || digest == NULL)
		return false;
	if (crdt__hash_personal(h, sizeof h, bytes, len, pers) != 0)
		return false;
	return memcmp(h, digest, want) == 0;
}

/* Undo whatever the failed call left open, then report `err`. A failing
 * statement may or may not have ended the transaction itself (SQLite
 * rolls back on some FULL/IOERR/NOMEM), so ask rather than assume. */
static int
sq_abort(sq *q, int err)
{
	sqlite3_reset(q->ins);
	sqlite3_clear_bindings(q->ins);
	sqlite3_reset(q->variants);
	sqlite3_reset(q->find_rep);
	sqlite3_reset(q->add_rep);
	q->rep_cached = false;
	sqlite3_reset(q->commit);
	sqlite3_reset(q->begin);
	if (!sqlite3_get_autocommit(q->db)) {
		(void)sqlite3_step(q->rollback);
		sqlite3_reset(q->rollback);
	}
	return err;
}

static int
sq_step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : crdt__sq_err(rc);
}

/* The rep id of replica `rid`, added to `replicas` if it is new (in the
 * caller's transaction). */
static int
sq_rep(sq *q, const uint8_t *rid, sqlite3_int64 *id)
{
	int rc;

	if (q->rep_cached && memcmp(q->rep_rid, rid, sizeof q->rep_rid) == 0) {
		*id = q->rep_id;
		return 0;
	}
	if (sqlite3_bind_blob(q->find_rep, 1, rid, CRDT_REPLICA_ID_BYTES,
		SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_reset(q->find_rep);
		return CRDT_ENOMEM;
	}
	rc = sqlite3_step(q->find_rep);
	if (rc == SQLITE_ROW) {
		if (sqlite3_column_type(q->find_rep, 0) != SQLITE_INTEGER) {
			sqlite3_reset(q->find_rep);
			return CRDT_ECORRUPT;
		}
		*id = sqlite3_column_int64(q->find_rep, 0);
		sqlite3_reset(q->find_rep);
	} else {
		sqlite3_reset(q->find_rep);
		if (rc != SQLITE_DONE)
			return crdt__sq_err(rc);
		if (sqlite3_bind_blob(q->add_rep, 1, rid, CRDT_REPLICA_ID_BYTES,
			SQLITE_STATIC) != SQLITE_OK) {
			sqlite3_reset(q->add_rep);
			return CRDT_ENOMEM;
		}
		CRDT_TRY(sq_step_done(q->add_rep));
		*id = sqlite3_last_insert_rowid(q->db);
	}
	memcpy(q->rep_rid, rid, sizeof q->rep_rid);
	q->rep_id = *id;
	q->rep_cached = true;
	return 0;
}

/*
 * Whether record `r` (rep id `rep`) is stored already: a row of its dot
 * with the same bytes. The digest prefix rules most rows out without
 * reading their bytes; equal prefixes are confirmed on the bytes, so a
 * variant is never taken for another, whatever its digest. Normally a
 * dot has one row, or none: one index probe.
 */
static int
sq_stored(sq *q, const crdt_store_rec *r, sqlite3_int64 rep, bool *dup)
{
	int rc;

	*dup = false;
	if (sqlite3_bind_int64(q->variants, 1, rep) != SQLITE_OK ||
	    sqlite3_bind_int64(q->variants, 2,
		(sqlite3_int64)r->dot.counter) != SQLITE_OK) {
		sqlite3_reset(q->variants);
		return CRDT_ENOMEM;
	}
	while ((rc = sqlite3_step(q->variants)) == SQLITE_ROW) {
		const void *d = sqlite3_column_blob(q->variants, 0);
		const void *b;

		if (sqlite3_column_bytes(q->variants, 0) !=
			CRDT__SQ_MSG_DIGEST ||
		    d == NULL || memcmp(d, r->digest, CRDT__SQ_MSG_DIGEST) != 0)
			continue;
		b = sqlite3_column_blob(q->variants, 1);
		if ((size_t)sqlite3_column_bytes(q->variants, 1) == r->len &&
		    (r->len == 0 || (b != NULL &&
			memcmp(b, r->bytes, r->len) == 0))) {
			*dup = true;
			break;
		}
	}
	sqlite3_reset(q->variants);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : crdt__sq_err(rc);
}

static int
sq_append(void *impl, const crdt_store_rec *recs, size_t n, size_t *added)
{
	sq *q = impl;
	size_t got = 0;
	int rc;

	rc = sq_step_done(q->begin);
	if (rc < 0)
		return sq_abort(q, rc);
	for (size_t i = 0; i < n; i++) {
		const crdt_store_rec *r = &recs[i];
		sqlite3_int64 rep = 0;
		bool dup = false;

		rc = sq_rep(q, r->dot.replica.bytes, &rep);
		if (rc == 0)
			rc = sq_stored(q, r, rep, &dup);
		if (rc < 0)
			return sq_abort(q, rc);
		if (dup)
			continue;
		if (sqlite3_bind_int64(q->ins, 1, rep) != SQLITE_OK ||
		    sqlite3_bind_int64(q->ins, 2, (sqlite3_int64)r->dot.counter) !=
			SQLITE_OK ||
		    sqlite3_bind_blob(q->ins, 3, r->digest, CRDT__SQ_MSG_DIGEST,
			SQLITE_STATIC) != SQLITE_OK)
			return sq_abort(q, CRDT_ENOMEM);
		rc = sqlite3_bind_blob64(q->ins, 4, r->len ? r->bytes :
			(const void *)"", r->len, SQLITE_STATIC);
		if (rc != SQLITE_OK)
			return sq_abort(q, crdt__sq_err(rc));
		rc = sqlite3_step(q->ins);
		if (rc != SQLITE_DONE)
			return sq_abort(q, crdt__sq_err(rc));
		got++;
		sqlite3_reset(q->ins);
	}
	sqlite3_clear_bindings(q->ins);
	rc = sq_step_done(q->commit);
	if (rc < 0)
		return sq_abort(q, rc);
	*added = got;
	return 0;
}

static int
sq_put_checkpoint(void *impl, const uint8_t *snap, size_t snap_len,
    const uint8_t *clock, size_t clock_len)
{
	sq *q = impl;
	uint8_t ds[CRDT_STORE_DIGEST_BYTES], dc[CRDT_STORE_DIGEST_BYTES];
	int rc;

	CRDT_TRY(crdt__hash_personal(ds, sizeof ds, snap, snap_len,
	    sq_pers_snap));
	CRDT_TRY(crdt__hash_personal(dc, sizeof dc, clock, clock_len,
	    sq_pers_clock));
	if (sqlite3_bind_blob(q->put_ck, 1, dc, sizeof dc, SQLITE_STATIC) !=
		SQLITE_OK ||
	    sqlite3_bind_blob64(q->put_ck, 2, clock_len ? clock :
		(const void *)"", clock_len, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(q->put_ck, 3, ds, sizeof ds, SQLITE_STATIC) !=
		SQLITE_OK) {
		sqlite3_clear_bindings(q->put_ck);
		return CRDT_ENOMEM;
	}
	rc = sqlite3_bind_blob64(q->put_ck, 4, snap_len ? snap :
	    (const void *)"", snap_len, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q->put_ck);
	sqlite3_reset(q->put_ck);
	sqlite3_clear_bindings(q->put_ck);
	/* One statement in autocommit mode is its own transaction: on any
	 * failure SQLite has already rolled it back. */
	return rc == SQLITE_DONE ? 0 : crdt__sq_err(rc);
}

/* The checkpoint and the drop of the snapshot records it holds, in one
 * transaction: a crash or failure leaves both as they were. */
static int
sq_put_checkpoint_upto(void *impl, const uint8_t *snap, size_t snap_len,
    const uint8_t *clock, size_t clock_len, uint64_t upto)
{
	sq *q = impl;
	int rc = sq_step_done(q->begin);

	if (rc == 0)
		rc = sq_put_checkpoint(q, snap, snap_len, clock, clock_len);
	if (rc == 0)
		rc = crdt__sq_snaps_drop(&q->snaps, upto);
	if (rc == 0)
		rc = sq_step_done(q->commit);
	return rc < 0 ? sq_abort(q, rc) : 0;
}

static int
sq_put_snapshot(void *impl, const uint8_t *snap, size_t len, uint64_t *id)
{
	sq *q = impl;

	return crdt__sq_snaps_put(&q->snaps, snap, len, id);
}

static int
sq_snapshots(void *impl, crdt_store_snap_fn fn, void *ud)
{
	sq *q = impl;

	return crdt__sq_snaps_each(&q->snaps, fn, ud);
}

/* Row of the checkpoint table, checked: columns 0..3 of the checkpoint table
 * (store_sqlite_schema.c). */
static int
sq_check_ck_row(sqlite3_stmt *st)
{
	const void *c = sqlite3_column_blob(st, 1);
	size_t cl = (size_t)sqlite3_column_bytes(st, 1);
	const void *s = sqlite3_column_blob(st, 3);
	size_t sl = (size_t)sqlite3_column_bytes(st, 3);

	if (sqlite3_column_type(st, 1) != SQLITE_BLOB ||
	    sqlite3_column_type(st, 3) != SQLITE_BLOB ||
	    !sq_digest_ok(cl ? c : "", cl, sqlite3_column_blob(st, 0),
		(size_t)sqlite3_column_bytes(st, 0), CRDT_STORE_DIGEST_BYTES,
		sq_pers_clock) ||
	    !sq_digest_ok(sl ? s : "", sl, sqlite3_column_blob(st, 2),
		(size_t)sqlite3_column_bytes(st, 2), CRDT_STORE_DIGEST_BYTES,
		sq_pers_snap))
		return CRDT_ECORRUPT;
	return 0;
}

static int
sq_get_checkpoint(void *impl, crdt_buf *snap, crdt_buf *clock)
{
	sq *q = impl;
	size_t s0 = snap->len, c0 = clock->len;
	int rc = sqlite3_step(q->get_ck);

	if (rc == SQLITE_DONE) {
		rc = CRDT_ENOTFOUND;
	} else if (rc != SQLITE_ROW) {
		rc = crdt__sq_err(rc);
	} else {
		rc = sq_check_ck_row(q->get_ck);
		if (rc == 0)
			rc = crdt_buf_append(clock, sqlite3_column_blob(q->get_ck,
			    1), (size_t)sqlite3_column_bytes(q->get_ck, 1));
		if (rc == 0 && sqlite3_column_bytes(q->get_ck, 3) > 0)
			rc = crdt_buf_append(snap, sqlite3_column_blob(q->get_ck,
			    3), (size_t)sqlite3_column_bytes(q->get_ck, 3));
	}
	sqlite3_reset(q->get_ck);
	if (rc < 0) {
		snap->len = s0;
		clock->len = c0;
	}
	return rc;
}

/* The dot stored in columns 1 (replica ID, joined from `replicas`: NULL
 * when the row's rep id has no replicas row) and 2 (counter) of a row. */
static int
sq_row_dot(sqlite3_stmt *st, crdt_dot *dot)
{
	const void *r = sqlite3_column_blob(st, 1);

	if (sqlite3_column_type(st, 1) != SQLITE_BLOB || r == NULL ||
	    sqlite3_column_bytes(st, 1) != CRDT_REPLICA_ID_BYTES ||
	    sqlite3_column_type(st, 2) != SQLITE_INTEGER)
		return CRDT_ECORRUPT;
	memcpy(dot->replica.bytes, r, CRDT_REPLICA_ID_BYTES);
	dot->counter = (uint64_t)sqlite3_column_int64(st, 2);
	return dot->counter == 0 ? CRDT_ECORRUPT : 0;
}

/* A stored message matches its digest, and peek reads the dot it was
 * stored under. */
static bool
sq_msg_ok(crdt_dot dot, const void *bytes, size_t len, const void *digest,
    size_t dlen)
{
	crdt_dot got;

	if (bytes == NULL || !sq_digest_ok(bytes, len, digest, dlen,
		CRDT__SQ_MSG_DIGEST, sq_pers_msg))
		return false;
	if (crdt_msg_peek(bytes, len, &got, NULL) != 0)
		return false;
	return got.counter == dot.counter &&
	    memcmp(got.replica.bytes, dot.replica.bytes,
		CRDT_REPLICA_ID_BYTES) == 0;
}

/* Smallest seq of rep id `rep`'s rows whose counter lies in [lo, hi]
 * (uint64 values of one sign half, so their int64 images keep order);
 * folded into `*first` (0 = none yet). A covering range of msgs_dot. */
static int
sq_min_seq(sq *q, sqlite3_int64 rep, uint64_t lo, uint64_t hi,
    uint64_t *first)
{
	sqlite3_int64 seq;
	int rc;

	if (sqlite3_bind_int64(q->min_seq, 1, rep) != SQLITE_OK ||
	    sqlite3_bind_int64(q->min_seq, 2, (sqlite3_int64)lo) != SQLITE_OK ||
	    sqlite3_bind_int64(q->min_seq, 3, (sqlite3_int64)hi) != SQLITE_OK) {
		sqlite3_reset(q->min_seq);
		return CRDT_ENOMEM;
	}
	rc = sqlite3_step(q->min_seq);
	if (rc == SQLITE_ROW) {
		rc = 0;
		if (sqlite3_column_type(q->min_seq, 0) != SQLITE_NULL) {
			seq = sqlite3_column_int64(q->min_seq, 0);
			if (seq <= 0)
				rc = CRDT_ECORRUPT;
			else if (*first == 0 || (uint64_t)seq < *first)
				*first = (uint64_t)seq;
		}
	} else {
		rc = crdt__sq_err(rc);
		if (rc == 0)
			rc = CRDT_ECORRUPT; /* an aggregate always has a row */
	}
	sqlite3_reset(q->min_seq);
	return rc;
}

/*
 * The seq of the first stored message `v` lacks (0: none), from the
 * msgs_dot index: per stored replica (the replicas table, in rep id
 * order), the rows past v's counter for it. O(replicas x log n +
 * messages v lacks), however long the log: a peer that is up to date
 * costs no scan of the log at all. Counters are kept as int64 bit
 * patterns, so the range (c, 2^64) is asked as its two sign halves,
 * [c+1, 2^63) and [max(c+1, 2^63), 2^64), each in order.
 */
static int
sq_first_lacking(sq *q, const crdt_vclock *v, uint64_t *first)
{
	static const uint64_t half = UINT64_C(1) << 63;
	sqlite3_int64 rep = 0;
	crdt_replica_id id;
	int rc;

	*first = 0;
	for (;;) {
		uint64_t c;

		if (sqlite3_bind_int64(q->next_rep, 1, rep) != SQLITE_OK) {
			sqlite3_reset(q->next_rep);
			return CRDT_ENOMEM;
		}
		rc = sqlite3_step(q->next_rep);
		if (rc == SQLITE_DONE) {
			sqlite3_reset(q->next_rep);
			return 0;
		}
		if (rc != SQLITE_ROW) {
			sqlite3_reset(q->next_rep);
			return crdt__sq_err(rc);
		}
		if (sqlite3_column_type(q->next_rep, 0) != SQLITE_INTEGER ||
		    sqlite3_column_int64(q->next_rep, 0) <= rep ||
		    sqlite3_column_type(q->next_rep, 1) != SQLITE_BLOB ||
		    sqlite3_column_bytes(q->next_rep, 1) !=
			CRDT_REPLICA_ID_BYTES) {
			sqlite3_reset(q->next_rep);
			return CRDT_ECORRUPT;
		}
		rep = sqlite3_column_int64(q->next_rep, 0);
		memcpy(id.bytes, sqlite3_column_blob(q->next_rep, 1),
		    sizeof id.bytes);
		sqlite3_reset(q->next_rep);
		c = crdt_vclock_get(v, &id);
		if (c == UINT64_MAX)
			continue; /* v has all of it */
		if (c + 1 < half)
			CRDT_TRY(sq_min_seq(q, rep, c + 1, half - 1, first));
		CRDT_TRY(sq_min_seq(q, rep, c + 1 > half ? c + 1 : half,
		    UINT64_MAX, first));
	}
}

static int
sq_since(void *impl, const crdt_vclock *v, uint64_t *cursor, size_t budget,
    crdt_store_msg_fn fn, void *ud, bool *more)
{
	sq *q = impl;
	uint64_t last = *cursor;
	size_t used = 0, handed = 0;
	bool m = false;
	int rc;

	/* From the start, go straight to the first message v lacks: the
	 * rows before it are all covered, and for a peer that is nearly up
	 * to date they are most of the log. Later pages go on from their
	 * cursor, so paging through a long catch-up stays one pass. */
	if (last == 0) {
		uint64_t first;
		CRDT_TRY(sq_first_lacking(q, v, &first));
		if (first == 0) {
			*more = false; /* *cursor stays 0: nothing lacking */
			return 0;
		}
		last = first - 1;
	}
	/* seq is a positive int64; a cursor past it simply finds nothing. */
	rc = sqlite3_bind_int64(q->scan, 1, last > (uint64_t)INT64_MAX ?
	    INT64_MAX : (sqlite3_int64)last);
	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	for (;;) {
		crdt_dot dot;
		sqlite3_int64 seq;
		size_t len;

		rc = sqlite3_step(q->scan);
		if (rc == SQLITE_DONE) {
			rc = 0;
			break;
		}
		if (rc != SQLITE_ROW) {
			rc = crdt__sq_err(rc);
			break;
		}
		seq = sqlite3_column_int64(q->scan, 0);
		rc = sq_row_dot(q->scan, &dot);
		if (rc < 0 || seq <= 0 || (uint64_t)seq <= last ||
		    sqlite3_column_type(q->scan, 3) != SQLITE_INTEGER) {
			rc = CRDT_ECORRUPT;
			break;
		}
		if (crdt_vclock_covers(v, dot)) {
			last = (uint64_t)seq;
			continue;
		}
		len = (size_t)sqlite3_column_int64(q->scan, 3);
		if (handed > 0 && (used >= budget || len > budget - used)) {
			m = true;
			break;
		}
		/* Only now are the bytes read (the scan reads no blob). */
		sqlite3_bind_int64(q->fetch, 1, seq);
		rc = sqlite3_step(q->fetch);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(q->fetch);
			rc = rc == SQLITE_DONE ? CRDT_ECORRUPT : crdt__sq_err(rc);
			break;
		}
		{
			const void *b = sqlite3_column_blob(q->fetch, 1);
			size_t bl = (size_t)sqlite3_column_bytes(q->fetch, 1);
			if (bl != len || !sq_msg_ok(dot, bl ? b : "", bl,
				sqlite3_column_blob(q->fetch, 0),
				(size_t)sqlite3_column_bytes(q->fetch, 0))) {
				sqlite3_reset(q->fetch);
				rc = CRDT_ECORRUPT;
				break;
			}
			rc = fn(ud, dot, bl ? b : (const uint8_t *)"", bl);
		}
		sqlite3_reset(q->fetch);
		if (rc < 0)
			break;
		used += len;
		handed++;
		last = (uint64_t)seq;
	}
	sqlite3_reset(q->scan);
	if (rc < 0)
		return rc;
	*cursor = last;
	*more = m;
	return 0;
}

static void
sq_free(sq *q)
{
	sqlite3_stmt *sts[] = { q->begin, q->commit, q->rollback, q->ins,
		q->variants, q->find_rep, q->add_rep, q->scan, q->fetch, q->next_rep, q->min_seq, q->put_ck,
		q->get_ck };
	crdt_allocator a = q->alloc;

	for (size_t i = 0; i < sizeof sts / sizeof sts[0]; i++)
		sqlite3_finalize(sts[i]);
	crdt__sq_snaps_fini(&q->snaps);
	/* close_v2 never fails for a connection whose statements are all
	 * finalized; the last connection to close checkpoints the WAL. */
	sqlite3_close_v2(q->db);
	crdt__free(&a, q, sizeof *q);
}

static void
sq_close(void *impl)
{
	sq_free(impl);
}

/* Every stored row and the checkpoint pass the checks since() and
 * get_checkpoint() apply, so a damaged file is refused before a handle
 * exists rather than found half-way through a load. */
static int
sq_check_rows(sqlite3 *db)
{
	sqlite3_stmt *st;
	crdt__sq_rep *reps;
	size_t nreps;
	int rc;

	CRDT_TRY(crdt__sq_reps_load(db, &reps, &nreps));
	rc = sqlite3_prepare_v2(db,
	    "SELECT seq, rep, counter, digest, bytes FROM msgs", -1, &st,
	    NULL);
	if (rc != SQLITE_OK) {
		sqlite3_free(reps);
		return crdt__sq_err(rc);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		crdt_dot dot;
		const uint8_t *rid = sqlite3_column_type(st, 1) ==
			SQLITE_INTEGER ?
		    crdt__sq_rep_find(reps, nreps, sqlite3_column_int64(st, 1)) :
		    NULL;
		const void *b = sqlite3_column_blob(st, 4);
		size_t bl = (size_t)sqlite3_column_bytes(st, 4);

		if (rid != NULL)
			memcpy(dot.replica.bytes, rid, CRDT_REPLICA_ID_BYTES);
		dot.counter = (uint64_t)sqlite3_column_int64(st, 2);
		if (rid == NULL || dot.counter == 0 ||
		    sqlite3_column_type(st, 2) != SQLITE_INTEGER ||
		    sqlite3_column_type(st, 4) != SQLITE_BLOB ||
		    !sq_msg_ok(dot, bl ? b : "", bl, sqlite3_column_blob(st, 3),
			(size_t)sqlite3_column_bytes(st, 3))) {
			rc = CRDT_ECORRUPT;
			break;
		}
	}
	sqlite3_finalize(st);
	sqlite3_free(reps);
	if (rc != SQLITE_DONE)
		return rc < 0 ? rc : crdt__sq_err(rc);
	rc = sqlite3_prepare_v2(db,
	    "SELECT clock_digest, clock, snap_digest, snap FROM checkpoint",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sq_check_ck_row(st) < 0) {
			sqlite3_finalize(st);
			return CRDT_ECORRUPT;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return crdt__sq_err(rc);
	return crdt__sq_snaps_check(db);
}

/* What sq_check_db found. */
enum sq_state { SQ_EMPTY, SQ_CURRENT, SQ_OLD };

/* Read the version rows and check the schema and rows, inside the
 * transaction the caller opened. SQ_EMPTY = a database with nothing in
 * it yet (new, or a zero-length file); SQ_OLD = a version-1 or -2 store
 * (`*ver`) whose schema is exactly that version's, to be migrated (its
 * rows are checked after the migration, in the same transaction). */
static int
sq_check_db(sqlite3 *db, bool quick, enum sq_state *state, int64_t *oldver)
{
	int64_t app = 0, ver = 0, nobj = 0;

	CRDT_TRY(sq_query_int(db, "PRAGMA application_id", &app));
	CRDT_TRY(sq_query_int(db, "PRAGMA user_version", &ver));
	CRDT_TRY(sq_query_int(db, "SELECT count(*) FROM sqlite_master",
	    &nobj));
	*state = SQ_CURRENT;
	if (app == 0 && ver == 0 && nobj == 0) {
		*state = SQ_EMPTY;
		return 0;
	}
	if (app != SQ_APP_ID)
		return CRDT_ECORRUPT; /* some other application's database */
	if (ver > SQ_VERSION)
		return CRDT_EVERSION;
	if (ver == 1 || ver == 2) {
		*state = SQ_OLD;
		*oldver = ver;
		return ver == 1 ? crdt__sq_check_schema(db, crdt__sq_schema_v1,
				      crdt__sq_schema_v1_n) :
				  crdt__sq_check_schema(db, crdt__sq_schema_v2,
				      crdt__sq_schema_v2_n);
	}
	if (ver != SQ_VERSION)
		return CRDT_ECORRUPT;
	CRDT_TRY(crdt__sq_check_schema(db, crdt__sq_schema_v3,
	    crdt__sq_schema_v3_n));
	/* quick_open: the rows are checked when read instead (since,
	 * get_checkpoint), so damage is still never handed out. */
	return quick ? 0 : sq_check_rows(db);
}

/* Version 1 -> 2 -> 3 (or 2 -> 3) in the caller's write transaction,
 * then the checks a version-3 file gets on open: a damaged old row fails
 * them here, and the caller rolls the whole migration back. */
static int
sq_migrate(sqlite3 *db, bool quick, int64_t ver)
{
	int rc = ver == 1 ? crdt__sq_migrate_v1(db) : SQLITE_OK;

	if (rc == SQLITE_OK)
		rc = crdt__sq_migrate_v2(db);
	if (rc != SQLITE_OK)
		return crdt__sq_err(rc);
	CRDT_TRY(crdt__sq_check_schema(db, crdt__sq_schema_v3,
	    crdt__sq_schema_v3_n));
	return quick ? 0 : sq_check_rows(db);
}

/* Make a new file's directory entry durable. SQLite syncs the directory
 * when it creates a journal or WAL file, not when it creates the main
 * database, so without this a power loss soon after the first acks
 * could take the whole new file with it. */
static int
sq_sync_dir(const crdt_allocator *a, const char *path)
{
	size_t n = strlen(path), cut = n;
	char *dir;
	int fd, rc = 0;

	while (cut > 0 && path[cut - 1] != '/')
		cut--;
	while (cut > 1 && path[cut - 1] == '/')
		cut--; /* "a//b" -> "a"; "/b" -> "/" */
	dir = crdt__malloc(a, cut ? cut + 1 : 2);
	if (dir == NULL)
		return CRDT_ENOMEM;
	if (cut == 0) {
		memcpy(dir, ".", 2);
	} else {
		memcpy(dir, path, cut);
		dir[cut] = '\0';
	}
	fd = open(dir, O_RDONLY);
	if (fd < 0 || fsync(fd) != 0)
		rc = CRDT_EIO;
	if (fd >= 0)
		close(fd);
	crdt__free(a, dir, cut ? cut + 1 : 2);
	return rc;
}

/* Check the store in a read transaction (in WAL mode readers do not wait
 * for a writer, so opening does not block on another connection's
 * batch), and create the schema only in an empty database, under the
 * write lock, after looking again: two processes creating the same file
 * at once must not both create. */
static int
sq_schema(sqlite3 *db, bool must_exist, bool quick, bool *created)
{
	enum sq_state state = SQ_CURRENT;
	int64_t ver = 0;
	bool migrated = false;
	int rc;

	for (int pass = 0; pass < 2; pass++) {
		rc = sq_exec(db, pass == 0 ? "BEGIN" : "BEGIN IMMEDIATE");
		if (rc == 0)
			rc = sq_check_db(db, quick, &state, &ver);
		if (rc == 0 && state == SQ_EMPTY && must_exist)
			rc = CRDT_ECORRUPT;
		if (rc == 0 && state == SQ_EMPTY && pass == 1) {
			rc = crdt__sq_err(crdt__sq_create_v3(db));
			*created = rc == 0;
		}
		if (rc == 0 && state == SQ_OLD && pass == 1) {
			rc = sq_migrate(db, quick, ver);
			/* only version 1's rows moved */
			migrated = rc == 0 && ver == 1;
		}
		if (rc == 0)
			rc = sq_exec(db, "COMMIT");
		if (rc < 0) {
			if (!sqlite3_get_autocommit(db))
				(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL,
				    NULL);
			*created = false;
			return rc;
		}
		if (state == SQ_CURRENT)
			break;
	}
	/* The old table's pages are free now; give them back to the file
	 * system. VACUUM is a transaction of its own: if it fails (a quota,
	 * a full disk) the migrated store is whole, only larger, and new
	 * rows reuse the free pages. */
	if (migrated)
		(void)sqlite3_exec(db, "VACUUM", NULL, NULL, NULL);
	return 0;
}

static int
sq_setup(sqlite3 *db, const crdt_store_sqlite_opts *o)
{
	char mode[16], sql[96];
	int on = 1, off = 0;

	/* No SQL in the file (triggers, views) runs with our rights, and
	 * SQL cannot corrupt the file through writable_schema. */
	if (sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, on, NULL) !=
		SQLITE_OK ||
	    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, off, NULL) !=
		SQLITE_OK ||
	    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, off, NULL) !=
		SQLITE_OK)
		return CRDT_EIO;
	if (sqlite3_busy_timeout(db, o->busy_timeout_ms ?
		(int)CRDT_MIN(o->busy_timeout_ms, (uint32_t)INT_MAX) :
		(int)SQ_BUSY_DEFAULT_MS) != SQLITE_OK)
		return CRDT_EIO;
	/* The first read: a file that is not a database fails here (with
	 * quick_open, at the first read of the header, sq_check_db). */
	if (!o->quick_open)
		CRDT_TRY(crdt__sq_quick_check(db));
	CRDT_TRY(sq_exec(db, "PRAGMA page_size = 4096"));
	CRDT_TRY(sq_query_text(db, "PRAGMA journal_mode = WAL", mode,
	    sizeof mode));
	if (strcmp(mode, "wal") != 0)
		return CRDT_EIO; /* the filesystem cannot do WAL (no mmap) */
	CRDT_TRY(sq_exec(db, o->synchronous == CRDT_STORE_SYNC_NORMAL ?
		"PRAGMA synchronous = NORMAL" :
		"PRAGMA synchronous = FULL"));
	CRDT_TRY(sq_exec(db, "PRAGMA cell_size_check = ON"));
	if (o->max_pages != 0) {
		int64_t got = 0;
		snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lu",
		    (unsigned long)o->max_pages);
		/* Answers the limit in force: never below the current size,
		 * so a quota smaller than the file is the file's size. */
		CRDT_TRY(sq_query_int(db, sql, &got));
	}
	return 0;
}

int
crdt_store_open_sqlite(const crdt_config *cfg, const char *path,
    const crdt_store_sqlite_opts *o, crdt_store **out)
{
	static const crdt_store_ops ops = { sq_append, sq_put_checkpoint,
		sq_get_checkpoint, sq_since, sq_close, sq_put_snapshot,
		sq_snapshots, sq_put_checkpoint_upto };
	crdt_store_sqlite_opts opts;
	crdt_config c;
	bool created = false;
	sq *q;
	int rc;

	if (path == NULL || out == NULL)
		return CRDT_EINVAL;
	if (o != NULL)
		opts = *o;
	else
		memset(&opts, 0, sizeof opts);
	if (opts.synchronous != CRDT_STORE_SYNC_FULL &&
	    opts.synchronous != CRDT_STORE_SYNC_NORMAL)
		return CRDT_EINVAL;
	for (size_t i = 0; i < sizeof opts.reserved; i++)
		if (opts.reserved[i] != 0)
			return CRDT_EINVAL;
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	CRDT_TRY(crdt__crypto_init()); /* digests are BLAKE2b */
	q = crdt__malloc(&c.alloc, sizeof *q);
	if (q == NULL)
		return CRDT_ENOMEM;
	memset(q, 0, sizeof *q);
	q->alloc = c.alloc;
	rc = sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE |
	    (opts.must_exist ? 0 : SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX,
	    NULL);
	if (rc != SQLITE_OK) {
		/* Without CREATE, a missing file is the one CANTOPEN whose
		 * cause SQLite reports as ENOENT. */
		if (q->db == NULL)
			rc = CRDT_ENOMEM;
		else if (opts.must_exist && (rc & 0xff) == SQLITE_CANTOPEN &&
		    sqlite3_system_errno(q->db) == ENOENT)
			rc = CRDT_ENOTFOUND;
		else
			rc = crdt__sq_err(rc);
		goto fail;
	}
	sqlite3_extended_result_codes(q->db, 1);
	rc = sq_setup(q->db, &opts);
	if (rc == 0)
		rc = sq_schema(q->db, opts.must_exist, opts.quick_open,
		    &created);
	if (rc == 0 && created)
		rc = sq_sync_dir(&c.alloc, path);
	if (rc == 0)
		rc = sq_prep(q->db, "BEGIN IMMEDIATE", &q->begin);
	if (rc == 0)
		rc = sq_prep(q->db, "COMMIT", &q->commit);
	if (rc == 0)
		rc = sq_prep(q->db, "ROLLBACK", &q->rollback);
	if (rc == 0)
		rc = sq_prep(q->db, "INSERT INTO msgs(rep, counter, digest, "
		    "bytes) VALUES(?1, ?2, ?3, ?4)", &q->ins);
	if (rc == 0)
		rc = sq_prep(q->db, "SELECT digest, bytes FROM msgs "
		    "WHERE rep = ?1 AND counter = ?2", &q->variants);
	if (rc == 0)
		rc = sq_prep(q->db, "SELECT id FROM replicas WHERE rid = ?1",
		    &q->find_rep);
	if (rc == 0)
		rc = sq_prep(q->db, "INSERT INTO replicas(rid) VALUES(?1)",
		    &q->add_rep);
	/* LEFT JOIN: a row whose rep id lost its replicas row is not
	 * skipped but read as NULL and refused (sq_row_dot). */
	if (rc == 0)
		rc = sq_prep(q->db, "SELECT m.seq, r.rid, m.counter, "
		    "length(m.bytes) FROM msgs AS m LEFT JOIN replicas AS r "
		    "ON r.id = m.rep WHERE m.seq > ?1 ORDER BY m.seq",
		    &q->scan);
	if (rc == 0)
		rc = sq_prep(q->db, "SELECT digest, bytes FROM msgs "
		    "WHERE seq = ?1", &q->fetch);
	if (rc == 0)
		rc = sq_prep(q->db, "SELECT id, rid FROM replicas WHERE id > ?1 "
		    "ORDER BY id LIMIT 1", &q->next_rep);
	if (rc == 0)
		rc = sq_prep(q->db, "SELECT min(seq) FROM msgs WHERE rep = ?1 "
		    "AND counter BETWEEN ?2 AND ?3", &q->min_seq);
	if (rc == 0)
		rc = sq_prep(q->db, "INSERT OR REPLACE INTO checkpoint(id, "
		    "clock_digest, clock, snap_digest, snap) "
		    "VALUES(1, ?1, ?2, ?3, ?4)", &q->put_ck);
	if (rc == 0)
		rc = sq_prep(q->db, "SELECT clock_digest, clock, snap_digest, "
		    "snap FROM checkpoint WHERE id = 1", &q->get_ck);
	if (rc == 0)
		rc = crdt__sq_snaps_prep(&q->snaps, q->db);
	if (rc == 0)
		rc = crdt_store_new(&c, &ops, q, out);
	if (rc == 0) {
		/* put_checkpoint allocates nothing from cfg->alloc (SQLite's
		 * allocator is thread-safe), and a connection opened NOMUTEX
		 * may move between threads as long as one uses it at a time,
		 * which the front end's lock ensures. */
		crdt__store_allow_bg(*out);
		return 0;
	}
fail:
	sq_free(q);
	return rc;
}
