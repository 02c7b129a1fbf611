/*
 * Chat thread: the seed's T0..T6 offline scenario, intention preservation,
 * clock skew, reactions, exact read receipts, membership, outbox/ack and
 * moderation, pagination against a naive model, and group chat on the
 * simulated network. Convergence is always checked on snapshot bytes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

#define HOUR UINT64_C(3600000)
#define MIN2(a, b) ((a) < (b) ? (a) : (b))

typedef struct peer {
	crdt_doc *d;
	test_clock clk;
	crdt_config cfg;
} peer;

static const crdt_replica_id *server_id;

static void
peer_new(peer *p, uint8_t idn, uint64_t now, const crdt_replica_id *server)
{
	crdt_replica_id id = test_id(idn);
	p->clk.ms = now;
	test_config(&p->cfg, &p->clk);
	cr_assert_eq(crdt_doc_new(&p->cfg, &id, &p->d), 0);
	cr_assert_eq(crdt_doc_register_chat(p->d, "thread", server, NULL), 0);
}

static const crdt_chat *
thread(const peer *p)
{
	const crdt_chat *c;
	cr_assert_eq(crdt_doc_chat(p->d, 0, &c), 0);
	return c;
}

static crdt_dot
post(peer *p, const char *user, const char *body, const crdt_dot *reply,
    crdt_buf *out)
{
	crdt_chat_post m = { user, strlen(user), body, strlen(body), reply,
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
sync_pair(peer *a, peer *b)
{
	crdt_buf f[4];
	for (int i = 0; i < 4; i++)
		tb_init(&f[i]);
	cr_assert_eq(crdt_doc_sync_start(a->d, &f[0]), 0);
	cr_assert_eq(crdt_doc_sync_handle(b->d, f[0].data, f[0].len, NULL,
			 &f[1]), 0);
	cr_assert_eq(crdt_doc_sync_handle(a->d, f[1].data, f[1].len, NULL,
			 &f[2]), 0);
	if (f[2].len > 0)
		cr_assert_eq(crdt_doc_sync_handle(b->d, f[2].data, f[2].len,
				 NULL, &f[3]), 0);
	cr_assert_eq(f[3].len, 0, "a sync round ends after three frames");
	for (int i = 0; i < 4; i++)
		crdt_buf_fini(&f[i]);
}

static void
same_bytes(peer *a, peer *b)
{
	crdt_buf x, y;
	tb_init(&x);
	tb_init(&y);
	cr_assert_eq(crdt_doc_save(a->d, &x), 0);
	cr_assert_eq(crdt_doc_save(b->d, &y), 0);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len),
	    "snapshots differ (%zu vs %zu bytes)", x.len, y.len);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

static void
body_at(const crdt_chat *c, size_t pos, const char *want)
{
	crdt_chat_msg m;
	cr_assert_eq(crdt_chat_at(c, pos, &m), 0);
	cr_assert(m.body_len == strlen(want) &&
		memcmp(m.body, want, m.body_len) == 0,
	    "position %zu holds '%.*s', want '%s'", pos, (int)m.body_len,
	    (const char *)m.body, want);
}

static crdt_chat_status
status(const peer *p, crdt_dot id)
{
	crdt_chat_status st;
	cr_assert_eq(crdt_chat_status_of(thread(p), id, &st), 0);
	return st;
}

static int
collect_outbox(void *ud, crdt_dot id)
{
	crdt_dot *out = ud;
	size_t i = 0;
	while (out[i].counter != 0)
		i++;
	out[i] = id;
	return 0;
}

/*
 * The seed's scenario. T0 Alice offline; T1 she writes M1 (queued, her
 * send fails); T2 Bob sends M2 while she is away; T3 she reconnects and
 * hears M2; T4 she sends M4; T5 Bob sends M5; T6 she resends M1. The seed
 * ends with Alice and Bob seeing different threads; here all three
 * replicas end byte-identical, in creation order, with correct statuses,
 * and M1 keeps the ID it had at T1.
 */
Test(chat, seed_t0_to_t6_offline_scenario_converges)
{
	uint64_t t = UINT64_C(1700000000000);
	peer s, a, b;
	crdt_buf m1, m2, m4, m5, ack, tmp;
	crdt_replica_id sid = test_id(9);

	test_alloc_reset();
	peer_new(&s, 9, t, &sid);
	peer_new(&a, 1, t, &sid);
	peer_new(&b, 2, t, &sid);
	tb_init(&m1);
	tb_init(&m2);
	tb_init(&m4);
	tb_init(&m5);
	tb_init(&ack);
	tb_init(&tmp);

	/* T1: Alice, offline, writes M1. Its ID is final now. */
	a.clk.ms = t + 1000;
	crdt_dot id1 = post(&a, "alice", "M1 are you there?", NULL, &m1);
	cr_assert_eq(status(&a, id1), CRDT_CHAT_PENDING);
	crdt_dot box[4];
	memset(box, 0, sizeof box);
	cr_assert_eq(crdt_chat_outbox(thread(&a), crdt_doc_self(a.d),
			 collect_outbox, box), 0);
	cr_assert_eq(crdt_dot_cmp(box[0], id1), 0, "M1 waits in the outbox");

	/* T2: Bob sends M2; the server gets it and acknowledges. */
	b.clk.ms = s.clk.ms = t + 2000;
	crdt_dot id2 = post(&b, "bob", "M2 hi alice", NULL, &m2);
	deliver(&s, &m2);
	cr_assert_eq(crdt_doc_chat_ack(s.d, 0, &ack), 0);
	deliver(&b, &ack);
	cr_assert_eq(status(&b, id2), CRDT_CHAT_DELIVERED);

	/* T3: Alice reconnects and hears M2 and the ack (not M1 yet: her
	 * client has not resent it). */
	a.clk.ms = t + 3000;
	deliver(&a, &m2);
	deliver(&a, &ack);

	/* T4: Alice sends M4: it depends on M1, which the server lacks, so
	 * the server holds it back instead of showing a broken thread. */
	a.clk.ms = s.clk.ms = b.clk.ms = t + 4000;
	crdt_dot id4 = post(&a, "alice", "M4 back online", NULL, &m4);
	deliver(&s, &m4);
	cr_assert_eq(crdt_doc_buffered(s.d), 1);
	deliver(&b, &m4);

	/* T5: Bob sends M5. */
	b.clk.ms = s.clk.ms = a.clk.ms = t + 5000;
	crdt_dot id5 = post(&b, "bob", "M5 welcome back", NULL, &m5);
	deliver(&s, &m5);
	deliver(&a, &m5);

	/* T6: Alice resends M1: the very same bytes, from her log. */
	const uint8_t *bytes;
	size_t len;
	cr_assert_eq(crdt_doc_log_get(a.d, id1, &bytes, &len), 0);
	cr_assert(bytes_eq(bytes, len, m1.data, m1.len));
	cr_assert_eq(crdt_doc_receive(s.d, bytes, len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(s.d, bytes, len, NULL), 0,
	    "resending twice is harmless");
	cr_assert_eq(crdt_doc_buffered(s.d), 0, "M1 released M4");
	cr_assert_eq(crdt_doc_receive(b.d, bytes, len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(b.d), 0);
	crdt_buf_clear(&ack);
	cr_assert_eq(crdt_doc_chat_ack(s.d, 0, &ack), 0);
	deliver(&a, &ack);
	deliver(&b, &ack);
	/* Bob reads everything. */
	cr_assert_eq(crdt_doc_chat_mark_read(b.d, 0, "bob", 3, &tmp), 0);
	deliver(&a, &tmp);
	deliver(&s, &tmp);

	peer *all[3] = { &s, &a, &b };
	for (int i = 0; i < 3; i++) {
		const crdt_chat *c = thread(all[i]);
		cr_assert_eq(crdt_chat_count(c), 4);
		body_at(c, 0, "M1 are you there?");
		body_at(c, 1, "M2 hi alice");
		body_at(c, 2, "M4 back online");
		body_at(c, 3, "M5 welcome back");
		cr_assert_eq(status(all[i], id1), CRDT_CHAT_READ);
		cr_assert_eq(status(all[i], id4), CRDT_CHAT_READ);
		/* Bob's own messages: delivered; nobody else read them. */
		cr_assert_eq(status(all[i], id2), CRDT_CHAT_DELIVERED);
		cr_assert_eq(status(all[i], id5), CRDT_CHAT_DELIVERED);
	}
	memset(box, 0, sizeof box);
	cr_assert_eq(crdt_chat_outbox(thread(&a), crdt_doc_self(a.d),
			 collect_outbox, box), 0);
	cr_assert_eq(box[0].counter, 0, "outbox empty once acknowledged");
	same_bytes(&s, &a);
	same_bytes(&s, &b);
	sync_pair(&a, &b); /* nothing left to exchange */
	same_bytes(&a, &b);

	crdt_buf *bufs[] = { &m1, &m2, &m4, &m5, &ack, &tmp };
	for (size_t i = 0; i < 6; i++)
		crdt_buf_fini(bufs[i]);
	for (int i = 0; i < 3; i++)
		crdt_doc_free(all[i]->d);
	ASSERT_NO_LEAKS();
}

/* The seed's misunderstanding: Alice asks Q1, then Q2; Bob, who has only
 * seen Q1, answers it. His answer sorts after Q1 on every replica, and a
 * UI can render it under Q1 through reply_to. With Bob's clock an hour
 * behind, the answer still sorts after the question it answers. */
Test(chat, answer_to_an_old_question_sorts_after_it_even_with_a_slow_clock)
{
	uint64_t t = UINT64_C(1700000000000);
	peer a, b;
	crdt_buf q1, q2, ans;

	peer_new(&a, 1, t, NULL);
	peer_new(&b, 2, t - HOUR, NULL); /* Bob's clock is an hour behind */
	tb_init(&q1);
	tb_init(&q2);
	tb_init(&ans);
	crdt_dot idq1 = post(&a, "alice", "Q1 coffee?", NULL, &q1);
	a.clk.ms += 10;
	post(&a, "alice", "Q2 or tea?", NULL, &q2);
	deliver(&b, &q1);
	b.clk.ms += 20;
	crdt_dot ida = post(&b, "bob", "yes!", &idq1, &ans);
	deliver(&b, &q2);
	deliver(&a, &ans);
	peer *all[2] = { &a, &b };
	for (int i = 0; i < 2; i++) {
		const crdt_chat *c = thread(all[i]);
		size_t pq, pa;
		crdt_chat_msg m;
		cr_assert_eq(crdt_chat_position(c, idq1, &pq), 0);
		cr_assert_eq(crdt_chat_position(c, ida, &pa), 0);
		cr_assert_gt(pa, pq, "the answer sorts after the question");
		cr_assert_eq(crdt_chat_get(c, ida, &m), 0);
		cr_assert(m.has_reply_to && crdt_dot_cmp(m.reply_to, idq1) == 0);
		cr_assert_lt(m.sent_at, m.order, "order key corrected the clock");
	}
	same_bytes(&a, &b);
	crdt_buf_fini(&q1);
	crdt_buf_fini(&q2);
	crdt_buf_fini(&ans);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
}

static int skews;
static void
on_skew(void *ud, const crdt_replica_id *s, uint64_t hlc, uint64_t ms)
{
	(void)ud;
	(void)s;
	(void)hlc;
	(void)ms;
	skews++;
}

/* A device whose clock is hours ahead: its message is accepted (never
 * refused on the receiver's clock), the skew is reported, the receiver's
 * clock is not dragged, and replies still sort after it. */
Test(chat, a_clock_hours_ahead_is_reported_and_order_stays_causal)
{
	uint64_t t = UINT64_C(1700000000000);
	peer a, f;
	crdt_buf m, r;
	crdt_doc_listener l = { .on_skew = on_skew };

	peer_new(&a, 1, t, NULL);
	peer_new(&f, 2, t + 5 * HOUR, NULL);
	tb_init(&m);
	tb_init(&r);
	crdt_doc_set_listener(a.d, &l);
	skews = 0;
	crdt_dot fid = post(&f, "fast", "from the future", NULL, &m);
	deliver(&a, &m);
	cr_assert_eq(skews, 1);
	cr_assert_lt(CRDT_HLC_MS(crdt_doc_hlc(a.d)), t + HOUR,
	    "one far-future stamp does not drag the local clock");
	crdt_dot rid = post(&a, "alice", "seen it", NULL, &r);
	const crdt_chat *c = thread(&a);
	size_t pf, pr;
	cr_assert_eq(crdt_chat_position(c, fid, &pf), 0);
	cr_assert_eq(crdt_chat_position(c, rid, &pr), 0);
	cr_assert_gt(pr, pf, "a message sorts after everything its author saw");
	deliver(&f, &r);
	same_bytes(&a, &f);
	crdt_buf_fini(&m);
	crdt_buf_fini(&r);
	crdt_doc_free(a.d);
	crdt_doc_free(f.d);
}

static int
count_cb(void *ud, const uint8_t *u, size_t ul, const uint8_t *e, size_t el)
{
	(void)u;
	(void)ul;
	(void)e;
	(void)el;
	(*(int *)ud)++;
	return 0;
}

Test(chat, reactions_are_last_writer_wins_per_reactor_and_emoji)
{
	uint64_t t = UINT64_C(1700000000000);
	peer a, b;
	crdt_buf m, x, y;

	peer_new(&a, 1, t, NULL);
	peer_new(&b, 2, t, NULL);
	tb_init(&m);
	tb_init(&x);
	tb_init(&y);
	crdt_dot id = post(&a, "alice", "hello", NULL, &m);
	deliver(&b, &m);
	crdt_buf_clear(&x);
	cr_assert_eq(crdt_doc_chat_react(a.d, 0, id, "bob", 3, "+1", 2, true,
			 &x), 0);
	crdt_buf_clear(&y);
	a.clk.ms += 5;
	cr_assert_eq(crdt_doc_chat_react(a.d, 0, id, "bob", 3, "+1", 2, false,
			 &y), 0);
	deliver(&b, &y); /* the removal first: it is later, it wins */
	deliver(&b, &x);
	crdt_buf_clear(&x);
	cr_assert_eq(crdt_doc_chat_react(b.d, 0, id, "carol", 5, "ok", 2,
			 true, &x), 0);
	deliver(&a, &x);
	for (int i = 0; i < 2; i++) {
		const crdt_chat *c = thread(i ? &b : &a);
		int n = 0;
		cr_assert_eq(crdt_chat_reaction_count(c, id), 1);
		cr_assert_eq(crdt_chat_reactions(c, id, count_cb, &n), 0);
		cr_assert_eq(n, 1);
	}
	same_bytes(&a, &b);
	crdt_buf_fini(&m);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
}

/* Read receipts are exact: Bob reads up to M3; a late message from Carol
 * that sorts before M3 is not thereby read. Two devices of Bob merge by
 * max, never moving back. */
Test(chat, read_receipts_are_exact_monotone_and_merge_across_devices)
{
	uint64_t t = UINT64_C(1700000000000);
	peer a, c, b1, b2;
	crdt_buf m1, m3, late, r1, r2;

	peer_new(&a, 1, t, NULL);
	peer_new(&c, 3, t, NULL);
	peer_new(&b1, 4, t + 100, NULL);
	peer_new(&b2, 5, t + 100, NULL);
	tb_init(&m1);
	tb_init(&m3);
	tb_init(&late);
	tb_init(&r1);
	tb_init(&r2);
	crdt_dot id1 = post(&a, "alice", "M1", NULL, &m1);
	crdt_dot idl = post(&c, "carol", "late but early", NULL, &late);
	a.clk.ms += 50;
	crdt_dot id3 = post(&a, "alice", "M3", NULL, &m3);
	deliver(&b1, &m1);
	deliver(&b1, &m3);
	cr_assert_eq(crdt_doc_chat_mark_read(b1.d, 0, "bob", 3, &r1), 0);
	deliver(&b1, &late);
	const crdt_chat *t1 = thread(&b1);
	size_t pl, p3;
	cr_assert_eq(crdt_chat_position(t1, idl, &pl), 0);
	cr_assert_eq(crdt_chat_position(t1, id3, &p3), 0);
	cr_assert_lt(pl, p3, "the late message sorts before M3");
	cr_assert(crdt_chat_has_read(t1, "bob", 3, id1));
	cr_assert(crdt_chat_has_read(t1, "bob", 3, id3));
	cr_assert(!crdt_chat_has_read(t1, "bob", 3, idl));
	cr_assert_eq(crdt_chat_unread(t1, "bob", 3), 1);
	cr_assert_eq(crdt_chat_unread(t1, "alice", 5), 1,
	    "alice has not read carol's (her own do not count)");
	/* Bob's second device has only seen M1 and marks that: the merge
	 * keeps M3 read. */
	deliver(&b2, &m1);
	cr_assert_eq(crdt_doc_chat_mark_read(b2.d, 0, "bob", 3, &r2), 0);
	deliver(&b1, &r2);
	cr_assert(crdt_chat_has_read(thread(&b1), "bob", 3, id3));
	deliver(&b2, &m3);
	deliver(&b2, &late);
	deliver(&b2, &r1);
	same_bytes(&b1, &b2);
	crdt_buf *bufs[] = { &m1, &m3, &late, &r1, &r2 };
	for (size_t i = 0; i < 5; i++)
		crdt_buf_fini(bufs[i]);
	crdt_doc_free(a.d);
	crdt_doc_free(c.d);
	crdt_doc_free(b1.d);
	crdt_doc_free(b2.d);
}

Test(chat, membership_is_state_and_non_members_are_flagged)
{
	uint64_t t = UINT64_C(1700000000000);
	peer a;
	crdt_buf m;
	crdt_chat_msg msg;

	peer_new(&a, 1, t, NULL);
	tb_init(&m);
	cr_assert_eq(crdt_doc_chat_member(a.d, 0, "alice", 5, true, &m), 0);
	a.clk.ms += 10;
	crdt_dot in = post(&a, "alice", "as a member", NULL, &m);
	crdt_dot out = post(&a, "mallory", "not a member", NULL, &m);
	crdt_buf_clear(&m);
	a.clk.ms += 10;
	cr_assert_eq(crdt_doc_chat_member(a.d, 0, "alice", 5, false, &m), 0);
	const crdt_chat *c = thread(&a);
	cr_assert_eq(crdt_chat_get(c, in, &msg), 0);
	cr_assert(msg.author_was_member, "history: member when sent");
	cr_assert_eq(crdt_chat_get(c, out, &msg), 0);
	cr_assert(!msg.author_was_member);
	cr_assert_eq(crdt_chat_count(c), 2, "messages of non-members are kept");
	cr_assert(!crdt_chat_is_member(c, "alice", 5));
	crdt_buf_fini(&m);
	crdt_doc_free(a.d);
}

Test(chat, only_the_server_acks_and_rejects)
{
	uint64_t t = UINT64_C(1700000000000);
	crdt_replica_id sid = test_id(9);
	peer s, a;
	crdt_buf m, r;
	const uint8_t *why;
	size_t wl;

	peer_new(&s, 9, t, &sid);
	peer_new(&a, 1, t, &sid);
	tb_init(&m);
	tb_init(&r);
	crdt_dot id = post(&a, "alice", "spam", NULL, &m);
	cr_assert_eq(crdt_doc_chat_ack(a.d, 0, &r), CRDT_EPERM);
	cr_assert_eq(crdt_doc_chat_reject(a.d, 0, id, "x", 1, &r), CRDT_EPERM);
	cr_assert_eq(r.len, 0);
	deliver(&s, &m);
	cr_assert_eq(crdt_doc_chat_reject(s.d, 0, id, "spam", 4, &r), 0);
	deliver(&a, &r);
	cr_assert_eq(status(&a, id), CRDT_CHAT_REJECTED);
	cr_assert_eq(crdt_chat_rejection(thread(&a), id, &why, &wl), 0);
	cr_assert(bytes_eq(why, wl, "spam", 4));
	cr_assert_eq(crdt_chat_count(thread(&a)), 1, "rejected, not deleted");
	same_bytes(&s, &a);
	crdt_buf_fini(&m);
	crdt_buf_fini(&r);
	crdt_doc_free(s.d);
	crdt_doc_free(a.d);
}

/* A forged ack from a non-server replica is refused whole, everywhere. */
Test(chat, a_forged_ack_is_refused_with_eperm)
{
	uint64_t t = UINT64_C(1700000000000);
	crdt_replica_id sid = test_id(9);
	peer a, b, forger;
	crdt_buf m, before, after;

	peer_new(&a, 1, t, &sid);
	peer_new(&b, 2, t, &sid);
	/* The forger registered itself as server; nobody else did. */
	crdt_replica_id fid = test_id(7);
	peer_new(&forger, 7, t, &fid);
	tb_init(&m);
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(crdt_doc_chat_ack(forger.d, 0, &m), 0);
	cr_assert_eq(crdt_doc_save(a.d, &before), 0);
	cr_assert_eq(crdt_doc_receive(a.d, m.data, m.len, NULL), CRDT_EPERM);
	cr_assert_eq(crdt_doc_save(a.d, &after), 0);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	crdt_buf_fini(&m);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(forger.d);
}

Test(chat, one_post_per_thread_per_transaction)
{
	peer a;
	crdt_buf m;
	crdt_chat_post p = { "u", 1, "x", 1, NULL, NULL, 0 };
	crdt_dot id;

	peer_new(&a, 1, UINT64_C(1700000000000), NULL);
	tb_init(&m);
	cr_assert_eq(crdt_doc_begin(a.d), 0);
	cr_assert_eq(crdt_doc_chat_post(a.d, 0, &p, &id, NULL), 0);
	cr_assert_eq(crdt_doc_chat_post(a.d, 0, &p, &id, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_doc_chat_react(a.d, 0, id, "u", 1, "y", 1, true,
			 NULL), 0);
	cr_assert_eq(crdt_doc_commit(a.d, &m), 0);
	cr_assert_eq(id.counter, 1);
	cr_assert_eq(crdt_chat_reaction_count(thread(&a), id), 1,
	    "a post and a reaction to it in one transaction");
	p.user_len = 0;
	cr_assert_eq(crdt_doc_chat_post(a.d, 0, &p, &id, &m), CRDT_EINVAL);
	cr_assert_eq(crdt_doc_chat_post(a.d, 5, &p, &id, &m), CRDT_ESCHEMA);
	crdt_buf_fini(&m);
	crdt_doc_free(a.d);
}

/* ---- pagination against a naive sorted model ---- */

typedef struct model_ent {
	uint64_t ord;
	crdt_dot id;
} model_ent;

static int
model_cmp(const void *x, const void *y)
{
	const model_ent *a = x, *b = y;
	if (a->ord != b->ord)
		return a->ord < b->ord ? -1 : 1;
	return crdt_dot_cmp(a->id, b->id);
}

/*
 * Two writers claiming one replica ID (an equivocating peer, or a device
 * restored without its state) produce two different records for one
 * message ID. Refusing either would make acceptance depend on arrival
 * order, so both stay in the replicated set and every replica shows the
 * same one (the smaller record): by message in either order, and by
 * snapshot in either direction.
 */
static void
shows_one(const peer *p, const char *body, const char *user)
{
	crdt_chat_msg m;
	cr_assert_eq(crdt_chat_count(thread(p)), 1);
	body_at(thread(p), 0, body);
	cr_assert_eq(crdt_chat_at(thread(p), 0, &m), 0);
	cr_assert(m.user_len == strlen(user) &&
	    memcmp(m.user, user, m.user_len) == 0);
	cr_assert_eq(crdt_chat_get(thread(p), m.id, &m), 0);
}

Test(chat, two_records_for_one_message_id_show_the_same_one_everywhere)
{
	peer a, forger, o, p, q, r;
	crdt_buf m1, m2, sa, sf;
	tb_init(&m1);
	tb_init(&m2);
	tb_init(&sa);
	tb_init(&sf);
	peer_new(&a, 1, 1000, NULL);
	peer_new(&forger, 1, 2000, NULL); /* same replica ID as a */
	peer_new(&o, 2, 3000, NULL);
	peer_new(&p, 3, 3000, NULL);
	peer_new(&q, 4, 3000, NULL);
	peer_new(&r, 5, 3000, NULL);
	crdt_dot x = post(&a, "alice", "the real message", NULL, &m1);
	crdt_dot y = post(&forger, "mallory", "a forged message", NULL, &m2);
	cr_assert_eq(crdt_dot_cmp(x, y), 0, "both writers used dot (A, 1)");
	/* By message, both orders. */
	deliver(&o, &m1);
	deliver(&o, &m2);
	deliver(&p, &m2);
	deliver(&p, &m1);
	same_bytes(&o, &p);
	/* By snapshot, both directions. */
	cr_assert_eq(crdt_doc_save(a.d, &sa), 0);
	cr_assert_eq(crdt_doc_save(forger.d, &sf), 0);
	cr_assert_eq(crdt_doc_load(q.d, sa.data, sa.len, NULL), 0);
	cr_assert_eq(crdt_doc_load(q.d, sf.data, sf.len, NULL), 0);
	cr_assert_eq(crdt_doc_load(r.d, sf.data, sf.len, NULL), 0);
	shows_one(&r, "a forged message", "mallory");
	cr_assert_eq(crdt_doc_load(r.d, sa.data, sa.len, NULL), 0);
	/* The smaller record wins: records start alike up to the order key,
	 * and a's (older clock) is smaller. */
	shows_one(&o, "the real message", "alice");
	shows_one(&p, "the real message", "alice");
	shows_one(&q, "the real message", "alice");
	shows_one(&r, "the real message", "alice");
	crdt_buf_clear(&sa);
	crdt_buf_clear(&sf);
	cr_assert_eq(crdt_doc_save(q.d, &sa), 0);
	cr_assert_eq(crdt_doc_save(r.d, &sf), 0);
	cr_assert(bytes_eq(sa.data, sa.len, sf.data, sf.len));
	/* o and p also hold the two messages as evidence of the
	 * equivocation; a sync round carries it to q. */
	sync_pair(&o, &q);
	same_bytes(&o, &q);
	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	crdt_buf_fini(&sa);
	crdt_buf_fini(&sf);
	crdt_doc_free(a.d);
	crdt_doc_free(forger.d);
	crdt_doc_free(o.d);
	crdt_doc_free(p.d);
	crdt_doc_free(q.d);
	crdt_doc_free(r.d);
}

/* Everything a reader can observe of a thread, as one comparable string:
 * every position's ID, author and body, the position lookup of each ID
 * agreeing with it, order keys non-decreasing, and unread counts. */
static void
observe(const peer *p, char *out, size_t cap)
{
	const crdt_chat *c = thread(p);
	size_t n = crdt_chat_count(c), used = 0;
	uint64_t last = 0;
	for (size_t i = 0; i < n; i++) {
		crdt_chat_msg m;
		size_t pos;
		cr_assert_eq(crdt_chat_at(c, i, &m), 0, "position %zu", i);
		cr_assert_eq(crdt_chat_position(c, m.id, &pos), 0);
		cr_assert_eq(pos, i, "rank and select disagree at %zu", i);
		cr_assert_geq(m.order, last);
		last = m.order;
		int k = snprintf(out + used, cap - used, "%u:%llu %.*s %.*s|",
		    (unsigned)m.id.replica.bytes[0],
		    (unsigned long long)m.id.counter, (int)m.user_len,
		    (const char *)m.user, (int)m.body_len,
		    (const char *)m.body);
		cr_assert(k > 0 && (size_t)k < cap - used);
		used += (size_t)k;
	}
	const char *users[] = { "alice", "bob", "mallory" };
	for (int u = 0; u < 3; u++) {
		int k = snprintf(out + used, cap - used, "unread %s %zu|",
		    users[u], crdt_chat_unread(c, users[u], strlen(users[u])));
		cr_assert(k > 0 && (size_t)k < cap - used);
		used += (size_t)k;
	}
}

/* Many rival records at once: a forger replays 40 of alice's message IDs
 * with other authors, bodies and clocks (earlier and later), so shown
 * records move in the tree. Two replicas fed in opposite orders and one
 * rebuilt from a snapshot observe exactly the same thread. */
Test(chat, rival_records_keep_the_tree_and_counts_consistent)
{
	enum { N = 40 };
	peer a, b, forger, o, p, r;
	crdt_buf m[3][N], snap;
	static char seen_o[1 << 16], seen_p[1 << 16], seen_r[1 << 16];
	test_rng rng;
	uint64_t seed = test_seed(77);
	test_rng_init(&rng, seed);
	peer_new(&a, 1, 1000, NULL);
	peer_new(&b, 2, 1500, NULL);
	peer_new(&forger, 1, 500, NULL); /* alice's ID, its own clock */
	peer_new(&o, 3, 3000, NULL);
	peer_new(&p, 4, 3000, NULL);
	peer_new(&r, 5, 3000, NULL);
	for (int i = 0; i < N; i++) {
		char body[32];
		for (int w = 0; w < 3; w++)
			tb_init(&m[w][i]);
		snprintf(body, sizeof body, "a%d", i);
		a.clk.ms += 10;
		post(&a, "alice", body, NULL, &m[0][i]);
		snprintf(body, sizeof body, "b%d", i);
		b.clk.ms += 10;
		post(&b, "bob", body, NULL, &m[1][i]);
		snprintf(body, sizeof body, "f%d", i);
		forger.clk.ms += test_rng_below(&rng, 40);
		post(&forger, test_rng_chance(&rng, 1, 2) ? "mallory" : "alice",
		    body, NULL, &m[2][i]);
	}
	/* o: writers in order a, b, forger; p: the reverse, each backwards
	 * (the causal buffer sorts it out). */
	for (int w = 0; w < 3; w++)
		for (int i = 0; i < N; i++)
			deliver(&o, &m[w][i]);
	for (int w = 2; w >= 0; w--)
		for (int i = N - 1; i >= 0; i--)
			deliver(&p, &m[w][i]);
	cr_assert_eq(crdt_doc_buffered(p.d), 0);
	/* Read marks make unread counts depend on the per-author index. */
	crdt_buf mk;
	tb_init(&mk);
	const char *readers[] = { "alice", "mallory" };
	for (int u = 0; u < 2; u++) {
		crdt_buf_clear(&mk);
		cr_assert_eq(crdt_doc_chat_mark_read(o.d, 0, readers[u],
				 strlen(readers[u]), &mk), 0);
		deliver(&p, &mk);
	}
	crdt_buf_fini(&mk);
	tb_init(&snap);
	cr_assert_eq(crdt_doc_save(o.d, &snap), 0);
	cr_assert_eq(crdt_doc_load(r.d, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_chat_count(thread(&o)), 2 * N, "seed %llu",
	    (unsigned long long)seed);
	observe(&o, seen_o, sizeof seen_o);
	observe(&p, seen_p, sizeof seen_p);
	observe(&r, seen_r, sizeof seen_r);
	cr_assert_str_eq(seen_o, seen_p, "seed %llu", (unsigned long long)seed);
	cr_assert_str_eq(seen_o, seen_r, "seed %llu", (unsigned long long)seed);
	same_bytes(&o, &p);
	crdt_buf_fini(&snap);
	for (int w = 0; w < 3; w++)
		for (int i = 0; i < N; i++)
			crdt_buf_fini(&m[w][i]);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(forger.d);
	crdt_doc_free(o.d);
	crdt_doc_free(p.d);
	crdt_doc_free(r.d);
}

/* An equivocating writer can also record a join and a leave of one user
 * under one stamp; which one is in force must not depend on arrival. */
Test(chat, a_join_and_a_leave_under_one_stamp_resolve_the_same_everywhere)
{
	peer a, forger, o, p;
	crdt_buf j, l;
	tb_init(&j);
	tb_init(&l);
	peer_new(&a, 1, 1000, NULL);
	peer_new(&forger, 1, 1000, NULL); /* same ID, same clock */
	peer_new(&o, 2, 3000, NULL);
	peer_new(&p, 3, 3000, NULL);
	cr_assert_eq(crdt_doc_chat_member(a.d, 0, "carol", 5, true, &j), 0);
	cr_assert_eq(crdt_doc_chat_member(forger.d, 0, "carol", 5, false, &l),
	    0);
	deliver(&o, &j);
	deliver(&o, &l);
	deliver(&p, &l);
	deliver(&p, &j);
	same_bytes(&o, &p);
	bool in_o = crdt_chat_is_member(thread(&o), "carol", 5);
	bool in_p = crdt_chat_is_member(thread(&p), "carol", 5);
	cr_assert_eq(in_o, in_p, "membership depends on arrival order");
	cr_assert(!in_o, "of a join and a leave at one stamp, the leave wins");
	crdt_buf_fini(&j);
	crdt_buf_fini(&l);
	crdt_doc_free(a.d);
	crdt_doc_free(forger.d);
	crdt_doc_free(o.d);
	crdt_doc_free(p.d);
}

typedef struct reaction_walk {
	size_t n;
	char last[16];
} reaction_walk;

/* Counts, and checks the order: users of one length ascend. */
static int
count_reaction(void *ud, const uint8_t *user, size_t user_len,
    const uint8_t *emoji, size_t emoji_len)
{
	reaction_walk *w = ud;
	char u[16];
	cr_assert(user_len > 0 && user_len < sizeof u && emoji != NULL &&
	    emoji_len > 0);
	memcpy(u, user, user_len);
	u[user_len] = '\0';
	cr_assert(w->n == 0 || strcmp(w->last, u) < 0,
	    "reactions out of order: %s after %s", u, w->last);
	memcpy(w->last, u, sizeof u);
	w->n++;
	return 0;
}

/* Many reactions: the reaction map grows (its entries move) while the
 * index refers to them. */
Test(chat, reactions_survive_the_reaction_map_growing)
{
	peer a;
	crdt_buf m;
	tb_init(&m);
	peer_new(&a, 1, 1000, NULL);
	crdt_dot x = post(&a, "alice", "react to me", NULL, &m);
	crdt_dot y = post(&a, "alice", "and me", NULL, &m);
	for (int k = 0; k < 300; k++) {
		int i = (k * 7) % 300; /* not in key order */
		char user[16];
		snprintf(user, sizeof user, "user%03d", i);
		crdt_buf_clear(&m);
		cr_assert_eq(crdt_doc_chat_react(a.d, 0, i % 3 ? x : y, user,
				 strlen(user), "+1", 2, true, &m), 0);
	}
	reaction_walk w = { 0, "" };
	cr_assert_eq(crdt_chat_reactions(thread(&a), x, count_reaction, &w), 0);
	cr_assert_eq(w.n, 200);
	cr_assert_eq(crdt_chat_reaction_count(thread(&a), x), 200);
	reaction_walk w2 = { 0, "" };
	cr_assert_eq(crdt_chat_reactions(thread(&a), y, count_reaction, &w2),
	    0);
	cr_assert_eq(w2.n, 100);
	crdt_buf_fini(&m);
	crdt_doc_free(a.d);
}

/* A DATA frame's evidence list must prove something: at least two
 * variants a dot, ascending. Anything else is refused whole. */
Test(chat, evidence_lists_in_sync_frames_are_checked)
{
	peer a, forger, o, q;
	crdt_buf m1, m2, hello, data, bad, before, after;
	crdt_buf *bufs[] = { &m1, &m2, &hello, &data, &bad, &before, &after };
	for (size_t i = 0; i < 7; i++)
		tb_init(bufs[i]);
	peer_new(&a, 1, 1000, NULL);
	peer_new(&forger, 1, 2000, NULL);
	peer_new(&o, 2, 3000, NULL);
	peer_new(&q, 4, 3000, NULL);
	post(&a, "alice", "the real message", NULL, &m1);
	post(&forger, "mallory", "a forged message", NULL, &m2);
	deliver(&o, &m1);
	deliver(&o, &m2);
	cr_assert_eq(crdt_doc_sync_start(q.d, &hello), 0);
	cr_assert_eq(crdt_doc_sync_handle(o.d, hello.data, hello.len, NULL,
			 &data), 0);
	/* The frame ends with the evidence, [smaller, larger] as bin 8, the
	 * one-byte flags and o's digests, none (q's clock equals o's for no
	 * writer: an empty fixarray). */
	size_t dg = 1;
	const crdt_buf *lo = &m1, *hi = &m2;
	size_t ml = MIN2(m1.len, m2.len);
	int c = memcmp(m2.data, m1.data, ml);
	if (c < 0 || (c == 0 && m2.len < m1.len)) {
		lo = &m2;
		hi = &m1;
	}
	cr_assert(lo->len < 256 && hi->len < 256);
	size_t tail = 1 + 2 + lo->len + 2 + hi->len + 1 + dg;
	cr_assert(data.len > tail);
	cr_assert_eq(data.data[data.len - dg], 0x90);
	size_t head = data.len - tail;
	cr_assert_eq(data.data[head], 0x92);
	const crdt_buf *variants[3][2] = { { lo, NULL }, { hi, lo },
		{ hi, NULL } };
	cr_assert_eq(crdt_doc_save(q.d, &before), 0);
	for (int k = 0; k < 3; k++) {
		crdt_buf_clear(&bad);
		cr_assert_eq(crdt_buf_append(&bad, data.data, head), 0);
		uint8_t n = variants[k][1] ? 0x92 : 0x91;
		cr_assert_eq(crdt_buf_append(&bad, &n, 1), 0);
		for (int j = 0; j < 2 && variants[k][j]; j++) {
			uint8_t h[2] = { 0xc4, (uint8_t)variants[k][j]->len };
			cr_assert_eq(crdt_buf_append(&bad, h, 2), 0);
			cr_assert_eq(crdt_buf_append(&bad, variants[k][j]->data,
					 variants[k][j]->len), 0);
		}
		cr_assert_eq(crdt_buf_append(&bad,
				 &data.data[data.len - dg - 1], dg + 1), 0);
		crdt_buf reply;
		tb_init(&reply);
		cr_assert_eq(crdt_doc_sync_handle(q.d, bad.data, bad.len, NULL,
				 &reply), CRDT_EMALFORMED, "variant list %d", k);
		cr_assert_eq(reply.len, 0);
		crdt_buf_fini(&reply);
		crdt_buf_clear(&after);
		cr_assert_eq(crdt_doc_save(q.d, &after), 0);
		cr_assert(bytes_eq(before.data, before.len, after.data,
		    after.len), "a refused frame changes nothing");
	}
	/* The frame as sent is fine and brings q level with o. */
	crdt_buf reply;
	tb_init(&reply);
	cr_assert_eq(crdt_doc_sync_handle(q.d, data.data, data.len, NULL,
			 &reply), 0);
	crdt_buf_fini(&reply);
	same_bytes(&o, &q);
	for (size_t i = 0; i < 7; i++)
		crdt_buf_fini(bufs[i]);
	crdt_doc_free(a.d);
	crdt_doc_free(forger.d);
	crdt_doc_free(o.d);
	crdt_doc_free(q.d);
}

Test(chat, pagination_matches_a_naive_sorted_model)
{
	uint64_t seed = test_seed(0xc4a7);
	test_rng r;
	test_rng_init(&r, seed);
	for (int run = 0; run < 20; run++) {
		peer w[3], sink;
		crdt_buf all;
		size_t off[401];
		size_t n = 100 + test_rng_below(&r, 300);
		tb_init(&all);
		for (int i = 0; i < 3; i++)
			peer_new(&w[i], (uint8_t)(1 + i),
			    UINT64_C(1700000000000) + test_rng_below(&r, 5000),
			    NULL);
		peer_new(&sink, 9, UINT64_C(1700000000000), NULL);
		for (size_t i = 0; i < n; i++) {
			peer *p = &w[test_rng_below(&r, 3)];
			p->clk.ms += test_rng_below(&r, 100);
			crdt_buf one;
			tb_init(&one);
			post(p, "u", "m", NULL, &one);
			off[i] = all.len;
			cr_assert_eq(crdt_buf_append(&all, one.data, one.len), 0);
			crdt_buf_fini(&one);
		}
		off[n] = all.len;
		/* Deliver in a random order (causal buffering sorts it out). */
		size_t perm[400];
		for (size_t i = 0; i < n; i++)
			perm[i] = i;
		for (size_t i = n - 1; i > 0; i--) {
			size_t j = (size_t)test_rng_below(&r, i + 1), t2 = perm[i];
			perm[i] = perm[j];
			perm[j] = t2;
		}
		for (size_t k = 0; k < n; k++)
			cr_assert_eq(crdt_doc_receive(sink.d, all.data +
					 off[perm[k]], off[perm[k] + 1] -
					 off[perm[k]], NULL), 0);
		const crdt_chat *c = thread(&sink);
		cr_assert_eq(crdt_chat_count(c), n);
		model_ent mdl[400];
		for (size_t i = 0; i < n; i++) {
			crdt_chat_msg m;
			cr_assert_eq(crdt_chat_at(c, i, &m), 0);
			mdl[i].ord = m.order;
			mdl[i].id = m.id;
		}
		qsort(mdl, n, sizeof *mdl, model_cmp);
		for (size_t i = 0; i < n; i++) {
			size_t pos;
			crdt_chat_msg m;
			cr_assert_eq(crdt_chat_at(c, i, &m), 0);
			cr_assert_eq(crdt_dot_cmp(m.id, mdl[i].id), 0,
			    "seed %llu: order", (unsigned long long)seed);
			cr_assert_eq(crdt_chat_position(c, mdl[i].id, &pos), 0);
			cr_assert_eq(pos, i);
		}
		crdt_dot page[64];
		size_t got, k = 1 + test_rng_below(&r, 60);
		cr_assert_eq(crdt_chat_page(c, NULL, false, k, page, &got), 0);
		cr_assert_eq(got, k < n ? k : n);
		for (size_t i = 0; i < got; i++)
			cr_assert_eq(crdt_dot_cmp(page[i],
					 mdl[n - got + i].id), 0);
		size_t at = test_rng_below(&r, n);
		cr_assert_eq(crdt_chat_page(c, &mdl[at].id, true, k, page,
				 &got), 0);
		cr_assert_eq(got, MIN2(k, n - at - 1));
		for (size_t i = 0; i < got; i++)
			cr_assert_eq(crdt_dot_cmp(page[i],
					 mdl[at + 1 + i].id), 0);
		cr_assert_eq(crdt_chat_page(c, &mdl[at].id, false, k, page,
				 &got), 0);
		cr_assert_eq(got, MIN2(k, at));
		for (size_t i = 0; i < got; i++)
			cr_assert_eq(crdt_dot_cmp(page[i],
					 mdl[at - got + i].id), 0);
		crdt_buf_fini(&all);
		for (int i = 0; i < 3; i++)
			crdt_doc_free(w[i].d);
		crdt_doc_free(sink.d);
	}
}

/* ---- group chat on the simulated network ---- */

static int
group_setup(void *ud, crdt_doc *d, size_t i)
{
	crdt_replica_id *sid = ud;
	if (i == 0)
		*sid = *crdt_doc_self(d); /* replica 0 is the server */
	return crdt_doc_register_chat(d, "group", sid, NULL);
}

static int
group_edit(crdt_sim *s, crdt_buf *m, crdt_dot *last)
{
	size_t r = 1 + crdt_sim_rand(s) % (crdt_sim_size(s) - 1);
	crdt_doc *d = crdt_sim_doc(s, r);
	char user[8];
	int ul = snprintf(user, sizeof user, "u%zu", r);
	crdt_buf_clear(m);
	switch (crdt_sim_rand(s) % 8) {
	case 0:
		return crdt_doc_chat_member(d, 0, user, (size_t)ul,
		    crdt_sim_rand(s) % 4 != 0, m);
	case 1:
		return crdt_doc_chat_mark_read(d, 0, user, (size_t)ul, m);
	case 2:
		if (last->counter == 0)
			return 0;
		return crdt_doc_chat_react(d, 0, *last, user, (size_t)ul,
		    "+1", 2, crdt_sim_rand(s) % 3 != 0, m);
	case 3:
		return crdt_doc_chat_ack(crdt_sim_doc(s, 0), 0, m);
	default: {
		crdt_chat_post p = { user, (size_t)ul, "hello", 5,
			last->counter && crdt_sim_rand(s) % 2 ? last : NULL,
			NULL, 0 };
		return crdt_doc_chat_post(d, 0, &p, last, m);
	}
	}
}

Test(chat, group_of_ten_converges_over_two_hundred_seeded_runs)
{
	uint64_t base = test_seed(0x6c);
	for (int run = 0; run < 200; run++) {
		crdt_sim_config sc;
		crdt_sim *s;
		crdt_replica_id sid;
		crdt_buf m;
		crdt_dot last = { { { 0 } }, 0 };
		crdt_sim_config_default(&sc);
		sc.replicas = 11; /* server + 10 participants */
		sc.seed = test_seed_mix(base, (uint64_t)run);
		cr_assert_eq(crdt_sim_new(NULL, &sc, group_setup, &sid, &s), 0);
		tb_init(&m);
		int rc = 0;
		for (int e = 0; e < 60 && rc == 0; e++) {
			rc = group_edit(s, &m, &last);
			if (rc == 0)
				rc = crdt_sim_step(s);
		}
		cr_assert_eq(rc, 0, "run %d: %s", run, crdt_err_name(rc));
		cr_assert_eq(crdt_sim_heal(s), 0);
		rc = crdt_sim_check(s);
		cr_assert_eq(rc, 0, "base seed %llu run %d diverged",
		    (unsigned long long)base, run);
		/* Same thread order everywhere, not only the same bytes. */
		const crdt_chat *c0, *ci;
		cr_assert_eq(crdt_doc_chat(crdt_sim_doc(s, 0), 0, &c0), 0);
		for (size_t i = 1; i < sc.replicas; i++) {
			cr_assert_eq(crdt_doc_chat(crdt_sim_doc(s, i), 0, &ci), 0);
			cr_assert_eq(crdt_chat_count(ci), crdt_chat_count(c0));
			for (size_t k = 0; k < crdt_chat_count(c0); k++) {
				crdt_chat_msg x, y;
				cr_assert_eq(crdt_chat_at(c0, k, &x), 0);
				cr_assert_eq(crdt_chat_at(ci, k, &y), 0);
				cr_assert_eq(crdt_dot_cmp(x.id, y.id), 0);
			}
		}
		crdt_buf_fini(&m);
		crdt_sim_free(s);
	}
	(void)server_id;
}

/* Fail allocation N for N = 0, 1, 2, ... in chat posts, reactions, read
 * marks, receiving a chat message and loading a chat snapshot: every
 * failure is CRDT_ENOMEM, changes nothing, and nothing leaks. */
Test(chat, every_allocation_failure_is_clean)
{
	uint64_t t = UINT64_C(1700000000000);
	crdt_replica_id sid = test_id(9);
	peer a, b, f;
	crdt_buf m, s, fm;

	test_alloc_reset();
	peer_new(&a, 1, t, &sid);
	peer_new(&b, 2, t, &sid);
	tb_init(&m);
	tb_init(&s);
	crdt_dot first = post(&b, "bob", "hello", NULL, &m);
	deliver(&a, &m);
	crdt_buf_clear(&m);
	crdt_dot later = post(&b, "bob", "again", &first, &m);
	(void)later;
	cr_assert_eq(crdt_doc_save(b.d, &s), 0);
	/* A rival of b's first message (b's ID, an earlier clock, another
	 * author): the equivocation path and a shown record replaced. */
	peer_new(&f, 2, t - 1000, &sid);
	tb_init(&fm);
	post(&f, "mallory", "forged", NULL, &fm);
	for (int step = 0; step < 7; step++) {
		for (long n = 0;; n++) {
			crdt_buf before, after, out;
			tb_init(&before);
			tb_init(&after);
			tb_init(&out);
			cr_assert_eq(crdt_doc_save(a.d, &before), 0);
			test_alloc_fail_at(n);
			int rc;
			crdt_chat_post p = { "alice", 5, "reply", 5, &first,
				"meta", 4 };
			switch (step) {
			case 0:
				rc = crdt_doc_chat_post(a.d, 0, &p, NULL, &out);
				break;
			case 1:
				rc = crdt_doc_chat_react(a.d, 0, first, "alice",
				    5, "+1", 2, true, &out);
				break;
			case 2:
				rc = crdt_doc_chat_mark_read(a.d, 0, "alice", 5,
				    &out);
				break;
			case 3:
				rc = crdt_doc_receive(a.d, m.data, m.len, NULL);
				break;
			case 4:
				rc = crdt_doc_receive(a.d, fm.data, fm.len, NULL);
				break;
			case 5:
				rc = crdt_doc_chat_member(a.d, 0, "carol", 5,
				    true, &out);
				break;
			default:
				rc = crdt_doc_load(a.d, s.data, s.len, NULL);
			}
			bool fired = test_alloc_fired();
			test_alloc_disarm();
			if (rc != 0) {
				cr_assert_eq(rc, CRDT_ENOMEM, "step %d n %ld: %s",
				    step, n, crdt_err_name(rc));
				cr_assert_eq(crdt_doc_save(a.d, &after), 0);
				cr_assert(bytes_eq(before.data, before.len,
					      after.data, after.len),
				    "step %d n %ld changed the document", step,
				    n);
			}
			/* The thread still answers (its index may rebuild). */
			const crdt_chat *c = thread(&a);
			crdt_dot page[4];
			size_t got;
			cr_assert_eq(crdt_chat_page(c, NULL, false, 4, page, &got),
			    0);
			crdt_buf_fini(&before);
			crdt_buf_fini(&after);
			crdt_buf_fini(&out);
			if (rc == 0 && !fired)
				break;
			cr_assert_lt(n, 100000);
		}
	}
	crdt_chat_msg shown;
	cr_assert_eq(crdt_chat_get(thread(&a), first, &shown), 0);
	cr_assert(shown.body_len == 6 && memcmp(shown.body, "forged", 6) == 0,
	    "the smaller record (earlier order key) is shown");
	crdt_buf_fini(&m);
	crdt_buf_fini(&s);
	crdt_buf_fini(&fm);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(f.d);
	ASSERT_NO_LEAKS();
}
