/*
 * Store layer (include/crdt/store.h) against real SQLite files in a
 * temporary directory: append and iteration since a clock, paging by a
 * byte budget, duplicates and equivocations, checkpoints, reopening,
 * refused input that writes nothing, restart loads and loaded snapshot
 * records. Faults are in test_store_faults.c; crashes, concurrency,
 * application backends and counters past 2^63 in test_store_crash.c.
 */
#include "test_store_common.h"

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
