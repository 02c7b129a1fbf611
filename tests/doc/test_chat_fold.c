/*
 * Chat index fold after commit. To stay within the benchmark's cost
 * contract, the apply walk remembers what it wrote for a post (the
 * record's fields, the replica and author entries it reserved) and the
 * fold after commit reuses that instead of hashing the keys and parsing
 * the record a second time. These tests hold that shortcut to the slow
 * path: a replica that loads a snapshot builds its index by parsing every
 * record, and must answer every query exactly like the replica that
 * folded the same messages one commit at a time, including after rolled
 * back transactions, for rival records of one message ID, and for posts
 * with every optional field. (Debug builds also check each remembered
 * post against its parsed record, in every test of the suite.)
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_util.h"

#define T0 UINT64_C(1700000000000)

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
post_full(peer *p, const void *user, size_t ul, const char *body,
    const crdt_dot *reply, const void *meta, size_t ml, crdt_buf *out)
{
	crdt_chat_post m = { user, ul, body, strlen(body), reply, meta, ml };
	crdt_dot id;
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_chat_post(p->d, 0, &m, &id, out), 0);
	return id;
}

static crdt_dot
post(peer *p, const char *user, const char *body, crdt_buf *out)
{
	return post_full(p, user, strlen(user), body, NULL, NULL, 0, out);
}

static void
deliver(peer *to, const crdt_buf *m)
{
	cr_assert_eq(crdt_doc_receive(to->d, m->data, m->len, NULL), 0);
}

/* A fresh replica `v` (ID idn) loaded from `from`'s snapshot: its index is
 * built from the records alone. */
static void
load_copy(peer *v, uint8_t idn, const peer *from)
{
	crdt_buf snap;
	tb_init(&snap);
	peer_new(v, idn);
	cr_assert_eq(crdt_doc_save(from->d, &snap), 0);
	cr_assert_eq(crdt_doc_load(v->d, snap.data, snap.len, NULL), 0);
	crdt_buf_fini(&snap);
}

static int
count_dot(void *ud, crdt_dot id)
{
	(void)id;
	++*(size_t *)ud;
	return 0;
}

static bool
opt_eq(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	if (a == NULL || b == NULL)
		return a == b;
	return bytes_eq(a, al, b, bl);
}

/* Every message at every position, and the per-user and per-replica
 * counts, agree between the folded index of `a` and the rebuilt one of
 * `v`. */
static void
assert_same_index(const peer *a, const peer *v, const char *const *users,
    size_t nusers, const char *when)
{
	const crdt_chat *ca = thread(a), *cv = thread(v);
	size_t n = crdt_chat_count(ca);
	cr_assert_eq(n, crdt_chat_count(cv), "%s: count %zu vs %zu", when, n,
	    crdt_chat_count(cv));
	for (size_t i = 0; i < n; i++) {
		crdt_chat_msg x, y;
		size_t pos;
		cr_assert_eq(crdt_chat_at(ca, i, &x), 0, "%s", when);
		cr_assert_eq(crdt_chat_at(cv, i, &y), 0, "%s", when);
		cr_assert_eq(crdt_dot_cmp(x.id, y.id), 0,
		    "%s: position %zu holds different messages", when, i);
		cr_assert_eq(x.order, y.order, "%s: order at %zu", when, i);
		cr_assert_eq(x.sent_at, y.sent_at, "%s", when);
		cr_assert(bytes_eq(x.user, x.user_len, y.user, y.user_len),
		    "%s: author at %zu", when, i);
		cr_assert(bytes_eq(x.body, x.body_len, y.body, y.body_len),
		    "%s: body at %zu", when, i);
		cr_assert_eq(x.has_reply_to, y.has_reply_to, "%s", when);
		if (x.has_reply_to)
			cr_assert_eq(crdt_dot_cmp(x.reply_to, y.reply_to), 0);
		cr_assert(opt_eq(x.meta, x.meta_len, y.meta, y.meta_len),
		    "%s: meta at %zu", when, i);
		cr_assert_eq(crdt_chat_position(ca, x.id, &pos), 0);
		cr_assert_eq(pos, i, "%s: position of the message at %zu is %zu",
		    when, i, pos);
	}
	for (size_t u = 0; u < nusers; u++) {
		size_t ul = strlen(users[u]);
		cr_assert_eq(crdt_chat_unread(ca, users[u], ul),
		    crdt_chat_unread(cv, users[u], ul),
		    "%s: unread of %s", when, users[u]);
	}
	for (uint8_t r = 1; r <= 4; r++) {
		crdt_replica_id id = test_id(r);
		size_t oa = 0, ov = 0;
		cr_assert_eq(crdt_chat_outbox(ca, &id, count_dot, &oa), 0);
		cr_assert_eq(crdt_chat_outbox(cv, &id, count_dot, &ov), 0);
		cr_assert_eq(oa, ov, "%s: outbox of replica %u: %zu vs %zu",
		    when, (unsigned)r, oa, ov);
	}
}

/* Posts with a reply, metadata, an empty body and a 255-byte author, in
 * one-op transactions and in a transaction with other chat ops, applied
 * locally and received: the folded index equals the rebuilt one. */
Test(chat_fold, folded_posts_match_an_index_rebuilt_from_the_records)
{
	peer a, b, v;
	crdt_buf m;
	uint8_t longuser[255];
	static const char *const users[] = { "amy", "bob", "cy" };

	test_alloc_reset();
	memset(longuser, 'z', sizeof longuser);
	peer_new(&a, 1);
	peer_new(&b, 2);
	tb_init(&m);
	crdt_dot d1 = post(&a, "amy", "first", &m);
	deliver(&b, &m);
	b.clk.ms += 5;
	crdt_dot d2 = post_full(&b, "bob", 3, "re", &d1, "\x01\x02", 2, &m);
	deliver(&a, &m);
	(void)post_full(&a, longuser, sizeof longuser, "", NULL, "", 0, &m);
	deliver(&b, &m);
	/* A post among other ops: the fold sees the post's record next to
	 * mark and reaction records. */
	cr_assert_eq(crdt_doc_begin(b.d), 0);
	cr_assert_eq(crdt_doc_chat_react(b.d, 0, d1, "bob", 3, "+1", 2, true,
			 NULL), 0);
	crdt_chat_post p = { "cy", 2, "late", 4, &d2, "m", 1 };
	cr_assert_eq(crdt_doc_chat_post(b.d, 0, &p, NULL, NULL), 0);
	cr_assert_eq(crdt_doc_chat_mark_read(b.d, 0, "cy", 2, NULL), 0);
	crdt_buf_clear(&m);
	cr_assert_eq(crdt_doc_commit(b.d, &m), 0);
	deliver(&a, &m);
	/* A replica that is behind: a key below what it has seen. */
	a.clk.ms -= 1000;
	(void)post(&a, "amy", "skewed", &m);
	deliver(&b, &m);

	cr_assert_eq(crdt_chat_count(thread(&a)), 5);
	load_copy(&v, 3, &a);
	assert_same_index(&a, &v, users, 3, "a");
	assert_same_index(&b, &v, users, 3, "b");
	crdt_doc_free(v.d);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_buf_fini(&m);
	cr_assert_eq(test_alloc_live_blocks(), 0, "leak");
}

/*
 * A transaction whose post was applied and then rolled back (an
 * allocation failure later in the commit), retried with another author
 * and body until it succeeds: the index never shows a rolled-back post,
 * and what it shows at the end is what a rebuild shows. The attempts
 * insert and remove the same msgs entry again and again, which is where a
 * remembered post could be taken for the wrong record.
 */
Test(chat_fold, rolled_back_posts_leave_nothing_to_fold)
{
	peer a, v;
	crdt_buf m;
	static const char *const users[] = { "amy", "u0", "u1", "u2", "u3",
		"u4", "u5", "u6", "u7", "u8", "u9" };
	char user[8], body[16];
	int ok = 0;

	test_alloc_reset();
	peer_new(&a, 1);
	tb_init(&m);
	crdt_dot first = post(&a, "amy", "hello", &m);
	for (long n = 0; n < 400 && ok < 3; n++) {
		snprintf(user, sizeof user, "u%ld", n % 10);
		snprintf(body, sizeof body, "try %ld", n);
		size_t before = crdt_chat_count(thread(&a));
		crdt_buf out;
		tb_init(&out);
		int rc = crdt_doc_begin(a.d);
		crdt_chat_post p = { user, strlen(user), body, strlen(body),
			&first, NULL, 0 };
		if (rc == 0)
			rc = crdt_doc_chat_post(a.d, 0, &p, NULL, NULL);
		if (rc == 0)
			rc = crdt_doc_chat_react(a.d, 0, first, user,
			    strlen(user), "+1", 2, true, NULL);
		if (rc == 0)
			rc = crdt_doc_chat_member(a.d, 0, user, strlen(user),
			    true, NULL);
		test_alloc_fail_at(n % 40);
		if (rc == 0)
			rc = crdt_doc_commit(a.d, &out);
		test_alloc_fail_at(-1);
		if (rc != 0) {
			cr_assert_eq(rc, CRDT_ENOMEM, "attempt %ld: %s", n,
			    crdt_err_name(rc));
			crdt_doc_abort(a.d);
			cr_assert_eq(crdt_chat_count(thread(&a)), before,
			    "attempt %ld: a rolled-back post is shown", n);
		} else {
			cr_assert_eq(crdt_chat_count(thread(&a)), before + 1);
			crdt_chat_msg last;
			cr_assert_eq(crdt_chat_at(thread(&a), before, &last),
			    0);
			cr_assert(bytes_eq(last.body, last.body_len, body,
				      strlen(body)),
			    "attempt %ld shows another attempt's body", n);
			ok++;
		}
		crdt_buf_fini(&out);
	}
	cr_assert_eq(ok, 3, "the commits did not succeed");
	load_copy(&v, 3, &a);
	assert_same_index(&a, &v, users, 11, "after rollbacks");
	crdt_doc_free(v.d);
	crdt_doc_free(a.d);
	crdt_buf_fini(&m);
	cr_assert_eq(test_alloc_live_blocks(), 0, "leak");
}

/*
 * Two writers with one replica ID (a device restored without its state)
 * post different records under the same message ID; replicas receive them
 * in both orders. The one with the smaller bytes is shown wherever it
 * arrives, its author's counts move with it (the rival path of the fold),
 * and each folded index equals a rebuilt one.
 */
Test(chat_fold, rival_records_fold_like_a_rebuild)
{
	peer a, forger, o, p, v;
	crdt_buf m1, m2;
	static const char *const users[] = { "amy", "bob" };

	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&forger, 1); /* same replica ID as a */
	forger.clk.ms = T0 + 1000;
	peer_new(&o, 2);
	peer_new(&p, 3);
	tb_init(&m1);
	tb_init(&m2);
	crdt_dot x = post(&a, "bob", "zzz", &m1);
	crdt_dot y = post(&forger, "amy", "aaa", &m2);
	cr_assert_eq(crdt_dot_cmp(x, y), 0, "both writers used one dot");
	deliver(&o, &m1);
	deliver(&o, &m2);
	deliver(&p, &m2);
	deliver(&p, &m1);
	crdt_chat_msg so, sp;
	cr_assert_eq(crdt_chat_get(thread(&o), x, &so), 0);
	cr_assert_eq(crdt_chat_get(thread(&p), x, &sp), 0);
	cr_assert(bytes_eq(so.body, so.body_len, sp.body, sp.body_len),
	    "the shown record depends on arrival order");
	cr_assert(bytes_eq(so.body, so.body_len, "zzz", 3),
	    "the smaller record (older clock) is not the one shown");
	load_copy(&v, 4, &o);
	assert_same_index(&o, &v, users, 2, "replaced on arrival");
	assert_same_index(&p, &v, users, 2, "kept on arrival");
	crdt_doc_free(v.d);
	crdt_doc_free(a.d);
	crdt_doc_free(forger.d);
	crdt_doc_free(o.d);
	crdt_doc_free(p.d);
	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	cr_assert_eq(test_alloc_live_blocks(), 0, "leak");
}

/*
 * Posts folded one commit at a time next to records indexed by a load:
 * two posts with equal order keys from two replicas sort by replica ID,
 * whichever way each was indexed, so a fold that took a wrong key for the
 * post it remembered would put them the other way round.
 */
Test(chat_fold, folded_post_sorts_among_loaded_records)
{
	peer a, b, v, w;
	crdt_buf m1, m2;
	static const char *const users[] = { "amy", "bob" };

	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&b, 2);
	tb_init(&m1);
	tb_init(&m2);
	crdt_dot y = post(&b, "bob", "second by replica", &m2);
	crdt_dot x = post(&a, "amy", "first by replica", &m1);
	/* v knows b's post from a snapshot (parsed) and folds a's as it
	 * arrives (remembered by the walk). */
	load_copy(&v, 3, &b);
	deliver(&v, &m1);
	load_copy(&w, 4, &v);
	crdt_chat_msg mx, my;
	cr_assert_eq(crdt_chat_get(thread(&w), x, &mx), 0);
	cr_assert_eq(crdt_chat_get(thread(&w), y, &my), 0);
	cr_assert_eq(mx.order, my.order, "the posts need one order key");
	size_t px, py;
	cr_assert_eq(crdt_chat_position(thread(&v), x, &px), 0);
	cr_assert_eq(crdt_chat_position(thread(&v), y, &py), 0);
	cr_assert(px < py, "equal keys sort by replica ID: %zu, %zu", px, py);
	assert_same_index(&v, &w, users, 2, "mixed");
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(v.d);
	crdt_doc_free(w.d);
	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	cr_assert_eq(test_alloc_live_blocks(), 0, "leak");
}

/* What a listener hears of each inserted post: its position at that
 * moment, which must be where the thread then shows it. */
typedef struct inserts {
	const crdt_doc *d;
	size_t n, wrong;
} inserts;

static void
on_insert(void *ud, const crdt_change *ch)
{
	inserts *s = ud;
	if (ch->kind != CRDT_CHANGE_CHAT_INSERT)
		return;
	const crdt_chat *c;
	size_t pos;
	s->n++;
	if (crdt_doc_chat(s->d, ch->obj, &c) != 0 ||
	    crdt_chat_position(c, ch->msg, &pos) != 0 || pos != ch->position)
		s->wrong++;
}

/* Posts received newest first and interleaved from two writers, so each
 * lands at the front or in the middle: every insert event names the
 * position the thread shows it at, and without a listener the thread
 * holds the same order. */
Test(chat_fold, insert_events_report_the_position_shown)
{
	peer a, b, v, w;
	crdt_buf m[12];

	peer_new(&a, 1);
	peer_new(&b, 2);
	peer_new(&v, 3);
	peer_new(&w, 4);
	for (int i = 0; i < 12; i++) {
		char body[16];
		tb_init(&m[i]);
		snprintf(body, sizeof body, "m%d", i);
		peer *p = i % 2 ? &b : &a;
		p->clk.ms = T0 + (uint64_t)i * 1000;
		post(p, i % 2 ? "bo" : "al", body, &m[i]);
	}
	inserts s = { v.d, 0, 0 };
	crdt_doc_listener l;
	memset(&l, 0, sizeof l);
	l.on_change = on_insert;
	l.ud = &s;
	crdt_doc_set_listener(v.d, &l);
	/* Each writer's messages must come in its own order; the two
	 * writers' runs arrive newest writer-run first. */
	static const int order[12] = { 1, 3, 5, 7, 9, 11, 0, 2, 4, 6, 8, 10 };
	for (int i = 0; i < 12; i++) {
		deliver(&v, &m[order[i]]);
		deliver(&w, &m[order[i]]);
	}
	cr_assert_eq(s.n, 12, "%zu insert events", s.n);
	cr_assert_eq(s.wrong, 0, "%zu events named another position",
	    s.wrong);
	assert_same_index(&v, &w, NULL, 0, "with and without a listener");
	for (int i = 0; i < 12; i++)
		crdt_buf_fini(&m[i]);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(v.d);
	crdt_doc_free(w.d);
}
