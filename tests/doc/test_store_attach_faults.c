/*
 * A document attached to a store, on every path against a failing store:
 * an application backend that fails on demand gives CRDT_EIO and changes
 * nothing on any path, allocation failures change nothing, a frame with
 * many variants takes one checkpoint, and frames served from the store
 * stay within the frame limit.
 */
#include "test_attach_common.h"

/* ---- every path against a failing store ---- */

/* An in-memory application backend (crdt_store_new) whose appends fail
 * with CRDT_EIO while `fail` is set: what a device error does to the
 * SQLite store, on every path of the document. */
#define MEM_MAX 256

typedef struct memstore {
	crdt_dot dot[MEM_MAX];
	uint8_t dg[MEM_MAX][CRDT_STORE_DIGEST_BYTES];
	crdt_buf m[MEM_MAX];
	size_t n;
	crdt_buf snap, clock;
	bool has_ck, fail_ck; /* fail_ck: checkpoints fail */
	size_t appends, fail_at; /* fail from append number fail_at on */
	size_t puts; /* checkpoints put */
} memstore;

static int
mem_append(void *impl, const crdt_store_rec *recs, size_t n, size_t *added)
{
	memstore *ms = impl;
	if (ms->fail_at != 0 && ++ms->appends >= ms->fail_at)
		return CRDT_EIO;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		bool dup = false;
		for (size_t j = 0; j < ms->n && !dup; j++)
			dup = crdt_dot_cmp(ms->dot[j], recs[i].dot) == 0 &&
			    memcmp(ms->dg[j], recs[i].digest,
				CRDT_STORE_DIGEST_BYTES) == 0;
		if (dup)
			continue;
		cr_assert_lt(ms->n, MEM_MAX);
		ms->dot[ms->n] = recs[i].dot;
		memcpy(ms->dg[ms->n], recs[i].digest, CRDT_STORE_DIGEST_BYTES);
		tb_init(&ms->m[ms->n]);
		cr_assert_eq(crdt_buf_append(&ms->m[ms->n], recs[i].bytes,
				 recs[i].len), 0);
		ms->n++;
		k++;
	}
	*added = k;
	return 0;
}

static int
mem_put_ck(void *impl, const uint8_t *snap, size_t sl, const uint8_t *clock,
    size_t cl)
{
	memstore *ms = impl;
	if (ms->fail_ck)
		return CRDT_EIO;
	ms->puts++;
	crdt_buf_clear(&ms->snap);
	crdt_buf_clear(&ms->clock);
	cr_assert_eq(crdt_buf_append(&ms->snap, snap, sl), 0);
	cr_assert_eq(crdt_buf_append(&ms->clock, clock, cl), 0);
	ms->has_ck = true;
	return 0;
}

static int
mem_get_ck(void *impl, crdt_buf *snap, crdt_buf *clock)
{
	memstore *ms = impl;
	if (!ms->has_ck)
		return CRDT_ENOTFOUND;
	cr_assert_eq(crdt_buf_append(snap, ms->snap.data, ms->snap.len), 0);
	cr_assert_eq(crdt_buf_append(clock, ms->clock.data, ms->clock.len),
	    0);
	return 0;
}

static int
mem_since(void *impl, const crdt_vclock *v, uint64_t *cursor, size_t budget,
    crdt_store_msg_fn fn, void *ud, bool *more)
{
	memstore *ms = impl;
	size_t used = 0, handed = 0, i = (size_t)*cursor;
	bool m = false;
	for (; i < ms->n; i++) {
		if (crdt_vclock_covers(v, ms->dot[i]))
			continue;
		if (handed > 0 && (used >= budget ||
		    ms->m[i].len > budget - used)) {
			m = true;
			break;
		}
		int rc = fn(ud, ms->dot[i], ms->m[i].data, ms->m[i].len);
		if (rc < 0)
			return rc;
		used += ms->m[i].len;
		handed++;
	}
	*cursor = i;
	*more = m;
	return 0;
}

static void
mem_close(void *impl)
{
	memstore *ms = impl;
	for (size_t i = 0; i < ms->n; i++)
		crdt_buf_fini(&ms->m[i]);
	crdt_buf_fini(&ms->snap);
	crdt_buf_fini(&ms->clock);
}

static const crdt_store_ops mem_ops = { mem_append, mem_put_ck, mem_get_ck,
	mem_since, mem_close, NULL, NULL, NULL };

/* The store holds exactly the document: a restart from it saves the same
 * bytes. */
static void
restart_equals(crdt_store *s, const crdt_doc *d, test_clock *clk)
{
	crdt_doc *r = mkdoc(1, clk, 0);
	cr_assert_eq(crdt_doc_open_store(r, s, 0), 0);
	crdt_buf x, y;
	tb_init(&x);
	tb_init(&y);
	save(d, &x);
	save(r, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len),
	    "the store and the document differ");
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	crdt_doc_free(r);
}

/* Run the workload with the store failing from append number `k` until
 * a call fails, and not after (the retry succeeds): commits, received
 * messages applied and buffered, a sync frame's messages, a checkpoint
 * (k past the appends). After every step the store restarts
 * into the document's exact bytes; a failed step returns CRDT_EIO and,
 * but for a sync frame (whose messages before the failure stay, each
 * stored), changes nothing. Returns the steps that failed, a bit each. */
static unsigned
fault_run(size_t k)
{
	test_clock ca = { 1000000, 0 }, cb = { 1000000, 0 };
	static memstore ms;
	memset(&ms, 0, sizeof ms);
	tb_init(&ms.snap);
	tb_init(&ms.clock);
	crdt_store *s = NULL;
	cr_assert_eq(crdt_store_new(NULL, &mem_ops, &ms, &s), 0);
	crdt_doc *a = mkdoc(1, &ca, 0), *b = mkdoc(2, &cb, 0);
	crdt_doc *c = mkdoc(3, &cb, 0);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	crdt_buf m, bm[4], before, after, f, reply;
	tb_init(&m);
	tb_init(&before);
	tb_init(&after);
	tb_init(&f);
	tb_init(&reply);
	for (int i = 0; i < 4; i++) {
		tb_init(&bm[i]);
		cb.ms += 1;
		cr_assert_eq(put(b, (unsigned)i, "b", &bm[i]), 0);
	}
	for (unsigned i = 0; i < 5; i++) {
		cb.ms += 1;
		cr_assert_eq(put(c, i, "c", &m), 0);
	}
	unsigned hit = 0;
	/* k past the 12 appends: the checkpoint fails instead */
	ms.fail_at = k <= 12 ? k : 0;
	ms.fail_ck = k > 12;
	for (int step = 0; step < 9; step++) {
		save(a, &before);
		int rc;
		bool frame = false;
		switch (step) {
		case 0: case 1: case 5:
			ca.ms += 1;
			rc = put(a, (unsigned)step, "a", &m);
			break;
		case 2: /* b's 2: buffered */
			rc = crdt_doc_receive(a, bm[1].data, bm[1].len, NULL);
			break;
		case 3: /* b's 1: applied, releases 2 */
			rc = crdt_doc_receive(a, bm[0].data, bm[0].len, NULL);
			break;
		case 4: /* b's 4: buffered */
			rc = crdt_doc_receive(a, bm[3].data, bm[3].len, NULL);
			break;
		case 6: /* c's five messages in one DATA frame */
			frame = true;
			crdt_buf_clear(&f);
			crdt_buf_clear(&reply);
			cr_assert_eq(crdt_doc_sync_start(a, &f), 0);
			cr_assert_eq(crdt_doc_sync_handle(c, f.data, f.len,
					 NULL, &reply), 0);
			crdt_buf_clear(&f);
			rc = crdt_doc_sync_handle(a, reply.data, reply.len,
			    NULL, &f);
			break;
		case 7:
			rc = crdt_doc_checkpoint(a);
			break;
		default: /* b's 3: applied, releases 4 */
			rc = crdt_doc_receive(a, bm[2].data, bm[2].len, NULL);
			break;
		}
		if (rc != 0) {
			hit |= 1u << step;
			ms.fail_at = 0; /* the device is back */
			ms.fail_ck = false;
			cr_assert_eq(rc, CRDT_EIO, "step %d: %s", step,
			    crdt_err_name(rc));
			save(a, &after);
			if (!frame)
				cr_assert(bytes_eq(before.data, before.len,
					      after.data, after.len),
				    "step %d failed and changed the document",
				    step);
			restart_equals(s, a, &ca);
			step--; /* retry it */
			continue;
		} else {
			cr_assert_eq(rc, 0, "step %d: %s", step,
			    crdt_err_name(rc));
		}
		restart_equals(s, a, &ca);
	}
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_doc_free(c);
	crdt_store_close(s);
	for (int i = 0; i < 4; i++)
		crdt_buf_fini(&bm[i]);
	crdt_buf_fini(&m);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_buf_fini(&f);
	crdt_buf_fini(&reply);
	return hit;
}

Test(attach, a_store_error_on_any_path_gives_eio_and_changes_nothing)
{
	size_t hits = 0;
	unsigned steps = 0;
	for (size_t k = 1; k <= 13; k++) {
		unsigned h = fault_run(k);
		hits += h != 0;
		steps |= h;
	}
	cr_assert_eq(hits, 13); /* a stored message each (3 + 4 + 5), and the
				 * checkpoint */
	/* every path reported the failure: commits, buffered, applied, the
	 * sync frame (not skipped as a message refused for its content), the
	 * checkpoint */
	cr_assert_eq(steps, 0x1ffu, "steps that failed: %#x", steps);
	cr_assert_eq(fault_run(0), 0, "no failure without a fault");
	ASSERT_NO_LEAKS();
}

Test(attach, a_sync_frame_with_many_variants_takes_one_checkpoint)
{
	test_clock ca = { 1000000, 0 }, cc = { 1000000, 0 };
	static memstore ms;
	memset(&ms, 0, sizeof ms);
	tb_init(&ms.snap);
	tb_init(&ms.clock);
	crdt_store *s = NULL;
	cr_assert_eq(crdt_store_new(NULL, &mem_ops, &ms, &s), 0);
	crdt_doc *a = mkdoc(1, &ca, 0), *p = mkdoc(2, &cc, 0);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	crdt_buf x, y, f, reply;
	tb_init(&x);
	tb_init(&y);
	tb_init(&f);
	tb_init(&reply);
	/* replicas 3, 4, 5 each equivocate on their first dot: a holds one
	 * half, p both */
	for (uint8_t r = 3; r <= 5; r++) {
		crdt_doc *h1 = mkdoc(r, &cc, 0), *h2 = mkdoc(r, &cc, 0);
		cr_assert_eq(put(h1, 1, "x", &x), 0);
		cr_assert_eq(put(h2, 1, "y", &y), 0);
		cr_assert_eq(crdt_doc_receive(a, x.data, x.len, NULL), 0);
		cr_assert_eq(crdt_doc_receive(p, x.data, x.len, NULL), 0);
		cr_assert_eq(crdt_doc_receive(p, y.data, y.len, NULL), 0);
		crdt_doc_free(h1);
		crdt_doc_free(h2);
	}
	size_t puts0 = ms.puts;
	cr_assert_eq(crdt_doc_sync_start(a, &f), 0);
	cr_assert_eq(crdt_doc_sync_handle(p, f.data, f.len, NULL, &reply), 0);
	crdt_buf_clear(&f);
	cr_assert_eq(crdt_doc_sync_handle(a, reply.data, reply.len, NULL, &f),
	    0);
	cr_assert_eq(ms.puts, puts0 + 1, "%zu checkpoints for one frame",
	    ms.puts - puts0);
	restart_equals(s, a, &ca);
	crdt_buf x2, y2;
	tb_init(&x2);
	tb_init(&y2);
	save(a, &x2);
	save(p, &y2);
	cr_assert(bytes_eq(x2.data, x2.len, y2.data, y2.len));
	crdt_doc_free(a);
	crdt_doc_free(p);
	crdt_store_close(s);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	crdt_buf_fini(&x2);
	crdt_buf_fini(&y2);
	crdt_buf_fini(&f);
	crdt_buf_fini(&reply);
	ASSERT_NO_LEAKS();
}

/* One attached document on a memstore, with `n` commits already. */
static crdt_doc *
mem_doc(memstore *ms, crdt_store **s, test_clock *clk, unsigned flags,
    size_t log_max, unsigned n)
{
	memset(ms, 0, sizeof *ms);
	tb_init(&ms->snap);
	tb_init(&ms->clock);
	cr_assert_eq(crdt_store_new(NULL, &mem_ops, ms, s), 0);
	crdt_doc *d = mkdoc(1, clk, log_max);
	cr_assert_eq(crdt_doc_attach_store(d, *s, flags), 0);
	crdt_buf m;
	tb_init(&m);
	for (unsigned i = 0; i < n; i++) {
		clk->ms += 1;
		cr_assert_eq(put(d, i, "v", &m), 0);
	}
	if (flags & CRDT_DOC_STORE_GROUP)
		cr_assert_eq(crdt_doc_store_flush(d), 0);
	crdt_buf_fini(&m);
	return d;
}

Test(attach, allocation_failures_change_nothing_on_every_new_path)
{
	static memstore ms;
	crdt_store *s;
	test_clock ca = { 1000000, 0 };
	crdt_buf m, before, after, f, reply;
	tb_init(&m);
	tb_init(&before);
	tb_init(&after);
	tb_init(&f);
	tb_init(&reply);
	size_t fired[3] = { 0, 0, 0 };
	/* the n-th allocation of each call fails, for every n the calls
	 * make (each makes fewer than 200) */
	for (long n = 0; n < 200; n++) {
		/* a group-commit commit: the queue's copy */
		crdt_doc *d = mem_doc(&ms, &s, &ca, CRDT_DOC_STORE_GROUP, 0, 3);
		save(d, &before);
		test_alloc_fail_at(n);
		ca.ms += 1;
		int rc = put(d, 9, "q", &m);
		test_alloc_disarm();
		if (rc != 0) {
			cr_assert_eq(rc, CRDT_ENOMEM);
			fired[0]++;
			save(d, &after);
			cr_assert(bytes_eq(before.data, before.len, after.data,
			    after.len));
		}
		cr_assert_eq(crdt_doc_store_flush(d), 0);
		restart_equals(s, d, &ca);

		/* a restart */
		crdt_doc *r = mkdoc(1, &ca, 0);
		test_alloc_fail_at(n);
		rc = crdt_doc_open_store(r, s, 0);
		test_alloc_disarm();
		if (rc != 0) {
			cr_assert_eq(rc, CRDT_ENOMEM);
			fired[1]++;
		}
		crdt_doc_free(r);
		crdt_doc_free(d);
		crdt_store_close(s);

		/* serving sync from the store */
		d = mem_doc(&ms, &s, &ca, 0, 2, 10);
		crdt_doc *p = mkdoc(2, &ca, 0);
		crdt_buf_clear(&f);
		crdt_buf_clear(&reply);
		cr_assert_eq(crdt_doc_sync_start(p, &f), 0);
		test_alloc_fail_at(n);
		rc = crdt_doc_sync_handle(d, f.data, f.len, NULL, &reply);
		test_alloc_disarm();
		if (rc != 0) {
			cr_assert_eq(rc, CRDT_ENOMEM);
			cr_assert_eq(reply.len, 0);
			fired[2]++;
		} else {
			cr_assert_eq(crdt_doc_sync_handle(p, reply.data,
					 reply.len, NULL, &f), 0);
			cr_assert_eq(crdt_doc_log_size(p), 10,
			    "served from the store");
		}
		crdt_doc_free(p);
		crdt_doc_free(d);
		crdt_store_close(s);
	}
	cr_assert_gt(fired[0], 0);
	cr_assert_gt(fired[1], 0);
	cr_assert_gt(fired[2], 0);
	crdt_buf_fini(&m);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_buf_fini(&f);
	crdt_buf_fini(&reply);
	ASSERT_NO_LEAKS();
}

/* Found by bench/bench_store: a DATA frame served from the store counted
 * only the message bytes against the budget, not their bin headers, so
 * many small messages made a frame over limits.max_bytes (CRDT_ETOOBIG
 * from the sender). With a 4 KiB limit the catch-up takes many frames,
 * each within it, and ends identical. */
Test(attach, frames_served_from_the_store_stay_within_the_frame_limit)
{
	crdt_config cfg;
	test_clock ca = { 1000000, 0 }, cp = { 1000000, 0 };
	crdt_doc *a = NULL, *p = NULL;
	crdt_replica_id ra = test_id(1), rp = test_id(2);
	uint32_t on;
	test_config(&cfg, &ca);
	cfg.limits.max_bytes = 4096;
	cfg.log_max_msgs = 4;
	cr_assert_eq(crdt_doc_new(&cfg, &ra, &a), 0);
	cr_assert_eq(crdt_doc_register(a, "m", CRDT_OBJ_MAP, &on), 0);
	test_config(&cfg, &cp);
	cfg.limits.max_bytes = 4096;
	cr_assert_eq(crdt_doc_new(&cfg, &rp, &p), 0);
	cr_assert_eq(crdt_doc_register(p, "m", CRDT_OBJ_MAP, &on), 0);
	crdt_store *s = store_open(0, false);
	cr_assert_eq(crdt_doc_attach_store(a, s, 0), 0);
	crdt_buf m, f, r, x, y;
	tb_init(&m);
	tb_init(&f);
	tb_init(&r);
	tb_init(&x);
	tb_init(&y);
	size_t total = 0;
	for (unsigned i = 0; i < 300; i++) {
		ca.ms += 1;
		cr_assert_eq(put(a, i, "v", &m), 0);
		total += m.len;
	}
	cr_assert_eq(crdt_doc_sync_start(p, &f), 0);
	crdt_doc *to = a, *from = p;
	size_t frames = 0;
	while (f.len > 0) {
		cr_assert_lt(frames++, 1000, "a sync round never ends");
		cr_assert_leq(f.len, 4096);
		crdt_buf_clear(&r);
		int rc = crdt_doc_sync_handle(to, f.data, f.len, NULL, &r);
		cr_assert_eq(rc, 0, "frame %zu: %s", frames, crdt_err_name(rc));
		crdt_buf t = f;
		f = r;
		r = t;
		crdt_doc *z = from;
		from = to;
		to = z;
	}
	cr_assert_gt(frames, total / 4096, "%zu frames for %zu bytes", frames,
	    total);
	save(a, &x);
	save(p, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
	crdt_buf_fini(&m);
	crdt_buf_fini(&f);
	crdt_buf_fini(&r);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	crdt_doc_free(a);
	crdt_doc_free(p);
	crdt_store_close(s);
}
