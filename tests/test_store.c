/*
 * Store layer (include/crdt/store.h) against real SQLite files in a
 * temporary directory: append and iteration since a clock, paging by a
 * byte budget, duplicates and equivocations, checkpoints, reopening,
 * refused input that writes nothing, a full disk, damaged files refused on
 * open, and a crash test that kills a writer with SIGKILL at random points
 * and checks that no acknowledged message was lost.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_stream.h"
#include "test_util.h"

/* ---- temporary directory, one per test ---- */

static char tmpdir[256];
static char dbpath[300];


static void
setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/crdt-store-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof dbpath, "%s/s.db", tmpdir);
	test_alloc_reset();
}

static void
teardown(void)
{
	char x[sizeof dbpath + 16]; /* p is at most dbpath */
	test_rm_db(dbpath);
	snprintf(x, sizeof x, "%s/other.db", tmpdir);
	test_rm_db(x);
	rmdir(tmpdir);
}

TestSuite(store, .init = setup, .fini = teardown);

/* ---- real messages, made by documents ---- */

#define MAXM TEST_STREAM_MAX

static crdt_store *
open_store(const crdt_store_sqlite_opts *o)
{
	crdt_config cfg;
	crdt_store *st = NULL;
	test_config(&cfg, NULL);
	int rc = crdt_store_open_sqlite(&cfg, dbpath, o, &st);
	cr_assert_eq(rc, 0, "open: %s", crdt_err_name(rc));
	return st;
}

static int
try_open(const char *path, crdt_store **out)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	return crdt_store_open_sqlite(&cfg, path, NULL, out);
}

/* ---- collecting what since() hands out ---- */


/* Everything `v` lacks, in one page. */
static void
all_since(crdt_store *st, const crdt_vclock *v, test_got *g)
{
	uint64_t cur = 0;
	bool more = true;
	memset(g, 0, sizeof *g);
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, g,
			 &more),
	    0);
	cr_assert(!more);
}

static void
expect_msgs(const test_got *g, const test_stream *s, const size_t *idx, size_t n)
{
	cr_assert_eq(g->n, n, "handed out %zu, want %zu", g->n, n);
	for (size_t i = 0; i < n; i++) {
		const crdt_buf *w = &s->m[idx[i]];
		cr_assert(bytes_eq(g->m[i].data, g->m[i].len, w->data, w->len),
		    "message %zu differs from stream[%zu]", i, idx[i]);
		cr_assert_eq(g->dot[i].counter, s->dot[idx[i]].counter);
		cr_assert_eq(memcmp(&g->dot[i].replica, &s->dot[idx[i]].replica,
				 sizeof g->dot[i].replica),
		    0);
	}
}

static crdt_vclock *
clock_of(uint8_t r1, uint64_t c1, uint8_t r2, uint64_t c2)
{
	crdt_vclock *v;
	crdt_replica_id a = test_id(r1), b = test_id(r2);
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	if (c1)
		cr_assert_eq(crdt_vclock_set(v, &a, c1), 0);
	if (c2)
		cr_assert_eq(crdt_vclock_set(v, &b, c2), 0);
	return v;
}

/* ---- append and iterate ---- */

Test(store, since_hands_out_what_a_clock_lacks_in_append_order)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 5, 16, 0); /* A1..A5 = 0..4 */
	test_stream_add(&s, 2, 3, 16, 0); /* B1..B3 = 5..7 */
	crdt_store *st = open_store(NULL);
	/* Append interleaved: A1 B1 A2 A3 B2 A4 B3 A5 */
	static const size_t order[] = { 0, 5, 1, 2, 6, 3, 7, 4 };
	for (size_t i = 0; i < 8; i++) {
		size_t added = 99;
		cr_assert_eq(test_stream_put(st, &s, order[i], 1, &added), 0);
		cr_assert_eq(added, 1);
	}
	test_got g;
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	all_since(st, v, &g);
	expect_msgs(&g, &s, order, 8);
	test_got_free(&g);
	crdt_vclock_free(v);

	/* A peer holding A1..A3 lacks A4, A5 and all of B, in append order */
	v = clock_of(1, 3, 2, 0);
	all_since(st, v, &g);
	static const size_t w1[] = { 5, 6, 3, 7, 4 };
	expect_msgs(&g, &s, w1, 5);
	test_got_free(&g);
	crdt_vclock_free(v);

	v = clock_of(1, 5, 2, 2);
	all_since(st, v, &g);
	static const size_t w2[] = { 7 };
	expect_msgs(&g, &s, w2, 1);
	test_got_free(&g);
	crdt_vclock_free(v);

	/* A clock past everything: nothing, and no more */
	v = clock_of(1, 50, 2, 50);
	all_since(st, v, &g);
	cr_assert_eq(g.n, 0);
	crdt_vclock_free(v);

	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, budget_pages_the_iteration_and_says_when_more_follows)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 10, 40, 0);
	crdt_store *st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, &s, 0, 10, NULL), 0);
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	size_t one = s.m[0].len;
	for (size_t i = 0; i < 10; i++)
		cr_assert_eq(s.m[i].len, one, "equal sizes for exact pages");

	/* Budget for two and a half messages: pages of two */
	uint64_t cur = 0;
	bool more = false;
	size_t total = 0;
	test_got g;
	for (int page = 0; page < 5; page++) {
		memset(&g, 0, sizeof g);
		cr_assert_eq(crdt_store_since(st, v, &cur, 2 * one + one / 2,
				 test_collect, &g, &more),
		    0);
		cr_assert_eq(g.n, 2, "page %d", page);
		cr_assert_leq(g.bytes, 2 * one + one / 2);
		for (size_t i = 0; i < g.n; i++)
			cr_assert(bytes_eq(g.m[i].data, g.m[i].len,
			    s.m[total + i].data, s.m[total + i].len));
		total += g.n;
		cr_assert_eq(more, page < 4, "page %d more=%d", page, more);
		test_got_free(&g);
	}
	cr_assert_eq(total, 10);
	/* At the end: an empty page, no more */
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_since(st, v, &cur, 1, test_collect, &g, &more), 0);
	cr_assert_eq(g.n, 0);
	cr_assert(!more);

	/* A budget smaller than one message still makes progress: one per
	 * page */
	cur = 0;
	for (size_t i = 0; i < 10; i++) {
		memset(&g, 0, sizeof g);
		cr_assert_eq(crdt_store_since(st, v, &cur, 1, test_collect, &g,
				 &more),
		    0);
		cr_assert_eq(g.n, 1);
		cr_assert(bytes_eq(g.m[0].data, g.m[0].len, s.m[i].data,
		    s.m[i].len));
		cr_assert_eq(more, i < 9);
		test_got_free(&g);
	}

	/* A larger clock between pages skips what it now covers */
	cur = 0;
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_since(st, v, &cur, one, test_collect, &g, &more),
	    0);
	cr_assert_eq(g.n, 1);
	test_got_free(&g);
	crdt_vclock_free(v);
	v = clock_of(1, 9, 2, 0);
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_since(st, v, &cur, one, test_collect, &g, &more),
	    0);
	cr_assert_eq(g.n, 1);
	cr_assert(bytes_eq(g.m[0].data, g.m[0].len, s.m[9].data, s.m[9].len));
	cr_assert(!more);
	test_got_free(&g);

	/* A callback error stops the page and leaves cursor and flag as
	 * they were: the page repeats */
	cur = 0;
	more = true;
	crdt_vclock_free(v);
	v = clock_of(1, 0, 2, 0);
	memset(&g, 0, sizeof g);
	g.fail_at = 2; /* the second call */
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    CRDT_ENOMEM);
	cr_assert_eq(cur, 0);
	cr_assert(more);
	test_got_free(&g);

	/* Bad arguments */
	cr_assert_eq(crdt_store_since(st, v, &cur, 0, test_collect, &g, &more),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_store_since(st, NULL, &cur, 1, test_collect, &g, &more),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_store_since(st, v, &cur, 1, NULL, &g, &more),
	    CRDT_EINVAL);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* A callback calling back into the store is refused (the backend is in
 * the middle of a read). */
typedef struct reenter {
	crdt_store *st;
	const test_stream *s;
	int rc_append, rc_since;
} reenter;

static int
reenter_cb(void *ud, crdt_dot dot, const uint8_t *b, size_t len)
{
	reenter *r = ud;
	uint64_t c = 0;
	bool m;
	crdt_vclock *v;
	(void)dot;
	(void)b;
	(void)len;
	r->rc_append = test_stream_put(r->st, r->s, 1, 1, NULL);
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	r->rc_since = crdt_store_since(r->st, v, &c, 1, reenter_cb, r, &m);
	crdt_vclock_free(v);
	return 0;
}

Test(store, callbacks_cannot_reenter_the_store)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 2, 8, 0);
	crdt_store *st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, &s, 0, 1, NULL), 0);
	reenter r = { st, &s, 0, 0 };
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	uint64_t cur = 0;
	bool more;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, reenter_cb, &r,
			 &more),
	    0);
	cr_assert_eq(r.rc_append, CRDT_ESTATE);
	cr_assert_eq(r.rc_since, CRDT_ESTATE);
	test_got g;
	all_since(st, v, &g);
	cr_assert_eq(g.n, 1, "the refused append wrote nothing");
	test_got_free(&g);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- duplicates and equivocations ---- */

Test(store, reappending_the_same_bytes_is_a_no_op)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 4, 8, 0);
	crdt_store *st = open_store(NULL);
	size_t added = 0;
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(added, 3);
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(added, 0);
	/* A batch holding one old, one new and the new one twice */
	crdt_store_msg b[3] = { { s.m[1].data, s.m[1].len },
		{ s.m[3].data, s.m[3].len }, { s.m[3].data, s.m[3].len } };
	cr_assert_eq(crdt_store_append(st, b, 3, &added), 0);
	cr_assert_eq(added, 1);
	cr_assert_eq(crdt_store_append(st, b, 0, &added), 0);
	cr_assert_eq(added, 0);
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	static const size_t w[] = { 0, 1, 2, 3 };
	expect_msgs(&g, &s, w, 4);
	test_got_free(&g);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, a_second_variant_of_a_dot_is_kept_as_evidence)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 2, 8, 0);  /* A1, A2 */
	test_stream_add(&s, 1, 1, 8, 99); /* A1' : same dot, other bytes */
	cr_assert_eq(s.dot[2].counter, 1);
	cr_assert(!bytes_eq(s.m[0].data, s.m[0].len, s.m[2].data,
	    s.m[2].len));
	crdt_store *st = open_store(NULL);
	size_t added = 0;
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(added, 3);
	cr_assert_eq(test_stream_put(st, &s, 2, 1, &added), 0);
	cr_assert_eq(added, 0, "the same variant again is a no-op");
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	static const size_t w[] = { 0, 1, 2 };
	expect_msgs(&g, &s, w, 3);
	test_got_free(&g);
	crdt_vclock_free(v);
	/* A clock covering A1 covers both variants */
	v = clock_of(1, 1, 2, 0);
	all_since(st, v, &g);
	static const size_t w1[] = { 1 };
	expect_msgs(&g, &s, w1, 1);
	test_got_free(&g);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- refused input writes nothing ---- */

Test(store, a_batch_with_a_malformed_message_is_refused_whole)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	crdt_store *st = open_store(NULL);
	uint8_t junk[] = { 0x93, 0x01, 0x02 };
	crdt_buf trunc;
	tb_init(&trunc);
	cr_assert_eq(crdt_buf_append(&trunc, s.m[2].data, s.m[2].len - 1), 0);
	int want = crdt_msg_peek(junk, sizeof junk, NULL, NULL);
	cr_assert_lt(want, 0);

	crdt_store_msg b[2] = { { s.m[0].data, s.m[0].len },
		{ junk, sizeof junk } };
	size_t added = 77;
	cr_assert_eq(crdt_store_append(st, b, 2, &added), want,
	    "peek's own error");
	cr_assert_eq(added, 77, "out-parameter untouched");
	b[1].bytes = trunc.data;
	b[1].len = trunc.len;
	cr_assert_eq(crdt_store_append(st, b, 2, NULL),
	    crdt_msg_peek(trunc.data, trunc.len, NULL, NULL));
	cr_assert_lt(crdt_msg_peek(trunc.data, trunc.len, NULL, NULL), 0);
	b[1].bytes = NULL;
	cr_assert_eq(crdt_store_append(st, b, 2, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_store_append(st, NULL, 1, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_store_append(NULL, b, 1, NULL), CRDT_EINVAL);

	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	cr_assert_eq(g.n, 0, "nothing of a refused batch was written");
	/* and the store still takes good batches */
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(added, 3);
	crdt_vclock_free(v);
	crdt_buf_fini(&trunc);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, a_message_over_the_configured_limit_is_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 1, 200, 0);
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.limits.max_bytes = s.m[0].len - 1;
	crdt_store *st;
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, NULL, &st), 0);
	cr_assert_eq(test_stream_put(st, &s, 0, 1, NULL), CRDT_ETOOBIG);
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	cr_assert_eq(crdt_store_put_checkpoint(st, s.m[0].data, s.m[0].len,
			 v),
	    CRDT_ETOOBIG);
	test_got g;
	all_since(st, v, &g);
	cr_assert_eq(g.n, 0);
	crdt_buf snap;
	crdt_vclock *cv = NULL;
	tb_init(&snap);
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), CRDT_ENOTFOUND);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- checkpoints and reopening ---- */

Test(store, checkpoints_replace_each_other_and_survive_reopen)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	crdt_store *st = open_store(NULL);
	crdt_buf snap;
	tb_init(&snap);
	crdt_vclock *cv = NULL;
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), CRDT_ENOTFOUND);
	cr_assert_null(cv);
	cr_assert_eq(snap.len, 0);

	crdt_vclock *v1 = clock_of(1, 2, 2, 7);
	crdt_vclock *v2 = clock_of(1, 3, 2, 9);
	cr_assert_eq(crdt_store_put_checkpoint(st, "first", 5, v1), 0);
	cr_assert_eq(crdt_store_put_checkpoint(st, "second!", 7, v2), 0);
	cr_assert_eq(test_stream_put(st, &s, 0, 3, NULL), 0);
	crdt_store_close(st);

	st = open_store(NULL);
	cr_assert_eq(crdt_buf_append(&snap, "xy", 2), 0);
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), 0);
	cr_assert(bytes_eq(snap.data, snap.len, "xysecond!", 9),
	    "appended after what the buffer held");
	cr_assert_eq(crdt_vclock_compare(cv, v2), CRDT_ORDER_EQUAL);
	crdt_vclock_free(cv);
	/* An empty snapshot is a snapshot too */
	cr_assert_eq(crdt_store_put_checkpoint(st, "", 0, v1), 0);
	crdt_buf_clear(&snap);
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), 0);
	cr_assert_eq(snap.len, 0);
	cr_assert_eq(crdt_vclock_compare(cv, v1), CRDT_ORDER_EQUAL);
	crdt_vclock_free(cv);

	/* The log is kept whole */
	test_got g;
	crdt_vclock *z = clock_of(1, 0, 2, 0);
	all_since(st, z, &g);
	static const size_t w[] = { 0, 1, 2 };
	expect_msgs(&g, &s, w, 3);
	test_got_free(&g);
	cr_assert_eq(crdt_store_put_checkpoint(st, NULL, 0, z), CRDT_EINVAL);
	cr_assert_eq(crdt_store_put_checkpoint(st, "a", 1, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_store_checkpoint(st, NULL, &cv), CRDT_EINVAL);
	crdt_vclock_free(z);
	crdt_vclock_free(v1);
	crdt_vclock_free(v2);
	crdt_buf_fini(&snap);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, messages_survive_reopen_byte_exact_in_both_sync_modes)
{
	test_stream s = { 0 };
	test_stream_add(&s, 3, 20, 300, 0);
	crdt_store_sqlite_opts o = { 0 };
	for (int mode = 0; mode < 2; mode++) {
		o.synchronous = mode ? CRDT_STORE_SYNC_NORMAL :
				       CRDT_STORE_SYNC_FULL;
		test_rm_db(dbpath);
		crdt_store *st = open_store(&o);
		cr_assert_eq(test_stream_put(st, &s, 0, 7, NULL), 0);
		cr_assert_eq(test_stream_put(st, &s, 7, 13, NULL), 0);
		crdt_store_close(st);
		st = open_store(&o);
		crdt_vclock *v = clock_of(1, 0, 2, 0);
		test_got g;
		all_since(st, v, &g);
		size_t w[20];
		for (size_t i = 0; i < 20; i++)
			w[i] = i;
		expect_msgs(&g, &s, w, 20);
		test_got_free(&g);
		crdt_vclock_free(v);
		crdt_store_close(st);
	}
	o.synchronous = (crdt_store_sync)7;
	crdt_store *bad = NULL;
	crdt_config cfg;
	test_config(&cfg, NULL);
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, &o, &bad),
	    CRDT_EINVAL);
	o.synchronous = CRDT_STORE_SYNC_FULL;
	o.reserved[3] = 1;
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, &o, &bad),
	    CRDT_EINVAL);
	cr_assert_null(bad);
	cr_assert_eq(crdt_store_open_sqlite(&cfg, NULL, NULL, &bad),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, NULL, NULL),
	    CRDT_EINVAL);
	crdt_store_close(NULL); /* a no-op */
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* Every allocation the front end and the backend make goes through the
 * hooks; each failing one gives CRDT_ENOMEM and leaves nothing behind. */
Test(store, allocation_failures_leave_nothing_behind)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 2, 8, 0);
	crdt_store *st;
	/* Creating a store, then opening an existing one: fail each
	 * allocation in turn until the open gets through. */
	for (int existing = 0; existing < 2; existing++) {
		long points = 0;
		for (long i = 0; i < 64; i++) {
			crdt_store *x = NULL;
			if (!existing)
				test_rm_db(dbpath);
			test_alloc_fail_at(i);
			int rc = try_open(dbpath, &x);
			bool fired = test_alloc_fired();
			test_alloc_disarm();
			if (!fired) {
				cr_assert_eq(rc, 0);
				crdt_store_close(x);
				break;
			}
			cr_assert_eq(rc, CRDT_ENOMEM, "i=%ld: %s", i,
			    crdt_err_name(rc));
			cr_assert_null(x);
			ASSERT_NO_LEAKS();
			points++;
		}
		cr_assert_geq(points, existing ? 2 : 3,
		    "allocations go through the hook");
		ASSERT_NO_LEAKS();
	}
	st = open_store(NULL);
	test_alloc_fail_at(0);
	size_t added = 5;
	cr_assert_eq(test_stream_put(st, &s, 0, 2, &added), CRDT_ENOMEM);
	cr_assert_eq(added, 5);
	test_alloc_disarm();
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	cr_assert_eq(g.n, 0);
	crdt_store_close(st);
	crdt_vclock_free(v);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- a full disk ---- */

Test(store, a_full_disk_gives_efull_and_the_store_stays_consistent)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 120, 3000, 0); /* ~3 KB each, < 1 page */
	crdt_store_sqlite_opts o = { .max_pages = 40 };
	crdt_store *st = open_store(&o);
	size_t acked = 0;
	int rc = 0;
	for (size_t i = 0; i < s.n; i++) {
		rc = test_stream_put(st, &s, i, 1, NULL);
		if (rc != 0)
			break;
		acked++;
	}
	cr_assert_eq(rc, CRDT_EFULL, "got %s after %zu", crdt_err_name(rc),
	    acked);
	cr_assert_gt(acked, 5);
	cr_assert_lt(acked, s.n);
	/* A batch that does not fit is refused whole */
	cr_assert_eq(test_stream_put(st, &s, acked, 5, NULL), CRDT_EFULL);
	crdt_vclock *cv = clock_of(1, 1, 2, 0);
	static uint8_t big[64 * 1024];
	cr_assert_eq(crdt_store_put_checkpoint(st, big, sizeof big, cv),
	    CRDT_EFULL);
	/* The same handle still reads, and holds exactly what was acked */
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	size_t w[MAXM];
	for (size_t i = 0; i < acked; i++)
		w[i] = i;
	expect_msgs(&g, &s, w, acked);
	test_got_free(&g);
	crdt_buf snap;
	crdt_vclock *out = NULL;
	tb_init(&snap);
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &out), CRDT_ENOTFOUND);
	/* and duplicates of what it holds are still no-ops, not errors */
	size_t added = 9;
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(added, 0);
	crdt_store_close(st);

	/* After space is freed (no quota) the store opens, passes its checks
	 * and takes the rest */
	st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, &s, acked, s.n - acked, &added), 0);
	cr_assert_eq(added, s.n - acked);
	cr_assert_eq(crdt_store_put_checkpoint(st, big, sizeof big, cv), 0);
	all_since(st, v, &g);
	for (size_t i = 0; i < s.n; i++)
		w[i] = i;
	expect_msgs(&g, &s, w, s.n);
	test_got_free(&g);
	crdt_vclock_free(v);
	crdt_vclock_free(cv);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, an_unopenable_path_gives_eio)
{
	char p[400];
	crdt_store *st = NULL;
	snprintf(p, sizeof p, "%s/no/such/dir/s.db", tmpdir);
	cr_assert_eq(try_open(p, &st), CRDT_EIO);
	cr_assert_null(st);
	/* a directory is not a file SQLite can open */
	cr_assert_eq(try_open(tmpdir, &st), CRDT_EIO);
	cr_assert_null(st);
	ASSERT_NO_LEAKS();
}

/* ---- damaged files are refused on open ---- */

/* A store with `n` messages of ~2 KB, closed (WAL checkpointed into the
 * main file, so the bytes below are the data). */
static void
make_store(const test_stream *s)
{
	crdt_store *st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, s, 0, s->n, NULL), 0);
	crdt_vclock *v = clock_of(1, 2, 0, 0);
	cr_assert_eq(crdt_store_put_checkpoint(st, "snap", 4, v), 0);
	crdt_vclock_free(v);
	crdt_store_close(st);
}

static long
file_size(const char *p)
{
	struct stat sb;
	cr_assert_eq(stat(p, &sb), 0);
	return (long)sb.st_size;
}

static void
expect_refused(int want, const char *what)
{
	crdt_store *st = (crdt_store *)&st; /* untouched on error */
	crdt_store *keep = st;
	int rc = try_open(dbpath, &st);
	cr_assert_eq(rc, want, "%s: got %s", what, crdt_err_name(rc));
	cr_assert_eq(st, keep, "%s: no handle", what);
}

static void
sql(const char *path, const char *q)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	char *err = NULL;
	int rc = sqlite3_exec(db, q, NULL, NULL, &err);
	cr_assert_eq(rc, SQLITE_OK, "%s: %s", q, err ? err : "");
	sqlite3_close(db);
}

Test(store, a_text_file_is_refused_as_corrupt)
{
	FILE *f = fopen(dbpath, "w");
	cr_assert_not_null(f);
	for (int i = 0; i < 200; i++)
		fprintf(f, "this is not a database, line %d\n", i);
	fclose(f);
	expect_refused(CRDT_ECORRUPT, "text");
	ASSERT_NO_LEAKS();
}

Test(store, bytes_overwritten_in_the_middle_are_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 30, 2000, 0);
	make_store(&s);
	long sz = file_size(dbpath);
	cr_assert_gt(sz, 8 * 4096);
	int fd = open(dbpath, O_WRONLY);
	cr_assert_geq(fd, 0);
	uint8_t junk[4096];
	memset(junk, 0x5a, sizeof junk);
	/* A whole page in the middle: its b-tree header is gone */
	cr_assert_eq(pwrite(fd, junk, sizeof junk, (sz / 2) & ~4095L),
	    (ssize_t)sizeof junk);
	close(fd);
	expect_refused(CRDT_ECORRUPT, "overwritten page");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, a_few_bytes_flipped_inside_a_message_are_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 30, 2000, 0);
	make_store(&s);
	/* Flip bytes inside a stored message's payload: the b-tree is fine
	 * (quick_check passes), only the digest can tell. Find the value
	 * pattern of message 10 in the file. */
	FILE *f = fopen(dbpath, "r+b");
	cr_assert_not_null(f);
	static uint8_t file[1 << 20];
	size_t n = fread(file, 1, sizeof file, f);
	cr_assert_lt(n, sizeof file);
	const crdt_buf *m = &s.m[10];
	size_t off = SIZE_MAX;
	for (size_t i = 0; i + 64 <= n; i++)
		if (memcmp(file + i, m->data + m->len - 300, 64) == 0) {
			off = i;
			break;
		}
	cr_assert_neq(off, SIZE_MAX, "message bytes found in the file");
	file[off + 10] ^= 0x01;
	cr_assert_eq(fseek(f, (long)(off + 10), SEEK_SET), 0);
	cr_assert_eq(fwrite(&file[off + 10], 1, 1, f), 1);
	fclose(f);
	expect_refused(CRDT_ECORRUPT, "flipped message byte");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, a_truncated_file_is_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 30, 2000, 0);
	make_store(&s);
	long sz = file_size(dbpath);
	cr_assert_eq(truncate(dbpath, sz / 2), 0);
	expect_refused(CRDT_ECORRUPT, "half");
	cr_assert_eq(truncate(dbpath, 3000), 0);
	expect_refused(CRDT_ECORRUPT, "part of the first page");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, rows_and_schema_altered_through_sql_are_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 50, 0);
	test_stream_add(&s, 2, 1, 50, 0);

	/* A message's bytes replaced by another real message: digest */
	make_store(&s);
	sql(dbpath, "UPDATE msgs SET bytes = (SELECT bytes FROM msgs "
		    "WHERE seq = 4) WHERE seq = 1");
	expect_refused(CRDT_ECORRUPT, "bytes swapped");
	test_rm_db(dbpath);
	/* bytes and digest of another message, under the wrong dot */
	make_store(&s);
	sql(dbpath, "UPDATE msgs SET (bytes, digest) = (SELECT bytes, digest "
		    "FROM msgs WHERE seq = 4) WHERE seq = 1");
	expect_refused(CRDT_ECORRUPT, "message under another dot");
	test_rm_db(dbpath);
	/* checkpoint snapshot altered */
	make_store(&s);
	sql(dbpath, "UPDATE checkpoint SET snap = x'00'");
	expect_refused(CRDT_ECORRUPT, "checkpoint");
	test_rm_db(dbpath);
	/* the unique index dropped */
	make_store(&s);
	sql(dbpath, "DROP INDEX msgs_dot");
	expect_refused(CRDT_ECORRUPT, "index dropped");
	test_rm_db(dbpath);
	/* a newer schema version */
	make_store(&s);
	sql(dbpath, "PRAGMA user_version = 4");
	expect_refused(CRDT_EVERSION, "newer version");
	test_rm_db(dbpath);
	/* another application's database */
	sql(dbpath, "CREATE TABLE t(x)");
	expect_refused(CRDT_ECORRUPT, "foreign database");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- crash test ---- */

/*
 * A child appends a stream of real messages in batches of 1..4 and,
 * after each append returned 0 (the ack), writes the index one past the
 * batch to a pipe. The parent reads a random number of acks, waits a
 * random few microseconds and kills it with SIGKILL: in the middle of a
 * transaction, a commit, an fsync, a WAL checkpoint, or the open. Then it
 * reopens (checks included) and requires: the store holds exactly a
 * prefix of the stream (batches are all or nothing and appended in
 * order), byte-exact, at least as long as the last ack, and at most one
 * unacknowledged batch longer. The next child goes on from there.
 * Now and then the child also replaces the checkpoint (acked the same
 * way, flagged): the checkpoint found must be whole (its snapshot the
 * exact bytes put with its clock), no older than the last acked one of
 * that child, and never ahead of the messages stored.
 */
#define CK_ACK 0x80000000u

/* The checkpoint put after message `j`: a snapshot of 1..7 KB whose
 * bytes and length depend on j, and the clock {replica 1: j}. */
static size_t
ck_snap(size_t j, uint8_t *out)
{
	size_t n = 1000 + (j % 7) * 1000;
	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)(j * 31 + i);
	return n;
}
#define CRASH_ITERS 120
#define CRASH_STREAM 240

static void
crash_child(const test_stream *s, size_t from, uint64_t seed, int wfd,
    crdt_store_sync mode)
{
	crdt_store_sqlite_opts o = { .synchronous = mode };
	crdt_store *st;
	test_rng r;
	test_rng_init(&r, seed);
	if (crdt_store_open_sqlite(NULL, dbpath, &o, &st) != 0)
		_exit(3);
	/* Re-append a little of what is there: duplicates must stay no-ops
	 * across crashes too. */
	size_t i = from > 2 ? from - 2 : 0;
	while (i < s->n) {
		size_t k = 1 + (size_t)test_rng_below(&r, 4);
		if (k > s->n - i)
			k = s->n - i;
		if (test_stream_put(st, s, i, k, NULL) != 0)
			_exit(2);
		i += k;
		uint32_t ack = (uint32_t)i;
		if (write(wfd, &ack, sizeof ack) != (ssize_t)sizeof ack)
			_exit(4);
		if (test_rng_below(&r, 3) == 0) {
			static uint8_t snap[8192];
			crdt_replica_id a = test_id(1);
			crdt_vclock *v;
			if (crdt_vclock_new(NULL, &v) != 0 ||
			    crdt_vclock_set(v, &a, i) != 0 ||
			    crdt_store_put_checkpoint(st, snap,
				ck_snap(i, snap), v) != 0)
				_exit(5);
			crdt_vclock_free(v);
			ack = CK_ACK | (uint32_t)i;
			if (write(wfd, &ack, sizeof ack) != (ssize_t)sizeof ack)
				_exit(4);
		}
	}
	crdt_store_close(st);
	_exit(0);
}

/* What the reopened store holds must be stream[0 .. m) for some m, and
 * its checkpoint one that was put whole, at or after `ck_acked`. */
static size_t
crash_verify(const test_stream *s, size_t acked, size_t ck_acked)
{
	crdt_store *st = NULL;
	int rc = crdt_store_open_sqlite(NULL, dbpath, NULL, &st);
	cr_assert_eq(rc, 0, "reopen after kill: %s", crdt_err_name(rc));
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	crdt_vclock_free(v);
	crdt_buf snap;
	crdt_vclock *cv = NULL;
	tb_init(&snap);
	rc = crdt_store_checkpoint(st, &snap, &cv);
	crdt_store_close(st);
	if (rc == CRDT_ENOTFOUND) {
		cr_assert_eq(ck_acked, 0, "acked checkpoint %zu lost",
		    ck_acked);
	} else {
		static uint8_t want[8192];
		crdt_replica_id a = test_id(1);
		cr_assert_eq(rc, 0, "checkpoint: %s", crdt_err_name(rc));
		size_t j = (size_t)crdt_vclock_get(cv, &a);
		cr_assert_eq(crdt_vclock_size(cv), 1);
		size_t wn = ck_snap(j, want);
		cr_assert(bytes_eq(snap.data, snap.len, want, wn),
		    "checkpoint %zu is not the one put with its clock", j);
		cr_assert_geq(j, ck_acked, "older than the acked checkpoint");
		cr_assert_leq(j, g.n, "checkpoint ahead of the log");
		crdt_vclock_free(cv);
	}
	crdt_buf_fini(&snap);
	cr_assert_geq(g.n, acked, "acked %zu, stored %zu: lost an ack", acked,
	    g.n);
	cr_assert_leq(g.n, acked + 4, "more than one batch past the ack");
	for (size_t i = 0; i < g.n; i++)
		cr_assert(bytes_eq(g.m[i].data, g.m[i].len, s->m[i].data,
			      s->m[i].len),
		    "stored[%zu] is not stream[%zu]", i, i);
	size_t n = g.n;
	test_got_free(&g);
	return n;
}

Test(store, no_acknowledged_message_is_lost_to_kill_9, .timeout = 120)
{
	test_stream s = { 0 };
	/* Two writers, one after the other */
	test_stream_add(&s, 1, CRASH_STREAM / 2, 200, 0);
	test_stream_add(&s, 2, CRASH_STREAM / 2, 200, 0);
	test_rng r;
	uint64_t seed = test_seed(0x5702e);
	test_rng_init(&r, seed);
	size_t have = 0, kills = 0, resets = 0;

	for (int it = 0; it < CRASH_ITERS; it++) {
		int p[2];
		cr_assert_eq(pipe(p), 0);
		crdt_store_sync mode = (it & 1) ? CRDT_STORE_SYNC_NORMAL :
						  CRDT_STORE_SYNC_FULL;
		uint64_t cseed = test_rng_next(&r);
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(p[0]);
			crash_child(&s, have, cseed, p[1], mode);
		}
		close(p[1]);
		/* Kill after 0..5 acks (0 = during the open or the first
		 * batch), then a random short delay. */
		size_t want = (size_t)test_rng_below(&r, 6), acked = have;
		size_t ck_acked = 0;
		for (size_t k = 0; k < want; k++) {
			uint32_t a;
			if (read(p[0], &a, sizeof a) != (ssize_t)sizeof a)
				break;
			if (a & CK_ACK)
				ck_acked = a & ~CK_ACK;
			else if (a > acked)
				acked = a;
		}
		struct timespec ts = { 0,
			(long)test_rng_below(&r, 3000) * 1000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status = 0;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		/* Acks written before the kill landed count too. */
		for (int k = 0; k < 2 * CRASH_STREAM + 8; k++) {
			uint32_t a;
			if (read(p[0], &a, sizeof a) != (ssize_t)sizeof a)
				break;
			if (a & CK_ACK)
				ck_acked = a & ~CK_ACK;
			else if (a > acked)
				acked = a;
		}
		close(p[0]);
		cr_assert(WIFSIGNALED(status) ||
			(WIFEXITED(status) && WEXITSTATUS(status) == 0),
		    "child failed: status %d (seed %llu)", status,
		    (unsigned long long)seed);
		if (WIFSIGNALED(status))
			kills++;
		have = crash_verify(&s, acked, ck_acked);
		if (have == s.n) {
			/* The whole stream made it: start a fresh store */
			test_rm_db(dbpath);
			have = 0;
			resets++;
		}
	}
	cr_assert_geq(kills, 100, "only %zu of %d children were killed", kills,
	    CRASH_ITERS);
	(void)resets;
	test_stream_free(&s);
}

/* Damage done while a handle is open (another process, the disk) is
 * still caught: since() and checkpoint() check what they hand out. */
Test(store, damage_after_open_is_caught_when_handed_out)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 4, 50, 0);
	make_store(&s);
	crdt_store *st = open_store(NULL);
	sql(dbpath, "UPDATE msgs SET bytes = (SELECT bytes FROM msgs "
		    "WHERE seq = 1) WHERE seq = 3");
	sql(dbpath, "UPDATE checkpoint SET clock = x'9101'");
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	memset(&g, 0, sizeof g);
	uint64_t cur = 0;
	bool more = true;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    CRDT_ECORRUPT);
	cr_assert_eq(cur, 0);
	cr_assert(more);
	cr_assert_eq(g.n, 2, "the intact messages before it were handed out");
	test_got_free(&g);
	/* A page that ends before the damaged row is fine */
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_since(st, v, &cur, 1, test_collect, &g, &more), 0);
	cr_assert_eq(g.n, 1);
	cr_assert(more);
	test_got_free(&g);
	crdt_buf snap;
	tb_init(&snap);
	cr_assert_eq(crdt_buf_append(&snap, "keep", 4), 0);
	crdt_vclock *cv = (crdt_vclock *)&cv;
	crdt_vclock *keep = cv;
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), CRDT_ECORRUPT);
	cr_assert_eq(cv, keep);
	cr_assert_eq(snap.len, 4, "snap_out restored");
	crdt_buf_fini(&snap);
	crdt_vclock_free(v);
	crdt_store_close(st);
	expect_refused(CRDT_ECORRUPT, "reopen");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- an application backend through crdt_store_new() ---- */

/* A deliberately small in-memory backend: it records calls, and can be
 * told to lie (hand out a message under another dot, return clock bytes
 * the decoder refuses) to show the front end catches that for every
 * backend. */
typedef struct mem {
	test_stream *s;      /* what since() hands out: s->m[0 .. n) */
	size_t appends; /* append calls that reached the backend */
	size_t recs;
	bool lie_dot, lie_clock, closed;
} mem;

static int
mem_append(void *impl, const crdt_store_rec *recs, size_t n, size_t *added)
{
	mem *m = impl;
	m->appends++;
	m->recs += n;
	for (size_t i = 0; i < n; i++) {
		crdt_dot d;
		cr_assert_eq(crdt_msg_peek(recs[i].bytes, recs[i].len, &d,
				 NULL),
		    0, "only checked messages reach a backend");
		cr_assert_eq(d.counter, recs[i].dot.counter);
	}
	*added = n;
	return 0;
}

static int
mem_put(void *impl, const uint8_t *snap, size_t sl, const uint8_t *clock,
    size_t cl)
{
	(void)impl;
	(void)snap;
	(void)sl;
	(void)clock;
	(void)cl;
	return 0;
}

static int
mem_get(void *impl, crdt_buf *snap, crdt_buf *clock)
{
	mem *m = impl;
	crdt_vclock *v;
	int rc;
	if (crdt_buf_append(snap, "s", 1) != 0)
		return CRDT_ENOMEM;
	/* A real encoding; the lie is one trailing byte, which the strict
	 * decoder refuses. */
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	rc = crdt_vclock_encode(v, clock);
	crdt_vclock_free(v);
	if (rc == 0 && m->lie_clock)
		rc = crdt_buf_append(clock, "", 1);
	return rc;
}

static int
mem_since(void *impl, const crdt_vclock *v, uint64_t *cursor, size_t budget,
    crdt_store_msg_fn fn, void *ud, bool *more)
{
	mem *m = impl;
	(void)v;
	(void)budget;
	for (size_t i = 0; i < m->s->n; i++) {
		crdt_dot d = m->s->dot[i];
		if (m->lie_dot)
			d.counter += 1;
		int rc = fn(ud, d, m->s->m[i].data, m->s->m[i].len);
		if (rc < 0)
			return rc;
	}
	*cursor = m->s->n;
	*more = false;
	return 0;
}

static void
mem_close(void *impl)
{
	((mem *)impl)->closed = true;
}

/* A put_snapshot op alone (the other two missing): refused by new. */
static int
stub_put_snap(void *impl, const uint8_t *b, size_t len, uint64_t *id)
{
	(void)impl;
	(void)b;
	(void)len;
	(void)id;
	return CRDT_EIO;
}

/* crdt_store_snapshots callback: counts into *(uint64_t *)ud. */
static int
count_snap(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	(void)id;
	(void)b;
	(void)len;
	(*(uint64_t *)ud)++;
	return 0;
}

Test(store, an_application_backend_gets_the_same_rules)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	mem m = { .s = &s };
	crdt_store_ops ops = { mem_append, mem_put, mem_get, mem_since,
		mem_close, NULL, NULL, NULL };
	crdt_config cfg;
	test_config(&cfg, NULL);
	crdt_store *st = NULL;
	crdt_store_ops missing = ops;
	missing.since = NULL;
	cr_assert_eq(crdt_store_new(&cfg, &missing, &m, &st), CRDT_EINVAL);
	cr_assert_null(st);
	/* snapshot records: all three ops or none */
	missing = ops;
	missing.put_snapshot = stub_put_snap;
	cr_assert_eq(crdt_store_new(&cfg, &missing, &m, &st), CRDT_EINVAL);
	cr_assert_null(st);
	cr_assert_eq(crdt_store_new(&cfg, &ops, &m, &st), 0);
	/* without them: no record can be put, and there are none */
	uint64_t sid = 77;
	cr_assert_eq(crdt_store_put_snapshot(st, "x", 1, &sid), CRDT_ESTATE);
	cr_assert_eq(sid, 77);
	cr_assert_eq(crdt_store_snapshots(st, count_snap, &sid), 0);
	cr_assert_eq(sid, 77, "no record handed out");

	uint8_t junk[] = { 0xc1 };
	crdt_store_msg b[2] = { { s.m[0].data, s.m[0].len },
		{ junk, sizeof junk } };
	cr_assert_lt(crdt_store_append(st, b, 2, NULL), 0);
	cr_assert_eq(m.appends, 0, "a refused batch never reaches it");
	size_t added = 0;
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(m.appends, 1);
	cr_assert_eq(added, 3);

	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	cr_assert_eq(g.n, 3);
	test_got_free(&g);
	m.lie_dot = true;
	memset(&g, 0, sizeof g);
	uint64_t cur = 0;
	bool more;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    CRDT_ECORRUPT, "a message under another dot is caught");
	cr_assert_eq(g.n, 0);

	crdt_buf snap;
	tb_init(&snap);
	crdt_vclock *cv = NULL;
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), 0);
	cr_assert_eq(crdt_vclock_size(cv), 0);
	crdt_vclock_free(cv);
	cv = NULL;
	m.lie_clock = true;
	crdt_buf_clear(&snap);
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), CRDT_ECORRUPT);
	cr_assert_null(cv);
	cr_assert_eq(snap.len, 0);
	crdt_buf_fini(&snap);
	crdt_vclock_free(v);
	crdt_store_close(st);
	cr_assert(m.closed);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* Another connection holding the write lock: the open still succeeds (a
 * WAL reader does not wait for a writer), writes give CRDT_EBUSY after
 * the busy timeout and change nothing, reads go on, and once the lock is
 * released the same handle writes again. */
Test(store, a_held_write_lock_gives_ebusy_and_changes_nothing)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	crdt_store_sqlite_opts o = { .busy_timeout_ms = 1 };
	crdt_store *st = open_store(&o);
	cr_assert_eq(test_stream_put(st, &s, 0, 1, NULL), 0);
	crdt_store_close(st);

	sqlite3 *other;
	cr_assert_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
	    SQLITE_OK);
	st = open_store(&o);
	size_t added = 42;
	cr_assert_eq(test_stream_put(st, &s, 1, 2, &added), CRDT_EBUSY);
	cr_assert_eq(added, 42);
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	cr_assert_eq(crdt_store_put_checkpoint(st, "x", 1, v), CRDT_EBUSY);
	test_got g;
	all_since(st, v, &g);
	static const size_t w1[] = { 0 };
	expect_msgs(&g, &s, w1, 1);
	test_got_free(&g);
	cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(other);
	cr_assert_eq(test_stream_put(st, &s, 1, 2, &added), 0);
	cr_assert_eq(added, 2);
	cr_assert_eq(crdt_store_put_checkpoint(st, "x", 1, v), 0);
	all_since(st, v, &g);
	static const size_t w3[] = { 0, 1, 2 };
	expect_msgs(&g, &s, w3, 3);
	test_got_free(&g);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- I/O errors, injected by a VFS ---- */

/*
 * A VFS over the default one whose writes and syncs can be made to fail:
 * the n-th one from when it is armed returns `fault_rc` (SQLITE_IOERR_*,
 * or SQLITE_FULL for a disk that fills), and so does every later one
 * until disarmed. Registered as the default VFS in this test's process
 * only (Criterion runs each test in its own), so the library's own
 * sqlite3_open_v2() goes through it.
 */
typedef struct ffile {
	sqlite3_file base;
	sqlite3_file *real; /* follows this struct in the same block */
} ffile;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;
static sqlite3_io_methods fault_io;
static long fault_left = -1; /* < 0: disarmed */
static int fault_rc;
static unsigned long fault_fired;

static int
fault_hit(int rc)
{
	if (fault_left < 0)
		return SQLITE_OK;
	if (fault_left > 0) {
		fault_left--;
		return SQLITE_OK;
	}
	fault_fired++;
	return rc;
}

#define REAL(f) (((ffile *)(f))->real)
static int
f_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}
static unsigned long fault_reads; /* xRead calls, for cost tests */
static int
f_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	fault_reads++;
	return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int
f_read_fail(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	(void)f;
	(void)b;
	(void)n;
	(void)o;
	return SQLITE_IOERR_READ;
}
static int
f_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	int rc = fault_hit(fault_rc == SQLITE_FULL ? SQLITE_FULL :
						     SQLITE_IOERR_WRITE);
	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xWrite(REAL(f), b, n,
					      o);
}
static int
f_truncate(sqlite3_file *f, sqlite3_int64 n)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), n);
}
static int
f_sync(sqlite3_file *f, int flags)
{
	int rc = fault_hit(fault_rc == SQLITE_FULL ? SQLITE_FULL :
						     SQLITE_IOERR_FSYNC);
	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int
f_size(sqlite3_file *f, sqlite3_int64 *n)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), n);
}
static int
f_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int
f_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int
f_reserved(sqlite3_file *f, int *r)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r);
}
static int
f_fcntl(sqlite3_file *f, int op, void *a)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, a);
}
static int
f_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int
f_dev(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int
f_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int
f_shmlock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void
f_shmbarrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int
f_shmunmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int
f_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
    int *out)
{
	ffile *ff = (ffile *)f;
	(void)vfs;
	ff->real = (sqlite3_file *)(ff + 1);
	int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out);
	if (rc != SQLITE_OK || ff->real->pMethods == NULL) {
		f->pMethods = NULL;
		return rc;
	}
	f->pMethods = &fault_io;
	return SQLITE_OK;
}

static void
fault_vfs_install(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	cr_assert_not_null(real_vfs);
	fault_vfs = *real_vfs;
	fault_vfs.zName = "crdt-test-fault";
	fault_vfs.szOsFile = (int)sizeof(ffile) + real_vfs->szOsFile;
	fault_vfs.xOpen = f_open;
	fault_vfs.pNext = NULL;
	fault_io = (sqlite3_io_methods){ 2, f_close, f_read, f_write,
		f_truncate, f_sync, f_size, f_lock, f_unlock, f_reserved,
		f_fcntl, f_sector, f_dev, f_shmmap, f_shmlock, f_shmbarrier,
		f_shmunmap, NULL, NULL };
	cr_assert_eq(sqlite3_vfs_register(&fault_vfs, 1), SQLITE_OK);
}

static size_t
count_all(crdt_store *st, const test_stream *s)
{
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	crdt_vclock_free(v);
	size_t n = g.n;
	for (size_t i = 0; i < n; i++)
		cr_assert(bytes_eq(g.m[i].data, g.m[i].len, s->m[i].data,
			      s->m[i].len),
		    "stored[%zu] is stream[%zu]", i, i);
	test_got_free(&g);
	return n;
}

/* Fail the k-th write or sync of a batch, for every k the batch makes:
 * each gives the mapped code, the handle then holds exactly what it held
 * before, takes the batch again once the fault is gone, and the file
 * passes every check on reopen. */
static void
fault_sweep(int rc_inject, int want, crdt_store_sync mode)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3 + 3 * 40, 600, 0);
	fault_vfs_install();
	crdt_store_sqlite_opts o = { .synchronous = mode };
	crdt_store *st = open_store(&o);
	cr_assert_eq(test_stream_put(st, &s, 0, 3, NULL), 0);
	size_t have = 3, faults = 0;
	for (long k = 0; k < 40 && have + 3 <= s.n; k++) {
		fault_rc = rc_inject;
		fault_fired = 0;
		fault_left = k;
		size_t added = 0;
		int rc = test_stream_put(st, &s, have, 3, &added);
		fault_left = -1;
		if (fault_fired == 0) {
			/* the batch made fewer than k writes and syncs */
			cr_assert_eq(rc, 0);
			have += 3;
			break;
		}
		faults++;
		cr_assert_eq(rc, want, "k=%ld: %s", k, crdt_err_name(rc));
		cr_assert_eq(count_all(st, &s), have,
		    "k=%ld: the failed batch is not visible", k);
		rc = test_stream_put(st, &s, have, 3, &added);
		cr_assert_eq(rc, 0, "k=%ld: usable after: %s", k,
		    crdt_err_name(rc));
		cr_assert_eq(added, 3);
		have += 3;
		crdt_store_close(st);
		st = open_store(&o);
		cr_assert_eq(count_all(st, &s), have, "k=%ld: after reopen", k);
	}
	cr_assert_gt(faults, 1, "the sweep injected faults");
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, io_errors_give_eio_and_change_nothing)
{
	fault_sweep(SQLITE_IOERR, CRDT_EIO, CRDT_STORE_SYNC_FULL);
}

Test(store, io_errors_give_eio_and_change_nothing_in_normal_mode)
{
	fault_sweep(SQLITE_IOERR, CRDT_EIO, CRDT_STORE_SYNC_NORMAL);
}

Test(store, a_device_out_of_space_gives_efull_and_changes_nothing)
{
	fault_sweep(SQLITE_FULL, CRDT_EFULL, CRDT_STORE_SYNC_FULL);
}

/* A read failing on open is an I/O error, not corruption. */
Test(store, a_read_error_on_open_gives_eio)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	make_store(&s);
	fault_vfs_install();
	fault_io = (sqlite3_io_methods){ 2, f_close, f_read_fail, f_write,
		f_truncate, f_sync, f_size, f_lock, f_unlock, f_reserved,
		f_fcntl, f_sector, f_dev, f_shmmap, f_shmlock, f_shmbarrier,
		f_shmunmap, NULL, NULL };
	expect_refused(CRDT_EIO, "read error");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* A replica restarting says its store must exist: a missing file is not
 * silently created, and a store truncated to nothing is not taken for a
 * new one. */
Test(store, must_exist_refuses_a_missing_or_emptied_store)
{
	crdt_store_sqlite_opts o = { .must_exist = true };
	crdt_config cfg;
	test_config(&cfg, NULL);
	crdt_store *st = NULL;
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, &o, &st),
	    CRDT_ENOTFOUND);
	cr_assert_null(st);
	cr_assert_neq(access(dbpath, F_OK), 0, "not created");

	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	make_store(&s);
	st = open_store(&o);
	cr_assert_eq(count_all(st, &s), 3);
	crdt_store_close(st);
	cr_assert_eq(truncate(dbpath, 0), 0);
	st = NULL;
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, &o, &st),
	    CRDT_ECORRUPT);
	cr_assert_null(st);
	/* Without the option an empty file is a new store */
	st = open_store(NULL);
	cr_assert_eq(count_all(st, &s), 0);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, a_batch_over_max_elems_is_refused_whole)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.limits.max_elems = 2;
	crdt_store *st;
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, NULL, &st), 0);
	cr_assert_eq(test_stream_put(st, &s, 0, 3, NULL), CRDT_ETOOBIG);
	cr_assert_eq(count_all(st, &s), 0);
	cr_assert_eq(test_stream_put(st, &s, 0, 2, NULL), 0);
	cr_assert_eq(count_all(st, &s), 2);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* Two processes appending to one file at once (each its own handle and
 * replica, batches interleaving under SQLite's lock): both finish, and
 * the store holds each one's messages whole, in each one's order. */
Test(store, two_processes_append_to_one_file_at_once, .timeout = 120)
{
	test_stream a = { 0 }, b = { 0 };
	test_stream_add(&a, 1, 60, 100, 0);
	test_stream_add(&b, 2, 60, 100, 0);
	crdt_store *st = open_store(NULL); /* create before the race */
	crdt_store_close(st);
	const test_stream *mine[2] = { &a, &b };
	pid_t pid[2];
	for (int c = 0; c < 2; c++) {
		pid[c] = fork();
		cr_assert_geq(pid[c], 0);
		if (pid[c] == 0) {
			crdt_store_sqlite_opts o = { .busy_timeout_ms = 60000 };
			crdt_store *w;
			if (crdt_store_open_sqlite(NULL, dbpath, &o, &w) != 0)
				_exit(3);
			for (size_t i = 0; i < mine[c]->n; i += 3)
				if (test_stream_put(w, mine[c], i, 3, NULL) != 0)
					_exit(2);
			crdt_store_close(w);
			_exit(0);
		}
	}
	for (int c = 0; c < 2; c++) {
		int status = 0;
		cr_assert_eq(waitpid(pid[c], &status, 0), pid[c]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "writer %d: status %d", c, status);
	}
	st = open_store(NULL);
	for (int c = 0; c < 2; c++) {
		/* everything of the other replica is covered: what is left is
		 * this writer's stream, in its order */
		crdt_vclock *v = c == 0 ? clock_of(2, 1000, 9, 0) :
					  clock_of(1, 1000, 9, 0);
		test_got g;
		all_since(st, v, &g);
		size_t w[MAXM];
		for (size_t i = 0; i < mine[c]->n; i++)
			w[i] = i;
		expect_msgs(&g, mine[c], w, mine[c]->n);
		test_got_free(&g);
		crdt_vclock_free(v);
	}
	crdt_store_close(st);
	test_stream_free(&a);
	test_stream_free(&b);
	ASSERT_NO_LEAKS();
}

/* Restart: the checkpoint, then what its clock does not cover. */
Test(store, load_gives_the_checkpoint_then_what_it_does_not_cover)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 4, 16, 0); /* A1..A4 = 0..3 */
	test_stream_add(&s, 2, 2, 16, 0); /* B1, B2 = 4, 5 */
	crdt_store *st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, &s, 0, 6, NULL), 0);
	crdt_buf snap;
	tb_init(&snap);
	bool has = true;
	test_got g;
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_load(st, &snap, &has, test_collect, &g), 0);
	cr_assert(!has);
	cr_assert_eq(snap.len, 0);
	static const size_t all[] = { 0, 1, 2, 3, 4, 5 };
	expect_msgs(&g, &s, all, 6);
	test_got_free(&g);

	crdt_vclock *v = clock_of(1, 3, 2, 1);
	cr_assert_eq(crdt_store_put_checkpoint(st, "SNAP", 4, v), 0);
	crdt_store_close(st);
	st = open_store(NULL);
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_load(st, &snap, &has, test_collect, &g), 0);
	cr_assert(has);
	cr_assert(bytes_eq(snap.data, snap.len, "SNAP", 4));
	static const size_t rest[] = { 3, 5 };
	expect_msgs(&g, &s, rest, 2);
	test_got_free(&g);

	/* A callback error: snap_out restored, has untouched */
	crdt_buf_clear(&snap);
	has = false;
	memset(&g, 0, sizeof g);
	g.fail_at = 1; /* the first call */
	cr_assert_eq(crdt_store_load(st, &snap, &has, test_collect, &g),
	    CRDT_ENOMEM);
	cr_assert_eq(snap.len, 0);
	cr_assert(!has);
	test_got_free(&g);
	cr_assert_eq(crdt_store_load(st, &snap, NULL, test_collect, &g),
	    CRDT_EINVAL);
	crdt_buf_fini(&snap);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* A backend that keeps saying "more" without moving its cursor would
 * make a load loop forever: it is refused. */
static int
stuck_since(void *impl, const crdt_vclock *v, uint64_t *cursor,
    size_t budget, crdt_store_msg_fn fn, void *ud, bool *more)
{
	(void)impl;
	(void)v;
	(void)budget;
	(void)fn;
	(void)ud;
	(void)cursor;
	*more = true;
	return 0;
}

Test(store, load_refuses_a_backend_that_never_ends)
{
	test_stream s = { 0 };
	mem m = { .s = &s };
	crdt_store_ops ops = { mem_append, mem_put, mem_get, stuck_since,
		mem_close, NULL, NULL, NULL };
	crdt_store *st;
	cr_assert_eq(crdt_store_new(NULL, &ops, &m, &st), 0);
	crdt_buf snap;
	tb_init(&snap);
	bool has = false;
	test_got g;
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_load(st, &snap, &has, test_collect, &g),
	    CRDT_ECORRUPT);
	cr_assert_eq(snap.len, 0, "restored");
	crdt_buf_fini(&snap);
	crdt_store_close(st);
}

/* ---- counters past 2^63 ---- */

/* A real message re-stamped with `counter`: the counter follows the
 * sender ID (bin8 of 16 bytes) in the envelope; a fixint 1 there is
 * replaced by the minimal encoding of `counter`. The array length is
 * unchanged, so peek reads the new dot. */
static void
restamp(crdt_buf *out, const crdt_buf *m, crdt_replica_id id,
    uint64_t counter)
{
	size_t at = SIZE_MAX;
	for (size_t i = 0; i + 19 <= m->len; i++)
		if (m->data[i] == 0xc4 && m->data[i + 1] == 16 &&
		    memcmp(m->data + i + 2, id.bytes, 16) == 0) {
			at = i + 18;
			break;
		}
	cr_assert_neq(at, SIZE_MAX, "sender ID found");
	cr_assert_eq(m->data[at], 0x01, "counter 1 as a fixint");
	tb_init(out);
	mp_raw(out, m->data, at);
	mp_uint(out, counter);
	mp_raw(out, m->data + at + 1, m->len - at - 1);
	crdt_dot d;
	cr_assert_eq(crdt_msg_peek(out->data, out->len, &d, NULL), 0);
	cr_assert_eq(d.counter, counter);
}

/* The store keeps a counter's 64 bits in SQLite's signed 64-bit
 * integer; counters at and past 2^63 (negative there) must be kept,
 * handed back and compared against clocks like any other. */
Test(store, counters_past_2_63_are_kept_and_compared_exactly)
{
	test_stream base = { 0 };
	test_stream_add(&base, 1, 1, 8, 0);  /* A1 */
	test_stream_add(&base, 1, 1, 8, 50); /* A1', other bytes */
	test_stream_add(&base, 1, 1, 8, 90); /* A1'' */
	crdt_replica_id a = test_id(1);
	static const uint64_t ctr[] = { UINT64_C(1) << 63,
		(UINT64_C(1) << 63) - 1, UINT64_MAX };
	test_stream s = { 0 };
	for (size_t i = 0; i < 3; i++) {
		restamp(&s.m[i], &base.m[i], a, ctr[i]);
		s.dot[i].replica = a;
		s.dot[i].counter = ctr[i];
	}
	s.n = 3;
	crdt_store *st = open_store(NULL);
	size_t added = 0;
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(added, 3);
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(added, 0, "the same bytes again");
	crdt_store_close(st);
	st = open_store(NULL); /* and they pass the checks on open */
	static const struct {
		uint64_t have;
		size_t n, idx[3];
	} cases[] = {
		{ 0, 3, { 0, 1, 2 } },
		{ (UINT64_C(1) << 63) - 2, 3, { 0, 1, 2 } },
		{ (UINT64_C(1) << 63) - 1, 2, { 0, 2 } },
		{ UINT64_C(1) << 63, 1, { 2 } },
		{ UINT64_MAX - 1, 1, { 2 } },
		{ UINT64_MAX, 0, { 0 } },
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		crdt_vclock *v;
		cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
		if (cases[c].have)
			cr_assert_eq(crdt_vclock_set(v, &a, cases[c].have), 0);
		test_got g;
		all_since(st, v, &g);
		expect_msgs(&g, &s, cases[c].idx, cases[c].n);
		test_got_free(&g);
		crdt_vclock_free(v);
	}
	crdt_store_close(st);
	test_stream_free(&s);
	test_stream_free(&base);
	ASSERT_NO_LEAKS();
}

/* Cost, counted in reads through the VFS (no clocks): a peer that lacks
 * only the newest message is served from the dot index, without reading
 * the log before it; a peer lacking the oldest one makes the scan read
 * the log, which shows the count measures something. The log is larger
 * than SQLite's page cache, so the pages the scan needs are not cached
 * from the checks on open. */
Test(store, an_up_to_date_peer_costs_no_scan_of_the_log)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 200, 12000, 0);
	test_stream_add(&s, 2, 200, 12000, 0);
	fault_vfs_install();
	crdt_store *st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, &s, 0, s.n, NULL), 0);
	crdt_store_close(st);
	st = open_store(NULL);

	test_got g;
	uint64_t cur = 0;
	bool more;
	crdt_vclock *v = clock_of(1, 200, 2, 199); /* lacks only B200 */
	memset(&g, 0, sizeof g);
	fault_reads = 0;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    0);
	unsigned long near = fault_reads;
	static const size_t last[] = { 399 };
	expect_msgs(&g, &s, last, 1);
	test_got_free(&g);
	crdt_vclock_free(v);

	v = clock_of(1, 200, 2, 200); /* lacks nothing */
	cur = 0;
	memset(&g, 0, sizeof g);
	fault_reads = 0;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    0);
	unsigned long none = fault_reads;
	cr_assert_eq(g.n, 0);
	cr_assert(!more);
	crdt_vclock_free(v);

	v = clock_of(1, 0, 2, 200); /* lacks A1..A200: the scan runs */
	cur = 0;
	memset(&g, 0, sizeof g);
	fault_reads = 0;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    0);
	unsigned long far = fault_reads;
	cr_assert_eq(g.n, 200);
	test_got_free(&g);
	crdt_vclock_free(v);
	cr_log_info("reads: near %lu, none %lu, far %lu", near, none, far);
	cr_assert_leq(near, 16, "near: %lu reads", near);
	cr_assert_leq(none, 16, "none: %lu reads", none);
	cr_assert_gt(far, 4 * 16, "far: %lu reads (the count measures)",
	    far);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- loaded snapshot records: arguments and error paths ---- */

typedef struct rec_cb {
	crdt_store *st;
	int calls, stop_at, nested;
} rec_cb;

static int
rec_probe(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	rec_cb *c = ud;
	uint64_t x;
	(void)id;
	(void)b;
	(void)len;
	c->calls++;
	/* the store cannot be called from its own callback */
	c->nested = crdt_store_put_snapshot(c->st, "z", 1, &x);
	if (c->nested == CRDT_ESTATE)
		c->nested = crdt_store_snapshots(c->st, rec_probe, c);
	return c->calls == c->stop_at ? CRDT_EBUSY : 0;
}

static int
put_in_since(void *ud, crdt_dot dot, const uint8_t *b, size_t len)
{
	uint64_t x;
	(void)dot;
	(void)b;
	(void)len;
	return crdt_store_put_snapshot(ud, "y", 1, &x);
}

Test(store, loaded_snapshot_records_refuse_bad_calls_and_change_nothing)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.limits.max_bytes = 64;
	crdt_store *st = NULL;
	cr_assert_eq(crdt_store_open_sqlite(&cfg, dbpath, NULL, &st), 0);
	uint64_t id = 99;
	uint8_t big[65];
	memset(big, 7, sizeof big);
	cr_assert_eq(crdt_store_put_snapshot(NULL, "a", 1, &id), CRDT_EINVAL);
	cr_assert_eq(crdt_store_put_snapshot(st, NULL, 1, &id), CRDT_EINVAL);
	cr_assert_eq(crdt_store_put_snapshot(st, "a", 1, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_store_put_snapshot(st, big, sizeof big, &id),
	    CRDT_ETOOBIG);
	cr_assert_eq(id, 99, "untouched on error");
	cr_assert_eq(crdt_store_snapshots(NULL, rec_probe, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_store_snapshots(st, NULL, NULL), CRDT_EINVAL);
	rec_cb c = { st, 0, 0, 0 };
	cr_assert_eq(crdt_store_snapshots(st, rec_probe, &c), 0);
	cr_assert_eq(c.calls, 0, "none stored");
	/* the largest allowed, and an empty one */
	cr_assert_eq(crdt_store_put_snapshot(st, big, 64, &id), 0);
	cr_assert_eq(id, 1);
	cr_assert_eq(crdt_store_put_snapshot(st, "", 0, &id), 0);
	cr_assert_eq(id, 2);
	/* nested calls refused; a callback's error stops and is returned */
	c.stop_at = 1;
	cr_assert_eq(crdt_store_snapshots(st, rec_probe, &c), CRDT_EBUSY);
	cr_assert_eq(c.calls, 1);
	cr_assert_eq(c.nested, CRDT_ESTATE);
	c = (rec_cb){ st, 0, 0, 0 };
	cr_assert_eq(crdt_store_snapshots(st, rec_probe, &c), 0);
	cr_assert_eq(c.calls, 2, "the nested put stored nothing");
	/* and not from a since() callback either */
	test_stream s = { 0 };
	test_stream_add(&s, 1, 1, 8, 0);
	cr_assert_eq(test_stream_put(st, &s, 0, 1, NULL), 0);
	crdt_vclock *v;
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	uint64_t cur = 0;
	bool more;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, put_in_since, st,
			 &more),
	    CRDT_ESTATE);
	/* a checkpoint refused for its size drops nothing */
	cr_assert_eq(crdt_store_put_checkpoint_upto(st, big, sizeof big, v, 2),
	    CRDT_ETOOBIG);
	c = (rec_cb){ st, 0, 0, 0 };
	cr_assert_eq(crdt_store_snapshots(st, rec_probe, &c), 0);
	cr_assert_eq(c.calls, 2);
	cr_assert_eq(crdt_store_put_checkpoint_upto(NULL, "c", 1, v, 2),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_store_put_checkpoint_upto(st, "c", 1, v, 1), 0);
	c = (rec_cb){ st, 0, 0, 0 };
	cr_assert_eq(crdt_store_snapshots(st, rec_probe, &c), 0);
	cr_assert_eq(c.calls, 1, "record 1 dropped with the checkpoint");
	crdt_vclock_free(v);
	test_stream_free(&s);
	crdt_store_close(st);
	ASSERT_NO_LEAKS();
}

/* A quota the record does not fit in: CRDT_EFULL, nothing stored (not
 * even an id used up), and the store takes it once the quota is lifted. */
Test(store, a_full_store_refuses_a_record_and_takes_it_later)
{
	crdt_store *st = open_store(NULL);
	crdt_store_close(st);
	crdt_store_sqlite_opts o = { .max_pages = 1 };
	st = open_store(&o);
	static uint8_t big[40000];
	memset(big, 3, sizeof big);
	uint64_t id = 5;
	cr_assert_eq(crdt_store_put_snapshot(st, big, sizeof big, &id),
	    CRDT_EFULL);
	cr_assert_eq(id, 5);
	rec_cb c = { st, 0, 0, 0 };
	cr_assert_eq(crdt_store_snapshots(st, rec_probe, &c), 0);
	cr_assert_eq(c.calls, 0);
	crdt_store_close(st);
	st = open_store(NULL);
	cr_assert_eq(crdt_store_put_snapshot(st, big, sizeof big, &id), 0);
	cr_assert_eq(id, 1, "the refused one took no id");
	crdt_store_close(st);
	ASSERT_NO_LEAKS();
}
