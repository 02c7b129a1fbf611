/*
 * The chat index keeps, per replica, the sorted counters of its messages
 * (outbox) and, per (user, replica), those of one author (the unread count
 * subtracts the reader's own messages). A replica nearly always posts as
 * one user, and then both lists are one, stored once: the author's entry
 * shares the replica's until a second author posts from that replica (a
 * device handed to another user, a rival record), when it gets its own copy
 * before the commit point. These tests hold unread counts and outboxes to
 * a naive reference computed from the messages themselves, through every
 * way the lists are built: one author per replica, a replica switching
 * author (either author first, by message in order or reversed, by
 * snapshot, by merge), rival records moving a message between authors,
 * and allocation failures at the copy; and they check that one author per
 * replica really stores one list.
 */
#include "test_chat_common.h"

#define T0 UINT64_C(1700000000000)
#define SERVER 9
#define MAXM 512

static const char *users[] = { "alice", "bob", "carol", "mallory" };

/* Every message produced, in production order. */
typedef struct net {
	crdt_buf m[MAXM];
	size_t n;
} net;

static crdt_buf *
net_next(net *w)
{
	cr_assert_lt(w->n, (size_t)MAXM);
	tb_init(&w->m[w->n]);
	return &w->m[w->n++];
}

static void
net_fini(net *w)
{
	for (size_t i = 0; i < w->n; i++)
		crdt_buf_fini(&w->m[i]);
	w->n = 0;
}

static bool
is_user(const crdt_chat_msg *m, const char *u)
{
	return m->user_len == strlen(u) && memcmp(m->user, u, m->user_len) == 0;
}

static int
dot_by_counter(const void *x, const void *y)
{
	const crdt_dot *a = x, *b = y;
	return (a->counter > b->counter) - (a->counter < b->counter);
}

/*
 * Unread counts of every user and the outbox of every replica ID against
 * a reference from the shown messages alone: unread = messages by others
 * the user's read clock does not cover (crdt_chat_has_read); outbox =
 * messages of that replica still pending (neither acknowledged nor
 * rejected), in counter order.
 */
static void
check_ref(const peer *p, const char *where)
{
	const crdt_chat *c = thread(p);
	size_t n = crdt_chat_count(c);
	crdt_chat_msg *v = calloc(n + 1, sizeof *v);
	crdt_dot *want = calloc(n + 1, sizeof *want);
	crdt_dot *got = calloc(n + 1, sizeof *got);
	cr_assert(v != NULL && want != NULL && got != NULL);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(crdt_chat_at(c, i, &v[i]), 0, "%s: at %zu", where,
		    i);
	for (size_t k = 0; k < sizeof users / sizeof *users; k++) {
		size_t ul = strlen(users[k]), ref = 0;
		for (size_t i = 0; i < n; i++)
			if (!is_user(&v[i], users[k]) &&
			    !crdt_chat_has_read(c, users[k], ul, v[i].id))
				ref++;
		cr_assert_eq(crdt_chat_unread(c, users[k], ul), ref,
		    "%s: unread of %s %zu, reference %zu", where, users[k],
		    crdt_chat_unread(c, users[k], ul), ref);
	}
	for (uint8_t r = 1; r <= SERVER; r++) {
		crdt_replica_id id = test_id(r);
		size_t nw = 0, ng = 0;
		for (size_t i = 0; i < n; i++) {
			crdt_chat_status st;
			if (crdt_replica_id_cmp(&v[i].id.replica, &id) != 0)
				continue;
			cr_assert_eq(crdt_chat_status_of(c, v[i].id, &st), 0);
			if (st == CRDT_CHAT_PENDING)
				want[nw++] = v[i].id;
		}
		qsort(want, nw, sizeof *want, dot_by_counter);
		memset(got, 0, (n + 1) * sizeof *got);
		cr_assert_eq(crdt_chat_outbox(c, &id, collect_outbox, got), 0);
		while (got[ng].counter != 0)
			ng++;
		cr_assert_eq(ng, nw, "%s: outbox of replica %u holds %zu, "
		    "reference %zu", where, (unsigned)r, ng, nw);
		for (size_t i = 0; i < nw; i++)
			cr_assert_eq(crdt_dot_cmp(got[i], want[i]), 0,
			    "%s: outbox of replica %u differs at %zu", where,
			    (unsigned)r, i);
	}
	free(v);
	free(want);
	free(got);
}

/* One step of a script: `kind` at peer `at` ('p' post as `user`, 'r'
 * `user` marks read, 'a' server acks, 'x' server rejects the last post). */
typedef struct act {
	char kind;
	int at;
	const char *user;
} act;

typedef struct world {
	peer p[8];
	int live; /* peers 0..live-1 receive every message at once */
	net w;
	crdt_dot last;
	char where[96];
} world;

static void
world_new(world *x, int live)
{
	crdt_replica_id sid = test_id(SERVER);
	memset(x, 0, sizeof *x);
	x->live = live;
	/* Peer i has replica ID i + 1, the last live one is the server. */
	for (int i = 0; i < live; i++)
		peer_new(&x->p[i], i == live - 1 ? SERVER : (uint8_t)(i + 1),
		    T0, &sid);
}

static void
world_free(world *x)
{
	for (int i = 0; i < x->live; i++)
		crdt_doc_free(x->p[i].d);
	net_fini(&x->w);
}

static void
world_do(world *x, const act *a, int step)
{
	peer *at = &x->p[a->at];
	crdt_buf *out = net_next(&x->w);
	for (int i = 0; i < x->live; i++)
		x->p[i].clk.ms += 10;
	switch (a->kind) {
	case 'p': {
		char body[32];
		snprintf(body, sizeof body, "m%d", step);
		crdt_dot id = post(at, a->user, body, NULL, out);
		x->last = id;
		break;
	}
	case 'r':
		cr_assert_eq(crdt_doc_chat_mark_read(at->d, 0, a->user,
				 strlen(a->user), out), 0);
		break;
	case 'a':
		cr_assert_eq(crdt_doc_chat_ack(at->d, 0, out), 0);
		break;
	default:
		cr_assert_eq(crdt_doc_chat_reject(at->d, 0, x->last, "no", 2,
				 out), 0);
	}
	for (int i = 0; i < x->live; i++)
		if (i != a->at)
			deliver(&x->p[i], out);
	for (int i = 0; i < x->live; i++) {
		snprintf(x->where, sizeof x->where, "step %d peer %d", step, i);
		check_ref(&x->p[i], x->where);
	}
}

/* Late observers: one gets every message reversed (the causal buffer
 * holds them), one loads a snapshot (the bulk rebuild), one loads two
 * snapshots (the second merges into the first's index). All answer like
 * the live peers. */
static void
late_observers(world *x, const peer *snap_a, const peer *snap_b)
{
	crdt_replica_id sid = test_id(SERVER);
	peer d, e, f;
	crdt_buf s;
	tb_init(&s);
	peer_new(&d, 20, T0, &sid);
	for (size_t i = x->w.n; i-- > 0;)
		deliver(&d, &x->w.m[i]);
	cr_assert_eq(crdt_doc_buffered(d.d), 0);
	check_ref(&d, "reversed delivery");
	same_bytes(&d, &x->p[0]);
	peer_new(&e, 21, T0, &sid);
	cr_assert_eq(crdt_doc_save(x->p[0].d, &s), 0);
	cr_assert_eq(crdt_doc_load(e.d, s.data, s.len, NULL), 0);
	check_ref(&e, "snapshot");
	peer_new(&f, 22, T0, &sid);
	crdt_buf_clear(&s);
	cr_assert_eq(crdt_doc_save(snap_a->d, &s), 0);
	cr_assert_eq(crdt_doc_load(f.d, s.data, s.len, NULL), 0);
	check_ref(&f, "first snapshot");
	crdt_buf_clear(&s);
	cr_assert_eq(crdt_doc_save(snap_b->d, &s), 0);
	cr_assert_eq(crdt_doc_load(f.d, s.data, s.len, NULL), 0);
	check_ref(&f, "second snapshot merged");
	crdt_buf_fini(&s);
	crdt_doc_free(d.d);
	crdt_doc_free(e.d);
	crdt_doc_free(f.d);
}

/* Peers 0..2 (replicas 1..3) each post as their own user, with reads,
 * acks and rejections at random, seeded. */
Test(chat_authors, one_author_per_replica_matches_the_reference)
{
	enum { STEPS = 150 };
	world x;
	test_rng rng;
	uint64_t seed = test_seed(2026);
	test_rng_init(&rng, seed);
	world_new(&x, 4);
	for (int s = 0; s < STEPS; s++) {
		act a;
		uint32_t k = test_rng_below(&rng, 10);
		a.at = (int)test_rng_below(&rng, 3);
		a.user = users[a.at];
		if (k < 6) {
			a.kind = 'p';
		} else if (k < 8) {
			a.kind = 'r';
			a.user = users[test_rng_below(&rng, 4)];
		} else {
			a.kind = k == 8 || x.last.counter == 0 ? 'a' : 'x';
			a.at = 3;
		}
		world_do(&x, &a, s);
	}
	late_observers(&x, &x.p[0], &x.p[1]);
	world_free(&x);
}

/*
 * Replica 1 (peer 0) posts as one user, then as another (the device
 * changes hands: its list is copied for the first author, at the poster
 * by a local post and everywhere else by a received one), then as the
 * first again; replica 2 does the same later. Either user first. Reads
 * before the switch cover the first author's messages, so the unread
 * counts depend on the copied list.
 */
Test(chat_authors, a_replica_switching_author_matches_the_reference)
{
	for (int order = 0; order < 2; order++) {
		const char *u1 = order ? "bob" : "alice";
		const char *u2 = order ? "alice" : "bob";
		const act script[] = {
			{ 'p', 0, u1 }, { 'p', 0, u1 }, { 'p', 1, "carol" },
			{ 'r', 2, "carol" }, { 'r', 0, u1 }, { 'a', 3, NULL },
			{ 'p', 0, u1 }, { 'r', 1, u2 },
			{ 'p', 0, u2 }, /* the switch */
			{ 'p', 0, u2 }, { 'x', 3, NULL }, { 'r', 2, u1 },
			{ 'p', 0, u1 }, { 'p', 1, "carol" }, { 'a', 3, NULL },
			{ 'p', 1, "mallory" }, /* replica 2 switches */
			{ 'p', 0, u2 }, { 'r', 2, "mallory" }, { 'p', 1, "carol" },
			{ 'p', 0, u1 }, { 'r', 0, u2 }, { 'r', 1, u1 },
		};
		world x;
		world_new(&x, 4);
		/* A snapshot of the peers before the switch, to merge the
		 * rest into. */
		peer early;
		crdt_replica_id sid = test_id(SERVER);
		crdt_buf s;
		tb_init(&s);
		peer_new(&early, 23, T0, &sid);
		for (size_t i = 0; i < sizeof script / sizeof *script; i++) {
			world_do(&x, &script[i], (int)i);
			if (i == 7) {
				cr_assert_eq(crdt_doc_save(x.p[2].d, &s), 0);
				cr_assert_eq(crdt_doc_load(early.d, s.data,
						 s.len, NULL), 0);
			}
		}
		late_observers(&x, &early, &x.p[1]);
		crdt_buf_fini(&s);
		crdt_doc_free(early.d);
		world_free(&x);
	}
}

/*
 * A forger with replica 1's ID replays its message IDs with other authors
 * and clocks: where the forged record is smaller it is shown instead, and
 * the message moves from one author's list to another's (out of a shared
 * list, or into one's replica). By message in both orders, by snapshot,
 * and by merging one writer's snapshot into the other's.
 */
Test(chat_authors, rival_records_moving_messages_match_the_reference)
{
	enum { N = 16 };
	crdt_replica_id sid = test_id(SERVER);
	peer a, f, o, p, q, r, s;
	crdt_buf ma[N], mf[N], mk, snap;
	test_rng rng;
	uint64_t seed = test_seed(4242);
	test_rng_init(&rng, seed);
	peer_new(&a, 1, T0, &sid);
	peer_new(&f, 1, T0 - 50, &sid); /* replica 1's ID, its own clock */
	peer_new(&o, 3, T0, &sid);
	peer_new(&p, 4, T0, &sid);
	peer_new(&q, 5, T0, &sid);
	peer_new(&r, 6, T0, &sid);
	peer_new(&s, SERVER, T0, &sid);
	tb_init(&mk);
	tb_init(&snap);
	for (int i = 0; i < N; i++) {
		char body[16];
		tb_init(&ma[i]);
		tb_init(&mf[i]);
		snprintf(body, sizeof body, "a%d", i);
		a.clk.ms += 10;
		post(&a, "alice", body, NULL, &ma[i]);
		snprintf(body, sizeof body, "f%d", i);
		f.clk.ms += test_rng_below(&rng, 25);
		post(&f, test_rng_chance(&rng, 3, 4) ? "mallory" : "alice",
		    body, NULL, &mf[i]);
	}
	/* o: alice's first, read by alice, acknowledged, then the forger's;
	 * p: the forger's first. */
	for (int i = 0; i < N; i++) {
		deliver(&o, &ma[i]);
		deliver(&s, &ma[i]);
	}
	cr_assert_eq(crdt_doc_chat_mark_read(o.d, 0, "alice", 5, &mk), 0);
	cr_assert_eq(crdt_doc_chat_mark_read(o.d, 0, "bob", 3, &mk), 0);
	crdt_buf_clear(&mk);
	cr_assert_eq(crdt_doc_chat_ack(s.d, 0, &mk), 0);
	deliver(&o, &mk);
	check_ref(&o, "alice's records");
	for (int i = 0; i < N; i++) {
		deliver(&p, &mf[i]);
		check_ref(&p, "forged records");
	}
	cr_assert_eq(crdt_doc_chat_mark_read(p.d, 0, "mallory", 7, &mk), 0);
	for (int i = 0; i < N; i++) {
		deliver(&o, &mf[i]);
		check_ref(&o, "forged records after alice's");
		deliver(&p, &ma[i]);
		check_ref(&p, "alice's records after the forged ones");
	}
	/* q loads the forger's snapshot, then a's: a load rebuilds the
	 * snapshot's index in bulk (alice's one list, her read mark) and
	 * merges q's records into it, moving messages without a prepare
	 * step. */
	cr_assert_eq(crdt_doc_save(f.d, &snap), 0);
	cr_assert_eq(crdt_doc_load(q.d, snap.data, snap.len, NULL), 0);
	check_ref(&q, "forged snapshot");
	crdt_buf_clear(&mk);
	cr_assert_eq(crdt_doc_chat_mark_read(a.d, 0, "alice", 5, &mk), 0);
	crdt_buf_clear(&snap);
	cr_assert_eq(crdt_doc_save(a.d, &snap), 0);
	cr_assert_eq(crdt_doc_load(q.d, snap.data, snap.len, NULL), 0);
	check_ref(&q, "alice's snapshot merged");
	crdt_buf_clear(&snap);
	cr_assert_eq(crdt_doc_save(o.d, &snap), 0);
	cr_assert_eq(crdt_doc_load(r.d, snap.data, snap.len, NULL), 0);
	check_ref(&r, "snapshot with rivals");
	/* Some forged records were shown instead, some were not (seeded). */
	size_t moved = 0;
	for (size_t i = 0; i < crdt_chat_count(thread(&r)); i++) {
		crdt_chat_msg m;
		cr_assert_eq(crdt_chat_at(thread(&r), i, &m), 0);
		moved += m.body[0] == 'f' && is_user(&m, "mallory");
	}
	cr_assert(moved > 0 && moved < N, "seed %llu: %zu of %d moved",
	    (unsigned long long)seed, moved, N);
	for (int i = 0; i < N; i++) {
		crdt_buf_fini(&ma[i]);
		crdt_buf_fini(&mf[i]);
	}
	crdt_buf_fini(&mk);
	crdt_buf_fini(&snap);
	crdt_doc_free(a.d);
	crdt_doc_free(f.d);
	crdt_doc_free(o.d);
	crdt_doc_free(p.d);
	crdt_doc_free(q.d);
	crdt_doc_free(r.d);
	crdt_doc_free(s.d);
}

/*
 * Fail allocation n = 0, 1, 2, ... where a shared list is copied: a post
 * by a second author (local and received), a rival record moving a message
 * out of a shared list (received and merged from a snapshot). Each attempt
 * fails with CRDT_ENOMEM and leaves the document byte-identical, the
 * message not applied and every count as the reference says, or succeeds
 * with the message applied and the counts right; nothing leaks.
 */
Test(chat_authors, copying_a_shared_list_fails_cleanly)
{
	crdt_replica_id sid = test_id(SERVER);
	peer a, f, s, full;
	crdt_buf ma[3], mb, mf, snap, mk;
	/* Per step: the author shown for message (1, 1) before and after,
	 * the messages added, alice's unread count after. */
	static const char *const before_by[] = { "alice", "alice", "alice",
		"mallory" };
	static const char *const after_by[] = { "alice", "alice", "mallory",
		"mallory" };
	static const size_t added[] = { 1, 1, 0, 2 };
	static const size_t unread_after[] = { 1, 1, 0, 0 };

	test_alloc_reset();
	peer_new(&a, 1, T0, &sid);
	peer_new(&f, 1, T0 - 1000, &sid); /* a rival of a's first post */
	peer_new(&s, SERVER, T0, &sid);
	peer_new(&full, 6, T0, &sid);
	tb_init(&mb);
	tb_init(&mf);
	tb_init(&snap);
	tb_init(&mk);
	for (int i = 0; i < 3; i++) {
		tb_init(&ma[i]);
		a.clk.ms += 10;
		post(&a, "alice", "hi", NULL, &ma[i]);
		deliver(&s, &ma[i]);
		deliver(&full, &ma[i]);
	}
	cr_assert_eq(crdt_doc_chat_ack(s.d, 0, &mk), 0);
	deliver(&full, &mk);
	post(&f, "mallory", "forged", NULL, &mf);
	/* a's three posts (one shared list), acknowledged, read by alice. */
	crdt_buf rd;
	tb_init(&rd);
	cr_assert_eq(crdt_doc_chat_mark_read(full.d, 0, "alice", 5, &rd), 0);
	crdt_buf_fini(&rd);
	cr_assert_eq(crdt_doc_save(full.d, &snap), 0);
	for (int step = 0; step < 4; step++) {
		/* step 0: a posts as bob (a local post copies alice's list
		 * before the commit point); 1: a replica holding what
		 * `full` holds receives that post; 2: it receives the smaller rival
		 * record of (1, 1); 3: a replica holding the rival loads
		 * `full`'s snapshot (the merge moves the message). */
		peer v;
		peer *at = step == 0 ? &a : &v;
		if (step > 0) {
			peer_new(&v, 5, T0, &sid);
			if (step < 3) {
				/* By message, as in the rival tests, so the
				 * rival reaches the apply path. */
				for (int i = 0; i < 3; i++)
					deliver(&v, &ma[i]);
				deliver(&v, &mk);
				tb_init(&rd);
				cr_assert_eq(crdt_doc_chat_mark_read(v.d, 0,
						 "alice", 5, &rd), 0);
				crdt_buf_fini(&rd);
			} else {
				deliver(&v, &mf);
			}
		}
		size_t n0 = crdt_chat_count(thread(at));
		crdt_dot first = { test_id(1), 1 };
		crdt_chat_msg m;
		for (long n = 0;; n++) {
			crdt_buf before, after;
			tb_init(&before);
			tb_init(&after);
			cr_assert_eq(crdt_doc_save(at->d, &before), 0);
			test_alloc_fail_at(n);
			int rc;
			if (step == 0) {
				crdt_chat_post pb = { "bob", 3, "mine", 4, NULL,
					NULL, 0 };
				crdt_buf_clear(&mb);
				rc = crdt_doc_chat_post(a.d, 0, &pb, NULL, &mb);
			} else if (step == 1) {
				rc = crdt_doc_receive(v.d, mb.data, mb.len,
				    NULL);
			} else if (step == 2) {
				rc = crdt_doc_receive(v.d, mf.data, mf.len,
				    NULL);
			} else {
				rc = crdt_doc_load(v.d, snap.data, snap.len,
				    NULL);
			}
			test_alloc_disarm();
			char where[64];
			snprintf(where, sizeof where, "step %d n %ld", step, n);
			if (rc != 0) {
				cr_assert_eq(rc, CRDT_ENOMEM, "%s: %s", where,
				    crdt_err_name(rc));
				cr_assert_eq(crdt_doc_save(at->d, &after), 0);
				cr_assert(bytes_eq(before.data, before.len,
					      after.data, after.len),
				    "%s changed the document", where);
				cr_assert_eq(crdt_chat_count(thread(at)), n0);
				cr_assert_eq(crdt_chat_get(thread(at), first,
						 &m), 0);
				cr_assert(is_user(&m, before_by[step]), "%s",
				    where);
			}
			check_ref(at, where);
			crdt_buf_fini(&before);
			crdt_buf_fini(&after);
			if (rc == 0)
				break;
			cr_assert_lt(n, 100000);
		}
		cr_assert_eq(crdt_chat_count(thread(at)), n0 + added[step],
		    "step %d", step);
		cr_assert_eq(crdt_chat_get(thread(at), first, &m), 0);
		cr_assert(is_user(&m, after_by[step]), "step %d", step);
		cr_assert_eq(crdt_chat_unread(thread(at), "alice", 5),
		    unread_after[step], "step %d", step);
		if (step > 0)
			crdt_doc_free(v.d);
	}
	for (int i = 0; i < 3; i++)
		crdt_buf_fini(&ma[i]);
	crdt_buf_fini(&mb);
	crdt_buf_fini(&mf);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&mk);
	crdt_doc_free(a.d);
	crdt_doc_free(f.d);
	crdt_doc_free(s.d);
	crdt_doc_free(full.d);
	ASSERT_NO_LEAKS();
}

/* Live bytes of a replica after receiving `n` posts of replica 1, the
 * first by `first`, the others by "alice" (what freeing it releases). */
static size_t
live_after(const char *first, size_t n)
{
	crdt_replica_id sid = test_id(SERVER);
	peer a, b;
	crdt_buf m;
	tb_init(&m);
	peer_new(&a, 1, T0, &sid);
	peer_new(&b, 2, T0, &sid);
	for (size_t i = 0; i < n; i++) {
		a.clk.ms += 10;
		post(&a, i == 0 ? first : "alice", "same size", NULL, &m);
		deliver(&b, &m);
	}
	size_t with_b = test_alloc_live_bytes();
	crdt_doc_free(b.d);
	size_t b_live = with_b - test_alloc_live_bytes();
	crdt_doc_free(a.d);
	crdt_buf_fini(&m);
	return b_live;
}

/* One author per replica stores its counters once: a replica whose first
 * message is by another user ("bobby", as long as "alice") keeps a second
 * list of all but one counter, 8 bytes each. */
Test(chat_authors, one_author_per_replica_keeps_one_list)
{
	enum { N = 2048 };
	test_alloc_reset();
	size_t one = live_after("alice", N);
	size_t two = live_after("bobby", N);
	cr_assert_geq(two, one + 8 * (N - 1),
	    "one author: %zu bytes, two authors: %zu bytes", one, two);
	cr_assert_lt(two, one + 8 * (N - 1) * 2 + 4096,
	    "one author: %zu bytes, two authors: %zu bytes", one, two);
	ASSERT_NO_LEAKS();
}
