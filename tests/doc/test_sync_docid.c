/*
 * A document ID in every sync frame (docs/document.md, "Sync frames"):
 * a frame for another document is refused before anything else with
 * nothing changed, crdt_sync_peek() reads a frame's document and kind
 * without a document and refuses hostile bytes cleanly, older frames are
 * read by unbound documents only, and several documents synced over one
 * connection (their frames interleaved) each converge.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_rng.h"
#include "test_util.h"

#define NDOCS 3
#define MAX_FRAMES 256

static crdt_doc_id
doc_id(uint8_t n)
{
	crdt_doc_id id;
	memset(&id, 0, sizeof id);
	if (n != 0) {
		id.bytes[0] = 0xd0;
		id.bytes[31] = n;
	}
	return id;
}

/* Replica `r` of document `n` (0: unbound). */
static crdt_doc *
doc(uint8_t n, uint8_t r)
{
	crdt_config cfg;
	crdt_doc *d;
	test_config(&cfg, NULL);
	cfg.doc_id = doc_id(n);
	crdt_replica_id id = test_id(r);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &d), 0);
	cr_assert_eq(crdt_doc_register(d, "notes", CRDT_OBJ_GSET, NULL), 0);
	return d;
}

static void
add(crdt_doc *d, const char *s)
{
	crdt_buf m;
	tb_init(&m);
	cr_assert_eq(crdt_doc_gset_add(d, 0, s, strlen(s), &m), 0);
	crdt_buf_fini(&m);
}

static bool
has(const crdt_doc *d, const char *s)
{
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(d, 0, &g), 0);
	return crdt_gset_contains(g, s, strlen(s));
}

static void
save(const crdt_doc *d, crdt_buf *out)
{
	tb_init(out);
	cr_assert_eq(crdt_doc_save(d, out), 0);
}

static void
assert_same(const crdt_doc *a, const crdt_doc *b, const char *what)
{
	crdt_buf x, y;
	save(a, &x);
	save(b, &y);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len), "%s", what);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

/* `d` refuses `frame` with CRDT_EWRONGDOC, no reply, nothing changed. */
static void
assert_wrong_doc(crdt_doc *d, const crdt_buf *frame)
{
	crdt_buf before, after, r;
	save(d, &before);
	tb_init(&r);
	size_t nb = crdt_doc_buffered(d);
	uint64_t hlc = crdt_doc_hlc(d);
	cr_assert_eq(crdt_doc_sync_handle(d, frame->data, frame->len, NULL,
			 &r),
	    CRDT_EWRONGDOC);
	cr_assert_eq(r.len, 0);
	save(d, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len),
	    "a frame of another document changed this one");
	cr_assert_eq(crdt_doc_buffered(d), nb);
	cr_assert_eq(crdt_doc_hlc(d), hlc);
	cr_assert_not(crdt_doc_fork_status(d, NULL, NULL));
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_buf_fini(&r);
}

/* A HELLO and the DATA answer of document `n`: replica 1 asks, replica
 * 2 (which wrote "x") answers. */
static void
frames_of(uint8_t n, crdt_buf *hello, crdt_buf *data)
{
	crdt_doc *a = doc(n, 1), *b = doc(n, 2);
	add(b, "x");
	tb_init(hello);
	tb_init(data);
	cr_assert_eq(crdt_doc_sync_start(a, hello), 0);
	cr_assert_eq(crdt_doc_sync_handle(b, hello->data, hello->len, NULL,
			 data),
	    0);
	cr_assert_gt(data->len, 0);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

/* An older (version 2) frame, which names no document: HELLO =
 * [2, 7, clock], here with the clock entry (id, c). */
static void
old_hello(crdt_buf *f, crdt_replica_id id, uint64_t c)
{
	tb_init(f);
	mp_array(f, 3);
	mp_uint(f, 2);
	mp_uint(f, 7);
	mp_array(f, 2);
	mp_id(f, id);
	mp_uint(f, c);
}

Test(sync_docid, frames_of_another_document_are_refused_with_nothing_changed)
{
	crdt_doc *v = doc(1, 1), *peer = doc(1, 2);
	add(v, "mine");
	add(peer, "theirs");
	/* Frames of documents 2 and 0 (unbound), whose replica 2 holds what
	 * v lacks, and whose clocks claim more of v's own counter. */
	for (uint8_t n = 0; n <= 2; n += 2) {
		crdt_buf h, d;
		frames_of(n, &h, &d);
		assert_wrong_doc(v, &h);
		assert_wrong_doc(v, &d);
		crdt_buf_fini(&h);
		crdt_buf_fini(&d);
	}
	crdt_doc *o = doc(2, 1);
	for (int i = 0; i < 5; i++)
		add(o, "other");
	crdt_buf h;
	tb_init(&h);
	cr_assert_eq(crdt_doc_sync_start(o, &h), 0);
	assert_wrong_doc(v, &h);
	crdt_buf_fini(&h);
	/* An older frame names no document: a bound one refuses it. */
	old_hello(&h, test_id(1), 9);
	assert_wrong_doc(v, &h);
	crdt_buf_fini(&h);
	cr_assert_not(has(v, "x"));
	/* Its own document's frames still work. */
	crdt_buf f, r;
	tb_init(&f);
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_start(peer, &f), 0);
	cr_assert_eq(crdt_doc_sync_handle(v, f.data, f.len, NULL, &r), 0);
	cr_assert_eq(crdt_doc_sync_handle(peer, r.data, r.len, NULL, &f),
	    0);
	cr_assert(has(peer, "mine"));
	crdt_buf_fini(&f);
	crdt_buf_fini(&r);
	crdt_doc_free(v);
	crdt_doc_free(peer);
	crdt_doc_free(o);
}

Test(sync_docid, older_frames_are_read_by_unbound_documents)
{
	crdt_doc *u = doc(0, 1);
	crdt_buf h, r;
	tb_init(&r);
	old_hello(&h, test_id(2), 1);
	cr_assert_eq(crdt_doc_sync_handle(u, h.data, h.len, NULL, &r), 0);
	cr_assert_gt(r.len, 0, "a HELLO is answered");
	crdt_doc_id id;
	int kind = 0;
	memset(&id, 0xff, sizeof id);
	cr_assert_eq(crdt_sync_peek(h.data, h.len, &id, &kind), 0);
	cr_assert_eq(kind, CRDT_SYNC_HELLO);
	crdt_doc_id zero = doc_id(0);
	cr_assert(bytes_eq(id.bytes, sizeof id.bytes, zero.bytes,
	    sizeof zero.bytes), "an older frame names no document");
	/* The reply is the current version and names the (zero) ID. */
	cr_assert_eq(crdt_sync_peek(r.data, r.len, &id, &kind), 0);
	cr_assert_eq(kind, CRDT_SYNC_DATA);
	cr_assert_eq(r.data[1], 4, "written as version 4");
	crdt_buf_fini(&h);
	crdt_buf_fini(&r);
	crdt_doc_free(u);
}

/* Peek leaves its outputs alone on error. */
static int
peek_err(const void *p, size_t n)
{
	crdt_doc_id id, was;
	int kind = 77;
	memset(&id, 0x5a, sizeof id);
	was = id;
	int rc = crdt_sync_peek(p, n, &id, &kind);
	if (rc < 0) {
		cr_assert_eq(kind, 77);
		cr_assert(bytes_eq(id.bytes, sizeof id.bytes, was.bytes,
		    sizeof was.bytes));
	}
	return rc;
}

Test(sync_docid, peek_reads_the_document_and_refuses_hostile_bytes)
{
	crdt_buf h, d;
	frames_of(5, &h, &d);
	crdt_doc_id id, want = doc_id(5);
	int kind;
	cr_assert_eq(crdt_sync_peek(h.data, h.len, &id, &kind), 0);
	cr_assert_eq(kind, CRDT_SYNC_HELLO);
	cr_assert(bytes_eq(id.bytes, 32, want.bytes, 32));
	cr_assert_eq(crdt_sync_peek(d.data, d.len, &id, &kind), 0);
	cr_assert_eq(kind, CRDT_SYNC_DATA);
	cr_assert(bytes_eq(id.bytes, 32, want.bytes, 32));
	cr_assert_eq(crdt_sync_peek(d.data, d.len, NULL, NULL), 0);
	cr_assert_eq(crdt_sync_peek(NULL, 4, &id, &kind), CRDT_EINVAL);

	/* Every truncation inside the head is an error; past it the head is
	 * whole (the rest is the document's to check). */
	size_t head = 1 + 1 + 1 + 2 + 32; /* array, ver, kind, bin32 */
	for (size_t n = 0; n < head; n++) {
		cr_assert_lt(peek_err(h.data, n), 0, "HELLO cut at %zu", n);
		cr_assert_lt(peek_err(d.data, n), 0, "DATA cut at %zu", n);
	}
	/* Wrong types and values in each head field. */
	crdt_buf b;
	tb_init(&b);
	static const uint8_t id31[31];
	struct {
		uint64_t n, ver, kind;
		int id; /* 0: bin32, 1: bin31, 2: uint, 3: nil */
		int want;
	} cases[] = {
		{ 5, 5, 7, 0, CRDT_EVERSION },
		{ 4, 0, 7, 0, CRDT_EVERSION },
		{ 5, 4, 7, 0, 0 },                /* version 4's HELLO */
		{ 4, 4, 7, 0, CRDT_EMALFORMED },  /* without its digests */
		{ 9, 4, 8, 0, 0 },                /* version 4's DATA */
		{ 8, 4, 8, 0, CRDT_EMALFORMED },
		{ 4, 3, 5, 0, CRDT_EMALFORMED },  /* a message's kind */
		{ 4, 3, 6, 0, CRDT_EMALFORMED },  /* a snapshot's */
		{ 3, 3, 7, 0, CRDT_EMALFORMED },  /* count of version 2 */
		{ 8, 3, 7, 0, CRDT_EMALFORMED },  /* DATA's count */
		{ 4, 3, 8, 0, CRDT_EMALFORMED },
		{ 4, 3, 7, 1, CRDT_EMALFORMED },
		{ 4, 3, 7, 2, CRDT_EMALFORMED },
		{ 4, 3, 7, 3, CRDT_EMALFORMED },
		{ 8, 3, 8, 1, CRDT_EMALFORMED },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		crdt_buf_clear(&b);
		mp_array(&b, (uint32_t)cases[i].n);
		mp_uint(&b, cases[i].ver);
		mp_uint(&b, cases[i].kind);
		if (cases[i].id == 0)
			mp_bin(&b, want.bytes, 32);
		else if (cases[i].id == 1)
			mp_bin(&b, id31, sizeof id31);
		else if (cases[i].id == 2)
			mp_uint(&b, 3);
		else
			mp_nil(&b);
		mp_array(&b, 0);
		cr_assert_eq(peek_err(b.data, b.len), cases[i].want,
		    "case %zu: %s", i, crdt_err_name(peek_err(b.data, b.len)));
	}
	/* Not an array; non-minimal forms; a message. */
	static const uint8_t junk[][6] = {
		{ 0x80 }, { 0xc0 }, { 0x03 },
		{ 0xdc, 0x00, 0x04, 0x03, 0x07 }, /* array16 for 4 */
		{ 0x94, 0xcc, 0x03, 0x07 },       /* uint8 for 3 */
	};
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
		cr_assert_eq(peek_err(junk[i], sizeof junk[i]),
		    CRDT_EMALFORMED, "junk %zu", i);
	/* Random bytes, and random bytes after a valid head: clean codes
	 * only. */
	test_rng rng;
	test_rng_init(&rng, test_seed(15));
	uint8_t buf[64];
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)test_rng_below(&rng, sizeof buf + 1);
		for (size_t k = 0; k < n; k++)
			buf[k] = (uint8_t)test_rng_below(&rng, 256);
		if (i % 2 == 1 && n > 8)
			memcpy(buf, h.data, 3 + (size_t)test_rng_below(&rng,
			    (n < head ? n : head) - 3));
		int rc = peek_err(buf, n);
		cr_assert(rc == 0 || rc == CRDT_EMALFORMED ||
		    rc == CRDT_EVERSION, "%s", crdt_err_name(rc));
	}
	crdt_buf_fini(&b);
	crdt_buf_fini(&h);
	crdt_buf_fini(&d);
}

/* One "connection" carrying the frames of NDOCS documents, each way a
 * FIFO of frames of every document interleaved. */
typedef struct conn {
	crdt_buf q[2][MAX_FRAMES];
	size_t head[2], tail[2];
} conn;

static void
push(conn *c, int dir, const crdt_buf *f)
{
	cr_assert_lt(c->tail[dir], MAX_FRAMES, "too many frames");
	crdt_buf *slot = &c->q[dir][c->tail[dir]++];
	tb_init(slot);
	cr_assert_eq(crdt_buf_append(slot, f->data, f->len), 0);
}

/* The side's document for a frame, found by the frame's own ID. */
static crdt_doc *
route(crdt_doc *const *side, const crdt_buf *f)
{
	crdt_doc_id id;
	int kind;
	cr_assert_eq(crdt_sync_peek(f->data, f->len, &id, &kind), 0);
	cr_assert(kind == CRDT_SYNC_HELLO || kind == CRDT_SYNC_DATA);
	for (size_t i = 0; i < NDOCS; i++) {
		crdt_doc_id want = doc_id((uint8_t)(i + 1));
		if (memcmp(id.bytes, want.bytes, 32) == 0)
			return side[i];
	}
	cr_assert_fail("a frame of no document on this connection");
	return NULL;
}

Test(sync_docid, several_documents_over_one_connection_converge)
{
	crdt_doc *side[2][NDOCS];
	conn *c = calloc(1, sizeof *c);
	cr_assert_not_null(c);
	for (uint8_t i = 0; i < NDOCS; i++) {
		side[0][i] = doc((uint8_t)(i + 1), 1);
		side[1][i] = doc((uint8_t)(i + 1), 2);
		char e[32];
		for (int k = 0; k <= i; k++) {
			snprintf(e, sizeof e, "doc%u-a%d", i + 1, k);
			add(side[0][i], e);
			snprintf(e, sizeof e, "doc%u-b%d", i + 1, k);
			add(side[1][i], e);
		}
	}
	/* Both sides start a round for every document at once. */
	for (int s = 0; s < 2; s++)
		for (size_t i = 0; i < NDOCS; i++) {
			crdt_buf h;
			tb_init(&h);
			cr_assert_eq(crdt_doc_sync_start(side[s][i], &h), 0);
			push(c, s, &h);
			crdt_buf_fini(&h);
		}
	/* Deliver alternately from each direction, in order; a frame also
	 * offered to a wrong document first is refused there. */
	size_t delivered = 0;
	while (c->head[0] < c->tail[0] || c->head[1] < c->tail[1]) {
		for (int dir = 0; dir < 2; dir++) {
			if (c->head[dir] == c->tail[dir])
				continue;
			crdt_buf *f = &c->q[dir][c->head[dir]++];
			crdt_doc *const *to = side[1 - dir];
			crdt_doc *d = route(to, f);
			if (delivered++ % 3 == 0) {
				crdt_doc *wrong = to[(delivered % NDOCS)];
				if (wrong != d)
					assert_wrong_doc(wrong, f);
			}
			crdt_buf r;
			tb_init(&r);
			cr_assert_eq(crdt_doc_sync_handle(d, f->data, f->len,
					 NULL, &r),
			    0);
			if (r.len > 0)
				push(c, 1 - dir, &r);
			crdt_buf_fini(&r);
		}
	}
	for (size_t i = 0; i < NDOCS; i++) {
		char what[32];
		snprintf(what, sizeof what, "document %zu", i + 1);
		assert_same(side[0][i], side[1][i], what);
		for (size_t j = 0; j < NDOCS; j++) {
			char e[32];
			snprintf(e, sizeof e, "doc%zu-b0", j + 1);
			cr_assert_eq(has(side[0][i], e), i == j, "%s in %s",
			    e, what);
		}
	}
	for (int dir = 0; dir < 2; dir++)
		for (size_t k = 0; k < c->tail[dir]; k++)
			crdt_buf_fini(&c->q[dir][k]);
	free(c);
	for (int s = 0; s < 2; s++)
		for (size_t i = 0; i < NDOCS; i++)
			crdt_doc_free(side[s][i]);
}
