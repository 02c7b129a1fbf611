/*
 * Chat thread: the seed's T0..T6 offline scenario, intention preservation,
 * clock skew, reactions, exact read receipts, membership, outbox/ack and
 * moderation, and group chat on the simulated network. Convergence is
 * always checked on snapshot bytes. Rival records, evidence lists and
 * pagination against a naive model are in test_chat_rivals.c.
 */
#include "test_chat_common.h"


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
