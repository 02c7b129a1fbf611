/*
 * crdt_doc_sync_handle_status(): per-message report of a sync frame
 * (applied, buffered, duplicate, equivocation, refused with the first
 * refusal's code, snapshot), the same document as plain
 * crdt_doc_sync_handle() afterwards, and errors that leave the report
 * untouched.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_util.h"

static crdt_doc *
doc(uint8_t r, bool extra, size_t log_max)
{
	crdt_config cfg;
	crdt_doc *d;
	test_config(&cfg, NULL);
	if (log_max > 0)
		cfg.log_max_msgs = log_max;
	crdt_replica_id id = test_id(r);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &d), 0);
	cr_assert_eq(crdt_doc_register(d, "notes", CRDT_OBJ_GSET, NULL), 0);
	if (extra)
		cr_assert_eq(crdt_doc_register(d, "extra", CRDT_OBJ_GSET,
				 NULL),
		    0);
	return d;
}

/* Commit `s` to object `obj` of `d`; the message goes to `out`. */
static void
add(crdt_doc *d, uint32_t obj, const char *s, crdt_buf *out)
{
	tb_init(out);
	cr_assert_eq(crdt_doc_gset_add(d, obj, s, strlen(s), out), 0);
}

/* DATA = [3, 8, doc_id (unbound), [], msgs, nil, evidence, 0]. */
static void
data_frame(crdt_buf *f, crdt_buf *const *msgs, size_t n,
    crdt_buf *const *ev, size_t nev)
{
	static const uint8_t unbound[CRDT_DOC_ID_BYTES];
	tb_init(f);
	mp_array(f, 8);
	mp_uint(f, 3);
	mp_uint(f, 8);
	mp_bin(f, unbound, sizeof unbound);
	mp_array(f, 0);
	mp_array(f, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		mp_bin(f, msgs[i]->data, msgs[i]->len);
	mp_nil(f);
	mp_array(f, (uint32_t)nev);
	for (size_t i = 0; i < nev; i++)
		mp_bin(f, ev[i]->data, ev[i]->len);
	mp_uint(f, 0);
}

static crdt_sync_report
handle(crdt_doc *d, const crdt_buf *f)
{
	crdt_sync_report rep;
	crdt_buf r;
	memset(&rep, 0x55, sizeof rep);
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_handle_status(d, f->data, f->len, NULL,
			 &r, &rep),
	    0);
	crdt_buf_fini(&r);
	return rep;
}

static void
assert_counts(crdt_sync_report r, size_t applied, size_t buffered,
    size_t dup, size_t equiv, size_t refused, int first)
{
	cr_assert_eq(r.applied, applied, "applied %zu", r.applied);
	cr_assert_eq(r.buffered, buffered, "buffered %zu", r.buffered);
	cr_assert_eq(r.duplicate, dup, "duplicate %zu", r.duplicate);
	cr_assert_eq(r.equivocation, equiv, "equivocation %zu",
	    r.equivocation);
	cr_assert_eq(r.refused, refused, "refused %zu", r.refused);
	cr_assert_eq(r.first_refusal, first, "first refusal %s",
	    crdt_err_name(r.first_refusal));
}

static void
assert_same(const crdt_doc *a, const crdt_doc *b)
{
	crdt_buf x, y;
	tb_init(&x);
	tb_init(&y);
	cr_assert_eq(crdt_doc_save(a, &x), 0);
	cr_assert_eq(crdt_doc_save(b, &y), 0);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

Test(sync_report, each_message_of_a_frame_is_reported)
{
	crdt_doc *w = doc(2, true, 0), *w2 = doc(2, false, 0);
	crdt_buf m1, m2, bad, v1, v1b, x;
	add(w, 0, "one", &m1);
	add(w, 0, "two", &m2);
	add(w, 1, "extra", &bad); /* an object the receivers lack */
	add(w2, 0, "other", &v1b); /* a second (2, 1): an equivocation */
	crdt_doc *z = doc(3, false, 0);
	add(z, 0, "zed", &v1);
	add(z, 0, "zed2", &x);

	/* Two receivers: one reports, the other handles plainly. */
	crdt_doc *a = doc(1, false, 0), *b = doc(1, false, 0);
	crdt_buf *list[] = { &m2, &m1, &bad, &x };
	crdt_buf f;
	data_frame(&f, list, 4, NULL, 0);
	crdt_sync_report r = handle(a, &f);
	/* m2 waits for m1, which is applied (and releases it); `bad` is
	 * refused; x waits for (3, 1). */
	assert_counts(r, 1, 2, 0, 0, 1, CRDT_ESCHEMA);
	cr_assert_not(r.snapshot);
	crdt_buf rr;
	tb_init(&rr);
	cr_assert_eq(crdt_doc_sync_handle(b, f.data, f.len, NULL, &rr), 0);
	assert_same(a, b);
	/* The same frame again: everything held already. */
	r = handle(a, &f);
	assert_counts(r, 0, 0, 3, 0, 1, CRDT_ESCHEMA);
	crdt_buf_fini(&f);
	/* A second variant of (2, 1) and what x waited for. */
	crdt_buf *list2[] = { &v1b, &v1 };
	data_frame(&f, list2, 2, NULL, 0);
	r = handle(a, &f);
	assert_counts(r, 1, 0, 0, 1, 0, 0);
	cr_assert_eq(crdt_doc_sync_handle(b, f.data, f.len, NULL, &rr), 0);
	assert_same(a, b);
	cr_assert_eq(crdt_doc_buffered(a), 0);
	crdt_buf_fini(&f);
	/* Its evidence list: both variants held, so duplicates. */
	crdt_buf *ev[] = { &m1, &v1b };
	if (memcmp(m1.data, v1b.data, m1.len < v1b.len ? m1.len : v1b.len) >
	    0 || (m1.len > v1b.len && memcmp(m1.data, v1b.data,
	    v1b.len) == 0)) {
		ev[0] = &v1b;
		ev[1] = &m1;
	}
	data_frame(&f, NULL, 0, ev, 2);
	r = handle(a, &f);
	assert_counts(r, 0, 0, 2, 0, 0, 0);
	crdt_buf_fini(&f);
	crdt_buf *bufs[] = { &m1, &m2, &bad, &v1, &v1b, &x, &rr };
	for (size_t i = 0; i < 7; i++)
		crdt_buf_fini(bufs[i]);
	crdt_doc *docs[] = { w, w2, z, a, b };
	for (size_t i = 0; i < 5; i++)
		crdt_doc_free(docs[i]);
}

Test(sync_report, hello_snapshot_and_errors)
{
	crdt_doc *p = doc(2, false, 1), *a = doc(1, false, 0);
	crdt_buf m, h, f, r;
	for (int i = 0; i < 3; i++) {
		char e[8];
		snprintf(e, sizeof e, "e%d", i);
		add(p, 0, e, &m);
		crdt_buf_fini(&m);
	}
	tb_init(&h);
	tb_init(&f);
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_start(a, &h), 0);
	crdt_sync_report rep;
	memset(&rep, 0x55, sizeof rep);
	/* A HELLO: nothing received, all zero; its reply as usual. */
	cr_assert_eq(crdt_doc_sync_handle_status(p, h.data, h.len, NULL, &f,
			 &rep),
	    0);
	assert_counts(rep, 0, 0, 0, 0, 0, 0);
	cr_assert_not(rep.snapshot);
	cr_assert_gt(f.len, 0);
	/* P's log holds one message: it answers with its snapshot. */
	rep = handle(a, &f);
	cr_assert(rep.snapshot);
	assert_counts(rep, 0, 0, 0, 0, 0, 0);
	assert_same(a, p);
	/* Errors: rep required; a refused frame leaves it untouched. */
	cr_assert_eq(crdt_doc_sync_handle_status(a, h.data, h.len, NULL, &r,
			 NULL),
	    CRDT_EINVAL);
	memset(&rep, 0x55, sizeof rep);
	crdt_sync_report was = rep;
	h.data[1] = 9; /* unknown version */
	cr_assert_eq(crdt_doc_sync_handle_status(a, h.data, h.len, NULL, &r,
			 &rep),
	    CRDT_EVERSION);
	cr_assert_eq(memcmp(&rep, &was, sizeof rep), 0);
	cr_assert_eq(r.len, 0);
	crdt_buf_fini(&h);
	crdt_buf_fini(&f);
	crdt_buf_fini(&r);
	crdt_doc_free(p);
	crdt_doc_free(a);
}
