/*
 * Sync in pages: a DATA frame carries at most the sender's budget and
 * says when more follows, so a replica any distance behind catches up in
 * bounded frames; every round ends; a message refused for its own content
 * is skipped without blocking the rest of its frame; a keyless relay's log
 * evicts per writer, and a relay that cannot serve a peer says so; what a
 * log serves after eviction comes in apply order, writers interleaved.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_util.h"

#define MAX_FRAMES 512

typedef struct xstats {
	size_t frames, max_frame;
	int first_err;
	int last_err;
	/* When set: after every frame it holds nothing in its causal buffer
	 * (every message came after those it depends on). */
	const crdt_doc *never_waits;
} xstats;

/* One exchange started by `a`: HELLO, then every reply back and forth
 * until a side has nothing to send. Returns the number of frames; fails
 * the test if the exchange does not end within MAX_FRAMES. */
static size_t
exchange(crdt_doc *a, crdt_doc *b, xstats *st)
{
	crdt_buf f, r;
	tb_init(&f);
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_start(a, &f), 0);
	crdt_doc *to = b, *from = a;
	size_t k = 0;
	for (; f.len > 0; k++) {
		cr_assert_lt(k, MAX_FRAMES, "a sync round never ends");
		st->frames++;
		if (f.len > st->max_frame)
			st->max_frame = f.len;
		crdt_buf_clear(&r);
		int rc = crdt_doc_sync_handle(to, f.data, f.len, NULL, &r);
		if (rc < 0) {
			cr_assert_eq(r.len, 0, "an error comes with no reply");
			if (st->first_err == 0)
				st->first_err = rc;
		}
		st->last_err = rc;
		if (st->never_waits != NULL)
			cr_assert_eq(crdt_doc_buffered(st->never_waits), 0,
			    "frame %zu: a message came before one it depends "
			    "on", k);
		crdt_buf t = f;
		f = r;
		r = t;
		crdt_doc *x = from;
		from = to;
		to = x;
	}
	crdt_buf_fini(&f);
	crdt_buf_fini(&r);
	return k;
}

static crdt_doc *
plain_doc(uint8_t n, size_t budget, size_t max_bytes, uint32_t *obj)
{
	crdt_config cfg;
	crdt_doc *d;
	test_config(&cfg, NULL);
	cfg.sync_max_bytes = budget;
	cfg.limits.max_bytes = max_bytes;
	crdt_replica_id id = test_id(n);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &d), 0);
	cr_assert_eq(crdt_doc_register(d, "blobs", CRDT_OBJ_GSET, obj), 0);
	return d;
}

/* `count` elements of `size` (>= 2) bytes, distinct per writer, made by
 * `w` and received by `into` (may be NULL). */
static void
fill(crdt_doc *w, crdt_doc *into, uint32_t obj, size_t count, size_t size)
{
	uint8_t *e = malloc(size);
	crdt_buf m;
	tb_init(&m);
	for (size_t i = 0; i < count; i++) {
		memset(e, (int)i, size);
		e[0] = (uint8_t)(i >> 8);
		e[1] = crdt_doc_self(w)->bytes[0];
		crdt_buf_clear(&m);
		cr_assert_eq(crdt_doc_gset_add(w, obj, e, size, &m), 0);
		if (into != NULL)
			cr_assert_eq(crdt_doc_receive(into, m.data, m.len,
					 NULL), 0);
	}
	crdt_buf_fini(&m);
	free(e);
}

static size_t
gset_size_of(const crdt_doc *d, uint32_t obj)
{
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(d, obj, &g), 0);
	return crdt_gset_size(g);
}

/* A replica 300 messages (~60 KiB) behind a peer with a 4 KiB budget
 * catches up in one round of frames that each stay within the budget. */
Test(sync_paging, a_peer_far_behind_catches_up_in_bounded_frames)
{
	uint32_t t;
	crdt_doc *c = plain_doc(3, 4096, 0, &t);
	crdt_doc *a = plain_doc(1, 4096, 0, &t);
	crdt_doc *b = plain_doc(2, 4096, 0, &t);
	fill(c, a, t, 300, 200);
	xstats st = { 0 };
	size_t frames = exchange(b, a, &st);
	cr_assert_eq(st.first_err, 0, "%s", crdt_err_name(st.first_err));
	cr_assert_eq(gset_size_of(b, t), 300, "one round brings b level");
	cr_assert_leq(st.max_frame, 4096, "every frame within the budget");
	/* ~66 KiB in pages of ~4 KiB, one request frame per page */
	cr_assert_gt(frames, 2 * 15);
	cr_assert_lt(frames, 2 * 20 + 4);
	/* level now: a round is HELLO, DATA and quiet */
	st = (xstats){ 0 };
	cr_assert_eq(exchange(b, a, &st), 2);
	cr_assert_eq(exchange(a, b, &st), 2);
	cr_assert_eq(st.first_err, 0);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_doc_free(c);
}

/* Both sides far behind each other: pages flow both ways in one round. */
Test(sync_paging, pages_flow_both_ways_and_the_round_ends)
{
	uint32_t t;
	crdt_doc *a = plain_doc(1, 2048, 0, &t);
	crdt_doc *b = plain_doc(2, 2048, 0, &t);
	fill(a, NULL, t, 80, 100);
	fill(b, NULL, t, 120, 100);
	xstats st = { 0 };
	exchange(a, b, &st);
	cr_assert_eq(st.first_err, 0, "%s", crdt_err_name(st.first_err));
	cr_assert_leq(st.max_frame, 2048);
	cr_assert_eq(gset_size_of(a, t), 200, "a %zu b %zu frames %zu",
	    gset_size_of(a, t), gset_size_of(b, t), st.frames);
	cr_assert_eq(gset_size_of(b, t), 200);
	crdt_buf sa, sb;
	tb_init(&sa);
	tb_init(&sb);
	cr_assert_eq(crdt_doc_save(a, &sa), 0);
	cr_assert_eq(crdt_doc_save(b, &sb), 0);
	cr_assert_gt(sa.len, 0);
	crdt_buf_fini(&sa);
	crdt_buf_fini(&sb);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

/* The p20 shape at a small scale: total history over max_bytes, each
 * message well under it. The default budget is max_bytes. */
Test(sync_paging, history_larger_than_max_bytes_still_syncs)
{
	uint32_t t;
	size_t max = 64 << 10;
	crdt_doc *c = plain_doc(3, 0, max, &t);
	crdt_doc *a = plain_doc(1, 0, max, &t);
	crdt_doc *b = plain_doc(2, 0, max, &t);
	fill(c, a, t, 20, 16 << 10); /* 320 KiB of history */
	xstats st = { 0 };
	exchange(b, a, &st);
	cr_assert_eq(st.first_err, 0, "%s", crdt_err_name(st.first_err));
	cr_assert_leq(st.max_frame, max);
	cr_assert_eq(gset_size_of(b, t), 20);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_doc_free(c);
}

/* A message larger than the budget still travels, alone in its frame; a
 * message no frame within max_bytes can carry is refused by the producer
 * (CRDT_ETOOBIG, no reply) instead of being sent to be refused. */
Test(sync_paging, oversized_messages_travel_alone_or_are_refused_at_the_source)
{
	uint32_t t;
	size_t max = 32 << 10;
	crdt_doc *a = plain_doc(1, 1024, max, &t);
	crdt_doc *b = plain_doc(2, 1024, max, &t);
	fill(a, NULL, t, 3, 8 << 10);
	xstats st = { 0 };
	exchange(b, a, &st);
	cr_assert_eq(st.first_err, 0, "%s", crdt_err_name(st.first_err));
	cr_assert_eq(gset_size_of(b, t), 3);
	cr_assert_gt(st.max_frame, 1024);
	cr_assert_lt(st.max_frame, 9 << 10, "one message per frame");

	/* a message just under max_bytes: valid, but no frame holds it */
	crdt_doc *c = plain_doc(3, 0, max, &t);
	crdt_doc *e = plain_doc(4, 0, max, &t);
	/* the largest element a commit takes: its message is within a few
	 * bytes of max_bytes, and a frame adds its header and clock */
	uint8_t *big = calloc(1, max);
	crdt_buf m;
	tb_init(&m);
	size_t s = max;
	while (crdt_doc_gset_add(c, t, big, s, &m) != 0)
		s--;
	cr_assert_gt(m.len, max - 16);
	crdt_buf_fini(&m);
	free(big);
	crdt_buf h, r;
	tb_init(&h);
	tb_init(&r);
	cr_assert_eq(crdt_doc_sync_start(e, &h), 0);
	cr_assert_eq(crdt_doc_sync_handle(c, h.data, h.len, NULL, &r),
	    CRDT_ETOOBIG);
	cr_assert_eq(r.len, 0);
	crdt_buf_fini(&h);
	crdt_buf_fini(&r);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_doc_free(c);
	crdt_doc_free(e);
}

/* Unknown flag bits, and a DATA frame without flags, are malformed and
 * change nothing. */
Test(sync_paging, data_frames_with_bad_flags_are_refused_whole)
{
	uint32_t t;
	crdt_doc *a = plain_doc(1, 0, 0, &t);
	crdt_doc *b = plain_doc(2, 0, 0, &t);
	fill(a, NULL, t, 2, 10);
	crdt_buf h, data, bad, r, before, after;
	tb_init(&h);
	tb_init(&data);
	tb_init(&bad);
	tb_init(&r);
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(crdt_doc_sync_start(b, &h), 0);
	cr_assert_eq(crdt_doc_sync_handle(a, h.data, h.len, NULL, &data), 0);
	cr_assert_eq(data.data[0], 0x99, "DATA has nine elements");
	cr_assert_eq(crdt_doc_save(b, &before), 0);
	/* The flags byte comes before the digests, none here: b's clock
	 * equals a's for no writer (an empty fixarray). */
	size_t dg = 1;
	cr_assert_eq(data.data[data.len - dg], 0x90);
	cr_assert_eq(crdt_buf_append(&bad, data.data, data.len), 0);
	bad.data[bad.len - dg - 1] |= 0x08;
	cr_assert_eq(crdt_doc_sync_handle(b, bad.data, bad.len, NULL, &r),
	    CRDT_EMALFORMED);
	/* drop the flags: eight elements */
	crdt_buf_clear(&bad);
	cr_assert_eq(crdt_buf_append(&bad, data.data, data.len - dg - 1), 0);
	cr_assert_eq(crdt_buf_append(&bad, data.data + data.len - dg, dg), 0);
	bad.data[0] = 0x98;
	cr_assert_eq(crdt_doc_sync_handle(b, bad.data, bad.len, NULL, &r),
	    CRDT_EMALFORMED);
	cr_assert_eq(r.len, 0);
	cr_assert_eq(crdt_doc_save(b, &after), 0);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len),
	    "a refused frame changes nothing");
	cr_assert_eq(crdt_doc_sync_handle(b, data.data, data.len, NULL, &r),
	    0);
	cr_assert_eq(gset_size_of(b, t), 2);
	crdt_buf *bufs[] = { &h, &data, &bad, &r, &before, &after };
	for (size_t i = 0; i < 6; i++)
		crdt_buf_fini(bufs[i]);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

/* ---- keyless relay ---- */

static const uint8_t key[32] = { 7, 7, 7, 1, 2, 3 };

typedef struct node {
	crdt_doc *d;
	crdt_identity *ident;
	crdt_replica_id id;
	uint8_t pk[32];
} node;

/* Signed, encrypted; keyed unless `relay`; with the allowlist of
 * `admin` (NULL: none, or `as_rogue`: the schema only). */
static void
node_new(node *n, uint8_t seed, bool relay, const node *admin,
    bool as_rogue, size_t log_max)
{
	uint8_t s[32] = { 0 };
	crdt_config cfg;
	s[0] = seed;
	test_config(&cfg, NULL);
	cfg.log_max_msgs = log_max;
	cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
	crdt_identity_replica_id(n->ident, &n->id);
	crdt_identity_public_key(n->ident, n->pk);
	cr_assert_eq(crdt_doc_new(&cfg, &n->id, &n->d), 0);
	crdt_doc_security sec = { true, n->ident, true, relay ? NULL : key,
		1, admin != NULL ? admin->pk : NULL, false };
	if (admin == n)
		sec.admin_key = n->pk;
	cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	if (as_rogue)
		cr_assert_eq(crdt_doc_register(n->d, "__acl", CRDT_OBJ_GSET,
				 NULL), 0);
	cr_assert_eq(crdt_doc_register(n->d, "notes", CRDT_OBJ_GSET, NULL),
	    0);
}

static void
node_free(node *n)
{
	crdt_doc_free(n->d);
	crdt_identity_free(n->ident);
}

static uint32_t
notes(const node *n)
{
	uint32_t t;
	cr_assert_eq(crdt_doc_lookup(n->d, "notes", &t), 0);
	return t;
}

static bool
has_note(const node *n, const char *s)
{
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(n->d, notes(n), &g), 0);
	return crdt_gset_contains(g, s, strlen(s));
}

/* `w` writes note `s` and the message goes to `to` (may be NULL). */
static void
note(node *w, const char *s, node *to, crdt_buf *keep)
{
	crdt_buf m;
	tb_init(&m);
	cr_assert_eq(crdt_doc_gset_add(w->d, notes(w), s, strlen(s), &m), 0);
	if (to != NULL)
		cr_assert_eq(crdt_doc_receive(to->d, m.data, m.len, NULL), 0);
	if (keep != NULL)
		cr_assert_eq(crdt_buf_append(keep, m.data, m.len), 0);
	crdt_buf_fini(&m);
}

/* The relay logs a keyed non-member's note between an allowed writer's
 * notes and serves it in the same frame: the keyed replica refuses it
 * and still takes every note after it, in the same round. */
Test(sync_paging, a_refused_message_mid_frame_does_not_block_the_rest)
{
	node admin = { 0 }, w, relay, k, rogue;
	node_new(&admin, 1, false, &admin, false, 0);
	node_new(&w, 2, false, &admin, false, 0);
	node_new(&relay, 3, true, &admin, false, 0);
	node_new(&k, 4, false, &admin, false, 0);
	node_new(&rogue, 5, false, NULL, true, 0);
	crdt_buf grant;
	tb_init(&grant);
	cr_assert_eq(crdt_doc_allow(admin.d, &w.id, true, &grant), 0);
	cr_assert_eq(crdt_doc_receive(w.d, grant.data, grant.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(relay.d, grant.data, grant.len, NULL),
	    0);
	note(&w, "m1", &relay, NULL);
	crdt_buf pill;
	tb_init(&pill);
	note(&rogue, "evil", &relay, &pill);
	cr_assert_eq(crdt_doc_receive(k.d, pill.data, pill.len, NULL),
	    CRDT_EPERM, "keyed replicas refuse the pill");
	note(&w, "m2", &relay, NULL);
	note(&w, "m3", &relay, NULL);
	cr_assert_eq(crdt_doc_log_size(relay.d), 5);

	xstats st = { 0 };
	exchange(k.d, relay.d, &st);
	cr_assert_eq(st.first_err, 0, "skipped, not reported: %s",
	    crdt_err_name(st.first_err));
	cr_assert(has_note(&k, "m1") && has_note(&k, "m2") &&
	    has_note(&k, "m3"), "everything after the pill arrives");
	cr_assert(!has_note(&k, "evil"));
	/* the relay keeps offering the pill; every round still ends */
	for (int i = 0; i < 3; i++) {
		size_t f1 = exchange(k.d, relay.d, &st);
		size_t f2 = exchange(relay.d, k.d, &st);
		cr_assert_leq(f1, 3);
		cr_assert_leq(f2, 3);
	}
	cr_assert_eq(st.first_err, 0);
	cr_assert(!has_note(&k, "evil"));
	crdt_buf_fini(&grant);
	crdt_buf_fini(&pill);
	node *all[] = { &admin, &w, &relay, &k, &rogue };
	for (size_t i = 0; i < 5; i++)
		node_free(all[i]);
}

/* A throwaway identity pushes many times the log bound through a keyless
 * relay: eviction takes from the writer holding the most, so an honest
 * writer's note survives and a replica behind still gets it through the
 * hub. The relay cannot serve the flooder's evicted history: the replica
 * learns that explicitly (CRDT_ENOTFOUND, from a frame that changed
 * nothing), never CRDT_ESTATE. */
Test(sync_paging, relay_log_eviction_is_per_writer)
{
	node w, relay, k, junk;
	size_t bound = 16;
	node_new(&w, 1, false, NULL, false, bound);
	node_new(&relay, 2, true, NULL, false, bound);
	node_new(&k, 3, false, NULL, false, bound);
	node_new(&junk, 4, false, NULL, false, bound);
	note(&w, "important", &relay, NULL);
	note(&w, "second", &relay, NULL);
	for (int i = 0; i < 100; i++) {
		char s[16];
		snprintf(s, sizeof s, "junk%d", i);
		note(&junk, s, &relay, NULL);
	}
	cr_assert_eq(crdt_doc_log_size(relay.d), bound);
	xstats st = { 0 };
	exchange(k.d, relay.d, &st);
	cr_assert(has_note(&k, "important") && has_note(&k, "second"),
	    "the honest writer's history survives the flood");
	exchange(relay.d, k.d, &st);
	exchange(k.d, relay.d, &st);
	cr_assert_eq(st.first_err, CRDT_ENOTFOUND, "%s",
	    crdt_err_name(st.first_err));
	cr_assert_eq(st.last_err, CRDT_ENOTFOUND,
	    "each round ends with the explicit answer");
	/* a keyed replica can serve all of it (by snapshot) */
	st = (xstats){ 0 };
	exchange(k.d, junk.d, &st);
	cr_assert_eq(st.first_err, 0, "%s", crdt_err_name(st.first_err));
	cr_assert(has_note(&k, "junk0") && has_note(&k, "junk99"));
	node *all[] = { &w, &relay, &k, &junk };
	for (size_t i = 0; i < 4; i++)
		node_free(all[i]);
}

/* A relay whose log lost part of the only writer's history answers the
 * replica behind with what it still can, then says it cannot serve it;
 * the call that says so changes nothing. */
Test(sync_paging, a_relay_that_cannot_serve_a_peer_says_so)
{
	node w, relay, k;
	node_new(&w, 1, false, NULL, false, 2);
	node_new(&relay, 2, true, NULL, false, 2);
	node_new(&k, 3, false, NULL, false, 0);
	for (int i = 0; i < 5; i++) {
		char s[8];
		snprintf(s, sizeof s, "n%d", i);
		note(&w, s, &relay, NULL);
	}
	crdt_buf h, r, again, before, after;
	tb_init(&h);
	tb_init(&r);
	tb_init(&again);
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(crdt_doc_sync_start(k.d, &h), 0);
	cr_assert_eq(crdt_doc_sync_handle(relay.d, h.data, h.len, NULL, &r),
	    0, "not CRDT_ESTATE");
	cr_assert_eq(crdt_doc_save(k.d, &before), 0);
	cr_assert_eq(crdt_doc_sync_handle(k.d, r.data, r.len, NULL, &again),
	    CRDT_ENOTFOUND);
	cr_assert_eq(again.len, 0);
	cr_assert_eq(crdt_doc_save(k.d, &after), 0);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	xstats st = { 0 };
	exchange(k.d, w.d, &st);
	cr_assert_eq(st.first_err, 0);
	cr_assert(has_note(&k, "n0") && has_note(&k, "n4"));
	crdt_buf *bufs[] = { &h, &r, &again, &before, &after };
	for (size_t i = 0; i < 5; i++)
		crdt_buf_fini(bufs[i]);
	node_free(&w);
	node_free(&relay);
	node_free(&k);
}

/* Three writers, each seeing the others' messages (so each message
 * depends on every earlier one), write one at a time and in batches; B
 * applies them in that order and its log keeps 50 of 150 (evicting from
 * the writer holding the most, through the middle of a batch's fifo
 * entry). C holds everything up to the last message B evicted, so B's log
 * serves it the rest, in small pages: in apply order, C applies every
 * message as it comes (nothing waits) and ends with all of them. */
Test(sync_paging, a_log_serves_interleaved_writers_in_apply_order)
{
	enum { N = 150 };
	crdt_doc *w[3], *b, *c;
	uint32_t obj;
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.log_max_msgs = 50;
	cfg.sync_max_bytes = 300;
	crdt_replica_id id;
	for (int k = 0; k < 3; k++)
		w[k] = plain_doc((uint8_t)(10 + k), 1 << 16, 1 << 20, &obj);
	id = test_id(20);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &b), 0);
	id = test_id(21);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &c), 0);
	cr_assert_eq(crdt_doc_register(b, "blobs", CRDT_OBJ_GSET, &obj), 0);
	cr_assert_eq(crdt_doc_register(c, "blobs", CRDT_OBJ_GSET, &obj), 0);

	static crdt_buf msg[N];
	crdt_dot dot[N];
	uint64_t made[3] = { 0, 0, 0 };
	/* The writer of each message: turns, then batches of 7, 2 and 12. */
	static const uint8_t batch[][2] = { { 0, 1 }, { 1, 1 }, { 2, 1 },
		{ 0, 7 }, { 1, 2 }, { 2, 12 }, { 0, 1 }, { 2, 1 } };
	size_t n = 0;
	for (size_t t = 0; n < N; t++) {
		int k = batch[t % 8][0];
		for (int j = 0; j < batch[t % 8][1] && n < N; j++, n++) {
			uint8_t e[24];
			memset(e, (int)n, sizeof e);
			e[0] = (uint8_t)k;
			tb_init(&msg[n]);
			cr_assert_eq(crdt_doc_gset_add(w[k], obj, e, sizeof e,
					 &msg[n]), 0);
			dot[n] = (crdt_dot){ *crdt_doc_self(w[k]), ++made[k] };
			for (int q = 0; q < 3; q++)
				if (q != k)
					cr_assert_eq(crdt_doc_receive(w[q],
							 msg[n].data,
							 msg[n].len, NULL), 0);
			cr_assert_eq(crdt_doc_receive(b, msg[n].data,
					 msg[n].len, NULL), 0);
		}
	}
	cr_assert_eq(crdt_doc_log_size(b), 50);
	size_t last_gone = 0;
	for (size_t i = 0; i < N; i++) {
		const uint8_t *bytes;
		size_t len;
		int rc = crdt_doc_log_get(b, dot[i], &bytes, &len);
		if (rc == CRDT_ENOTFOUND)
			last_gone = i;
		else {
			cr_assert_eq(rc, 0);
			cr_assert(bytes_eq(bytes, len, msg[i].data,
			    msg[i].len), "message %zu: other bytes", i);
		}
	}
	/* B evicted 100; what C lacks it holds, from all three. */
	cr_assert_geq(last_gone, 100 - 1);
	cr_assert_leq(last_gone, N - 30, "last evicted: %zu", last_gone);
	bool lacks[3] = { false, false, false };
	for (size_t i = last_gone + 1; i < N; i++)
		for (int k = 0; k < 3; k++)
			lacks[k] |= crdt_replica_id_cmp(&dot[i].replica,
			    crdt_doc_self(w[k])) == 0;
	cr_assert(lacks[0] && lacks[1] && lacks[2]);
	for (size_t i = 0; i <= last_gone; i++)
		cr_assert_eq(crdt_doc_receive(c, msg[i].data, msg[i].len,
				 NULL), 0);
	cr_assert_eq(crdt_doc_buffered(c), 0);

	xstats st = { .never_waits = c };
	size_t frames = exchange(c, b, &st);
	cr_assert_eq(st.first_err, 0);
	cr_assert_gt(frames, 4, "paged");
	cr_assert_eq(gset_size_of(c, obj), N);
	for (size_t i = 0; i < N; i++)
		crdt_buf_fini(&msg[i]);
	for (int k = 0; k < 3; k++)
		crdt_doc_free(w[k]);
	crdt_doc_free(b);
	crdt_doc_free(c);
}
