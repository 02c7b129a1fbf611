/*
 * Document runtime: transactions, causal buffering, snapshots that merge,
 * events, the message log, sync, bounds, rejection without change, and
 * allocation failure at every step. Every comparison is on save() bytes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

typedef struct msgs {
	crdt_buf all;
	size_t off[512];
	size_t n;
} msgs;

static test_clock clk = { UINT64_C(1700000000000), 0 };

static crdt_doc *
mk(uint8_t idn, const crdt_config *cfg)
{
	crdt_config c;
	crdt_doc *d;
	crdt_replica_id id = test_id(idn);
	if (cfg == NULL) {
		test_config(&c, &clk);
		cfg = &c;
	}
	cr_assert_eq(crdt_doc_new(cfg, &id, &d), 0);
	cr_assert_eq(crdt_doc_register(d, "set", CRDT_OBJ_GSET, NULL), 0);
	cr_assert_eq(crdt_doc_register(d, "reg", CRDT_OBJ_LWW, NULL), 0);
	cr_assert_eq(crdt_doc_register(d, "map", CRDT_OBJ_MAP, NULL), 0);
	return d;
}

static void
snap(const crdt_doc *d, crdt_buf *out)
{
	tb_init(out);
	cr_assert_eq(crdt_doc_save(d, out), 0);
}

static void
same(const crdt_doc *a, const crdt_doc *b, const char *what)
{
	crdt_buf x, y;
	snap(a, &x);
	snap(b, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len), "%s", what);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

/* n edits on `d` of every kind, each message captured in `m`. */
static void
edits(crdt_doc *d, msgs *m, size_t n, unsigned salt)
{
	for (size_t i = 0; i < n; i++) {
		char k[16], v[16];
		int kn = snprintf(k, sizeof k, "k%zu", (i * 7 + salt) % 5);
		int vn = snprintf(v, sizeof v, "v%u-%zu", salt, i);
		m->off[m->n++] = m->all.len;
		clk.ms += 3;
		switch (i % 4) {
		case 0:
			cr_assert_eq(crdt_doc_gset_add(d, 0, v, (size_t)vn,
					 &m->all), 0);
			break;
		case 1:
			cr_assert_eq(crdt_doc_lww_set(d, 1, v, (size_t)vn,
					 &m->all), 0);
			break;
		case 2:
			cr_assert_eq(crdt_doc_map_set(d, 2, k, (size_t)kn, v,
					 (size_t)vn, &m->all), 0);
			break;
		default:
			cr_assert_eq(crdt_doc_begin(d), 0);
			cr_assert_eq(crdt_doc_map_remove(d, 2, k, (size_t)kn,
					 NULL), 0);
			cr_assert_eq(crdt_doc_lww_clear(d, 1, NULL), 0);
			cr_assert_eq(crdt_doc_commit(d, &m->all), 0);
		}
	}
	m->off[m->n] = m->all.len;
}

static void
give(crdt_doc *d, const msgs *m, size_t i)
{
	int rc = crdt_doc_receive(d, m->all.data + m->off[i],
	    m->off[i + 1] - m->off[i], NULL);
	cr_assert_eq(rc, 0, "message %zu: %s", i, crdt_err_name(rc));
}

Test(document, transactions_and_their_state_errors)
{
	crdt_doc *a = mk(1, NULL);
	crdt_buf m;
	crdt_dot dot;
	tb_init(&m);
	cr_assert_eq(crdt_doc_commit(a, &m), CRDT_ESTATE);
	cr_assert_eq(crdt_doc_begin(a), 0);
	cr_assert_eq(crdt_doc_begin(a), CRDT_ESTATE);
	cr_assert_eq(crdt_doc_gset_add(a, 0, "x", 1, &m), CRDT_ESTATE,
	    "msg_out inside a transaction");
	cr_assert_eq(crdt_doc_gset_add(a, 0, "x", 1, NULL), 0);
	cr_assert_eq(crdt_doc_lww_set(a, 1, "a", 1, NULL), 0);
	cr_assert_eq(crdt_doc_lww_set(a, 1, "b", 1, NULL), 0);
	cr_assert_eq(crdt_doc_receive(a, "x", 1, NULL), CRDT_ESTATE);
	crdt_doc_abort(a);
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(a, 0, &g), 0);
	cr_assert(!crdt_gset_contains(g, "x", 1), "abort discards");
	cr_assert_eq(crdt_doc_gset_add(a, 0, "x", 1, NULL), CRDT_ESTATE,
	    "no transaction and no msg_out");
	cr_assert_eq(crdt_doc_gset_add(a, 1, "x", 1, &m), CRDT_ESCHEMA);
	cr_assert_eq(crdt_doc_gset_add(a, 9, "x", 1, &m), CRDT_ESCHEMA);
	/* One transaction, one message, counter 1 even after the abort; a
	 * later write to the same register in it wins. */
	cr_assert_eq(crdt_doc_begin(a), 0);
	cr_assert_eq(crdt_doc_lww_set(a, 1, "first", 5, NULL), 0);
	cr_assert_eq(crdt_doc_lww_set(a, 1, "second", 6, NULL), 0);
	cr_assert_eq(crdt_doc_gset_add(a, 0, "y", 1, NULL), 0);
	cr_assert_eq(crdt_doc_commit(a, &m), 0);
	cr_assert_eq(crdt_msg_peek(m.data, m.len, &dot, NULL), 0);
	cr_assert_eq(dot.counter, 1);
	crdt_doc *b = mk(2, NULL);
	cr_assert_eq(crdt_doc_receive(b, m.data, m.len, NULL), 0);
	const crdt_lww *r;
	const uint8_t *v;
	size_t vl;
	cr_assert_eq(crdt_doc_lww(b, 1, &r), 0);
	cr_assert_eq(crdt_lww_get(r, &v, &vl), 0);
	cr_assert(bytes_eq(v, vl, "second", 6));
	same(a, b, "one transaction applied remotely");
	cr_assert_eq(crdt_doc_register(a, "late", CRDT_OBJ_GSET, NULL),
	    CRDT_ESTATE);
	crdt_buf_fini(&m);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

Test(document, out_of_order_messages_wait_and_missing_says_for_what)
{
	msgs m = { 0 };
	crdt_doc *a = mk(1, NULL), *b = mk(2, NULL);
	tb_init(&m.all);
	edits(a, &m, 3, 1);
	give(b, &m, 2);
	give(b, &m, 2); /* a buffered duplicate is ignored */
	cr_assert_eq(crdt_doc_buffered(b), 1);
	crdt_vclock *miss;
	cr_assert_eq(crdt_doc_missing(b, &miss), 0);
	crdt_replica_id ia = test_id(1);
	cr_assert_eq(crdt_vclock_get(miss, &ia), 2, "waits for (A, 2)");
	crdt_vclock_free(miss);
	give(b, &m, 1);
	cr_assert_eq(crdt_doc_buffered(b), 2);
	give(b, &m, 0);
	cr_assert_eq(crdt_doc_buffered(b), 0);
	same(a, b, "released in order");
	give(b, &m, 1); /* applied duplicate: ignored */
	same(a, b, "duplicates change nothing");
	crdt_buf_fini(&m.all);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

Test(document, a_full_buffer_refuses_and_keeps_what_it_has)
{
	msgs m = { 0 };
	crdt_config cfg;
	test_config(&cfg, &clk);
	cfg.max_buffered_msgs = 2;
	crdt_doc *a = mk(1, NULL), *b = mk(2, &cfg);
	tb_init(&m.all);
	edits(a, &m, 5, 2);
	give(b, &m, 4);
	give(b, &m, 3);
	int rc = crdt_doc_receive(b, m.all.data + m.off[2],
	    m.off[3] - m.off[2], NULL);
	cr_assert_eq(rc, CRDT_EBUFFULL);
	cr_assert_eq(crdt_doc_buffered(b), 2);
	give(b, &m, 0);
	give(b, &m, 1);
	give(b, &m, 2); /* now in order: applies, and releases 3 and 4 */
	cr_assert_eq(crdt_doc_buffered(b), 0);
	same(a, b, "nothing accepted was lost");
	crdt_buf_fini(&m.all);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

/* save -> load on a fresh replica, overlapping loads, load then the rest,
 * receive then load: all equal applying every message in order. */
Test(document, snapshots_merge_every_way_to_the_same_bytes)
{
	msgs m = { 0 };
	crdt_doc *a = mk(1, NULL), *b = mk(2, NULL);
	tb_init(&m.all);
	edits(a, &m, 20, 3);
	edits(b, &m, 20, 4); /* b's own history, concurrent with a's */
	crdt_doc *ref = mk(9, NULL);
	for (size_t i = 0; i < m.n; i++)
		give(ref, &m, i);

	crdt_buf sa, sb, half;
	snap(a, &sa);
	snap(b, &sb);
	crdt_doc *h = mk(8, NULL);
	for (size_t i = 0; i < 10; i++)
		give(h, &m, i);
	for (size_t i = 20; i < 30; i++)
		give(h, &m, i);
	snap(h, &half);

	crdt_doc *x = mk(3, NULL); /* two overlapping snapshots, twice */
	cr_assert_eq(crdt_doc_load(x, sa.data, sa.len, NULL), 0);
	cr_assert_eq(crdt_doc_load(x, half.data, half.len, NULL), 0);
	cr_assert_eq(crdt_doc_load(x, sb.data, sb.len, NULL), 0);
	cr_assert_eq(crdt_doc_load(x, sa.data, sa.len, NULL), 0);
	same(x, ref, "overlapping loads");
	crdt_doc *y = mk(4, NULL); /* load, then receive the rest */
	cr_assert_eq(crdt_doc_load(y, half.data, half.len, NULL), 0);
	for (size_t i = 0; i < m.n; i++)
		give(y, &m, i);
	same(y, ref, "load then receive");
	crdt_doc *z = mk(5, NULL); /* receive some, then load */
	for (size_t i = 15; i < 35; i++)
		give(z, &m, i);
	cr_assert_eq(crdt_doc_load(z, sa.data, sa.len, NULL), 0);
	cr_assert_eq(crdt_doc_load(z, sb.data, sb.len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(z), 0, "the loads released the buffer");
	same(z, ref, "receive then load");

	crdt_buf *bufs[] = { &sa, &sb, &half, &m.all };
	for (size_t i = 0; i < 4; i++)
		crdt_buf_fini(bufs[i]);
	crdt_doc *all[] = { a, b, ref, h, x, y, z };
	for (size_t i = 0; i < 7; i++)
		crdt_doc_free(all[i]);
}

Test(document, a_restarted_replica_resumes_its_counter)
{
	msgs m = { 0 };
	crdt_doc *a = mk(1, NULL);
	crdt_buf s, next;
	crdt_dot dot;
	tb_init(&m.all);
	tb_init(&next);
	edits(a, &m, 7, 5);
	snap(a, &s);
	crdt_doc_free(a);
	a = mk(1, NULL); /* same ID, fresh process */
	cr_assert_eq(crdt_doc_load(a, s.data, s.len, NULL), 0);
	cr_assert_eq(crdt_doc_gset_add(a, 0, "after", 5, &next), 0);
	cr_assert_eq(crdt_msg_peek(next.data, next.len, &dot, NULL), 0);
	cr_assert_eq(dot.counter, 8, "never reuses a dot");
	crdt_buf_fini(&s);
	crdt_buf_fini(&next);
	crdt_buf_fini(&m.all);
	crdt_doc_free(a);
}

typedef struct seen {
	int local, remote, snapshot, changes;
	void *last_caller;
} seen;

static void
ev_update(void *ud, crdt_update_source src, const uint8_t *b, size_t n,
    void *caller)
{
	seen *s = ud;
	(void)b;
	(void)n;
	s->local += src == CRDT_UPDATE_LOCAL;
	s->remote += src == CRDT_UPDATE_REMOTE;
	s->snapshot += src == CRDT_UPDATE_SNAPSHOT;
	s->last_caller = caller;
}

static void
ev_change(void *ud, const crdt_change *c)
{
	seen *s = ud;
	(void)c;
	s->changes++;
}

Test(document, events_carry_the_source_and_the_caller)
{
	msgs m = { 0 };
	seen sb = { 0 };
	crdt_doc *a = mk(1, NULL), *b = mk(2, NULL);
	crdt_doc_listener l = { .on_update = ev_update,
		.on_change = ev_change, .ud = &sb };
	int tag1, tag2;
	tb_init(&m.all);
	crdt_doc_set_listener(b, &l);
	edits(a, &m, 3, 6);
	cr_assert_eq(crdt_doc_receive(b, m.all.data + m.off[1],
			 m.off[2] - m.off[1], &tag2), 0);
	cr_assert_eq(sb.remote, 0, "buffered: nothing applied yet");
	cr_assert_eq(crdt_doc_receive(b, m.all.data, m.off[1], &tag1), 0);
	cr_assert_eq(sb.remote, 2);
	cr_assert_eq(sb.last_caller, &tag2,
	    "a buffered message reports the caller of its own receive");
	cr_assert_gt(sb.changes, 0);
	cr_assert_eq(crdt_doc_receive(b, m.all.data, m.off[1], &tag1), 0);
	cr_assert_eq(sb.remote, 2, "a duplicate is not an update");
	crdt_buf s;
	snap(a, &s);
	cr_assert_eq(crdt_doc_load(b, s.data, s.len, &tag1), 0);
	cr_assert_eq(sb.snapshot, 1);
	cr_assert_eq(crdt_doc_load(b, s.data, s.len, &tag1), 0);
	cr_assert_eq(sb.snapshot, 1, "a redundant load is not an update");
	crdt_buf one;
	tb_init(&one);
	cr_assert_eq(crdt_doc_gset_add(b, 0, "mine", 4, &one), 0);
	cr_assert_eq(sb.local, 1);
	cr_assert_null(sb.last_caller);
	crdt_buf_fini(&one);
	crdt_buf_fini(&s);
	crdt_buf_fini(&m.all);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

static void
sync_rt(crdt_doc *x, crdt_doc *y, size_t *bytes)
{
	crdt_buf f[4];
	for (int i = 0; i < 4; i++)
		tb_init(&f[i]);
	cr_assert_eq(crdt_doc_sync_start(x, &f[0]), 0);
	cr_assert_eq(crdt_doc_sync_handle(y, f[0].data, f[0].len, NULL,
			 &f[1]), 0);
	cr_assert_eq(crdt_doc_sync_handle(x, f[1].data, f[1].len, NULL,
			 &f[2]), 0);
	if (f[2].len)
		cr_assert_eq(crdt_doc_sync_handle(y, f[2].data, f[2].len, NULL,
				 &f[3]), 0);
	cr_assert_eq(f[3].len, 0, "three frames, then quiet");
	if (bytes)
		*bytes = f[1].len;
	for (int i = 0; i < 4; i++)
		crdt_buf_fini(&f[i]);
}

Test(document, sync_converges_and_falls_back_to_a_snapshot_after_eviction)
{
	msgs m = { 0 };
	crdt_config cfg;
	test_config(&cfg, &clk);
	cfg.log_max_msgs = 5;
	crdt_doc *a = mk(1, &cfg), *b = mk(2, NULL);
	tb_init(&m.all);
	edits(a, &m, 30, 7);
	cr_assert_leq(crdt_doc_log_size(a), 5);
	edits(b, &m, 4, 8);
	size_t frame;
	sync_rt(b, a, &frame);
	same(a, b, "after one round");
	cr_assert_gt(frame, 200, "a snapshot travelled");
	/* Frames are safe to repeat. */
	sync_rt(a, b, NULL);
	sync_rt(b, a, NULL);
	same(a, b, "repeated rounds change nothing");
	crdt_buf_fini(&m.all);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

/* Thousands of mutated messages, snapshots and frames: any refusal leaves
 * the document byte-identical, buffered count included. */
Test(document, every_refused_input_leaves_the_document_unchanged)
{
	uint64_t seed = test_seed(0xdead);
	test_rng r;
	msgs m = { 0 };
	crdt_buf s, f, cand, before, after;
	test_rng_init(&r, seed);
	crdt_doc *a = mk(1, NULL), *b = mk(2, NULL);
	tb_init(&m.all);
	edits(a, &m, 12, 9);
	snap(a, &s);
	tb_init(&f);
	cr_assert_eq(crdt_doc_sync_start(a, &f), 0);
	for (size_t i = 0; i < 6; i++)
		give(b, &m, i);
	tb_init(&cand);
	for (int it = 0; it < 6000; it++) {
		const uint8_t *src;
		size_t len;
		int which = (int)test_rng_below(&r, 3);
		if (which == 0) {
			size_t k = test_rng_below(&r, m.n);
			src = m.all.data + m.off[k];
			len = m.off[k + 1] - m.off[k];
		} else if (which == 1) {
			src = s.data;
			len = s.len;
		} else {
			src = f.data;
			len = f.len;
		}
		crdt_buf_clear(&cand);
		cr_assert_eq(crdt_buf_append(&cand, src, len), 0);
		unsigned flips = 1 + (unsigned)test_rng_below(&r, 3);
		for (unsigned j = 0; j < flips; j++) {
			switch (test_rng_below(&r, 3)) {
			case 0:
				cand.data[test_rng_below(&r, cand.len)] ^=
				    (uint8_t)(1u << test_rng_below(&r, 8));
				break;
			case 1:
				cand.len = test_rng_below(&r, cand.len) + 1;
				break;
			default:
				cand.data[test_rng_below(&r, cand.len)] =
				    (uint8_t)test_rng_next(&r);
			}
		}
		snap(b, &before);
		size_t nb = crdt_doc_buffered(b);
		int rc;
		crdt_buf reply;
		tb_init(&reply);
		if (which == 0)
			rc = crdt_doc_receive(b, cand.data, cand.len, NULL);
		else if (which == 1)
			rc = crdt_doc_load(b, cand.data, cand.len, NULL);
		else
			rc = crdt_doc_sync_handle(b, cand.data, cand.len, NULL,
			    &reply);
		crdt_buf_fini(&reply);
		if (rc != 0) {
			snap(b, &after);
			cr_assert(bytes_eq(before.data, before.len, after.data,
				      after.len),
			    "seed %llu iteration %d: refused input (%s) "
			    "changed the document",
			    (unsigned long long)seed, it, crdt_err_name(rc));
			cr_assert_eq(crdt_doc_buffered(b), nb);
			crdt_buf_fini(&after);
		}
		crdt_buf_fini(&before);
	}
	crdt_buf_fini(&cand);
	crdt_buf_fini(&s);
	crdt_buf_fini(&f);
	crdt_buf_fini(&m.all);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

Test(document, a_bad_op_anywhere_rejects_the_whole_transaction)
{
	crdt_doc *a = mk(1, NULL), *b = mk(2, NULL);
	crdt_buf good, bad, before, after;
	tb_init(&good);
	cr_assert_eq(crdt_doc_begin(a), 0);
	cr_assert_eq(crdt_doc_gset_add(a, 0, "first", 5, NULL), 0);
	cr_assert_eq(crdt_doc_map_set(a, 2, "k", 1, "v", 1, NULL), 0);
	cr_assert_eq(crdt_doc_commit(a, &good), 0);
	/* Point the second op at object 7 (the payload is the bin before the
	 * final nil; its second op starts [2, ...] = 93 02). */
	tb_init(&bad);
	cr_assert_eq(crdt_buf_append(&bad, good.data, good.len), 0);
	bool patched = false;
	for (size_t i = bad.len - 1; i > 0 && !patched; i--)
		if (bad.data[i - 1] == 0x93 && bad.data[i] == 0x02) {
			bad.data[i] = 0x07;
			patched = true;
		}
	cr_assert(patched);
	snap(b, &before);
	cr_assert_eq(crdt_doc_receive(b, bad.data, bad.len, NULL),
	    CRDT_ESCHEMA);
	snap(b, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len),
	    "the first op did not apply either");
	cr_assert_eq(crdt_doc_receive(b, good.data, good.len, NULL), 0);
	same(a, b, "the genuine message still applies");
	crdt_buf *bufs[] = { &good, &bad, &before, &after };
	for (size_t i = 0; i < 4; i++)
		crdt_buf_fini(bufs[i]);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

/* Fail allocation N for N = 0, 1, 2, ... across commit, in-order and
 * out-of-order receive, load, save and a sync round: each failure is
 * CRDT_ENOMEM, changes nothing, and nothing leaks. */
Test(document, every_allocation_failure_is_clean)
{
	msgs m = { 0 };
	crdt_doc *a = mk(1, NULL), *src = mk(3, NULL);
	tb_init(&m.all);
	edits(src, &m, 6, 10);
	crdt_buf s;
	snap(src, &s);
	for (int step = 0; step < 5; step++) {
		for (long n = 0;; n++) {
			crdt_buf before, after, out, reply;
			snap(a, &before);
			tb_init(&out);
			tb_init(&reply);
			test_alloc_fail_at(n);
			int rc;
			switch (step) {
			case 0:
				rc = crdt_doc_map_set(a, 2, "key", 3, "val", 3,
				    &out);
				break;
			case 1:
				rc = crdt_doc_receive(a, m.all.data + m.off[3],
				    m.off[4] - m.off[3], NULL);
				break;
			case 2:
				rc = crdt_doc_receive(a, m.all.data, m.off[1],
				    NULL);
				break;
			case 3:
				rc = crdt_doc_load(a, s.data, s.len, NULL);
				break;
			default:
				rc = crdt_doc_sync_start(a, &reply);
				break;
			}
			bool fired = test_alloc_fired();
			test_alloc_disarm();
			if (rc == 0) {
				crdt_buf_fini(&before);
				crdt_buf_fini(&out);
				crdt_buf_fini(&reply);
				if (!fired)
					break;
				continue;
			}
			cr_assert_eq(rc, CRDT_ENOMEM, "step %d n %ld: %s", step,
			    n, crdt_err_name(rc));
			snap(a, &after);
			cr_assert(bytes_eq(before.data, before.len, after.data,
				      after.len),
			    "step %d n %ld changed the document", step, n);
			crdt_buf_fini(&before);
			crdt_buf_fini(&after);
			crdt_buf_fini(&out);
			crdt_buf_fini(&reply);
			cr_assert_lt(n, 100000);
		}
	}
	crdt_buf_fini(&s);
	crdt_buf_fini(&m.all);
	crdt_doc_free(a);
	crdt_doc_free(src);
	ASSERT_NO_LEAKS();
}
