/*
 * Automatic checkpoints (doc.h, "Automatic checkpoints"; docs/storage.md)
 * and the store's background writer (store.h,
 * crdt_store_put_checkpoint_bg, crdt_store_bg_status):
 *
 *   - the policy: a checkpoint when the tail reaches pct percent of the
 *     last one (and the floor), so the tail never exceeds that and the
 *     snapshot bytes written stay within (100 / pct) x the message bytes
 *     plus the last snapshot (amortized O(message)), counted through a
 *     wrapping backend;
 *   - on SQLite, in the background: a restart replays a bounded tail and
 *     gives the same document; close writes what is queued; an explicit
 *     checkpoint supersedes a queued one;
 *   - a background write that fails (a quota) is reported by the status
 *     call, the commits succeed, and nothing is lost;
 *   - bad arguments and allocation failures change nothing;
 *   - kill -9 at random points while background checkpoints are written:
 *     no acknowledged message lost, no dot reused, the checkpoint found is
 *     whole, and a fresh peer heals to identical bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "crdt/crdt.h"
#include "crdt/store.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_crash.h"
#include "test_util.h"

static char tmpdir[TEST_DIR_MAX];
static char dbpath[TEST_DB_MAX];

static void
setup(void)
{
	test_tmpdb("ckpt", tmpdir, dbpath);
	test_alloc_reset();
}

static void
teardown(void)
{
	test_tmpdb_remove(tmpdir, dbpath);
}

TestSuite(ckpt, .init = setup, .fini = teardown);

static crdt_store *
store_open(uint32_t max_pages, bool full)
{
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	o.synchronous = full ? CRDT_STORE_SYNC_FULL : CRDT_STORE_SYNC_NORMAL;
	o.max_pages = max_pages;
	crdt_store *s = NULL;
	int rc = crdt_store_open_sqlite(NULL, dbpath, &o, &s);
	cr_assert_eq(rc, 0, "open store: %s", crdt_err_name(rc));
	return s;
}

/* A document with one map "m" (object 0) and the given policy. */
static crdt_doc *
mkdoc(uint8_t id, test_clock *clk, size_t log_max, uint32_t pct,
    size_t min_bytes)
{
	crdt_config cfg;
	test_config(&cfg, clk);
	cfg.log_max_msgs = log_max;
	cfg.ckpt_tail_pct = pct;
	cfg.ckpt_min_bytes = min_bytes;
	crdt_replica_id rid = test_id(id);
	crdt_doc *d = NULL;
	cr_assert_eq(crdt_doc_new(&cfg, &rid, &d), 0);
	uint32_t on;
	cr_assert_eq(crdt_doc_register(d, "m", CRDT_OBJ_MAP, &on), 0);
	return d;
}

/* Key k, value of `vlen` bytes derived from `salt`. */
static int
put(crdt_doc *d, unsigned k, unsigned salt, size_t vlen, crdt_buf *msg)
{
	char key[16], val[512];
	snprintf(key, sizeof key, "k%u", k);
	cr_assert_leq(vlen, sizeof val);
	for (size_t i = 0; i < vlen; i++)
		val[i] = (char)('a' + (salt + i) % 26);
	crdt_buf_clear(msg);
	return crdt_doc_map_set(d, 0, key, strlen(key), val, vlen, msg);
}

static void
save(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_save(d, out), 0);
}

/* ---- a backend wrapping an SQLite store, counting what it is asked ---- */

typedef struct wrap {
	crdt_store *inner;
	size_t puts, put_bytes, last_put, tail, appends;
	int fail_put; /* returned by put_checkpoint when set */
} wrap;

static int
w_append(void *impl, const crdt_store_rec *recs, size_t n, size_t *added)
{
	wrap *w = impl;
	static crdt_store_msg m[16384];
	cr_assert_leq(n, 16384);
	w->appends++;
	for (size_t i = 0; i < n; i++) {
		m[i] = (crdt_store_msg){ recs[i].bytes, recs[i].len };
		w->tail += recs[i].len;
	}
	return crdt_store_append(w->inner, m, n, added);
}

static int
w_put(void *impl, const uint8_t *snap, size_t len, const uint8_t *clock,
    size_t clen)
{
	wrap *w = impl;
	if (w->fail_put)
		return w->fail_put;
	crdt_vclock *v;
	cr_assert_eq(crdt_vclock_decode(NULL, clock, clen, &v), 0);
	int rc = crdt_store_put_checkpoint(w->inner, len ? (const void *)snap :
		(const void *)"", len, v);
	crdt_vclock_free(v);
	if (rc == 0) {
		w->puts++;
		w->put_bytes += len;
		w->last_put = len;
		w->tail = 0;
	}
	return rc;
}

static int
w_get(void *impl, crdt_buf *snap, crdt_buf *clock)
{
	wrap *w = impl;
	crdt_vclock *v = NULL;
	int rc = crdt_store_checkpoint(w->inner, snap, &v);
	if (rc < 0)
		return rc;
	rc = crdt_vclock_encode(v, clock);
	crdt_vclock_free(v);
	return rc;
}

static int
w_since(void *impl, const crdt_vclock *v, uint64_t *cursor, size_t budget,
    crdt_store_msg_fn fn, void *ud, bool *more)
{
	wrap *w = impl;
	return crdt_store_since(w->inner, v, cursor, budget, fn, ud, more);
}

static const crdt_store_ops wrap_ops = { w_append, w_put, w_get, w_since,
	NULL, NULL, NULL, NULL };

static crdt_store *
wrap_open(wrap *w)
{
	memset(w, 0, sizeof *w);
	w->inner = store_open(0, false);
	crdt_store *s = NULL;
	cr_assert_eq(crdt_store_new(NULL, &wrap_ops, w, &s), 0);
	return s;
}

static size_t
due_at(size_t snap, uint32_t pct, size_t min_bytes)
{
	size_t t = snap * pct / 100;
	return t > min_bytes ? t : min_bytes;
}

/*
 * A map whose snapshot grows (new keys) and then stays (overwrites):
 * after every commit the tail is below the threshold, and the snapshot
 * bytes written are at most (100 / pct) x the message bytes plus the last
 * snapshot: amortized O(message). Turned off, none is taken.
 */
Test(ckpt, the_policy_bounds_the_tail_at_amortized_cost)
{
	static const uint32_t pcts[] = { 50, 100, 10, UINT32_MAX };
	for (size_t p = 0; p < sizeof pcts / sizeof pcts[0]; p++) {
		wrap w;
		crdt_store *s = wrap_open(&w);
		test_clock ca = { 1000000, 0 };
		const size_t floor = 2048;
		crdt_doc *d = mkdoc(1, &ca, 32, pcts[p], floor);
		cr_assert_eq(crdt_doc_attach_store(d, s, 0), 0);
		crdt_buf m;
		tb_init(&m);
		size_t msg_bytes = 0;
		for (unsigned i = 0; i < 3000; i++) {
			ca.ms += 1;
			/* the first 1500 add keys, the rest overwrite */
			cr_assert_eq(put(d, i < 1500 ? i : i % 1500, i, 40, &m),
			    0);
			msg_bytes += m.len;
			if (pcts[p] != UINT32_MAX)
				cr_assert_lt(w.tail, due_at(w.last_put, pcts[p],
				    floor), "commit %u: tail %zu past the "
				    "threshold (last checkpoint %zu)", i,
				    w.tail, w.last_put);
		}
		cr_assert_eq(crdt_doc_checkpoint_status(d, true), 0);
		if (pcts[p] == UINT32_MAX) {
			cr_assert_eq(w.puts, 0);
		} else {
			cr_assert_geq(w.puts, 3, "pct %u: %zu checkpoints",
			    pcts[p], w.puts);
			cr_assert_leq(w.put_bytes, msg_bytes * 100 / pcts[p] +
			    w.last_put, "pct %u: %zu snapshot bytes for %zu "
			    "message bytes", pcts[p], w.put_bytes, msg_bytes);
		}
		crdt_buf_fini(&m);
		crdt_doc_free(d);
		crdt_store_close(s);
		crdt_store_close(w.inner);
		test_rm_db(dbpath);
	}
	ASSERT_NO_LEAKS();
}

/* Group commit: the automatic checkpoint waits for the flush (it must
 * not cover what the store's log lacks). */
Test(ckpt, group_commit_checkpoints_at_the_flush)
{
	wrap w;
	crdt_store *s = wrap_open(&w);
	test_clock ca = { 1000000, 0 };
	crdt_doc *d = mkdoc(1, &ca, 32, 50, 1024);
	cr_assert_eq(crdt_doc_attach_store(d, s, CRDT_DOC_STORE_GROUP), 0);
	crdt_buf m;
	tb_init(&m);
	for (unsigned i = 0; i < 200; i++) {
		ca.ms += 1;
		cr_assert_eq(put(d, i, i, 40, &m), 0);
	}
	cr_assert_eq(w.puts, 0, "a checkpoint before the flush");
	cr_assert_eq(crdt_doc_store_flush(d), 0);
	cr_assert_eq(w.puts, 1);
	cr_assert_eq(w.tail, 0);
	crdt_buf_fini(&m);
	crdt_doc_free(d);
	crdt_store_close(s);
	crdt_store_close(w.inner);
	ASSERT_NO_LEAKS();
}

/* A flush appends the queue in batches of up to 16384 (one transaction
 * each); without memory for the batch's array it still stores the whole
 * queue, 64 at a time. */
Test(ckpt, a_flush_batches_the_queue_and_needs_no_memory_for_it)
{
	for (int oom = 0; oom < 2; oom++) {
		wrap w;
		crdt_store *s = wrap_open(&w);
		test_clock ca = { 1000000, 0 };
		crdt_doc *d = mkdoc(1, &ca, 32, UINT32_MAX, 0);
		cr_assert_eq(crdt_doc_attach_store(d, s, CRDT_DOC_STORE_GROUP),
		    0);
		crdt_buf m, a, b;
		tb_init(&m);
		tb_init(&a);
		tb_init(&b);
		for (unsigned i = 0; i < 20000; i++) {
			ca.ms += 1;
			cr_assert_eq(put(d, i % 50, i, 8, &m), 0);
		}
		cr_assert_eq(w.appends, 0);
		if (oom)
			test_alloc_fail_from(0);
		int rc = crdt_doc_store_flush(d);
		test_alloc_disarm();
		cr_assert_eq(rc, 0, "flush: %s", crdt_err_name(rc));
		/* 16384 + 3616, or 313 batches of 64 */
		cr_assert_eq(w.appends, oom ? (20000 + 63) / 64 : 2);
		crdt_doc *r = mkdoc(1, &ca, 32, UINT32_MAX, 0);
		cr_assert_eq(crdt_doc_open_store(r, w.inner, 0), 0);
		save(d, &a);
		save(r, &b);
		cr_assert(bytes_eq(a.data, a.len, b.data, b.len));
		crdt_doc_free(r);
		crdt_buf_fini(&m);
		crdt_buf_fini(&a);
		crdt_buf_fini(&b);
		crdt_doc_free(d);
		crdt_store_close(s);
		crdt_store_close(w.inner);
		test_rm_db(dbpath);
	}
	ASSERT_NO_LEAKS();
}

/* An automatic checkpoint that fails never fails its call: the commit is
 * stored, the error is reported once, and the policy tries again a tail
 * later. */
Test(ckpt, a_failing_checkpoint_is_reported_and_the_commit_stands)
{
	wrap w;
	crdt_store *s = wrap_open(&w);
	test_clock ca = { 1000000, 0 };
	crdt_doc *d = mkdoc(1, &ca, 32, 50, 1024);
	cr_assert_eq(crdt_doc_attach_store(d, s, 0), 0);
	w.fail_put = CRDT_EIO;
	crdt_buf m, a, b;
	tb_init(&m);
	tb_init(&a);
	tb_init(&b);
	unsigned i = 0;
	for (; i < 100; i++) {
		ca.ms += 1;
		cr_assert_eq(put(d, i, i, 40, &m), 0);
	}
	cr_assert_eq(w.puts, 0);
	cr_assert_eq(crdt_doc_checkpoint_status(d, false), CRDT_EIO);
	cr_assert_eq(crdt_doc_checkpoint_status(d, false), 0, "reported once");
	cr_assert_eq(crdt_doc_checkpoint_status(NULL, false), CRDT_EINVAL);
	w.fail_put = 0;
	for (; i < 200; i++) {
		ca.ms += 1;
		cr_assert_eq(put(d, i, i, 40, &m), 0);
	}
	cr_assert_geq(w.puts, 1, "not tried again");
	cr_assert_eq(crdt_doc_checkpoint_status(d, false), 0);
	/* every commit is in the store: a restart gives the same bytes */
	crdt_doc *r = mkdoc(1, &ca, 32, 50, 1024);
	cr_assert_eq(crdt_doc_open_store(r, w.inner, 0), 0);
	save(d, &a);
	save(r, &b);
	cr_assert(bytes_eq(a.data, a.len, b.data, b.len));
	crdt_doc_free(r);
	crdt_buf_fini(&m);
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	crdt_doc_free(d);
	crdt_store_close(s);
	crdt_store_close(w.inner);
	ASSERT_NO_LEAKS();
}

typedef struct tailc {
	size_t n, bytes;
} tailc;

static int
count_one(void *ud, crdt_dot dot, const uint8_t *bytes, size_t len)
{
	(void)dot;
	(void)bytes;
	tailc *t = ud;
	t->n++;
	t->bytes += len;
	return 0;
}

/* What a restart from `s` replays: the messages its checkpoint's clock
 * lacks. */
static tailc
stored_tail(crdt_store *s, crdt_buf *snap_out)
{
	crdt_vclock *v = NULL;
	crdt_buf_clear(snap_out);
	cr_assert_eq(crdt_store_checkpoint(s, snap_out, &v), 0);
	tailc t = { 0, 0 };
	uint64_t cur = 0;
	bool more = false;
	cr_assert_eq(crdt_store_since(s, v, &cur, SIZE_MAX, count_one, &t,
	    &more), 0);
	crdt_vclock_free(v);
	return t;
}

/* On SQLite the write happens on the store's writer thread: after the
 * status call waited, what a restart replays is at most the threshold
 * plus the log's 16 messages, and the restart gives the same document. */
Test(ckpt, background_checkpoints_bound_what_a_restart_replays)
{
	crdt_store *s = store_open(0, false);
	test_clock ca = { 1000000, 0 };
	crdt_doc *d = mkdoc(1, &ca, 16, 50, 4096);
	cr_assert_eq(crdt_doc_attach_store(d, s, 0), 0);
	crdt_buf m, a, b, snap;
	tb_init(&m);
	tb_init(&a);
	tb_init(&b);
	tb_init(&snap);
	size_t maxmsg = 0, total = 0;
	for (unsigned i = 0; i < 4000; i++) {
		ca.ms += 1;
		cr_assert_eq(put(d, i % 2000, i, 60, &m), 0);
		maxmsg = m.len > maxmsg ? m.len : maxmsg;
		total += m.len;
	}
	cr_assert_eq(crdt_doc_checkpoint_status(d, true), 0);
	tailc t = stored_tail(s, &snap);
	size_t bound = due_at(snap.len, 50, 4096) + 16 * maxmsg;
	cr_assert_leq(t.bytes, bound, "restart replays %zu bytes (%zu "
	    "messages), bound %zu", t.bytes, t.n, bound);
	cr_assert_lt(t.bytes, total / 4, "not bounded: most of the history");
	save(d, &a);
	crdt_doc_free(d);
	crdt_store_close(s);

	s = store_open(0, false);
	crdt_doc *r = mkdoc(1, &ca, 16, 50, 4096);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &b);
	cr_assert(bytes_eq(a.data, a.len, b.data, b.len),
	    "the restart is not the document");
	cr_assert_eq(crdt_doc_log_size(r), 16);
	crdt_doc_free(r);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	crdt_buf_fini(&snap);
	ASSERT_NO_LEAKS();
}

static void
fill_snap(crdt_buf *b, uint8_t v, size_t n)
{
	crdt_buf_init(b, test_alloc_hook());
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(crdt_buf_append(b, &v, 1), 0);
}

static void
expect_ck(uint8_t v, size_t n)
{
	crdt_store *s = store_open(0, false);
	crdt_buf got;
	tb_init(&got);
	crdt_vclock *c = NULL;
	cr_assert_eq(crdt_store_checkpoint(s, &got, &c), 0);
	cr_assert_eq(got.len, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(got.data[i], v);
	crdt_vclock_free(c);
	crdt_buf_fini(&got);
	crdt_store_close(s);
}

/* Close writes what is queued; a foreground checkpoint supersedes one
 * still queued; bad arguments, a snapshot over the limit and a failed
 * allocation change nothing and leave the caller's bytes alone. */
Test(ckpt, the_writer_hands_over_supersedes_and_refuses_cleanly)
{
	crdt_vclock *v;
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	crdt_buf b;
	crdt_store *s = store_open(0, false);
	fill_snap(&b, 7, 3000);
	cr_assert_eq(crdt_store_put_checkpoint_bg(s, &b, v), 0);
	cr_assert_eq(b.len, 0, "the bytes changed hands");
	crdt_buf_fini(&b);
	crdt_store_close(s); /* writes the queued one */
	expect_ck(7, 3000);

	s = store_open(0, false);
	for (uint8_t k = 1; k <= 5; k++) {
		fill_snap(&b, k, 1000u * k);
		cr_assert_eq(crdt_store_put_checkpoint_bg(s, &b, v), 0);
		crdt_buf_fini(&b);
	}
	uint8_t fg[10];
	memset(fg, 9, sizeof fg);
	cr_assert_eq(crdt_store_put_checkpoint(s, fg, sizeof fg, v), 0);
	cr_assert_eq(crdt_store_bg_status(s, true), 0);
	crdt_store_close(s);
	expect_ck(9, sizeof fg);

	/* refusals */
	s = store_open(0, false);
	fill_snap(&b, 3, 100);
	cr_assert_eq(crdt_store_put_checkpoint_bg(NULL, &b, v), CRDT_EINVAL);
	cr_assert_eq(crdt_store_put_checkpoint_bg(s, NULL, v), CRDT_EINVAL);
	cr_assert_eq(crdt_store_put_checkpoint_bg(s, &b, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_store_bg_status(NULL, false), CRDT_EINVAL);
	cr_assert_eq(b.len, 100, "refused, the bytes stay the caller's");
	crdt_store_close(s);

	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.limits.max_bytes = 64;
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, &o, &s), 0);
	int rc = crdt_store_put_checkpoint_bg(s, &b, v);
	cr_assert_eq(rc, CRDT_ETOOBIG);
	cr_assert_eq(b.len, 100, "refused, the bytes stay the caller's");
	crdt_buf_fini(&b);
	fill_snap(&b, 4, 50);
	size_t fired = 0;
	for (long n = 0; n < 10; n++) {
		test_alloc_fail_at(n);
		rc = crdt_store_put_checkpoint_bg(s, &b, v);
		test_alloc_disarm();
		if (rc == CRDT_ENOMEM) {
			fired++;
			cr_assert_eq(b.len, 50);
			continue;
		}
		cr_assert_eq(rc, 0);
		cr_assert_eq(b.len, 0);
		crdt_buf_fini(&b);
		fill_snap(&b, 4, 50);
	}
	cr_assert_gt(fired, 0);
	cr_assert_eq(crdt_store_bg_status(s, true), 0);
	crdt_store_close(s);
	crdt_buf_fini(&b);
	crdt_vclock_free(v);
	expect_ck(4, 50);
	ASSERT_NO_LEAKS();
}

static int64_t
page_count(void)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "VACUUM", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &st,
	    NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	int64_t n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/*
 * The writer's write fails (the quota leaves room for messages, not for a
 * second copy of a 120 KiB snapshot): every commit returns 0, the status
 * call reports CRDT_EFULL once, the previous checkpoint is still there,
 * and a restart from the store gives the same document.
 */
Test(ckpt, a_failed_background_write_is_reported_and_loses_nothing)
{
	crdt_store *s = store_open(0, false);
	test_clock ca = { 1000000, 0 };
	crdt_doc *d = mkdoc(1, &ca, 4, 1, 1);
	cr_assert_eq(crdt_doc_attach_store(d, s, 0), 0);
	crdt_buf m, a, b, ck0, ck1;
	tb_init(&m);
	tb_init(&a);
	tb_init(&b);
	tb_init(&ck0);
	tb_init(&ck1);
	for (unsigned i = 0; i < 300; i++) {
		ca.ms += 1;
		cr_assert_eq(put(d, i, i, 400, &m), 0);
	}
	cr_assert_eq(crdt_doc_checkpoint(d), 0);
	cr_assert_eq(crdt_doc_checkpoint_status(d, true), 0);
	crdt_doc_free(d);
	crdt_store_close(s);
	int64_t pages = page_count();

	s = store_open((uint32_t)pages + 6, false);
	(void)stored_tail(s, &ck0);
	cr_assert_gt(ck0.len, 100000);
	d = mkdoc(1, &ca, 4, 1, 1);
	cr_assert_eq(crdt_doc_open_store(d, s, 0), 0);
	/* 1 % of the snapshot: a checkpoint after ~1.2 KiB of messages */
	for (unsigned i = 0; i < 12; i++) {
		ca.ms += 1;
		int rc = put(d, i, 1000 + i, 100, &m);
		cr_assert_eq(rc, 0, "commit %u: %s", i, crdt_err_name(rc));
	}
	int rc = crdt_doc_checkpoint_status(d, true);
	cr_assert_eq(rc, CRDT_EFULL, "status: %s", crdt_err_name(rc));
	cr_assert_eq(crdt_doc_checkpoint_status(d, true), 0);
	(void)stored_tail(s, &ck1);
	cr_assert(bytes_eq(ck0.data, ck0.len, ck1.data, ck1.len),
	    "the previous checkpoint was replaced");
	save(d, &a);
	crdt_doc_free(d);
	crdt_store_close(s);

	s = store_open(0, false);
	crdt_doc *r = mkdoc(1, &ca, 4, 1, 1);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &b);
	cr_assert(bytes_eq(a.data, a.len, b.data, b.len),
	    "an acknowledged commit was lost");
	crdt_doc_free(r);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	crdt_buf_fini(&ck0);
	crdt_buf_fini(&ck1);
	ASSERT_NO_LEAKS();
}

/* ---- kill -9 while background checkpoints are written ---- */

#define CRASH_ITERS 60
#define CHILD_STEPS 80
#define B_STREAM 200
#define RESET_AT 1500
#define KEYS 64

static crdt_doc *
child_doc(void)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.log_max_msgs = 16;
	/* a ~25 KiB snapshot rewritten every ~2.5 KiB of messages */
	cfg.ckpt_tail_pct = 10;
	cfg.ckpt_min_bytes = 512;
	crdt_replica_id rid = test_id(1);
	crdt_doc *d = NULL;
	uint32_t on;
	if (crdt_doc_new(&cfg, &rid, &d) != 0 ||
	    crdt_doc_register(d, "m", CRDT_OBJ_MAP, &on) != 0)
		_exit(3);
	return d;
}

static uint64_t
vc_get(const crdt_doc *d, uint8_t id)
{
	crdt_vclock *v;
	if (crdt_doc_vclock(d, &v) != 0)
		_exit(3);
	crdt_replica_id r = test_id(id);
	uint64_t c = crdt_vclock_get(v, &r);
	crdt_vclock_free(v);
	return c;
}

static void
crash_child(void *ud, uint64_t seed, int wfd)
{
	crdt_buf *bs = ud;
	test_rng r;
	test_rng_init(&r, seed);
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	o.synchronous = test_rng_below(&r, 2) ? CRDT_STORE_SYNC_FULL :
						 CRDT_STORE_SYNC_NORMAL;
	crdt_store *s = NULL;
	if (crdt_store_open_sqlite(NULL, dbpath, &o, &s) != 0)
		_exit(2);
	crdt_doc *d = child_doc();
	bool group = test_rng_below(&r, 3) == 0;
	if (crdt_doc_open_store(d, s, group ? CRDT_DOC_STORE_GROUP : 0) != 0)
		_exit(3);
	static test_ack pend[CHILD_STEPS];
	size_t npend = 0;
	crdt_buf m;
	tb_init(&m);
	char val[400];
	for (int step = 0; step < CHILD_STEPS; step++) {
		test_ack a;
		if (test_rng_below(&r, 4) != 0) {
			char key[8];
			snprintf(key, sizeof key, "k%u",
			    (unsigned)test_rng_below(&r, KEYS));
			test_rng_bytes(&r, val, sizeof val);
			crdt_buf_clear(&m);
			if (crdt_doc_map_set(d, 0, key, strlen(key), val,
			    sizeof val, &m) != 0)
				_exit(4);
			crdt_dot dot;
			if (crdt_msg_peek(m.data, m.len, &dot, NULL) != 0)
				_exit(4);
			a = (test_ack){ 1, (uint32_t)dot.counter };
		} else {
			uint64_t next = vc_get(d, 2);
			if (next >= B_STREAM)
				continue;
			if (crdt_doc_receive(d, bs[next].data, bs[next].len,
			    NULL) != 0)
				_exit(5);
			a = (test_ack){ 2, (uint32_t)(next + 1) };
		}
		pend[npend++] = a;
		if (group && test_rng_below(&r, 4) != 0)
			continue; /* not flushed: not acknowledged */
		if (group && crdt_doc_store_flush(d) != 0)
			_exit(8);
		if (crdt_doc_checkpoint_status(d, false) != 0)
			_exit(6); /* a background checkpoint failed */
		for (size_t k = 0; k < npend; k++)
			if (write(wfd, &pend[k], sizeof pend[k]) !=
			    (ssize_t)sizeof pend[k])
				_exit(7);
		npend = 0;
	}
	crdt_buf_fini(&m);
	crdt_doc_free(d);
	crdt_store_close(s);
	_exit(0);
}

/* Reopen (every check), restore, check the acks, our counters and the
 * checkpoint; returns our stored message count, and in `ck` the
 * checkpoint's bytes. */
static size_t
crash_verify(uint32_t own_acked, uint32_t b_acked, bool do_heal, crdt_buf *ck)
{
	crdt_store *s = store_open(0, false);
	crdt_doc *d = child_doc();
	int rc = crdt_doc_open_store(d, s, 0);
	cr_assert_eq(rc, 0, "restart: %s", crdt_err_name(rc));
	cr_assert_geq(vc_get(d, 1), own_acked, "an acked commit was lost");
	cr_assert_geq(vc_get(d, 2), b_acked, "an acked receive was lost");
	crdt_replica_id self = test_id(1);
	uint64_t own_n = test_own_dots(s, &self);
	cr_assert_eq(vc_get(d, 1), own_n);
	/* The checkpoint found is whole (the store's open checked its
	 * digests) and loads into a fresh document. */
	crdt_vclock *cv = NULL;
	crdt_buf_clear(ck);
	rc = crdt_store_checkpoint(s, ck, &cv);
	cr_assert(rc == 0 || rc == CRDT_ENOTFOUND);
	if (rc == 0) {
		crdt_doc *f = child_doc();
		cr_assert_eq(crdt_doc_load(f, ck->data, ck->len, NULL), 0);
		crdt_doc_free(f);
		crdt_vclock_free(cv);
	}
	if (do_heal) {
		test_clock cp = { 1000000, 0 };
		crdt_doc *p = mkdoc(2, &cp, 0, 0, 0);
		test_heal(d, p);
		crdt_buf x, y;
		tb_init(&x);
		tb_init(&y);
		save(d, &x);
		save(p, &y);
		cr_assert(bytes_eq(x.data, x.len, y.data, y.len),
		    "a healed peer is not byte-identical");
		crdt_buf_fini(&x);
		crdt_buf_fini(&y);
		crdt_doc_free(p);
	}
	crdt_doc_free(d);
	crdt_store_close(s);
	return (size_t)own_n;
}

Test(ckpt, kill_9_during_background_checkpoints_loses_no_ack, .timeout = 300)
{
	static crdt_buf bs[B_STREAM];
	test_clock cb = { 1000000, 0 };
	crdt_doc *b = mkdoc(2, &cb, 0, 0, 0);
	for (unsigned i = 0; i < B_STREAM; i++) {
		tb_init(&bs[i]);
		cb.ms += 1;
		cr_assert_eq(put(b, i % 32, i, 30, &bs[i]), 0);
	}
	crdt_doc_free(b);
	test_rng r;
	uint64_t seed = test_seed(0xc4ec4);
	test_rng_init(&r, seed);
	uint32_t own = 0, bk = 0;
	size_t kills = 0, moved = 0;
	crdt_buf ck, prev;
	tb_init(&ck);
	tb_init(&prev);
	for (int it = 0; it < CRASH_ITERS; it++) {
		uint64_t cseed = test_rng_next(&r);
		size_t before = (size_t)test_rng_below(&r, 40);
		long delay = (long)test_rng_below(&r, 4000);
		if (test_crash_once(crash_child, bs, cseed, before, delay,
		    &own, &bk, 2 * CHILD_STEPS))
			kills++;
		bool h = it == CRASH_ITERS - 1 || (it % 10) == 9;
		size_t n = crash_verify(own, bk, h, &ck);
		if (!bytes_eq(ck.data, ck.len, prev.data, prev.len))
			moved++;
		crdt_buf_clear(&prev);
		if (ck.len > 0)
			cr_assert_eq(crdt_buf_append(&prev, ck.data, ck.len), 0);
		if (n >= RESET_AT) {
			test_rm_db(dbpath);
			own = bk = 0;
		}
	}
	cr_assert_geq(kills, CRASH_ITERS / 2, "only %zu of %d killed", kills,
	    CRASH_ITERS);
	/* the children did write checkpoints in the background */
	cr_assert_geq(moved, CRASH_ITERS / 3, "the checkpoint moved in only "
	    "%zu of %d runs", moved, CRASH_ITERS);
	for (unsigned i = 0; i < B_STREAM; i++)
		crdt_buf_fini(&bs[i]);
	crdt_buf_fini(&ck);
	crdt_buf_fini(&prev);
}

static int
store_open_opts(bool quick, bool must_exist, crdt_store **s)
{
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	o.quick_open = quick;
	o.must_exist = must_exist;
	return crdt_store_open_sqlite(NULL, dbpath, &o, s);
}

static void
raw_exec(const char *sql)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK,
	    "%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_close(db);
}

/*
 * quick_open skips the reads of the whole file on open (a restart then
 * costs the checkpoint and the tail, not the history) but still never
 * hands out damage: a row altered behind the store's back opens, and the
 * read that meets it gives CRDT_ECORRUPT; without quick_open the open
 * refuses it. Not a database, another schema, and an empty file with
 * must_exist are still refused on open.
 */
Test(ckpt, quick_open_defers_the_row_checks_to_the_reads)
{
	crdt_store *s = store_open(0, false);
	test_clock ca = { 1000000, 0 };
	crdt_doc *d = mkdoc(1, &ca, 4, UINT32_MAX, 0);
	cr_assert_eq(crdt_doc_attach_store(d, s, 0), 0);
	crdt_buf m, a, b;
	tb_init(&m);
	tb_init(&a);
	tb_init(&b);
	for (unsigned i = 0; i < 40; i++) {
		ca.ms += 1;
		cr_assert_eq(put(d, i, i, 20, &m), 0);
	}
	cr_assert_eq(crdt_doc_checkpoint(d), 0);
	for (unsigned i = 40; i < 50; i++) {
		ca.ms += 1;
		cr_assert_eq(put(d, i, i, 20, &m), 0);
	}
	save(d, &a);
	crdt_doc_free(d);
	crdt_store_close(s);

	/* an intact store: the same restart either way */
	cr_assert_eq(store_open_opts(true, true, &s), 0);
	crdt_doc *r = mkdoc(1, &ca, 4, UINT32_MAX, 0);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &b);
	cr_assert(bytes_eq(a.data, a.len, b.data, b.len));
	crdt_doc_free(r);
	crdt_store_close(s);

	/* one byte of the last message changed, its digest kept */
	raw_exec("UPDATE msgs SET bytes = substr(bytes, 1, length(bytes) - 1)"
		 " || x'00' WHERE seq = (SELECT max(seq) FROM msgs)");
	s = NULL;
	cr_assert_eq(store_open_opts(false, true, &s), CRDT_ECORRUPT);
	cr_assert_null(s);
	cr_assert_eq(store_open_opts(true, true, &s), 0);
	r = mkdoc(1, &ca, 4, UINT32_MAX, 0);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), CRDT_ECORRUPT,
	    "a damaged row was handed out");
	crdt_doc_free(r);
	crdt_store_close(s);

	/* a schema altered, a text file, an empty file */
	raw_exec("DROP INDEX msgs_dot");
	s = NULL;
	cr_assert_eq(store_open_opts(true, true, &s), CRDT_ECORRUPT);
	test_rm_db(dbpath);
	FILE *f = fopen(dbpath, "w");
	cr_assert_not_null(f);
	for (int i = 0; i < 200; i++)
		fputs("not a database at all, just text\n", f);
	fclose(f);
	cr_assert_eq(store_open_opts(true, true, &s), CRDT_ECORRUPT);
	f = fopen(dbpath, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(store_open_opts(true, true, &s), CRDT_ECORRUPT);
	cr_assert_null(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}
