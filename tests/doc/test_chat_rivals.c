/*
 * The chat thread against hostile and unusual histories: two records for
 * one message ID, rival records, a join and a leave under one stamp, the
 * reaction map growing, evidence lists in sync frames, and pagination
 * against a naive sorted model.
 */
#include "test_chat_common.h"

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
