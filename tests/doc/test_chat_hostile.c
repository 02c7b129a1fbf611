/*
 * Chat thread under hostile and unlucky input: snapshots whose records are
 * not what the chat would write (over-long user IDs, one flipped byte), a
 * post that would saturate the order key, reactions toggled off and on in
 * one transaction under random delivery, and visitors whose order must not
 * depend on arrival. Convergence is judged on snapshot bytes; every refusal
 * must leave the document byte-identical.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

#define T0 UINT64_C(1700000000000)
#define SEEN_MAX ((UINT64_C(1) << 63) - 1)

typedef struct peer {
	crdt_doc *d;
	test_clock clk;
	crdt_config cfg;
} peer;

static void
peer_new(peer *p, uint8_t idn)
{
	crdt_replica_id id = test_id(idn);
	p->clk.ms = T0;
	test_config(&p->cfg, &p->clk);
	cr_assert_eq(crdt_doc_new(&p->cfg, &id, &p->d), 0);
	cr_assert_eq(crdt_doc_register_chat(p->d, "thread", NULL, NULL), 0);
}

static const crdt_chat *
thread(const peer *p)
{
	const crdt_chat *c;
	cr_assert_eq(crdt_doc_chat(p->d, 0, &c), 0);
	return c;
}

static crdt_dot
post(peer *p, const char *user, const char *body, crdt_buf *out)
{
	crdt_chat_post m = { user, strlen(user), body, strlen(body), NULL,
		NULL, 0 };
	crdt_dot id;
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_chat_post(p->d, 0, &m, &id, out), 0);
	return id;
}

static void
deliver(peer *to, const crdt_buf *m)
{
	cr_assert_eq(crdt_doc_receive(to->d, m->data, m->len, NULL), 0);
}

static void
save(const peer *p, crdt_buf *out)
{
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_save(p->d, out), 0);
}

/* `rc` must be `want` and the document byte-identical to `before`. */
static void
assert_refused_unchanged(const peer *p, int rc, int want,
    const crdt_buf *before, const char *what)
{
	crdt_buf after;
	tb_init(&after);
	cr_assert_eq(rc, want, "%s: %s, expected %s", what, crdt_err_name(rc),
	    crdt_err_name(want));
	save(p, &after);
	cr_assert(bytes_eq(before->data, before->len, after.data, after.len),
	    "%s changed the document", what);
	crdt_buf_fini(&after);
}

/* ---------------------------------------------------------------- */
/* hand-made snapshots                                              */

/* A snapshot [1, 6, clock, hlc_max, objects, buffered, evidence] of one
 * chat thread "thread" whose msgs G-Set holds one record by `sender` with
 * a `ulen`-byte user. */
static void
snapshot_with_user(crdt_buf *snap, crdt_replica_id sender, size_t ulen)
{
	crdt_buf rec, msgs, map, marks, chat;
	tb_init(&rec);
	tb_init(&msgs);
	tb_init(&map);
	tb_init(&marks);
	tb_init(&chat);
	uint8_t *user = malloc(ulen + 1);
	cr_assert_not_null(user);
	memset(user, 'u', ulen);
	/* [id, counter, order, sent_at, user, body, nil, nil] */
	mp_array(&rec, 8);
	mp_id(&rec, sender);
	mp_uint(&rec, 1);
	mp_uint(&rec, T0 << 16);
	mp_uint(&rec, T0 << 16);
	mp_bin(&rec, user, ulen);
	mp_bin(&rec, "hi", 2);
	mp_nil(&rec);
	mp_nil(&rec);
	free(user);
	mp_array(&msgs, 3);
	mp_uint(&msgs, 1);
	mp_uint(&msgs, 1);
	mp_array(&msgs, 3);
	mp_bin(&msgs, rec.data, rec.len);
	mp_id(&msgs, sender);
	mp_uint(&msgs, 1);
	mp_array(&map, 3);
	mp_uint(&map, 1);
	mp_uint(&map, 3);
	mp_array(&map, 0);
	mp_array(&marks, 3);
	mp_uint(&marks, 1);
	mp_uint(&marks, 1);
	mp_array(&marks, 0);
	mp_array(&chat, 5);
	mp_uint(&chat, 1);
	mp_uint(&chat, 9);
	mp_bin(&chat, msgs.data, msgs.len);
	mp_bin(&chat, map.data, map.len);
	mp_bin(&chat, marks.data, marks.len);
	crdt_buf_clear(snap);
	mp_array(snap, 7);
	mp_uint(snap, 1);
	mp_uint(snap, 6);
	mp_array(snap, 2);
	mp_id(snap, sender);
	mp_uint(snap, 1);
	mp_uint(snap, T0 << 16);
	mp_array(snap, 1);
	mp_array(snap, 3);
	mp_bin(snap, "thread", 6);
	mp_uint(snap, 4);
	mp_bin(snap, chat.data, chat.len);
	mp_array(snap, 0);
	mp_array(snap, 0);
	crdt_buf_fini(&rec);
	crdt_buf_fini(&msgs);
	crdt_buf_fini(&map);
	crdt_buf_fini(&marks);
	crdt_buf_fini(&chat);
}

/* The control: the hand-made snapshot is well formed with a legal user. */
Test(chat_hostile, handmade_snapshot_with_legal_user_loads)
{
	peer v;
	crdt_buf snap;
	test_alloc_reset();
	peer_new(&v, 1);
	tb_init(&snap);
	snapshot_with_user(&snap, test_id(7), 255);
	cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_chat_count(thread(&v)), 1);
	crdt_chat_msg m;
	cr_assert_eq(crdt_chat_at(thread(&v), 0, &m), 0);
	cr_assert_eq(m.user_len, 255);
	crdt_buf_fini(&snap);
	crdt_doc_free(v.d);
	ASSERT_NO_LEAKS();
}

/* p01: a record whose user ID is 4096 bytes (or empty) is refused with the
 * whole snapshot, by crdt_doc_load and in a sync DATA frame; the document
 * is unchanged and the thread stays usable. */
Test(chat_hostile, snapshot_user_out_of_bounds_refused_whole)
{
	static const size_t bad[] = { 0, 256, 4096 };
	peer v;
	crdt_buf snap, before, out, frame, reply;

	test_alloc_reset();
	peer_new(&v, 1);
	tb_init(&snap);
	tb_init(&before);
	tb_init(&out);
	tb_init(&frame);
	tb_init(&reply);
	post(&v, "victim", "first", &out);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snapshot_with_user(&snap, test_id(7), bad[i]);
		save(&v, &before);
		int rc = crdt_doc_load(v.d, snap.data, snap.len, NULL);
		assert_refused_unchanged(&v, rc, CRDT_EMALFORMED, &before,
		    "load");
		/* DATA = [1, 8, clock, msgs, snapshot, evidence] */
		crdt_buf_clear(&frame);
		mp_array(&frame, 6);
		mp_uint(&frame, 1);
		mp_uint(&frame, 8);
		mp_array(&frame, 0);
		mp_array(&frame, 0);
		mp_bin(&frame, snap.data, snap.len);
		mp_array(&frame, 0);
		crdt_buf_clear(&reply);
		rc = crdt_doc_sync_handle(v.d, frame.data, frame.len, NULL,
		    &reply);
		cr_assert_lt(rc, 0, "a DATA frame with a %zu-byte user: %s",
		    bad[i], crdt_err_name(rc));
		assert_refused_unchanged(&v, rc, rc, &before, "DATA frame");
		cr_assert_eq(crdt_chat_count(thread(&v)), 1);
	}
	post(&v, "victim", "still here", &out);
	cr_assert_eq(crdt_chat_count(thread(&v)), 2);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&before);
	crdt_buf_fini(&out);
	crdt_buf_fini(&frame);
	crdt_buf_fini(&reply);
	crdt_doc_free(v.d);
	ASSERT_NO_LEAKS();
}

/* Offset of the only occurrence of `pat` in `b` (the test fails otherwise). */
static size_t
find_once(const crdt_buf *b, const crdt_buf *pat)
{
	size_t at = SIZE_MAX;
	for (size_t i = 0; i + pat->len <= b->len; i++) {
		if (memcmp(b->data + i, pat->data, pat->len) != 0)
			continue;
		cr_assert_eq(at, SIZE_MAX, "pattern %s found twice",
		    hexs(pat->data, pat->len));
		at = i;
	}
	cr_assert_neq(at, SIZE_MAX, "pattern %s not in the snapshot",
	    hexs(pat->data, pat->len));
	return at;
}

/*
 * One flipped byte in one chat record (a reaction key's array header, a
 * read mark's kind): the snapshot is refused whole and the loading
 * document, which already holds the same thread, keeps its thread whole;
 * before, the load succeeded and the index could never be built again
 * (crdt_chat_count 0 from then on).
 */
Test(chat_hostile, flipped_byte_in_chat_record_refused_whole)
{
	peer a, v;
	crdt_buf m, snap, pat, before;

	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&v, 2);
	tb_init(&m);
	tb_init(&snap);
	tb_init(&pat);
	tb_init(&before);
	crdt_dot id = post(&a, "bob", "hello", &m);
	deliver(&v, &m);
	crdt_buf_clear(&m);
	cr_assert_eq(crdt_doc_chat_react(a.d, 0, id, "zed", 3, "ok", 2, true,
			 &m), 0);
	deliver(&v, &m);
	crdt_buf_clear(&m);
	cr_assert_eq(crdt_doc_chat_mark_read(a.d, 0, "zed", 3, &m), 0);
	deliver(&v, &m);
	save(&a, &snap);
	/* The reaction key [id, counter, "zed", "ok"]. */
	mp_array(&pat, 4);
	mp_id(&pat, id.replica);
	mp_uint(&pat, id.counter);
	mp_bin(&pat, "zed", 3);
	mp_bin(&pat, "ok", 2);
	size_t rk = find_once(&snap, &pat);
	/* The read mark [1, "zed", replica, counter] (its counter is the
	 * clock's, not the message's). */
	crdt_buf_clear(&pat);
	mp_array(&pat, 4);
	mp_uint(&pat, 1);
	mp_bin(&pat, "zed", 3);
	mp_id(&pat, id.replica);
	size_t rm = find_once(&snap, &pat);
	const size_t flip[2] = { rk, rm + 1 };
	const uint8_t to[2] = { 0x95, 0x07 };
	for (int i = 0; i < 2; i++) {
		crdt_buf bad;
		tb_init(&bad);
		mp_raw(&bad, snap.data, snap.len);
		bad.data[flip[i]] = to[i];
		save(&v, &before);
		int rc = crdt_doc_load(v.d, bad.data, bad.len, NULL);
		assert_refused_unchanged(&v, rc, CRDT_EMALFORMED, &before,
		    i == 0 ? "flipped reaction key" : "flipped read mark");
		const crdt_chat *c = thread(&v);
		cr_assert_eq(crdt_chat_count(c), 1);
		cr_assert_eq(crdt_chat_reaction_count(c, id), 1);
		cr_assert(crdt_chat_has_read(c, "zed", 3, id));
		crdt_buf_fini(&bad);
	}
	/* The unflipped snapshot still loads, and changes nothing. */
	cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_chat_count(thread(&v)), 1);
	crdt_buf_fini(&m);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&pat);
	crdt_buf_fini(&before);
	crdt_doc_free(a.d);
	crdt_doc_free(v.d);
	ASSERT_NO_LEAKS();
}

/* ---------------------------------------------------------------- */
/* the order key                                                    */

/* An unsigned message from `sender` carrying one post op with `seen`:
 * [1, 5, sender, counter, hlc, deps, payload, nil]. */
static void
raw_post(crdt_buf *out, crdt_replica_id sender, uint64_t counter,
    uint64_t hlc, uint64_t seen)
{
	crdt_buf pay;
	tb_init(&pay);
	mp_array(&pay, 1);
	mp_array(&pay, 7);
	mp_uint(&pay, 0); /* the thread */
	mp_uint(&pay, 0); /* post */
	mp_uint(&pay, seen);
	mp_bin(&pay, "mallory", 7);
	mp_bin(&pay, "hi", 2);
	mp_nil(&pay);
	mp_nil(&pay);
	crdt_buf_clear(out);
	mp_array(out, 8);
	mp_uint(out, 1);
	mp_uint(out, 5);
	mp_id(out, sender);
	mp_uint(out, counter);
	mp_uint(out, hlc);
	mp_array(out, 0);
	mp_bin(out, pay.data, pay.len);
	mp_nil(out);
	crdt_buf_fini(&pay);
}

/*
 * p14: a post whose `seen` would push the order key to UINT64_MAX is
 * refused at receive and changes nothing; the greatest accepted `seen`
 * saturates the key, and every later honest post, on every replica and on
 * one that loads a snapshot, still commits and is shown. (Saturated keys
 * tie and sort by dot, the same on every replica.)
 */
Test(chat_hostile, order_key_cannot_be_saturated_by_a_peer)
{
	static const uint64_t refused[] = { UINT64_MAX, UINT64_MAX - 1,
		SEEN_MAX + 1 };
	peer a, b, c;
	crdt_buf m, evil, before, snap;

	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&b, 2);
	tb_init(&m);
	tb_init(&evil);
	tb_init(&before);
	tb_init(&snap);
	post(&a, "alice", "hello", &m);
	deliver(&b, &m);
	crdt_replica_id mal = test_id(3);
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		raw_post(&evil, mal, 1, T0 << 16, refused[i]);
		save(&a, &before);
		int rc = crdt_doc_receive(a.d, evil.data, evil.len, NULL);
		assert_refused_unchanged(&a, rc, CRDT_EMALFORMED, &before,
		    "a post with seen past SEEN_MAX");
	}
	raw_post(&evil, mal, 1, T0 << 16, SEEN_MAX);
	cr_assert_eq(crdt_doc_receive(a.d, evil.data, evil.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(b.d, evil.data, evil.len, NULL), 0);
	crdt_chat_msg shown;
	crdt_dot evil_id = { mal, 1 };
	cr_assert_eq(crdt_chat_get(thread(&a), evil_id, &shown), 0);
	cr_assert_eq(shown.order, SEEN_MAX + 1);
	for (int round = 0; round < 3; round++) {
		crdt_dot x = post(&a, "alice", "still here", &m);
		deliver(&b, &m);
		crdt_dot y = post(&b, "bob", "me too", &m);
		deliver(&a, &m);
		cr_assert_eq(crdt_chat_get(thread(&a), x, &shown), 0);
		cr_assert_eq(shown.order, SEEN_MAX + 1);
		cr_assert_eq(crdt_chat_get(thread(&b), y, &shown), 0);
		cr_assert_eq(shown.order, SEEN_MAX + 1);
	}
	cr_assert_eq(crdt_chat_count(thread(&a)), 8);
	crdt_dot pa[8], pb[8];
	size_t na, nb;
	cr_assert_eq(crdt_chat_page(thread(&a), NULL, false, 8, pa, &na), 0);
	cr_assert_eq(crdt_chat_page(thread(&b), NULL, false, 8, pb, &nb), 0);
	cr_assert_eq(na, 8);
	cr_assert_eq(nb, 8);
	for (size_t i = 0; i < 8; i++)
		cr_assert_eq(crdt_dot_cmp(pa[i], pb[i]), 0, "same order");
	save(&a, &snap);
	save(&b, &before);
	cr_assert(bytes_eq(snap.data, snap.len, before.data, before.len));
	peer_new(&c, 4);
	cr_assert_eq(crdt_doc_load(c.d, snap.data, snap.len, NULL), 0);
	post(&c, "carol", "hi all", &m);
	cr_assert_eq(crdt_chat_count(thread(&c)), 9);
	crdt_buf_fini(&m);
	crdt_buf_fini(&evil);
	crdt_buf_fini(&before);
	crdt_buf_fini(&snap);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(c.d);
	ASSERT_NO_LEAKS();
}

/* ---------------------------------------------------------------- */
/* reactions                                                        */

typedef struct seen_keys {
	size_t n;
	char keys[64][16];
} seen_keys;

static int
collect_reaction(void *ud, const uint8_t *user, size_t ul,
    const uint8_t *emoji, size_t el)
{
	seen_keys *s = ud;
	cr_assert_lt(s->n, 64);
	cr_assert(ul + el + 2 < sizeof s->keys[0]);
	snprintf(s->keys[s->n++], sizeof s->keys[0], "%.*s/%.*s", (int)ul,
	    (const char *)user, (int)el, (const char *)emoji);
	return 0;
}

static void
visit_reactions(const peer *p, crdt_dot id, seen_keys *s)
{
	memset(s, 0, sizeof *s);
	cr_assert_eq(crdt_chat_reactions(thread(p), id, collect_reaction, s),
	    0);
}

/* One committed toggle: off then on of one key, in one transaction. The
 * second record of the key sees the final state; the count once drifted
 * by one per toggle. */
Test(chat_hostile, reaction_off_on_in_one_transaction_counts_once)
{
	peer a;
	crdt_buf m;
	test_alloc_reset();
	peer_new(&a, 1);
	tb_init(&m);
	crdt_dot id = post(&a, "bob", "hello", &m);
	crdt_buf_clear(&m);
	cr_assert_eq(crdt_doc_chat_react(a.d, 0, id, "amy", 3, "+1", 2, true,
			 &m), 0);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(crdt_doc_begin(a.d), 0);
		cr_assert_eq(crdt_doc_chat_react(a.d, 0, id, "amy", 3, "+1", 2,
				 false, NULL), 0);
		cr_assert_eq(crdt_doc_chat_react(a.d, 0, id, "amy", 3, "+1", 2,
				 true, NULL), 0);
		crdt_buf_clear(&m);
		cr_assert_eq(crdt_doc_commit(a.d, &m), 0);
		seen_keys s;
		visit_reactions(&a, id, &s);
		cr_assert_eq(s.n, 1);
		cr_assert_eq(crdt_chat_reaction_count(thread(&a), id), 1);
	}
	crdt_buf_fini(&m);
	crdt_doc_free(a.d);
	ASSERT_NO_LEAKS();
}

#define NREP 4
#define MAXMSG 256

/*
 * Seeded random schedules: four replicas run transactions that toggle the
 * same few reactions off and on (often both in one transaction), messages
 * are delivered to each replica in its own random order (the causal buffer
 * holds what comes early). Every replica must end byte-identical, and on
 * each the count equals what the visitor visits, equal across replicas.
 */
Test(chat_hostile, reaction_count_matches_visit_on_random_schedules)
{
	static const char *users[] = { "amy", "bo" };
	static const char *emojis[] = { "+1", "ok" };

	for (uint64_t seed = 1; seed <= 40; seed++) {
		test_rng rng;
		peer p[NREP];
		crdt_buf msgs[MAXMSG], m;
		size_t nmsg = 0;

		test_alloc_reset();
		test_rng_init(&rng, seed);
		tb_init(&m);
		for (int i = 0; i < NREP; i++)
			peer_new(&p[i], (uint8_t)(i + 1));
		crdt_dot id = post(&p[0], "host", "react here", &m);
		for (int i = 1; i < NREP; i++)
			deliver(&p[i], &m);
		for (int step = 0; step < 60 && nmsg < MAXMSG; step++) {
			peer *w = &p[test_rng_below(&rng, NREP)];
			w->clk.ms += test_rng_below(&rng, 3);
			cr_assert_eq(crdt_doc_begin(w->d), 0);
			int ops = 1 + (int)test_rng_below(&rng, 4);
			for (int k = 0; k < ops; k++) {
				const char *u = users[test_rng_below(&rng, 2)];
				const char *e = emojis[test_rng_below(&rng, 2)];
				bool on = test_rng_chance(&rng, 1, 2);
				cr_assert_eq(crdt_doc_chat_react(w->d, 0, id, u,
						 strlen(u), e, strlen(e), on,
						 NULL), 0);
				if (test_rng_chance(&rng, 1, 2))
					cr_assert_eq(crdt_doc_chat_react(w->d,
							 0, id, u, strlen(u),
							 e, strlen(e), !on,
							 NULL), 0);
			}
			tb_init(&msgs[nmsg]);
			cr_assert_eq(crdt_doc_commit(w->d, &msgs[nmsg]), 0);
			nmsg++;
			/* Some deliveries now, in random order. */
			for (int r = 0; r < NREP; r++) {
				if (!test_rng_chance(&rng, 1, 3))
					continue;
				size_t j = test_rng_below(&rng, nmsg);
				cr_assert_eq(crdt_doc_receive(p[r].d,
						 msgs[j].data, msgs[j].len,
						 NULL), 0);
			}
		}
		/* Everything to everyone, each in its own shuffled order. */
		for (int r = 0; r < NREP; r++) {
			size_t order[MAXMSG];
			for (size_t i = 0; i < nmsg; i++)
				order[i] = i;
			for (size_t i = nmsg; i > 1; i--) {
				size_t j = test_rng_below(&rng, i);
				size_t t = order[i - 1];
				order[i - 1] = order[j];
				order[j] = t;
			}
			for (size_t i = 0; i < nmsg; i++)
				cr_assert_eq(crdt_doc_receive(p[r].d,
						 msgs[order[i]].data,
						 msgs[order[i]].len, NULL), 0);
			cr_assert_eq(crdt_doc_buffered(p[r].d), 0);
		}
		crdt_buf s0, sr;
		tb_init(&s0);
		tb_init(&sr);
		save(&p[0], &s0);
		seen_keys v0;
		visit_reactions(&p[0], id, &v0);
		for (int r = 0; r < NREP; r++) {
			save(&p[r], &sr);
			cr_assert(bytes_eq(s0.data, s0.len, sr.data, sr.len),
			    "seed %llu: replica %d diverged",
			    (unsigned long long)seed, r);
			seen_keys v;
			visit_reactions(&p[r], id, &v);
			size_t n = crdt_chat_reaction_count(thread(&p[r]), id);
			cr_assert_eq(n, v.n, "seed %llu replica %d: count %zu, "
			    "visited %zu", (unsigned long long)seed, r, n, v.n);
			cr_assert_eq(v.n, v0.n);
			for (size_t i = 0; i < v.n; i++)
				cr_assert_str_eq(v.keys[i], v0.keys[i]);
		}
		crdt_buf_fini(&s0);
		crdt_buf_fini(&sr);
		for (size_t i = 0; i < nmsg; i++)
			crdt_buf_fini(&msgs[i]);
		crdt_buf_fini(&m);
		for (int i = 0; i < NREP; i++)
			crdt_doc_free(p[i].d);
		ASSERT_NO_LEAKS();
	}
}

/* Reactions arriving in descending key order (the p11 shape) are visited
 * in ascending key order, each once, with the count to match. */
Test(chat_hostile, reactions_visited_in_key_order_whatever_the_arrival)
{
	peer a, b;
	crdt_buf m;
	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&b, 2);
	tb_init(&m);
	crdt_dot id = post(&a, "bob", "hello", &m);
	deliver(&b, &m);
	cr_assert_eq(crdt_doc_begin(a.d), 0);
	for (int i = 40; i > 0; i--) {
		char e[4];
		snprintf(e, sizeof e, "%02d", i);
		cr_assert_eq(crdt_doc_chat_react(a.d, 0, id, "u", 1, e, 2, true,
				 NULL), 0);
	}
	crdt_buf_clear(&m);
	cr_assert_eq(crdt_doc_commit(a.d, &m), 0);
	deliver(&b, &m);
	seen_keys s;
	visit_reactions(&b, id, &s);
	cr_assert_eq(s.n, 40);
	cr_assert_eq(crdt_chat_reaction_count(thread(&b), id), 40);
	for (int i = 0; i < 40; i++) {
		char want[8];
		snprintf(want, sizeof want, "u/%02d", i + 1);
		cr_assert_str_eq(s.keys[i], want);
	}
	crdt_buf_fini(&m);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	ASSERT_NO_LEAKS();
}

/* ---------------------------------------------------------------- */
/* canonical visitor order                                          */

typedef struct names {
	size_t n;
	char v[8][8];
} names;

static int
collect_user(void *ud, const uint8_t *u, size_t len)
{
	names *s = ud;
	cr_assert_lt(s->n, 8);
	cr_assert_lt(len, sizeof s->v[0]);
	memcpy(s->v[s->n], u, len);
	s->v[s->n++][len] = '\0';
	return 0;
}

/*
 * Two replicas hear the same read marks and membership changes in
 * opposite orders: identical snapshots, and crdt_chat_read_by and
 * crdt_chat_members visit users in the byte order of their IDs on both.
 */
Test(chat_hostile, read_by_and_members_visit_in_canonical_order)
{
	static const char *who[] = { "zoe", "max", "ann", "bob" };
	peer a, b, w[4];
	crdt_buf m, rd[4], mb[4], sa, sb;

	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&b, 2);
	tb_init(&m);
	tb_init(&sa);
	tb_init(&sb);
	crdt_dot id = post(&a, "host", "read me", &m);
	deliver(&b, &m);
	for (int i = 0; i < 4; i++) {
		peer_new(&w[i], (uint8_t)(10 + i));
		deliver(&w[i], &m);
		tb_init(&rd[i]);
		tb_init(&mb[i]);
		cr_assert_eq(crdt_doc_chat_mark_read(w[i].d, 0, who[i],
				 strlen(who[i]), &rd[i]), 0);
		cr_assert_eq(crdt_doc_chat_member(w[i].d, 0, who[i],
				 strlen(who[i]), true, &mb[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		deliver(&a, &rd[i]);
		deliver(&a, &mb[i]);
		deliver(&b, &rd[3 - i]);
		deliver(&b, &mb[3 - i]);
	}
	save(&a, &sa);
	save(&b, &sb);
	cr_assert(bytes_eq(sa.data, sa.len, sb.data, sb.len));
	const peer *both[2] = { &a, &b };
	for (int k = 0; k < 2; k++) {
		names r, s;
		memset(&r, 0, sizeof r);
		memset(&s, 0, sizeof s);
		cr_assert_eq(crdt_chat_read_by(thread(both[k]), id,
				 collect_user, &r), 0);
		cr_assert_eq(crdt_chat_members(thread(both[k]), collect_user,
				 &s), 0);
		cr_assert_eq(r.n, 4);
		cr_assert_eq(s.n, 4);
		static const char *sorted[] = { "ann", "bob", "max", "zoe" };
		for (int i = 0; i < 4; i++) {
			cr_assert_str_eq(r.v[i], sorted[i], "replica %d", k);
			cr_assert_str_eq(s.v[i], sorted[i], "replica %d", k);
		}
	}
	/* The same after a reload (the index rebuilt from the state). */
	peer c;
	peer_new(&c, 3);
	cr_assert_eq(crdt_doc_load(c.d, sb.data, sb.len, NULL), 0);
	names r;
	memset(&r, 0, sizeof r);
	cr_assert_eq(crdt_chat_read_by(thread(&c), id, collect_user, &r), 0);
	cr_assert_eq(r.n, 4);
	cr_assert_str_eq(r.v[0], "ann");
	cr_assert_str_eq(r.v[3], "zoe");
	for (int i = 0; i < 4; i++) {
		crdt_buf_fini(&rd[i]);
		crdt_buf_fini(&mb[i]);
		crdt_doc_free(w[i].d);
	}
	crdt_buf_fini(&m);
	crdt_buf_fini(&sa);
	crdt_buf_fini(&sb);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(c.d);
	ASSERT_NO_LEAKS();
}

/* ---------------------------------------------------------------- */
/* queries never allocate                                           */

static int
count_user(void *ud, const uint8_t *u, size_t len)
{
	(void)u;
	(void)len;
	++*(size_t *)ud;
	return 0;
}

static int
count_reaction(void *ud, const uint8_t *u, size_t ul, const uint8_t *e,
    size_t el)
{
	(void)u;
	(void)ul;
	(void)e;
	(void)el;
	++*(size_t *)ud;
	return 0;
}

static int
count_dot(void *ud, crdt_dot id)
{
	(void)id;
	++*(size_t *)ud;
	return 0;
}

/* Every query on the thread, with no allocation through the hook. */
static void
query_all(const peer *p, crdt_dot id, const char *when)
{
	const crdt_chat *c = thread(p);
	unsigned long calls = test_alloc_calls();
	crdt_chat_msg m;
	crdt_dot page[8];
	size_t n = 0, got, pos;
	crdt_chat_status st;
	size_t count = crdt_chat_count(c);
	cr_assert_gt(count, 0, "%s: the thread is empty", when);
	cr_assert_eq(crdt_chat_get(c, id, &m), 0, "%s", when);
	cr_assert_eq(crdt_chat_at(c, 0, &m), 0, "%s", when);
	cr_assert_eq(crdt_chat_position(c, id, &pos), 0, "%s", when);
	cr_assert_eq(crdt_chat_page(c, NULL, false, 8, page, &got), 0);
	cr_assert_eq(crdt_chat_page(c, &id, true, 8, page, &got), 0);
	cr_assert_eq(crdt_chat_status_of(c, id, &st), 0, "%s", when);
	cr_assert_eq(crdt_chat_reactions(c, id, count_reaction, &n), 0);
	cr_assert_eq(n, crdt_chat_reaction_count(c, id), "%s", when);
	n = 0;
	cr_assert_eq(crdt_chat_read_by(c, id, count_user, &n), 0);
	(void)crdt_chat_has_read(c, "amy", 3, id);
	(void)crdt_chat_unread(c, "amy", 3);
	(void)crdt_chat_is_member(c, "amy", 3);
	n = 0;
	cr_assert_eq(crdt_chat_members(c, count_user, &n), 0);
	n = 0;
	cr_assert_eq(crdt_chat_outbox(c, crdt_doc_self(p->d), count_dot, &n),
	    0);
	cr_assert_eq(crdt_chat_rejection(c, id, NULL, NULL), CRDT_ENOTFOUND);
	cr_assert_eq(test_alloc_calls(), calls,
	    "%s: queries allocated %lu times", when,
	    test_alloc_calls() - calls);
}

/*
 * Fail allocation N = 0, 1, 2, ... in a transaction that posts, reacts,
 * marks read and joins, in receiving it, and in loading a snapshot: each
 * attempt either fails with CRDT_ENOMEM and changes nothing, or succeeds
 * with the index current, so that every query answers at once without
 * allocating (the index used to go stale on a failure after commit and be
 * rebuilt, allocating, by the next const query).
 */
Test(chat_hostile, index_is_current_after_every_allocation_failure)
{
	peer a, b, v;
	crdt_buf m, before, snap;

	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&b, 2);
	tb_init(&m);
	tb_init(&before);
	tb_init(&snap);
	crdt_dot first = post(&b, "bob", "hello", &m);
	deliver(&a, &m);
	for (int step = 0; step < 3; step++) {
		for (long n = 0;; n++) {
			peer *at = step == 0 ? &a : step == 1 ? &b : &v;
			if (step == 2) {
				peer_new(&v, 3);
				save(&a, &snap);
			}
			save(at, &before);
			crdt_buf out;
			tb_init(&out);
			test_alloc_fail_at(n);
			int rc;
			if (step == 0) {
				rc = crdt_doc_begin(a.d);
				crdt_chat_post p = { "amy", 3, "yes", 3, &first,
					NULL, 0 };
				if (rc == 0)
					rc = crdt_doc_chat_post(a.d, 0, &p,
					    NULL, NULL);
				if (rc == 0)
					rc = crdt_doc_chat_react(a.d, 0, first,
					    "amy", 3, "+1", 2, true, NULL);
				if (rc == 0)
					rc = crdt_doc_chat_react(a.d, 0, first,
					    "amy", 3, "+1", 2, false, NULL);
				if (rc == 0)
					rc = crdt_doc_chat_react(a.d, 0, first,
					    "amy", 3, "+1", 2, true, NULL);
				if (rc == 0)
					rc = crdt_doc_chat_mark_read(a.d, 0,
					    "amy", 3, NULL);
				if (rc == 0)
					rc = crdt_doc_chat_member(a.d, 0, "amy",
					    3, true, NULL);
				if (rc == 0)
					rc = crdt_doc_chat_member(a.d, 0, "amy",
					    3, false, NULL);
				if (rc == 0)
					rc = crdt_doc_commit(a.d, &out);
				if (rc != 0)
					crdt_doc_abort(a.d);
			} else if (step == 1) {
				rc = crdt_doc_receive(b.d, m.data, m.len, NULL);
			} else {
				rc = crdt_doc_load(v.d, snap.data, snap.len,
				    NULL);
			}
			bool fired = test_alloc_fired();
			test_alloc_disarm();
			if (rc != 0)
				assert_refused_unchanged(at, rc, CRDT_ENOMEM,
				    &before, "an allocation failure");
			else
				query_all(at, first, "after success");
			if (step == 0 && rc == 0) {
				crdt_buf_clear(&m);
				mp_raw(&m, out.data, out.len);
			}
			crdt_buf_fini(&out);
			/* A commit that succeeded is not retried (it would
			 * post twice); a load is retried on a fresh replica. */
			bool done = rc == 0 && (!fired || step == 0);
			if (step == 2 && !done)
				crdt_doc_free(v.d);
			if (done)
				break;
			cr_assert_lt(n, 100000);
		}
	}
	/* All three hold the same thread, with the toggled reaction once. */
	crdt_buf sa, sv;
	tb_init(&sa);
	tb_init(&sv);
	save(&a, &sa);
	save(&b, &before);
	save(&v, &sv);
	cr_assert(bytes_eq(sa.data, sa.len, before.data, before.len));
	cr_assert(bytes_eq(sa.data, sa.len, sv.data, sv.len));
	cr_assert_eq(crdt_chat_reaction_count(thread(&v), first), 1);
	cr_assert(!crdt_chat_is_member(thread(&v), "amy", 3));
	cr_assert(crdt_chat_has_read(thread(&b), "amy", 3, first));
	crdt_buf_fini(&sa);
	crdt_buf_fini(&sv);
	crdt_buf_fini(&m);
	crdt_buf_fini(&before);
	crdt_buf_fini(&snap);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(v.d);
	ASSERT_NO_LEAKS();
}
