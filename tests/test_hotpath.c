/*
 * White-box: the shortcuts of the apply hot path (docs/performance.md,
 * "The apply hot path") give the answers the slow paths would:
 *   - a G-Set keyed by an identity prefix (the chat's messages, by
 *     record ID) finds every element, bounds the elements that share a
 *     prefix (a write or merge past the bound is CRDT_ETOOBIG and changes
 *     nothing; so is switching a set already over it), and encodes to the
 *     same bytes as a set hashing whole elements;
 *   - the arena that holds a G-Set's elements keeps them in place, gives
 *     back the newest on undo and frees what came after a mark; a merge
 *     that runs out of memory in it changes nothing and leaks nothing;
 *   - the chat record's ID prefix is parsed for every counter width and
 *     refused (0: hash it whole) for anything else;
 *   - the document's replica cache answers for more senders than it has
 *     slots and after a refused message dropped an interned sender;
 *   - the chat index's (author, replica) cache keeps every unread count
 *     right when more writers interleave than it remembers.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "chat_impl.h"
#include "test_alloc.h"
#include "test_util.h"

static crdt_config cfg;
static crdt_replica_id A, B;

static void
setup(void)
{
	test_alloc_reset();
	test_config(&cfg, NULL);
	A = test_id(1);
	B = test_id(2);
}

TestSuite(hotpath, .init = setup);

/* A record-like element: the chat's ID prefix for (id, counter), then a
 * body that makes rivals of one ID differ. */
static size_t
rec(uint8_t *p, uint8_t id, uint64_t counter, uint32_t body)
{
	size_t n = 0;
	p[n++] = 0x98;
	p[n++] = 0xc4;
	p[n++] = 0x10;
	memset(p + n, id, 16);
	n += 16;
	if (counter <= 0x7f) {
		p[n++] = (uint8_t)counter;
	} else {
		p[n++] = 0xcf;
		for (int i = 7; i >= 0; i--)
			p[n++] = (uint8_t)(counter >> (8 * i));
	}
	memcpy(p + n, &body, sizeof body);
	return n + sizeof body;
}

static crdt_gset *
mk(bool prefixed)
{
	crdt_gset *s;
	cr_assert_eq(crdt_gset_new(&cfg, &A, &s), 0);
	if (prefixed)
		cr_assert_eq(crdt__gset_key_prefix(s, crdt__chat_rec_ident,
		    NULL), 0);
	return s;
}

static void
put(crdt_gset *s, uint8_t id, uint64_t c, uint32_t body, int want)
{
	uint8_t b[64];
	size_t n = rec(b, id, c, body);
	crdt_dot d = { test_id(id), c };
	cr_assert_eq(crdt__gset_write(s, b, n, d, NULL, 0), want,
	    "write (%u, %llu, %u)", id, (unsigned long long)c, body);
}

static bool
has(const crdt_gset *s, uint8_t id, uint64_t c, uint32_t body)
{
	uint8_t b[64];
	size_t n = rec(b, id, c, body);
	return crdt_gset_contains(s, b, n);
}

static void
same_bytes(const crdt_gset *x, const crdt_gset *y)
{
	crdt_buf bx, by;
	tb_init(&bx);
	tb_init(&by);
	cr_assert_eq(crdt_gset_encode(x, &bx), 0);
	cr_assert_eq(crdt_gset_encode(y, &by), 0);
	cr_assert_eq(bx.len, by.len);
	cr_assert_eq(memcmp(bx.data, by.data, bx.len), 0);
	crdt_buf_fini(&bx);
	crdt_buf_fini(&by);
}

static void
ident_is(const uint8_t *b, size_t n, uint8_t id, uint64_t counter)
{
	uint8_t out[CRDT__IDENT_MAX], want[24];
	crdt_dot d = { { { 0 } }, counter };
	memset(d.replica.bytes, id, 16);
	crdt__chat_dot_key(want, d);
	cr_assert_eq(crdt__chat_rec_ident(b, n, out), 24);
	cr_assert_eq(memcmp(out, want, 24), 0);
}

Test(hotpath, rec_ident_every_counter_width)
{
	uint8_t b[64], out[CRDT__IDENT_MAX];
	ident_is(b, rec(b, 7, 5, 0), 7, 5);
	ident_is(b, rec(b, 7, UINT64_C(1) << 40, 0), 7, UINT64_C(1) << 40);
	const uint8_t tag[] = { 0xcc, 0xcd, 0xce, 0xcf };
	const size_t w[] = { 1, 2, 4, 8 };
	for (int i = 0; i < 4; i++) {
		rec(b, 7, 1, 0);
		b[19] = tag[i];
		memset(b + 20, 0xa5, 12);
		uint64_t c = 0;
		for (size_t j = 0; j < w[i]; j++)
			c = c << 8 | 0xa5;
		ident_is(b, 40, 7, c);
		/* Cut inside the counter: hash it whole. */
		cr_assert_eq(crdt__chat_rec_ident(b, 20 + w[i] - 1, out), 0);
	}
	rec(b, 7, 1, 0);
	b[19] = 0xd0; /* a negative int is not a counter */
	cr_assert_eq(crdt__chat_rec_ident(b, 40, out), 0);
	size_t n = rec(b, 7, 1, 0);
	b[0] = 0x97;
	cr_assert_eq(crdt__chat_rec_ident(b, n, out), 0);
	n = rec(b, 7, 1, 0);
	b[2] = 0x0f;
	cr_assert_eq(crdt__chat_rec_ident(b, n, out), 0);
	cr_assert_eq(crdt__chat_rec_ident(b, 19, out), 0);
	cr_assert_eq(crdt__chat_rec_ident(b, 0, out), 0);
}

Test(hotpath, prefixed_set_finds_everything_and_encodes_the_same)
{
	crdt_gset *p = mk(true), *w = mk(false);
	for (uint32_t i = 1; i <= 3000; i++) {
		uint8_t id = (uint8_t)(i % 7 + 1);
		put(p, id, i, i * 31u, 0);
		put(w, id, i, i * 31u, 0);
	}
	/* Rivals: other bodies under taken IDs, up to the bound. */
	for (uint32_t v = 1; v < 16; v++) {
		put(p, 2, 8, v, 0);
		put(w, 2, 8, v, 0);
	}
	cr_assert_eq(crdt_gset_size(p), 3015);
	for (uint32_t i = 1; i <= 3000; i++) {
		cr_assert(has(p, (uint8_t)(i % 7 + 1), i, i * 31u));
		cr_assert(!has(p, (uint8_t)(i % 7 + 1), i, i * 31u + 1));
	}
	/* Not-record-shaped elements are hashed whole, and found. */
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_gset_add(p, "x", 1, &op), 0);
	crdt_buf_clear(&op);
	cr_assert_eq(crdt_gset_add(w, "x", 1, &op), 0);
	crdt_buf_fini(&op);
	cr_assert(crdt_gset_contains(p, "x", 1));
	same_bytes(p, w);
	crdt_gset_free(p);
	crdt_gset_free(w);
}

Test(hotpath, rivals_past_the_bound_are_refused_and_change_nothing)
{
	crdt_gset *p = mk(true);
	/* max_variants 4 by default: max(16, 4 x 4) = 16 per ID. */
	for (uint32_t v = 0; v < 16; v++)
		put(p, 3, 9, v, 0);
	crdt_buf before, after;
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(crdt_gset_encode(p, &before), 0);
	put(p, 3, 9, 99, CRDT_ETOOBIG);
	cr_assert(!has(p, 3, 9, 99));
	/* A known element is still a no-op, and other IDs are unaffected. */
	put(p, 3, 9, 5, 0);
	put(p, 3, 10, 99, 0);
	cr_assert_eq(crdt_gset_size(p), 17);
	cr_assert_eq(crdt_gset_encode(p, &after), 0);
	cr_assert_gt(after.len, before.len);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_gset_free(p);
}

Test(hotpath, merge_respects_the_bound)
{
	crdt_gset *dst = mk(true), *src = mk(false), *ok = mk(false);
	for (uint32_t v = 0; v < 10; v++)
		put(dst, 4, 1, v, 0);
	/* v 6..15: 4 known, 6 new, 16 in all: allowed. */
	for (uint32_t v = 6; v < 16; v++)
		put(ok, 4, 1, v, 0);
	cr_assert_eq(crdt_gset_merge(dst, ok), 0);
	cr_assert_eq(crdt_gset_size(dst), 16);
	for (uint32_t v = 0; v < 16; v++)
		cr_assert(has(dst, 4, 1, v));
	/* One more rival of that ID, among many good elements: refused
	 * whole, dst unchanged. */
	for (uint32_t i = 1; i < 200; i++)
		put(src, 5, i, i, 0);
	put(src, 4, 1, 16, 0);
	crdt_buf before, after;
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(crdt_gset_encode(dst, &before), 0);
	cr_assert_eq(crdt_gset_merge(dst, src), CRDT_ETOOBIG);
	cr_assert_eq(crdt_gset_encode(dst, &after), 0);
	cr_assert_eq(before.len, after.len);
	cr_assert_eq(memcmp(before.data, after.data, before.len), 0);
	cr_assert(!has(dst, 5, 1, 1));
	/* Many new rivals of one fresh ID inside one merge: refused too. */
	crdt_gset *flood = mk(false);
	for (uint32_t v = 0; v < 17; v++)
		put(flood, 6, 1, v, 0);
	cr_assert_eq(crdt_gset_merge(dst, flood), CRDT_ETOOBIG);
	cr_assert_eq(crdt_gset_size(dst), 16);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_gset_free(dst);
	crdt_gset_free(src);
	crdt_gset_free(ok);
	crdt_gset_free(flood);
}

Test(hotpath, switching_a_set_over_the_bound_is_refused)
{
	crdt_gset *s = mk(false);
	for (uint32_t v = 0; v < 40; v++)
		put(s, 8, 2, v, 0);
	for (uint32_t i = 1; i < 100; i++)
		put(s, 9, i, i, 0);
	uint8_t key[16] = { 1, 2, 3 };
	cr_assert_eq(crdt__gset_key_prefix(s, crdt__chat_rec_ident, key),
	    CRDT_ETOOBIG);
	/* Neither the identity nor the key was taken. */
	uint32_t h;
	cr_assert(!crdt__gset_ident_hash(s, crdt__chat_rec_ident, key, 0,
	    &h));
	/* Still the whole-element set it was: everything found, and new
	 * rivals accepted without a bound. */
	for (uint32_t v = 0; v < 40; v++)
		cr_assert(has(s, 8, 2, v));
	for (uint32_t i = 1; i < 100; i++)
		cr_assert(has(s, 9, i, i));
	put(s, 8, 2, 40, 0);
	crdt_gset_free(s);
}

Test(hotpath, arena_strings_stay_put_and_reset_frees)
{
	crdt__arena ar;
	crdt__arena_init(&ar, test_alloc_hook());
	enum { N = 3000 };
	static uint8_t *at[N];
	static size_t len[N];
	uint8_t buf[80000];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	crdt__arena_mark mid = { NULL, 0 };
	size_t live_mid = 0;
	for (size_t i = 0; i < N; i++) {
		/* Mostly small, a few larger than the biggest chunk. */
		len[i] = i % 500 == 7 ? 70000 + i : i % 300;
		at[i] = crdt__arena_copy(&ar, buf + i % 50, len[i]);
		cr_assert_not_null(at[i]);
		if (i == N / 2) {
			mid = crdt__arena_mark_now(&ar);
			live_mid = test_alloc_live_bytes();
		}
	}
	for (size_t i = 0; i < N; i++)
		cr_assert_eq(memcmp(at[i], buf + i % 50, len[i]), 0, "%zu", i);
	/* Chunks, not strings: far fewer blocks than strings. */
	cr_assert_lt(test_alloc_live_blocks(), N / 20);
	/* Undo of the newest string gives its bytes back. */
	uint8_t *p = crdt__arena_copy(&ar, "abc", 3);
	crdt__arena_unbump(&ar, p, 3);
	cr_assert_eq(crdt__arena_copy(&ar, "xyz", 3), p);
	/* Not the newest: kept (no effect). */
	crdt__arena_unbump(&ar, at[N - 2], len[N - 2]);
	cr_assert_eq(memcmp(at[N - 2], buf + (N - 2) % 50, len[N - 2]), 0);
	crdt__arena_reset(&ar, mid);
	cr_assert_eq(test_alloc_live_bytes(), live_mid);
	for (size_t i = 0; i <= N / 2; i++)
		cr_assert_eq(memcmp(at[i], buf + i % 50, len[i]), 0, "%zu", i);
	crdt__arena_fini(&ar);
	ASSERT_NO_LEAKS();
}

Test(hotpath, merge_out_of_memory_changes_nothing)
{
	/* The merge copies new elements into dst's arena, over several
	 * chunks; fail every allocation in turn. */
	crdt_gset *src = mk(false);
	for (uint32_t i = 1; i <= 400; i++)
		put(src, (uint8_t)(i % 5 + 1), i, i, 0);
	for (long n = 0;; n++) {
		crdt_gset *dst = mk(true);
		put(dst, 1, 5, 5, 0);
		crdt_buf before, after;
		tb_init(&before);
		tb_init(&after);
		cr_assert_eq(crdt_gset_encode(dst, &before), 0);
		test_alloc_fail_at(n);
		int rc = crdt_gset_merge(dst, src);
		bool fired = test_alloc_fired();
		test_alloc_disarm();
		if (rc == 0) {
			cr_assert(!fired);
			cr_assert_eq(crdt_gset_size(dst), 400); /* (1, 5, 5) in both */
			crdt_buf_fini(&before);
			crdt_buf_fini(&after);
			crdt_gset_free(dst);
			break;
		}
		cr_assert_eq(rc, CRDT_ENOMEM);
		cr_assert_eq(crdt_gset_encode(dst, &after), 0);
		cr_assert_eq(before.len, after.len);
		cr_assert_eq(memcmp(before.data, after.data, after.len), 0);
		cr_assert_eq(crdt_gset_size(dst), 1);
		crdt_buf_fini(&before);
		crdt_buf_fini(&after);
		crdt_gset_free(dst);
		cr_assert_lt(n, 1000);
	}
	crdt_gset_free(src);
	ASSERT_NO_LEAKS();
}

/* ---- through the document ---- */

typedef struct peer {
	crdt_doc *d;
	test_clock clk;
	crdt_config cfg;
} peer;

static void
peer_new(peer *p, uint8_t idn, int threads)
{
	crdt_replica_id id = test_id(idn);
	p->clk.ms = 1000 + idn;
	test_config(&p->cfg, &p->clk);
	cr_assert_eq(crdt_doc_new(&p->cfg, &id, &p->d), 0);
	for (int i = 0; i < threads; i++) {
		char name[16];
		snprintf(name, sizeof name, "t%d", i);
		cr_assert_eq(crdt_doc_register_chat(p->d, name, NULL, NULL),
		    0);
	}
}

static void
post(peer *p, uint32_t obj, const char *user, const char *body,
    crdt_buf *out)
{
	crdt_chat_post m = { user, strlen(user), body, strlen(body), NULL,
		NULL, 0 };
	crdt_dot id;
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_chat_post(p->d, obj, &m, &id, out), 0);
}

static const crdt_chat *
thread(const peer *p)
{
	const crdt_chat *c;
	cr_assert_eq(crdt_doc_chat(p->d, 0, &c), 0);
	return c;
}

Test(hotpath, replica_cache_many_senders_and_a_refused_one)
{
	enum { S = 150, M = 3 };
	static peer s[S];
	peer r, q, odd;
	crdt_buf m;
	tb_init(&m);
	peer_new(&r, 200, 1);
	peer_new(&q, 201, 1);
	for (int i = 0; i < S; i++)
		peer_new(&s[i], (uint8_t)(i + 1), 1);
	/* A sender whose message names a thread r does not have: refused,
	 * and its ID (interned while checking) dropped again. */
	peer_new(&odd, 190, 2);
	post(&odd, 1, "odd", "x", &m);
	cr_assert_neq(crdt_doc_receive(r.d, m.data, m.len, NULL), 0);
	for (int k = 0; k < M; k++)
		for (int i = 0; i < S; i++) {
			char body[16];
			snprintf(body, sizeof body, "%d/%d", i, k);
			post(&s[i], 0, "u", body, &m);
			cr_assert_eq(crdt_doc_receive(r.d, m.data, m.len,
			    NULL), 0);
		}
	/* Another new sender: it may take the refused one's slot. */
	peer late;
	peer_new(&late, 191, 1);
	post(&late, 0, "late", "y", &m);
	cr_assert_eq(crdt_doc_receive(r.d, m.data, m.len, NULL), 0);
	crdt_vclock *vc;
	cr_assert_eq(crdt_doc_vclock(r.d, &vc), 0);
	for (int i = 0; i < S; i++) {
		crdt_replica_id id = test_id((uint8_t)(i + 1));
		cr_assert_eq(crdt_vclock_get(vc, &id), M, "sender %d", i);
	}
	crdt_replica_id oid = test_id(190), lid = test_id(191);
	cr_assert_eq(crdt_vclock_get(vc, &oid), 0);
	cr_assert_eq(crdt_vclock_get(vc, &lid), 1);
	crdt_vclock_free(vc);
	cr_assert_eq(crdt_chat_count(thread(&r)), S * M + 1);
	/* The same state as a replica that loaded it (no cache involved). */
	crdt_buf a, b;
	tb_init(&a);
	tb_init(&b);
	cr_assert_eq(crdt_doc_save(r.d, &a), 0);
	cr_assert_eq(crdt_doc_load(q.d, a.data, a.len, NULL), 0);
	cr_assert_eq(crdt_doc_save(q.d, &b), 0);
	cr_assert_eq(a.len, b.len);
	cr_assert_eq(memcmp(a.data, b.data, a.len), 0);
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	crdt_buf_fini(&m);
	for (int i = 0; i < S; i++)
		crdt_doc_free(s[i].d);
	crdt_doc_free(odd.d);
	crdt_doc_free(late.d);
	crdt_doc_free(r.d);
	crdt_doc_free(q.d);
}

Test(hotpath, interleaved_writers_past_the_author_cache)
{
	/* Seven writers (more than CHAT_LAST) and one user on two of
	 * them, round robin: every message is a cache miss or a hit on an
	 * older slot. */
	enum { W = 7, M = 20 };
	static const char *users[W] = { "ann", "bob", "cat", "dan", "eve",
		"fay", "ann" };
	peer w[W], r, q;
	crdt_buf m;
	tb_init(&m);
	peer_new(&r, 100, 1);
	peer_new(&q, 101, 1);
	for (int i = 0; i < W; i++)
		peer_new(&w[i], (uint8_t)(i + 1), 1);
	/* ann's second device starts ahead, so her two replicas' counters
	 * differ at the read receipt. */
	for (int i = 0; i < 5; i++) {
		post(&w[W - 1], 0, "ann", "early", &m);
		cr_assert_eq(crdt_doc_receive(r.d, m.data, m.len, NULL), 0);
	}
	for (int k = 0; k < M; k++) {
		if (k == M / 2) {
			/* Read receipts count per replica: a wrong replica
			 * entry would show in these users' unread counts. */
			crdt_buf_clear(&m);
			cr_assert_eq(crdt_doc_chat_mark_read(r.d, 0, "zed", 3,
			    &m), 0);
			crdt_buf_clear(&m);
			cr_assert_eq(crdt_doc_chat_mark_read(r.d, 0, "ann", 3,
			    &m), 0);
		}
		for (int i = 0; i < W; i++) {
			/* Orders that rotate the cache's slots, and put
			 * ann's two replicas back to back. */
			static const int order[3][W] = {
				{ 0, 6, 1, 2, 3, 4, 5 },
				{ 0, 1, 2, 3, 4, 5, 6 },
				{ 6, 5, 4, 3, 2, 1, 0 },
			};
			int j = order[k % 3][i];
			post(&w[j], 0, users[j], "hi", &m);
			cr_assert_eq(crdt_doc_receive(r.d, m.data, m.len,
			    NULL), 0);
		}
	}
	crdt_buf_clear(&m);
	cr_assert_eq(crdt_doc_save(r.d, &m), 0);
	cr_assert_eq(crdt_doc_load(q.d, m.data, m.len, NULL), 0);
	const crdt_chat *cr = thread(&r), *cq = thread(&q);
	cr_assert_eq(crdt_chat_count(cr), W * M + 5);
	for (int i = 0; i < W - 1; i++) {
		bool ann = strcmp(users[i], "ann") == 0;
		size_t ur = crdt_chat_unread(cr, users[i], strlen(users[i]));
		size_t uq = crdt_chat_unread(cq, users[i], strlen(users[i]));
		/* ann read the first half; her own posts never count. */
		size_t want = ann ? (size_t)(W - 2) * (M - M / 2) :
		    (size_t)(W - 1) * M + 5;
		cr_assert_eq(ur, want, "%s", users[i]);
		cr_assert_eq(ur, uq, "%s", users[i]);
	}
	cr_assert_eq(crdt_chat_unread(cr, "zed", 3), (size_t)W * (M - M / 2));
	cr_assert_eq(crdt_chat_unread(cq, "zed", 3), (size_t)W * (M - M / 2));
	crdt_buf_fini(&m);
	for (int i = 0; i < W; i++)
		crdt_doc_free(w[i].d);
	crdt_doc_free(r.d);
	crdt_doc_free(q.d);
}

/* A state holding more rivals of one message ID than the bound (a replica
 * configured for many variants took them all) is refused whole by a
 * replica with the default bound, in either snapshot version's path. */
Test(hotpath, state_with_too_many_rivals_is_refused)
{
	enum { V = 20 };
	peer wide, r, f;
	crdt_buf m, snap, before, after;
	tb_init(&m);
	tb_init(&snap);
	tb_init(&before);
	tb_init(&after);
	peer_new(&wide, 50, 1);
	wide.cfg.max_variants = 64;
	crdt_doc_free(wide.d);
	crdt_replica_id wid = test_id(50);
	cr_assert_eq(crdt_doc_new(&wide.cfg, &wid, &wide.d), 0);
	cr_assert_eq(crdt_doc_register_chat(wide.d, "t0", NULL, NULL), 0);
	for (int v = 0; v < V; v++) {
		/* V writers claiming one replica ID: one dot, V records. */
		char body[16];
		snprintf(body, sizeof body, "variant %d", v);
		peer_new(&f, 9, 1);
		post(&f, 0, "eve", body, &m);
		cr_assert_eq(crdt_doc_receive(wide.d, m.data, m.len, NULL), 0);
		crdt_doc_free(f.d);
	}
	cr_assert_eq(crdt_doc_save(wide.d, &snap), 0);
	peer_new(&r, 51, 1);
	cr_assert_eq(crdt_doc_save(r.d, &before), 0);
	cr_assert_eq(crdt_doc_load(r.d, snap.data, snap.len, NULL),
	    CRDT_ETOOBIG);
	cr_assert_eq(crdt_doc_save(r.d, &after), 0);
	cr_assert_eq(before.len, after.len);
	cr_assert_eq(memcmp(before.data, after.data, after.len), 0);
	cr_assert_eq(crdt_chat_count(thread(&r)), 0);
	/* The wide replica itself reloads its own state. */
	peer q;
	peer_new(&q, 52, 1);
	crdt_doc_free(q.d);
	q.cfg.max_variants = 64;
	crdt_replica_id qid = test_id(52);
	cr_assert_eq(crdt_doc_new(&q.cfg, &qid, &q.d), 0);
	cr_assert_eq(crdt_doc_register_chat(q.d, "t0", NULL, NULL), 0);
	cr_assert_eq(crdt_doc_load(q.d, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_chat_count(thread(&q)), 1);
	crdt_buf_fini(&m);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_doc_free(wide.d);
	crdt_doc_free(r.d);
	crdt_doc_free(q.d);
}
