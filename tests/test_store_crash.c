/*
 * Store layer under crashes and concurrency against real SQLite files: a
 * crash test that kills a writer with SIGKILL at random points and checks
 * that no acknowledged message was lost, two processes appending at once,
 * an application backend held to the same rules, and counters past 2^63.
 */
#include "test_store_common.h"

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
