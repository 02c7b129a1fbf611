/*
 * A document attached to a store (doc.h, crdt_doc_attach_store,
 * crdt_doc_open_store, crdt_doc_checkpoint; docs/storage.md) against real
 * SQLite files in a temporary directory: a restart restores state, log,
 * buffer, evidence, counter and stamp; a full disk refuses the message and
 * changes nothing; sync serves from the store what the log evicted; and a
 * crash test kills a writer with SIGKILL at random points and checks that
 * no acknowledged message is lost and no dot is reused.
 */
#include "test_attach_common.h"

Test(attach, a_restart_restores_state_log_buffer_evidence_counter_and_stamp)
{
	test_clock ca = { 1000000, 0 }, cb = { 1000000, 0 };
	crdt_doc *a = mkdoc(1, &ca, 0);
	crdt_doc *b = mkdoc(2, &cb, 0);
	crdt_doc *c1 = mkdoc(3, &cb, 0), *c2 = mkdoc(3, &cb, 0);
	crdt_store *s = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	crdt_buf m, bm[3], x, y, snap;
	tb_init(&m);
	tb_init(&x);
	tb_init(&y);
	tb_init(&snap);
	for (unsigned i = 0; i < 5; i++) {
		ca.ms += 10;
		cr_assert_eq(put(a, i, "a", &m), 0);
	}
	/* replica 3 equivocates: two different messages under dot (3, 1) */
	cr_assert_eq(put(c1, 200, "x", &x), 0);
	cr_assert_eq(put(c2, 200, "y", &y), 0);
	cr_assert_eq(crdt_doc_receive(a, x.data, x.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(a, y.data, y.len, NULL), 0);
	cr_assert_eq(crdt_doc_checkpoint(a), 0);
	for (unsigned i = 5; i < 8; i++) {
		ca.ms += 10;
		cr_assert_eq(put(a, i, "a", &m), 0);
	}
	crdt_dot last = dot_of(&m);
	uint64_t hlc_before;
	cr_assert_eq(crdt_msg_peek(m.data, m.len, &last, &hlc_before), 0);
	/* b's 1 applied, 3 buffered (waits for 2) */
	for (int i = 0; i < 3; i++) {
		tb_init(&bm[i]);
		cb.ms += 10;
		cr_assert_eq(put(b, 100 + (unsigned)i, "b", &bm[i]), 0);
	}
	cr_assert_eq(crdt_doc_receive(a, bm[0].data, bm[0].len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(a, bm[2].data, bm[2].len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(a), 1);
	save(a, &snap);
	size_t log_n = crdt_doc_log_size(a);
	crdt_doc_free(a);
	crdt_store_close(s);

	/* Restart with a device clock far behind the earlier stamps */
	test_clock cr = { 1000, 0 };
	crdt_doc *r = mkdoc(1, &cr, 0);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	crdt_buf again;
	tb_init(&again);
	save(r, &again);
	cr_assert(bytes_eq(snap.data, snap.len, again.data, again.len),
	    "the restored document saves other bytes");
	cr_assert_eq(crdt_doc_buffered(r), 1);
	/* the log holds what it held, byte for byte: before the checkpoint
	 * too */
	const uint8_t *lp;
	size_t ll;
	cr_assert_eq(crdt_doc_log_get(r, last, &lp, &ll), 0);
	cr_assert(bytes_eq(lp, ll, m.data, m.len));
	crdt_dot bd = dot_of(&bm[0]);
	cr_assert_eq(crdt_doc_log_get(r, bd, &lp, &ll), 0);
	cr_assert(bytes_eq(lp, ll, bm[0].data, bm[0].len));
	crdt_dot first = { test_id(1), 1 };
	cr_assert_eq(crdt_doc_log_get(r, first, NULL, NULL), 0,
	    "a message the checkpoint covers left the log");
	cr_assert_eq(crdt_doc_log_size(r), log_n);
	/* the counter goes on, the stamp is above every earlier one */
	cr_assert_eq(put(r, 9, "after", &m), 0);
	crdt_dot nd = dot_of(&m);
	cr_assert_eq(nd.counter, last.counter + 1, "a dot was reused");
	uint64_t hlc;
	cr_assert_eq(crdt_msg_peek(m.data, m.len, &nd, &hlc), 0);
	cr_assert_gt(hlc, hlc_before, "stamped below an earlier write");
	/* the release of the buffered message is stored too: b's 2 arrives,
	 * 3 is released; a second restart holds both */
	cr_assert_eq(crdt_doc_receive(r, bm[1].data, bm[1].len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(r), 0);
	/* the evidence is back: both variants travel in the DATA frames, so
	 * a peer healed from the restarted replica saves the same bytes */
	crdt_doc *p = mkdoc(4, &cb, 0);
	test_heal(r, p);
	save(p, &again);
	save(r, &snap);
	cr_assert(bytes_eq(snap.data, snap.len, again.data, again.len),
	    "a healed peer differs");
	crdt_doc_free(r);
	crdt_store_close(s);
	r = mkdoc(1, &cr, 0);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &again);
	cr_assert(bytes_eq(snap.data, snap.len, again.data, again.len));
	cr_assert_eq(vc_of(r, 2), 3);
	crdt_doc_free(r);
	crdt_store_close(s);
	for (int i = 0; i < 3; i++)
		crdt_buf_fini(&bm[i]);
	crdt_buf_fini(&m);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&again);
	crdt_doc_free(b);
	crdt_doc_free(c1);
	crdt_doc_free(c2);
	crdt_doc_free(p);
	ASSERT_NO_LEAKS();
}

Test(attach, attaching_a_document_with_history_stores_what_it_holds)
{
	test_clock ca = { 1000000, 0 };
	crdt_doc *a = mkdoc(1, &ca, 3); /* the log keeps only 3 */
	crdt_buf m, snap, again;
	tb_init(&m);
	tb_init(&snap);
	tb_init(&again);
	for (unsigned i = 0; i < 10; i++) {
		ca.ms += 10;
		cr_assert_eq(put(a, i, "v", &m), 0);
	}
	crdt_store *s = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0, "again: a no-op");
	crdt_store *other = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(a, other, 0), CRDT_ESTATE);
	crdt_store_close(other);
	cr_assert_eq(crdt_doc_attach_store(a, s, 2), CRDT_EINVAL);
	ca.ms += 10;
	cr_assert_eq(put(a, 10, "v", &m), 0);
	save(a, &snap);
	crdt_doc_free(a);
	crdt_store_close(s);
	crdt_doc *r = mkdoc(1, &ca, 3);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &again);
	cr_assert(bytes_eq(snap.data, snap.len, again.data, again.len));
	cr_assert_eq(vc_of(r, 1), 11);
	/* a document with data cannot be restored into */
	cr_assert_eq(crdt_doc_open_store(r, s, 0), CRDT_ESTATE);
	crdt_doc_free(r);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&again);
	ASSERT_NO_LEAKS();
}

Test(attach, a_full_store_refuses_the_message_and_changes_nothing)
{
	test_clock ca = { 1000000, 0 }, cb = { 1000000, 0 };
	crdt_doc *a = mkdoc(1, &ca, 0);
	crdt_doc *b = mkdoc(2, &cb, 0);
	crdt_store *s = store_open(24, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	static char big[3001];
	memset(big, 'z', sizeof big - 1);
	crdt_buf m, before, after, bmsg;
	tb_init(&m);
	tb_init(&before);
	tb_init(&after);
	tb_init(&bmsg);
	int rc = 0;
	unsigned i = 0;
	for (; i < 200; i++) {
		ca.ms += 10;
		save(a, &before);
		rc = put(a, i, big, &m);
		if (rc != 0)
			break;
	}
	cr_assert_eq(rc, CRDT_EFULL, "got %s after %u", crdt_err_name(rc), i);
	cr_assert_gt(i, 2);
	cr_assert_eq(m.len, 0, "no message handed out");
	save(a, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len),
	    "a refused commit changed the document");
	cr_assert_eq(vc_of(a, 1), i);
	/* a remote message, applied or buffered, is refused alike */
	cr_assert_eq(put(b, 1, big, &bmsg), 0);
	cr_assert_eq(crdt_doc_receive(a, bmsg.data, bmsg.len, NULL),
	    CRDT_EFULL);
	crdt_buf b2;
	tb_init(&b2);
	cr_assert_eq(put(b, 2, big, &b2), 0);
	cr_assert_eq(crdt_doc_receive(a, b2.data, b2.len, NULL), CRDT_EFULL);
	cr_assert_eq(crdt_doc_buffered(a), 0);
	save(a, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	/* the store is consistent: a restart gives the same document */
	crdt_doc *r = mkdoc(1, &ca, 0);
	crdt_store *s2 = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s2, 0), 0);
	save(r, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	crdt_doc_free(r);
	crdt_store_close(s2);
	/* space freed: detach, reopen without the quota, attach, retry */
	cr_assert_eq(crdt_doc_attach_store(a, NULL, 0), 0);
	crdt_store_close(s);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	cr_assert_eq(put(a, i, big, &m), 0);
	cr_assert_eq(crdt_doc_receive(a, b2.data, b2.len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(a), 1);
	cr_assert_eq(crdt_doc_receive(a, bmsg.data, bmsg.len, NULL), 0);
	cr_assert_eq(vc_of(a, 2), 2);
	save(a, &before);
	crdt_doc_free(a);
	crdt_store_close(s);
	r = mkdoc(1, &ca, 0);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	crdt_doc_free(r);
	crdt_store_close(s);
	crdt_doc_free(b);
	crdt_buf_fini(&m);
	crdt_buf_fini(&b2);
	crdt_buf_fini(&bmsg);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	ASSERT_NO_LEAKS();
}

Test(attach, sync_serves_from_the_store_what_the_log_evicted)
{
	test_clock ca = { 1000000, 0 }, cp = { 1000000, 0 };
	crdt_doc *a = mkdoc(1, &ca, 4);
	crdt_store *s = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	crdt_buf m, x, y;
	tb_init(&m);
	tb_init(&x);
	tb_init(&y);
	for (unsigned i = 0; i < 60; i++) {
		ca.ms += 10;
		cr_assert_eq(put(a, i % 7, "v", &m), 0);
	}
	cr_assert_leq(crdt_doc_log_size(a), 4);
	/* A peer far behind gets messages, not a snapshot: its log holds
	 * every one of them afterwards. */
	crdt_doc *p = mkdoc(2, &cp, 0);
	test_heal(a, p);
	cr_assert_eq(vc_of(p, 1), 60);
	cr_assert_eq(crdt_doc_log_size(p), 60, "caught up by snapshot");
	save(a, &x);
	save(p, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
	/* After a restart too (the checkpoint covers everything) */
	cr_assert_eq(crdt_doc_checkpoint(a), 0);
	crdt_doc_free(a);
	crdt_store_close(s);
	crdt_doc *r = mkdoc(1, &ca, 4);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	cr_assert_eq(crdt_doc_log_size(r), 4, "the log is refilled");
	crdt_doc *q = mkdoc(3, &cp, 0);
	test_heal(r, q);
	cr_assert_eq(crdt_doc_log_size(q), 60);
	save(q, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
	crdt_doc_free(r);
	crdt_doc_free(p);
	crdt_doc_free(q);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	ASSERT_NO_LEAKS();
}

/* ---- crash test ---- */

#define CRASH_ITERS 120
#define B_STREAM 300
#define CHILD_STEPS 400
#define RESET_AT 150

/* An ack on the pipe: who (1 = own commit, 2 = b's message received) and
 * the dot's counter. */
static crdt_doc *
child_doc(void)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.log_max_msgs = 16; /* the log evicts; the store keeps all */
	crdt_replica_id rid = test_id(1);
	crdt_doc *d = NULL;
	uint32_t on;
	if (crdt_doc_new(&cfg, &rid, &d) != 0 ||
	    crdt_doc_register(d, "m", CRDT_OBJ_MAP, &on) != 0)
		_exit(3);
	return d;
}

static uint64_t
child_vc(const crdt_doc *d, uint8_t id)
{
	crdt_vclock *v;
	if (crdt_doc_vclock(d, &v) != 0)
		_exit(3);
	crdt_replica_id r = test_id(id);
	uint64_t c = crdt_vclock_get(v, &r);
	crdt_vclock_free(v);
	return c;
}

/* Restart from the store, then commit and receive b's stream in a random
 * mix, taking a checkpoint now and then, and write each ack to `wfd`
 * after the call returned 0. */
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
	/* Half the writers use group commit: their acks wait for a flush. */
	bool group = test_rng_below(&r, 2) != 0;
	if (crdt_doc_open_store(d, s, group ? CRDT_DOC_STORE_GROUP : 0) != 0)
		_exit(3);
	static test_ack pend[CHILD_STEPS];
	size_t npend = 0;
	crdt_buf m;
	tb_init(&m);
	for (int step = 0; step < CHILD_STEPS; step++) {
		uint64_t pick = test_rng_below(&r, 10);
		test_ack a;
		if (pick < 6) {
			char key[8], val[32];
			snprintf(key, sizeof key, "k%u",
			    (unsigned)test_rng_below(&r, 16));
			snprintf(val, sizeof val, "v%llu",
			    (unsigned long long)test_rng_next(&r));
			crdt_buf_clear(&m);
			if (crdt_doc_map_set(d, 0, key, strlen(key), val,
			    strlen(val), &m) != 0)
				_exit(4);
			crdt_dot dot;
			if (crdt_msg_peek(m.data, m.len, &dot, NULL) != 0)
				_exit(4);
			a = (test_ack){ 1, (uint32_t)dot.counter };
		} else if (pick < 9) {
			uint64_t next = child_vc(d, 2);
			if (next >= B_STREAM)
				continue;
			if (crdt_doc_receive(d, bs[next].data, bs[next].len,
			    NULL) != 0)
				_exit(5);
			a = (test_ack){ 2, (uint32_t)(next + 1) };
		} else {
			/* flushes the queue: what waited is acked below */
			if (crdt_doc_checkpoint(d) != 0)
				_exit(6);
		}
		if (pick < 9)
			pend[npend++] = a;
		if (group && pick < 9 && test_rng_below(&r, 6) != 0)
			continue; /* not flushed yet: not acknowledged */
		if (group && crdt_doc_store_flush(d) != 0)
			_exit(8);
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

/* Reopen, restore, check every ack and that no dot of ours was reused;
 * `heal`: also sync a fresh peer and require identical bytes. Returns how
 * many messages of ours the store holds. */
static size_t
crash_verify(uint32_t own_acked, uint32_t b_acked, bool do_heal)
{
	crdt_store *s = store_open(0, false);
	crdt_doc *d = child_doc();
	int rc = crdt_doc_open_store(d, s, 0);
	cr_assert_eq(rc, 0, "restart: %s", crdt_err_name(rc));
	cr_assert_geq(vc_of(d, 1), own_acked, "an acked commit was lost");
	cr_assert_geq(vc_of(d, 2), b_acked, "an acked receive was lost");
	crdt_replica_id self = test_id(1);
	uint64_t own_n = test_own_dots(s, &self);
	cr_assert_eq(vc_of(d, 1), own_n);
	if (do_heal) {
		test_clock cp = { 1000000, 0 };
		crdt_doc *p = mkdoc(2, &cp, 0);
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

Test(attach, no_acknowledged_message_is_lost_and_no_dot_reused_under_kill_9,
    .timeout = 120)
{
	/* b's stream, made before any fork */
	static crdt_buf bs[B_STREAM];
	test_clock cb = { 1000000, 0 };
	crdt_doc *b = mkdoc(2, &cb, 0);
	for (unsigned i = 0; i < B_STREAM; i++) {
		tb_init(&bs[i]);
		cb.ms += 1;
		cr_assert_eq(put(b, i % 32, "from b", &bs[i]), 0);
	}
	crdt_doc_free(b);
	test_rng r;
	uint64_t seed = test_seed(0xa77ac4);
	test_rng_init(&r, seed);
	uint32_t own = 0, bk = 0;
	size_t kills = 0, heals = 0;
	for (int it = 0; it < CRASH_ITERS; it++) {
		uint64_t cseed = test_rng_next(&r);
		/* Kill after 0..5 acks (0: during the open or the replay),
		 * then a random short delay. */
		size_t before = (size_t)test_rng_below(&r, 6);
		long delay = (long)test_rng_below(&r, 3000);
		if (test_crash_once(crash_child, bs, cseed, before, delay,
		    &own, &bk, 2 * CHILD_STEPS))
			kills++;
		bool last = it == CRASH_ITERS - 1;
		size_t n = crash_verify(own, bk, last || (it % 10) == 9);
		if (last || (it % 10) == 9)
			heals++;
		if (n >= RESET_AT) {
			test_rm_db(dbpath);
			own = bk = 0;
		}
	}
	cr_assert_geq(kills, 100, "only %zu of %d children were killed", kills,
	    CRASH_ITERS);
	cr_assert_geq(heals, 12);
	for (unsigned i = 0; i < B_STREAM; i++)
		crdt_buf_fini(&bs[i]);
}

Test(attach, a_variant_of_a_dot_the_checkpoint_covers_survives_a_restart)
{
	test_clock ca = { 1000000, 0 }, cc = { 1000000, 0 };
	crdt_doc *a = mkdoc(1, &ca, 0);
	crdt_doc *c1 = mkdoc(3, &cc, 0), *c2 = mkdoc(3, &cc, 0);
	crdt_store *s = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	crdt_buf x, y, snap, again;
	tb_init(&x);
	tb_init(&y);
	tb_init(&snap);
	tb_init(&again);
	cr_assert_eq(put(c1, 1, "x", &x), 0);
	cr_assert_eq(put(c2, 1, "y", &y), 0);
	cr_assert_eq(crdt_doc_receive(a, x.data, x.len, NULL), 0);
	cr_assert_eq(crdt_doc_checkpoint(a), 0); /* covers (3, 1) */
	cr_assert_eq(crdt_doc_receive(a, y.data, y.len, NULL), 0);
	save(a, &snap);
	crdt_doc_free(a);
	crdt_store_close(s);
	crdt_doc *r = mkdoc(1, &ca, 0);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &again);
	cr_assert(bytes_eq(snap.data, snap.len, again.data, again.len),
	    "the variant was lost");
	crdt_doc_free(r);
	crdt_store_close(s);
	crdt_doc_free(c1);
	crdt_doc_free(c2);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&again);
	ASSERT_NO_LEAKS();
}

Test(attach, a_snapshot_loaded_while_attached_survives_a_restart)
{
	test_clock ca = { 1000000, 0 }, cp = { 1000000, 0 };
	crdt_doc *a = mkdoc(1, &ca, 0), *p = mkdoc(2, &cp, 0);
	crdt_store *s = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	crdt_buf m, snap, again;
	tb_init(&m);
	tb_init(&snap);
	tb_init(&again);
	cr_assert_eq(put(a, 1, "a", &m), 0);
	for (unsigned i = 0; i < 5; i++) {
		cp.ms += 10;
		cr_assert_eq(put(p, i, "p", &m), 0);
	}
	save(p, &snap);
	cr_assert_eq(crdt_doc_load(a, snap.data, snap.len, NULL), 0);
	cr_assert_eq(vc_of(a, 2), 5);
	save(a, &snap);
	crdt_doc_free(a);
	crdt_store_close(s);
	crdt_doc *r = mkdoc(1, &ca, 0);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &again);
	cr_assert(bytes_eq(snap.data, snap.len, again.data, again.len),
	    "the snapshot's state was lost");
	crdt_doc_free(r);
	crdt_doc_free(p);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&again);
	ASSERT_NO_LEAKS();
}

Test(attach, group_commit_stores_at_the_flush_a_failed_flush_keeps_it)
{
	test_clock ca = { 1000000, 0 };
	crdt_doc *a = mkdoc(1, &ca, 0);
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	o.busy_timeout_ms = 20;
	crdt_store *s = NULL;
	cr_assert_eq(crdt_store_open_sqlite(NULL, dbpath, &o, &s), 0);
	cr_assert_eq(crdt_doc_attach_store(a, s, CRDT_DOC_STORE_GROUP), 0);
	crdt_buf m, snap, again;
	tb_init(&m);
	tb_init(&snap);
	tb_init(&again);
	for (unsigned i = 0; i < 100; i++) {
		ca.ms += 1;
		cr_assert_eq(put(a, i % 9, "g", &m), 0);
	}
	/* Nothing stored before the flush */
	crdt_doc *r = mkdoc(1, &ca, 0);
	crdt_store *s2 = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s2, 0), 0);
	cr_assert_eq(vc_of(r, 1), 0);
	crdt_doc_free(r);
	crdt_store_close(s2);
	cr_assert_eq(crdt_doc_attach_store(a, NULL, 0), CRDT_ESTATE,
	    "detached with a queue");
	cr_assert_eq(crdt_doc_store_flush(a), 0);
	cr_assert_eq(crdt_doc_store_flush(a), 0, "an empty queue");
	/* Another connection holds the write lock: EBUSY, queue kept */
	for (unsigned i = 0; i < 10; i++) {
		ca.ms += 1;
		cr_assert_eq(put(a, i, "h", &m), 0);
	}
	sqlite3 *db = NULL;
	cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
	    SQLITE_OK);
	save(a, &snap);
	cr_assert_eq(crdt_doc_store_flush(a), CRDT_EBUSY);
	save(a, &again);
	cr_assert(bytes_eq(snap.data, snap.len, again.data, again.len));
	cr_assert_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(crdt_doc_store_flush(a), 0);
	crdt_doc_free(a);
	crdt_store_close(s);
	r = mkdoc(1, &ca, 0);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	save(r, &again);
	cr_assert(bytes_eq(snap.data, snap.len, again.data, again.len));
	cr_assert_eq(vc_of(r, 1), 110);
	crdt_doc_free(r);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&again);
	ASSERT_NO_LEAKS();
}

/* ---- signed and encrypted, keyed and keyless ---- */

static const uint8_t dockey[32] = { 9, 8, 7, 6, 5 };

typedef struct snode {
	crdt_doc *d;
	crdt_identity *ident;
} snode;

/* Signed, encrypted; keyless (a relay) when `relay`; one map "m". */
static void
snode_new(snode *n, uint8_t seed, bool relay, size_t log_max)
{
	uint8_t s[32] = { 0 };
	crdt_config cfg;
	crdt_replica_id id;
	s[0] = seed;
	test_config(&cfg, NULL);
	cfg.log_max_msgs = log_max;
	cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
	crdt_identity_replica_id(n->ident, &id);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &n->d), 0);
	crdt_doc_security sec = { true, n->ident, true,
		relay ? NULL : dockey, 1, NULL, false };
	cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	cr_assert_eq(crdt_doc_register(n->d, "m", CRDT_OBJ_MAP, NULL), 0);
}

static void
snode_free(snode *n)
{
	crdt_doc_free(n->d);
	crdt_identity_free(n->ident);
}

Test(attach, signed_encrypted_writer_and_keyless_relay_restart_and_serve)
{
	snode w, relay, p;
	snode_new(&w, 1, false, 0);
	snode_new(&relay, 2, true, 4); /* its log keeps 4 */
	crdt_store *s = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(relay.d, s, 0), 0);
	crdt_buf m, x, y;
	tb_init(&m);
	tb_init(&x);
	tb_init(&y);
	for (unsigned i = 0; i < 30; i++) {
		cr_assert_eq(put(w.d, i % 5, "sealed", &m), 0);
		cr_assert_eq(crdt_doc_receive(relay.d, m.data, m.len, NULL),
		    0);
	}
	cr_assert_leq(crdt_doc_log_size(relay.d), 4);
	/* the relay restarts (it holds no state to checkpoint: everything
	 * comes back from the log) */
	cr_assert_eq(crdt_doc_checkpoint(relay.d), CRDT_ESTATE);
	snode_free(&relay);
	crdt_store_close(s);
	snode_new(&relay, 2, true, 4);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(relay.d, s, 0), 0);
	/* and serves a keyed peer that has nothing, with messages */
	snode_new(&p, 3, false, 0);
	test_heal(relay.d, p.d);
	cr_assert_eq(crdt_doc_log_size(p.d), 30);
	save(w.d, &x);
	save(p.d, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
	snode_free(&relay);
	/* a relay restarting from a store a keyed replica checkpointed
	 * ignores the checkpoint (it cannot hold state) and still gets
	 * every message */
	snode kw;
	snode_new(&kw, 5, false, 0);
	cr_assert_eq(crdt_doc_open_store(kw.d, s, 0), 0);
	cr_assert_eq(crdt_doc_checkpoint(kw.d), 0);
	cr_assert_eq(crdt_doc_attach_store(kw.d, NULL, 0), 0);
	snode_free(&kw);
	snode_new(&relay, 2, true, 0);
	cr_assert_eq(crdt_doc_open_store(relay.d, s, 0), 0);
	cr_assert_eq(crdt_doc_log_size(relay.d), 30);
	snode_free(&relay);
	crdt_store_close(s);
	test_rm_db(dbpath);

	/* the writer restarts from its own store: its signed, sealed
	 * messages are verified and opened again, and its counter goes on */
	s = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(w.d, s, 0), 0);
	cr_assert_eq(put(w.d, 9, "more", &m), 0);
	cr_assert_eq(crdt_doc_receive(p.d, m.data, m.len, NULL), 0);
	save(w.d, &x);
	snode_free(&w);
	crdt_store_close(s);
	snode_new(&w, 1, false, 0);
	s = store_open(0, true);
	cr_assert_eq(crdt_doc_open_store(w.d, s, 0), 0);
	save(w.d, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
	cr_assert_eq(put(w.d, 10, "after", &m), 0);
	cr_assert_eq(dot_of(&m).counter, 32);
	cr_assert_eq(crdt_doc_receive(p.d, m.data, m.len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(p.d), 0,
	    "a peer applies the restarted writer's next message");
	save(w.d, &x);
	save(p.d, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
	snode_free(&w);
	snode_free(&p);
	crdt_store_close(s);
	crdt_buf_fini(&m);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	ASSERT_NO_LEAKS();
}
