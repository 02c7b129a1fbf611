/*
 * A snapshot merged while a document is attached to a store (crdt_doc_load,
 * a sync snapshot; docs/storage.md, "Loaded snapshots"), against real
 * SQLite files in a temporary directory: the snapshot is written ahead of
 * the merge as a loaded snapshot record, so a store that cannot take it
 * fails the load with nothing changed (in memory and after a restart),
 * and a load that returned 0 survives kill -9 right after it, a commit
 * made after it included; the checkpoint that holds a record drops it; a
 * checkpoint that fails after the load fails nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "crdt/store.h"
#include "test_alloc.h"
#include "test_crash.h"
#include "test_rng.h"
#include "test_util.h"

static char tmpdir[TEST_DIR_MAX];
static char dbpath[TEST_DB_MAX];

static void
setup(void)
{
	test_tmpdb("sload", tmpdir, dbpath);
	test_alloc_reset();
}

static void
teardown(void)
{
	test_tmpdb_remove(tmpdir, dbpath);
}

TestSuite(sload, .init = setup, .fini = teardown);

static crdt_store *
store_open(uint32_t max_pages)
{
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	o.synchronous = CRDT_STORE_SYNC_NORMAL; /* kill -9 safe, faster */
	o.max_pages = max_pages;
	crdt_store *s = NULL;
	int rc = crdt_store_open_sqlite(NULL, dbpath, &o, &s);
	cr_assert_eq(rc, 0, "open store: %s", crdt_err_name(rc));
	return s;
}

/* A document with one LWW map "m"; `auto_ckpt` false turns the automatic
 * checkpoints off, so a loaded snapshot's record stays until an explicit
 * crdt_doc_checkpoint. Returns NULL instead of failing (a crash child
 * cannot use Criterion's asserts). */
static crdt_doc *
mkdoc_try(uint8_t id, test_clock *clk, bool auto_ckpt)
{
	crdt_config cfg;
	test_config(&cfg, clk);
	if (!auto_ckpt)
		cfg.ckpt_tail_pct = UINT32_MAX;
	crdt_replica_id rid = test_id(id);
	crdt_doc *d = NULL;
	uint32_t on;
	if (crdt_doc_new(&cfg, &rid, &d) != 0)
		return NULL;
	if (crdt_doc_register(d, "m", CRDT_OBJ_MAP, &on) != 0 || on != 0) {
		crdt_doc_free(d);
		return NULL;
	}
	return d;
}

static crdt_doc *
mkdoc(uint8_t id, test_clock *clk, bool auto_ckpt)
{
	crdt_doc *d = mkdoc_try(id, clk, auto_ckpt);
	cr_assert_not_null(d);
	return d;
}

static int
put(crdt_doc *d, unsigned k, const char *v, crdt_buf *msg)
{
	char key[16];
	snprintf(key, sizeof key, "k%u", k);
	crdt_buf_clear(msg);
	return crdt_doc_map_set(d, 0, key, strlen(key), v, strlen(v), msg);
}

static void
save(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_save(d, out), 0);
}

static uint64_t
vc_of(const crdt_doc *d, uint8_t id)
{
	crdt_vclock *v;
	if (crdt_doc_vclock(d, &v) != 0)
		return UINT64_MAX;
	crdt_replica_id r = test_id(id);
	uint64_t c = crdt_vclock_get(v, &r);
	crdt_vclock_free(v);
	return c;
}

static int
count_rec(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	(void)id;
	(void)b;
	(void)len;
	(*(size_t *)ud)++;
	return 0;
}

/* Loaded snapshot records the store holds, through the store API. */
static size_t
records(crdt_store *s)
{
	size_t n = 0;
	cr_assert_eq(crdt_store_snapshots(s, count_rec, &n), 0);
	return n;
}

/* A restart from `s` saves exactly `want`, and nothing waits in its
 * buffer. */
static void
restart_is(crdt_store *s, const crdt_buf *want, test_clock *clk)
{
	crdt_doc *r = mkdoc(1, clk, false);
	int rc = crdt_doc_open_store(r, s, 0);
	cr_assert_eq(rc, 0, "restart: %s", crdt_err_name(rc));
	crdt_buf y;
	tb_init(&y);
	save(r, &y);
	cr_assert(bytes_eq(want->data, want->len, y.data, y.len),
	    "the restarted document differs");
	cr_assert_eq(crdt_doc_buffered(r), 0);
	crdt_buf_fini(&y);
	crdt_doc_free(r);
}

/* Replica 2's snapshot after `n` commits of `vlen`-byte values. */
static void
peer_snapshot(unsigned n, size_t vlen, crdt_buf *out)
{
	test_clock cb = { 2000000, 0 };
	crdt_doc *b = mkdoc(2, &cb, true);
	crdt_buf m;
	tb_init(&m);
	char *v = malloc(vlen + 1);
	cr_assert_not_null(v);
	memset(v, 'b', vlen);
	v[vlen] = '\0';
	for (unsigned i = 0; i < n; i++) {
		cb.ms += 1;
		cr_assert_eq(put(b, 100 + i, v, &m), 0);
	}
	free(v);
	save(b, out);
	crdt_buf_fini(&m);
	crdt_doc_free(b);
}

/* ---- a backend that forwards to an SQLite store and fails on demand ---- */

typedef struct wrap {
	crdt_store *in;
	int fail_append, fail_snap, fail_ck; /* returned when set */
	size_t snaps_put, cks;
} wrap;

static int
w_append(void *impl, const crdt_store_rec *recs, size_t n, size_t *added)
{
	wrap *w = impl;
	static crdt_store_msg m[16384];
	if (w->fail_append)
		return w->fail_append;
	cr_assert_leq(n, 16384);
	for (size_t i = 0; i < n; i++)
		m[i] = (crdt_store_msg){ recs[i].bytes, recs[i].len };
	return crdt_store_append(w->in, m, n, added);
}

static int
w_put_upto(void *impl, const uint8_t *snap, size_t len, const uint8_t *clock,
    size_t clen, uint64_t upto)
{
	wrap *w = impl;
	if (w->fail_ck)
		return w->fail_ck;
	crdt_vclock *v;
	cr_assert_eq(crdt_vclock_decode(NULL, clock, clen, &v), 0);
	int rc = crdt_store_put_checkpoint_upto(w->in, len ?
		(const void *)snap : (const void *)"", len, v, upto);
	crdt_vclock_free(v);
	w->cks += rc == 0;
	return rc;
}

static int
w_put(void *impl, const uint8_t *snap, size_t len, const uint8_t *clock,
    size_t clen)
{
	return w_put_upto(impl, snap, len, clock, clen, 0);
}

static int
w_get(void *impl, crdt_buf *snap, crdt_buf *clock)
{
	wrap *w = impl;
	crdt_vclock *v = NULL;
	int rc = crdt_store_checkpoint(w->in, snap, &v);
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
	return crdt_store_since(w->in, v, cursor, budget, fn, ud, more);
}

static int
w_put_snap(void *impl, const uint8_t *snap, size_t len, uint64_t *id)
{
	wrap *w = impl;
	if (w->fail_snap)
		return w->fail_snap;
	int rc = crdt_store_put_snapshot(w->in, snap, len, id);
	w->snaps_put += rc == 0;
	return rc;
}

static int
w_snaps(void *impl, crdt_store_snap_fn fn, void *ud)
{
	wrap *w = impl;
	return crdt_store_snapshots(w->in, fn, ud);
}

static const crdt_store_ops wrap_ops = { w_append, w_put, w_get, w_since,
	NULL, w_put_snap, w_snaps, w_put_upto };

static crdt_store *
wrap_open(wrap *w)
{
	memset(w, 0, sizeof *w);
	w->in = store_open(0);
	crdt_store *s = NULL;
	cr_assert_eq(crdt_store_new(NULL, &wrap_ops, w, &s), 0);
	return s;
}

static void
wrap_close(wrap *w, crdt_store *s)
{
	crdt_store_close(s);
	crdt_store_close(w->in);
}

/* ---- tests ---- */

/* The store refuses the snapshot's record: with a quota the record does
 * not fit in (CRDT_EFULL, SQLite's own failure) and through a backend
 * failing with CRDT_EIO, per-message and group commit (whose load flushes
 * first: a failed flush fails it too). Each time the load returns that
 * code, the document saves the same bytes, the store holds no record and
 * a restart gives the pre-load document; once the store takes it, the
 * load succeeds and a restart gives the merged document. */
Test(sload, a_load_the_store_cannot_take_fails_and_changes_nothing)
{
	test_clock ca = { 1000000, 0 };
	crdt_buf snap, m, before, after;
	tb_init(&snap);
	tb_init(&m);
	tb_init(&before);
	tb_init(&after);
	peer_snapshot(40, 300, &snap); /* ~15 KiB: several pages */

	/* SQLite at its quota */
	crdt_store *s = store_open(0);
	crdt_doc *a = mkdoc(1, &ca, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	for (unsigned i = 0; i < 5; i++) {
		ca.ms += 1;
		cr_assert_eq(put(a, i, "a", &m), 0);
	}
	cr_assert_eq(crdt_doc_attach_store(a, NULL, 0), 0);
	crdt_store_close(s);
	s = store_open(1); /* never below the file's size: the file's size */
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	save(a, &before);
	int rc = crdt_doc_load(a, snap.data, snap.len, NULL);
	cr_assert_eq(rc, CRDT_EFULL, "got %s", crdt_err_name(rc));
	save(a, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len),
	    "a refused load changed the document");
	cr_assert_eq(vc_of(a, 2), 0);
	cr_assert_eq(records(s), 0);
	restart_is(s, &before, &ca);
	/* the quota lifted: the same load goes in and survives a restart */
	cr_assert_eq(crdt_doc_attach_store(a, NULL, 0), 0);
	crdt_store_close(s);
	s = store_open(0);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
	cr_assert_eq(vc_of(a, 2), 40);
	cr_assert_eq(records(s), 1);
	save(a, &after);
	restart_is(s, &after, &ca);
	crdt_doc_free(a);
	crdt_store_close(s);
	test_rm_db(dbpath);

	/* a backend failing with CRDT_EIO, both modes */
	for (int group = 0; group < 2; group++) {
		wrap w;
		s = wrap_open(&w);
		a = mkdoc(1, &ca, false);
		unsigned fl = group ? CRDT_DOC_STORE_GROUP : 0;
		cr_assert_eq(crdt_doc_attach_store(a, s, fl), 0);
		for (unsigned i = 0; i < 3; i++) {
			ca.ms += 1;
			cr_assert_eq(put(a, i, "a", &m), 0);
		}
		if (!group)
			cr_assert_eq(crdt_doc_checkpoint(a), 0);
		save(a, &before);
		/* group: the queued commits go first, and their flush fails */
		if (group)
			w.fail_append = CRDT_EIO;
		else
			w.fail_snap = CRDT_EIO;
		rc = crdt_doc_load(a, snap.data, snap.len, NULL);
		cr_assert_eq(rc, CRDT_EIO, "group %d: %s", group,
		    crdt_err_name(rc));
		save(a, &after);
		cr_assert(bytes_eq(before.data, before.len, after.data,
		    after.len));
		cr_assert_eq(w.snaps_put, 0);
		cr_assert_eq(records(w.in), 0);
		if (group) {
			/* the queue was kept: now the record fails */
			w.fail_append = 0;
			w.fail_snap = CRDT_EIO;
			rc = crdt_doc_load(a, snap.data, snap.len, NULL);
			cr_assert_eq(rc, CRDT_EIO);
			save(a, &after);
			cr_assert(bytes_eq(before.data, before.len, after.data,
			    after.len));
			/* the flush went through: a restart has the commits */
		}
		restart_is(s, &before, &ca);
		w.fail_snap = 0;
		cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
		cr_assert_eq(w.snaps_put, 1);
		cr_assert_eq(records(w.in), 1);
		if (group)
			cr_assert_eq(crdt_doc_store_flush(a), 0);
		save(a, &after);
		restart_is(s, &after, &ca);
		crdt_doc_free(a);
		wrap_close(&w, s);
		test_rm_db(dbpath);
	}
	crdt_buf_fini(&snap);
	crdt_buf_fini(&m);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	ASSERT_NO_LEAKS();
}

/* A load that changes nothing writes no record; a sealed snapshot's
 * record holds the sealed bytes (crdt_store_snapshots shows them as
 * received). */
static int
first_rec(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	crdt_buf *out = ud;
	(void)id;
	return out->len == 0 ? crdt_buf_append(out, b, len) : 0;
}

Test(sload, a_record_is_the_snapshot_as_received_and_only_when_it_brings_something)
{
	test_clock ca = { 1000000, 0 };
	crdt_buf snap, got;
	tb_init(&snap);
	tb_init(&got);
	peer_snapshot(3, 10, &snap);
	crdt_store *s = store_open(0);
	crdt_doc *a = mkdoc(1, &ca, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
	cr_assert_eq(records(s), 1);
	cr_assert_eq(crdt_store_snapshots(s, first_rec, &got), 0);
	cr_assert(bytes_eq(got.data, got.len, snap.data, snap.len));
	/* again: nothing new, nothing written */
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
	cr_assert_eq(records(s), 1);
	crdt_doc_free(a);
	crdt_store_close(s);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&got);
	ASSERT_NO_LEAKS();
}

/* The record goes with the checkpoint that holds it: with automatic
 * checkpoints off it stays (and a restart merges it) until
 * crdt_doc_checkpoint drops it in the checkpoint's transaction; with them
 * on, the background checkpoint due at the end of the load drops it.
 * Restarts before and after give the same document. */
Test(sload, the_checkpoint_after_the_load_drops_its_record)
{
	test_clock ca = { 1000000, 0 };
	crdt_buf snap, snap2, m, x;
	tb_init(&snap);
	tb_init(&snap2);
	tb_init(&m);
	tb_init(&x);
	peer_snapshot(5, 20, &snap);
	peer_snapshot(9, 20, &snap2);
	crdt_store *s = store_open(0);
	crdt_doc *a = mkdoc(1, &ca, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	ca.ms += 1;
	cr_assert_eq(put(a, 1, "a", &m), 0);
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
	ca.ms += 1;
	cr_assert_eq(put(a, 2, "a", &m), 0);
	cr_assert_eq(crdt_doc_load(a, snap2.data, snap2.len, NULL), 0);
	cr_assert_eq(records(s), 2, "automatic checkpoints off: both stay");
	save(a, &x);
	restart_is(s, &x, &ca);
	cr_assert_eq(crdt_doc_checkpoint(a), 0);
	cr_assert_eq(records(s), 0, "the checkpoint dropped them");
	restart_is(s, &x, &ca);
	/* a restart that merged records drops them at its first checkpoint */
	cr_assert_eq(crdt_doc_attach_store(a, NULL, 0), 0);
	crdt_doc_free(a);
	crdt_store_close(s);
	test_rm_db(dbpath);

	s = store_open(0);
	a = mkdoc(1, &ca, true);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	ca.ms += 1;
	cr_assert_eq(put(a, 1, "a", &m), 0);
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_doc_checkpoint_status(a, true), 0);
	cr_assert_eq(records(s), 0, "the automatic checkpoint dropped it");
	save(a, &x);
	restart_is(s, &x, &ca);
	crdt_doc_free(a);
	crdt_store_close(s);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&snap2);
	crdt_buf_fini(&m);
	crdt_buf_fini(&x);
	ASSERT_NO_LEAKS();
}

/* The checkpoint after a load is an optimisation: when it fails the load
 * still returns 0 (its record is stored), the failure is reported once by
 * crdt_doc_checkpoint_status, the record stays and a restart gives the
 * merged document; the next checkpoint drops it. */
Test(sload, a_failed_checkpoint_after_the_load_fails_nothing)
{
	test_clock ca = { 1000000, 0 };
	crdt_buf snap, m, x;
	tb_init(&snap);
	tb_init(&m);
	tb_init(&x);
	peer_snapshot(4, 20, &snap);
	wrap w;
	crdt_store *s = wrap_open(&w);
	crdt_doc *a = mkdoc(1, &ca, true);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	ca.ms += 1;
	cr_assert_eq(put(a, 1, "a", &m), 0);
	w.fail_ck = CRDT_EIO;
	size_t cks = w.cks;
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_doc_checkpoint_status(a, true), CRDT_EIO);
	cr_assert_eq(crdt_doc_checkpoint_status(a, true), 0, "reported once");
	cr_assert_eq(w.cks, cks);
	cr_assert_eq(records(w.in), 1);
	save(a, &x);
	restart_is(s, &x, &ca);
	w.fail_ck = 0;
	cr_assert_eq(crdt_doc_checkpoint(a), 0);
	cr_assert_eq(records(w.in), 0);
	restart_is(s, &x, &ca);
	crdt_doc_free(a);
	wrap_close(&w, s);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&m);
	crdt_buf_fini(&x);
	ASSERT_NO_LEAKS();
}

/* A sync DATA frame carrying a snapshot (plain mode, the peer's log no
 * longer holds what we lack) is merged through the same write-ahead: a
 * restart has it before any checkpoint. */
Test(sload, a_sync_snapshot_survives_a_restart_before_any_checkpoint)
{
	test_clock ca = { 1000000, 0 }, cb = { 2000000, 0 };
	crdt_config cfg;
	test_config(&cfg, &cb);
	cfg.log_max_msgs = 2; /* b's log evicts: it answers with a snapshot */
	crdt_replica_id rb = test_id(2);
	crdt_doc *b = NULL;
	uint32_t on;
	cr_assert_eq(crdt_doc_new(&cfg, &rb, &b), 0);
	cr_assert_eq(crdt_doc_register(b, "m", CRDT_OBJ_MAP, &on), 0);
	crdt_buf m, f, r, x;
	tb_init(&m);
	tb_init(&f);
	tb_init(&r);
	tb_init(&x);
	for (unsigned i = 0; i < 10; i++) {
		cb.ms += 1;
		cr_assert_eq(put(b, i, "b", &m), 0);
	}
	crdt_store *s = store_open(0);
	crdt_doc *a = mkdoc(1, &ca, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	cr_assert_eq(crdt_doc_sync_start(a, &f), 0);
	cr_assert_eq(crdt_doc_sync_handle(b, f.data, f.len, NULL, &r), 0);
	crdt_buf_clear(&f);
	cr_assert_eq(crdt_doc_sync_handle(a, r.data, r.len, NULL, &f), 0);
	cr_assert_eq(vc_of(a, 2), 10);
	cr_assert_eq(records(s), 1, "the frame's snapshot was written ahead");
	save(a, &x);
	restart_is(s, &x, &ca);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&f);
	crdt_buf_fini(&r);
	crdt_buf_fini(&x);
	ASSERT_NO_LEAKS();
}

/* ---- kill -9 right after a load ---- */

#define KILL_ITERS 12

typedef struct kctx {
	const crdt_buf *snap;
} kctx;

/* Restart from the store (automatic checkpoints off: no checkpoint
 * after the load), load replica 2's snapshot and ack it (who 2, its
 * counter), then commit and ack each commit (who 1) until killed. The
 * first commit follows the load, so it depends on replica 2's dots that
 * only the snapshot carried. */
static void
load_child(void *ud, uint64_t seed, int wfd)
{
	kctx *k = ud;
	(void)seed;
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	o.must_exist = true;
	crdt_store *s = NULL;
	if (crdt_store_open_sqlite(NULL, dbpath, &o, &s) != 0)
		_exit(2);
	crdt_doc *d = mkdoc_try(1, NULL, false);
	if (d == NULL || crdt_doc_open_store(d, s, 0) != 0)
		_exit(3);
	if (crdt_doc_load(d, k->snap->data, k->snap->len, NULL) != 0)
		_exit(4);
	test_ack a = { 2, (uint32_t)vc_of(d, 2) };
	if (write(wfd, &a, sizeof a) != (ssize_t)sizeof a)
		_exit(5);
	crdt_buf m;
	tb_init(&m);
	for (unsigned i = 0; i < 200; i++) {
		if (put(d, i % 8, "after the load", &m) != 0)
			_exit(6);
		crdt_dot dot;
		if (crdt_msg_peek(m.data, m.len, &dot, NULL) != 0)
			_exit(6);
		a = (test_ack){ 1, (uint32_t)dot.counter };
		if (write(wfd, &a, sizeof a) != (ssize_t)sizeof a)
			_exit(5);
	}
	crdt_buf_fini(&m);
	crdt_doc_free(d);
	crdt_store_close(s);
	_exit(0);
}

Test(sload, a_load_survives_kill_9_and_commits_after_it_are_not_stuck,
    .timeout = 120)
{
	crdt_buf snap, m;
	tb_init(&snap);
	tb_init(&m);
	peer_snapshot(6, 30, &snap);
	test_rng r;
	uint64_t seed = test_seed(0x10ad9);
	test_rng_init(&r, seed);
	kctx k = { &snap };
	size_t kills = 0;
	for (int it = 0; it < KILL_ITERS; it++) {
		/* a store with 3 commits of ours and a checkpoint */
		test_rm_db(dbpath);
		test_clock ca = { 1000000, 0 };
		crdt_store *s = store_open(0);
		crdt_doc *a = mkdoc(1, &ca, false);
		cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
		for (unsigned i = 0; i < 3; i++) {
			ca.ms += 1;
			cr_assert_eq(put(a, i, "before", &m), 0);
		}
		cr_assert_eq(crdt_doc_checkpoint(a), 0);
		crdt_doc_free(a);
		crdt_store_close(s);

		uint32_t own = 0, peer = 0;
		/* killed after the load's ack and 0..4 commits, then a short
		 * random delay */
		size_t before = 1 + (size_t)test_rng_below(&r, 5);
		long delay = (long)test_rng_below(&r, 2000);
		if (test_crash_once(load_child, &k, test_rng_next(&r), before,
		    delay, &own, &peer, 512))
			kills++;
		cr_assert_eq(peer, 6, "the load was acked");

		s = store_open(0);
		crdt_doc *d = mkdoc(1, &ca, false);
		int rc = crdt_doc_open_store(d, s, 0);
		cr_assert_eq(rc, 0, "restart: %s", crdt_err_name(rc));
		cr_assert_eq(vc_of(d, 2), 6, "it %d: the acked load was lost",
		    it);
		cr_assert_geq(vc_of(d, 1), own, "an acked commit was lost");
		crdt_replica_id self = test_id(1);
		cr_assert_eq(vc_of(d, 1), test_own_dots(s, &self));
		cr_assert_eq(crdt_doc_buffered(d), 0,
		    "it %d: a commit after the load waits in the buffer", it);
		cr_assert_eq(records(s), 1, "no checkpoint ran after the load");
		/* and it goes on: a fresh peer healed by sync is identical */
		test_clock cp = { 1000000, 0 };
		crdt_doc *p = mkdoc(3, &cp, false);
		test_heal(d, p);
		crdt_buf x, y;
		tb_init(&x);
		tb_init(&y);
		save(d, &x);
		save(p, &y);
		cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
		crdt_buf_fini(&x);
		crdt_buf_fini(&y);
		crdt_doc_free(p);
		crdt_doc_free(d);
		crdt_store_close(s);
	}
	cr_assert_geq(kills, KILL_ITERS / 2, "only %zu of %d children killed",
	    kills, KILL_ITERS);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&m);
}

/* A backend that keeps no loaded snapshot records (an application
 * backend without the three optional ops): a load while attached is
 * refused with CRDT_ESTATE and changes nothing; detached, the same load
 * goes in, and attaching again takes a checkpoint that holds it. */
static const crdt_store_ops plain_ops = { w_append, w_put, w_get, w_since,
	NULL, NULL, NULL, NULL };

Test(sload, a_backend_without_records_refuses_the_load_and_changes_nothing)
{
	test_clock ca = { 1000000, 0 };
	crdt_buf snap, m, before, after;
	tb_init(&snap);
	tb_init(&m);
	tb_init(&before);
	tb_init(&after);
	peer_snapshot(4, 20, &snap);
	wrap w;
	memset(&w, 0, sizeof w);
	w.in = store_open(0);
	crdt_store *s = NULL;
	cr_assert_eq(crdt_store_new(NULL, &plain_ops, &w, &s), 0);
	crdt_doc *a = mkdoc(1, &ca, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	ca.ms += 1;
	cr_assert_eq(put(a, 1, "a", &m), 0);
	save(a, &before);
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), CRDT_ESTATE);
	save(a, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	restart_is(s, &before, &ca);
	cr_assert_eq(crdt_doc_attach_store(a, NULL, 0), 0);
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	save(a, &after);
	restart_is(s, &after, &ca);
	crdt_doc_free(a);
	wrap_close(&w, s);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&m);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	ASSERT_NO_LEAKS();
}

/* ---- sealed snapshots, allocation failures ---- */

static const uint8_t doc_key[32] = { 4, 3, 2, 1 };

/* An encrypted (unsigned) document with map "m" and the document key
 * (a restarted one gets the same key before the restart); automatic
 * checkpoints off. */
static crdt_doc *
mk_sealed(uint8_t id, test_clock *clk)
{
	crdt_doc *d = NULL;
	crdt_config cfg;
	test_config(&cfg, clk);
	cfg.ckpt_tail_pct = UINT32_MAX;
	crdt_replica_id rid = test_id(id);
	cr_assert_eq(crdt_doc_new(&cfg, &rid, &d), 0);
	crdt_doc_security sec = { false, NULL, true, doc_key, 1, NULL, false };
	cr_assert_eq(crdt_doc_set_security(d, &sec), 0);
	uint32_t on;
	cr_assert_eq(crdt_doc_register(d, "m", CRDT_OBJ_MAP, &on), 0);
	return d;
}

/* Whether `needle` occurs in `hay`. */
static bool
contains(const crdt_buf *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; i + n <= hay->len; i++)
		if (memcmp(hay->data + i, needle, n) == 0)
			return true;
	return false;
}

/* A sealed snapshot's record is the sealed bytes, as received: the store
 * never holds its plaintext; a restart with the key opens and merges it. */
Test(sload, a_sealed_snapshot_stays_sealed_in_its_record)
{
	test_clock ca = { 1000000, 0 }, cb = { 2000000, 0 };
	crdt_doc *b = mk_sealed(2, &cb);
	crdt_buf m, sealed, rec, x, y;
	tb_init(&m);
	tb_init(&sealed);
	tb_init(&rec);
	tb_init(&x);
	tb_init(&y);
	for (unsigned i = 0; i < 4; i++) {
		cb.ms += 1;
		cr_assert_eq(put(b, i, "plaintext-marker", &m), 0);
	}
	cr_assert_eq(crdt_doc_save_sealed(b, &sealed), 0);
	cr_assert(!contains(&sealed, "plaintext-marker"));
	crdt_store *s = store_open(0);
	crdt_doc *a = mk_sealed(1, &ca);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	cr_assert_eq(crdt_doc_load(a, sealed.data, sealed.len, NULL), 0);
	cr_assert_eq(vc_of(a, 2), 4);
	cr_assert_eq(crdt_store_snapshots(s, first_rec, &rec), 0);
	cr_assert(bytes_eq(rec.data, rec.len, sealed.data, sealed.len),
	    "the record is the sealed bytes as received");
	save(a, &x);
	crdt_doc *r = mk_sealed(1, &ca);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
	crdt_doc_free(r);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&sealed);
	crdt_buf_fini(&rec);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	ASSERT_NO_LEAKS();
}

/* The n-th allocation of a load while attached fails, for every n the
 * load makes: CRDT_ENOMEM with the document's bytes unchanged and no
 * record stored, or 0 with the record stored (the allocations after the
 * commit point fail nothing). */
Test(sload, allocation_failures_in_a_load_while_attached_change_nothing)
{
	test_clock ca = { 1000000, 0 };
	crdt_buf snap, m, before, after;
	tb_init(&snap);
	tb_init(&m);
	tb_init(&before);
	tb_init(&after);
	peer_snapshot(6, 30, &snap);
	size_t fired = 0;
	long n;
	for (n = 0; n < 400; n++) {
		crdt_store *s = store_open(0);
		crdt_doc *a = mkdoc(1, &ca, false);
		cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
		ca.ms += 1;
		cr_assert_eq(put(a, 1, "a", &m), 0);
		save(a, &before);
		test_alloc_fail_at(n);
		int rc = crdt_doc_load(a, snap.data, snap.len, NULL);
		bool hit = test_alloc_fired();
		test_alloc_disarm();
		if (rc != 0) {
			cr_assert_eq(rc, CRDT_ENOMEM, "n %ld: %s", n,
			    crdt_err_name(rc));
			save(a, &after);
			cr_assert(bytes_eq(before.data, before.len, after.data,
			    after.len), "n %ld", n);
			cr_assert_eq(records(s), 0, "n %ld", n);
			restart_is(s, &before, &ca);
			fired++;
		} else {
			cr_assert_eq(records(s), 1);
			save(a, &after);
			restart_is(s, &after, &ca);
		}
		crdt_doc_free(a);
		crdt_store_close(s);
		test_rm_db(dbpath);
		if (!hit)
			break; /* past the load's last allocation */
	}
	cr_assert_gt(fired, 0);
	cr_assert_lt(n, 400, "the load makes fewer than 400 allocations");
	crdt_buf_fini(&snap);
	crdt_buf_fini(&m);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	ASSERT_NO_LEAKS();
}

/* ---- kill -9 while loads and their background checkpoints run ---- */

#define SNAPS 96
#define BG_ITERS 24

/* Restart from the store (automatic checkpoints on: each load makes one
 * due, written by the store's writer thread, which drops the records),
 * then alternate: load replica 2's next snapshot and ack it, commit and
 * ack it, until killed. */
static void
bg_child(void *ud, uint64_t seed, int wfd)
{
	const crdt_buf *snaps = ud;
	(void)seed;
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	o.must_exist = true;
	crdt_store *s = NULL;
	if (crdt_store_open_sqlite(NULL, dbpath, &o, &s) != 0)
		_exit(2);
	crdt_doc *d = mkdoc_try(1, NULL, true);
	if (d == NULL || crdt_doc_open_store(d, s, 0) != 0)
		_exit(3);
	crdt_buf m;
	tb_init(&m);
	for (unsigned i = 0; i < 400; i++) {
		uint64_t next = vc_of(d, 2);
		test_ack a;
		if (i % 2 == 0 && next < SNAPS) {
			if (crdt_doc_load(d, snaps[next].data, snaps[next].len,
			    NULL) != 0)
				_exit(4);
			a = (test_ack){ 2, (uint32_t)vc_of(d, 2) };
		} else {
			if (put(d, i % 8, "between loads", &m) != 0)
				_exit(6);
			crdt_dot dot;
			if (crdt_msg_peek(m.data, m.len, &dot, NULL) != 0)
				_exit(6);
			a = (test_ack){ 1, (uint32_t)dot.counter };
		}
		if (write(wfd, &a, sizeof a) != (ssize_t)sizeof a)
			_exit(5);
	}
	crdt_buf_fini(&m);
	crdt_doc_free(d);
	crdt_store_close(s);
	_exit(0);
}

Test(sload, kill_9_during_loads_and_their_checkpoints_loses_no_acked_load,
    .timeout = 180)
{
	/* replica 2's snapshot after each of its commits, made before any
	 * fork */
	static crdt_buf snaps[SNAPS];
	test_clock cb = { 2000000, 0 };
	crdt_doc *b = mkdoc(2, &cb, true);
	crdt_buf m;
	tb_init(&m);
	for (unsigned i = 0; i < SNAPS; i++) {
		cb.ms += 1;
		char v[201];
		memset(v, 'b', 200);
		v[200] = '\0';
		cr_assert_eq(put(b, 100 + i % 48, v, &m), 0);
		tb_init(&snaps[i]);
		save(b, &snaps[i]);
	}
	crdt_doc_free(b);
	crdt_store *s;
	test_rng r;
	uint64_t seed = test_seed(0xb9c4);
	test_rng_init(&r, seed);
	uint32_t own = 0, peer = 0, loads = 0;
	size_t kills = 0;
	for (int it = 0; it < BG_ITERS; it++) {
		/* a fresh store every 4 runs, so loads go on in every run */
		if (it % 4 == 0) {
			test_rm_db(dbpath);
			s = store_open(0);
			crdt_store_close(s);
			own = peer = 0;
		}
		size_t before = (size_t)test_rng_below(&r, 8);
		long delay = (long)test_rng_below(&r, 3000);
		if (test_crash_once(bg_child, snaps, test_rng_next(&r), before,
		    delay, &own, &peer, 1024))
			kills++;
		s = store_open(0);
		crdt_doc *d = mkdoc(1, NULL, true);
		int rc = crdt_doc_open_store(d, s, 0);
		cr_assert_eq(rc, 0, "it %d: restart: %s", it,
		    crdt_err_name(rc));
		cr_assert_geq(vc_of(d, 2), peer, "it %d: an acked load was lost",
		    it);
		cr_assert_geq(vc_of(d, 1), own, "it %d: an acked commit was lost",
		    it);
		crdt_replica_id self = test_id(1);
		cr_assert_eq(vc_of(d, 1), test_own_dots(s, &self));
		cr_assert_eq(crdt_doc_buffered(d), 0, "it %d: stuck", it);
		loads = peer > loads ? peer : loads;
		if (it % 4 == 3 || it == BG_ITERS - 1) {
			test_clock cp = { 1000000, 0 };
			crdt_doc *p = mkdoc(3, &cp, false);
			test_heal(d, p);
			crdt_buf x, y;
			tb_init(&x);
			tb_init(&y);
			save(d, &x);
			save(p, &y);
			cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
			crdt_buf_fini(&x);
			crdt_buf_fini(&y);
			crdt_doc_free(p);
		}
		crdt_doc_free(d);
		crdt_store_close(s);
	}
	cr_assert_geq(kills, BG_ITERS / 2, "only %zu of %d children killed",
	    kills, BG_ITERS);
	cr_assert_gt(loads, 0, "some load was acked");
	cr_log_info("%zu of %d killed; last store: %u loads and %u commits "
		    "acked", kills, BG_ITERS, peer, own);
	for (unsigned i = 0; i < SNAPS; i++)
		crdt_buf_fini(&snaps[i]);
	crdt_buf_fini(&m);
}
