/*
 * White-box: spliced log entries (crdt/msglog.h). A chat post's user,
 * body, reply and metadata are held once, in the thread's record; the
 * log keeps the rest of the message and points at the record. Whatever
 * reads the log must still see the message byte for byte, so:
 *   - every post is logged spliced (plaintext and signed; never sealed,
 *     whose payload is a decrypted copy), local or received, in order or
 *     released from the buffer, short or over CRDT__LOG_BIG, and
 *     crdt_doc_log_get, a sync round, the store and the listener see the
 *     original bytes;
 *   - a load replaces the thread (every object): the entries move to the
 *     new records before the old ones are freed (the test allocator
 *     poisons freed memory, so a stale pointer shows as other bytes, and
 *     ASan as a use after free);
 *   - an equivocation against a spliced first half keeps both halves
 *     whole as evidence and reports them;
 *   - a writer's sync digest is the same over spliced and plain copies
 *     of the same messages;
 *   - the log counts message bytes (its bounds mean what they meant) and
 *     holds less than it counts.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "doc_impl.h"
#include "sync_digest.h"
#include "test_alloc.h"
#include "test_util.h"

#define NPOST 48
#define T0 UINT64_C(1700000000000)

static test_clock clk;
static const uint8_t key[32] = { 7, 7, 7 };

static void
setup(void)
{
	test_alloc_reset();
	clk.ms = T0;
}

TestSuite(log_splice, .init = setup);

enum mode { PLAIN, SIGNED, SEALED };

typedef struct node {
	crdt_doc *d;
	crdt_identity *ident;
	crdt_config cfg;
} node;

static void
node_new(node *n, uint8_t seed, enum mode m)
{
	uint8_t s[32] = { 0 };
	crdt_replica_id id;
	s[0] = seed;
	test_config(&n->cfg, &clk);
	cr_assert_eq(crdt_identity_from_seed(&n->cfg, s, &n->ident), 0);
	crdt_identity_replica_id(n->ident, &id);
	cr_assert_eq(crdt_doc_new(&n->cfg, &id, &n->d), 0);
	if (m != PLAIN) {
		crdt_doc_security sec = { m == SIGNED, m == SIGNED ?
			n->ident : NULL, m == SEALED, m == SEALED ? key : NULL,
			1, NULL, false };
		cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	}
	cr_assert_eq(crdt_doc_register(n->d, "notes", CRDT_OBJ_GSET, NULL), 0);
	cr_assert_eq(crdt_doc_register_chat(n->d, "chat", NULL, NULL), 0);
}

static void
node_free(node *n)
{
	crdt_doc_free(n->d);
	crdt_identity_free(n->ident);
}

/* The posts one writer made, with their dots. */
typedef struct posts {
	crdt_buf m[NPOST];
	crdt_dot id[NPOST];
	size_t n;
	/* Posts too small to splice: the entry's header (13 bytes) is not
	 * less than what the tail would save. */
	size_t small;
} posts;

static void
posts_fini(posts *p)
{
	for (size_t i = 0; i < p->n; i++)
		crdt_buf_fini(&p->m[i]);
	p->n = 0;
}

/* Post n messages from `w` into p: bodies empty, short, long (past
 * CRDT__LOG_BIG), user IDs of 1 to 255 bytes, some with a reply and some
 * with metadata, so every field width of the tail shows up. */
static void
post_all(node *w, posts *p, size_t n, const char *tag)
{
	static char body[3000], user[256], meta[300];
	cr_assert_leq(n, (size_t)NPOST);
	for (size_t i = 0; i < n; i++) {
		size_t bl = i % 6 == 0 ? 0 : i % 6 == 1 ? 1 : i % 6 == 2 ?
		    2100 : 40 + i;
		size_t ul = i % 5 == 0 ? 255 : 1 + i % 9;
		size_t ml = i % 4 == 3 ? 1 + 30 * i % 290 : 0;
		char head[32];
		int hl = snprintf(head, sizeof head, "%s%zu:", tag, i);
		for (size_t k = 0; k < bl; k++)
			body[k] = k < (size_t)hl ? head[k] :
						   (char)('a' + (k + i) % 26);
		for (size_t k = 0; k < ul; k++)
			user[k] = (char)('A' + (k * 7 + i) % 26);
		for (size_t k = 0; k < ml; k++)
			meta[k] = (char)k;
		/* The tail: user, body, reply ([id, counter] or nil) and
		 * meta, each with its msgpack header. */
		bool reply = i % 3 == 2;
		size_t hole = 2 + ul + (bl < 256 ? 2 : 3) + bl +
		    (reply ? 1 + 18 + 1 : 1) + (ml ? 2 + ml : 1);
		p->small += hole <= 13;
		crdt_chat_post cp = { user, ul, body, bl,
			reply ? &p->id[p->n - 1] : NULL, ml ? meta : NULL,
			ml };
		tb_init(&p->m[p->n]);
		clk.ms += 1000;
		cr_assert_eq(crdt_doc_chat_post(w->d, 1, &cp, &p->id[p->n],
				 &p->m[p->n]), 0);
		p->n++;
	}
}

/* Deliver every post to `to`, in order. */
static void
receive_all(node *to, const posts *p)
{
	for (size_t i = 0; i < p->n; i++)
		cr_assert_eq(crdt_doc_receive(to->d, p->m[i].data,
				 p->m[i].len, NULL), 0);
}

/* Every post is in d's log with its exact bytes. */
#define log_holds(d, p) log_holds_at(d, p, __LINE__)
static void
log_holds_at(const crdt_doc *d, const posts *p, int line)
{
	for (size_t i = 0; i < p->n; i++) {
		const uint8_t *b;
		size_t len;
		int rc = crdt_doc_log_get(d, p->id[i], &b, &len);
		cr_assert_eq(rc, 0, "line %d, post %zu: %s", line, i,
		    crdt_strerror(rc));
		cr_assert(bytes_eq(b, len, p->m[i].data, p->m[i].len),
		    "line %d, post %zu: the log serves other bytes", line, i);
	}
}

static void
same_state(const crdt_doc *a, const crdt_doc *b)
{
	crdt_buf x, y;
	tb_init(&x);
	tb_init(&y);
	cr_assert_eq(crdt_doc_save(a, &x), 0);
	cr_assert_eq(crdt_doc_save(b, &y), 0);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len), "states differ");
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

/* One full sync round from a to b (a starts). */
static void
sync_round(crdt_doc *a, crdt_doc *b)
{
	crdt_buf f, g;
	tb_init(&f);
	tb_init(&g);
	cr_assert_eq(crdt_doc_sync_start(a, &f), 0);
	crdt_doc *to = b, *from = a;
	for (int k = 0; k < 16 && f.len > 0; k++) {
		crdt_buf_clear(&g);
		cr_assert_eq(crdt_doc_sync_handle(to, f.data, f.len, NULL, &g),
		    0);
		crdt_buf t = f;
		f = g;
		g = t;
		crdt_doc *x = to;
		to = from;
		from = x;
	}
	cr_assert_eq(f.len, 0, "the round did not end");
	crdt_buf_fini(&f);
	crdt_buf_fini(&g);
}

static size_t
msg_bytes(const posts *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n; i++)
		n += p->m[i].len;
	return n;
}

static void
served_whole_in(enum mode m)
{
	node a, b, c, r;
	posts p = { .n = 0 };
	node_new(&a, 1, m);
	node_new(&b, 2, m);
	node_new(&c, 3, m);
	node_new(&r, 4, m);
	post_all(&a, &p, NPOST, "a");
	size_t want = m == SEALED ? 0 : NPOST - p.small;
	cr_assert(m == SEALED || want > NPOST / 2);
	/* Local commits go through the same apply. */
	cr_assert_eq(crdt__log_spliced(&a.d->log), want);
	receive_all(&b, &p);
	/* Putting a spliced message (post 3 is one) together can run out of
	 * memory: a clear error and nothing handed out; then the bytes,
	 * once memory is back (log_holds below). */
	if (want > 0) {
		const uint8_t *bp = NULL;
		size_t bl = 0;
		test_alloc_fail_at(0);
		cr_assert_eq(crdt_doc_log_get(b.d, p.id[3], &bp, &bl),
		    CRDT_ENOMEM);
		cr_assert(test_alloc_fired());
		test_alloc_disarm();
		cr_assert(bp == NULL && bl == 0);
	}
	/* Newest first: every post waits, then is released. */
	for (size_t i = p.n; i-- > 0;)
		cr_assert_eq(crdt_doc_receive(r.d, p.m[i].data, p.m[i].len,
				 NULL), 0);
	node *all[] = { &a, &b, &r };
	for (size_t k = 0; k < 3; k++) {
		crdt_doc *d = all[k]->d;
		cr_assert_eq(crdt__log_spliced(&d->log), want);
		log_holds(d, &p);
		/* Bounds and counts are in message bytes; spliced entries
		 * hold less than that. */
		cr_assert_eq(d->log.bytes, msg_bytes(&p));
		size_t stored = 0;
		for (size_t x = 0; x < d->log.nr; x++)
			for (size_t j = 0; j < d->log.r[x].n; j++)
				stored += crdt__log_ent_at(d->log.r[x].v[
				    d->log.r[x].start + j]).n;
		if (want > 0)
			cr_assert_lt(stored, d->log.bytes - 30 * want);
		else
			cr_assert_eq(stored, d->log.bytes);
	}
	same_state(a.d, b.d);
	same_state(a.d, r.d);
	/* A sync round serves the log: c gets the same messages (each
	 * checked again, signature and all) and the same state. */
	sync_round(c.d, b.d);
	same_state(b.d, c.d);
	log_holds(c.d, &p);
	/* A duplicate of a spliced entry is a duplicate. */
	size_t before = crdt_doc_log_size(b.d);
	cr_assert_eq(crdt_doc_receive(b.d, p.m[5].data, p.m[5].len, NULL), 0);
	cr_assert_eq(crdt_doc_log_size(b.d), before);
	same_state(a.d, b.d);
	posts_fini(&p);
	node_free(&a);
	node_free(&b);
	node_free(&c);
	node_free(&r);
	ASSERT_NO_LEAKS();
}

Test(log_splice, posts_are_stored_once_and_served_whole_plaintext)
{
	served_whole_in(PLAIN);
}

Test(log_splice, posts_are_stored_once_and_served_whole_signed)
{
	served_whole_in(SIGNED);
}

Test(log_splice, sealed_posts_are_logged_as_they_came)
{
	served_whole_in(SEALED);
}

/* A G-Set add and a transaction of a post and a note are logged plain,
 * and served whole: only a lone post is spliced. */
Test(log_splice, only_a_lone_post_is_spliced)
{
	node a, b;
	node_new(&a, 1, PLAIN);
	node_new(&b, 2, PLAIN);
	crdt_buf m[2];
	crdt_dot dot[2];
	tb_init(&m[0]);
	tb_init(&m[1]);
	cr_assert_eq(crdt_doc_gset_add(a.d, 0, "note", 4, &m[0]), 0);
	dot[0] = (crdt_dot){ a.d->self, 1 };
	crdt_chat_post cp = { "u", 1, "a body of some length, spliced?", 31,
		NULL, NULL, 0 };
	cr_assert_eq(crdt_doc_begin(a.d), 0);
	cr_assert_eq(crdt_doc_chat_post(a.d, 1, &cp, &dot[1], NULL), 0);
	cr_assert_eq(crdt_doc_gset_add(a.d, 0, "more", 4, NULL), 0);
	cr_assert_eq(crdt_doc_commit(a.d, &m[1]), 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(crdt_doc_receive(b.d, m[i].data, m[i].len, NULL),
		    0);
	crdt_doc *all[] = { a.d, b.d };
	for (int k = 0; k < 2; k++) {
		cr_assert_eq(crdt__log_spliced(&all[k]->log), 0);
		for (int i = 0; i < 2; i++) {
			const uint8_t *p;
			size_t n;
			cr_assert_eq(crdt_doc_log_get(all[k], dot[i], &p, &n),
			    0);
			cr_assert(bytes_eq(p, n, m[i].data, m[i].len));
		}
	}
	/* The post alone is spliced. */
	crdt_buf_clear(&m[0]);
	cr_assert_eq(crdt_doc_chat_post(a.d, 1, &cp, NULL, &m[0]), 0);
	cr_assert_eq(crdt__log_spliced(&a.d->log), 1);
	crdt_buf_fini(&m[0]);
	crdt_buf_fini(&m[1]);
	node_free(&a);
	node_free(&b);
	ASSERT_NO_LEAKS();
}

/* A load replaces every object; the spliced entries follow their records
 * into the merged thread before the old one is freed (and poisoned). */
Test(log_splice, a_load_moves_entries_to_the_new_records)
{
	node a, b, x;
	posts p = { .n = 0 }, q = { .n = 0 };
	node_new(&a, 1, PLAIN);
	node_new(&b, 2, PLAIN);
	node_new(&x, 5, PLAIN);
	post_all(&a, &p, NPOST, "a");
	receive_all(&b, &p);
	cr_assert_eq(crdt__log_spliced(&b.d->log), NPOST - p.small);
	/* x has a's posts (through a snapshot: its log holds none) and its
	 * own. */
	crdt_buf snap;
	tb_init(&snap);
	cr_assert_eq(crdt_doc_save(a.d, &snap), 0);
	cr_assert_eq(crdt_doc_load(x.d, snap.data, snap.len, NULL), 0);
	post_all(&x, &q, 10, "x");
	crdt_buf_clear(&snap);
	cr_assert_eq(crdt_doc_save(x.d, &snap), 0);
	/* b loads it: every object of b is replaced by the merge. */
	cr_assert_eq(crdt_doc_load(b.d, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt__log_spliced(&b.d->log), NPOST - p.small);
	log_holds(b.d, &p);
	same_state(b.d, x.d);
	/* And again, from a snapshot that brings nothing new. */
	cr_assert_eq(crdt_doc_load(b.d, snap.data, snap.len, NULL), 0);
	log_holds(b.d, &p);
	/* What it serves still converges a fresh peer (x's posts, which
	 * b's log does not hold, go as a snapshot). */
	node c;
	node_new(&c, 3, PLAIN);
	sync_round(c.d, b.d);
	same_state(b.d, c.d);
	crdt_buf_fini(&snap);
	posts_fini(&p);
	posts_fini(&q);
	node_free(&a);
	node_free(&b);
	node_free(&x);
	node_free(&c);
	ASSERT_NO_LEAKS();
}

typedef struct eqv {
	int n;
	crdt_buf first, second;
} eqv;

static void
on_eq(void *ud, crdt_dot dot, const uint8_t *first, size_t flen,
    const uint8_t *second, size_t slen)
{
	(void)dot;
	eqv *e = ud;
	e->n++;
	crdt_buf_clear(&e->first);
	crdt_buf_clear(&e->second);
	cr_assert_eq(crdt_buf_append(&e->first, first, flen), 0);
	cr_assert_eq(crdt_buf_append(&e->second, second, slen), 0);
}

/* Two writers under one replica ID post different messages under one
 * dot: the second meets the first as a spliced entry, and both halves
 * go whole to the listener and into the evidence a sync carries. */
Test(log_splice, an_equivocation_against_a_spliced_half_keeps_both_whole)
{
	node a, a2, b, c;
	posts p = { .n = 0 }, q = { .n = 0 };
	node_new(&a, 1, PLAIN);
	node_new(&a2, 1, PLAIN);
	node_new(&b, 2, PLAIN);
	node_new(&c, 3, PLAIN);
	post_all(&a, &p, 3, "a");
	post_all(&a2, &q, 3, "fork");
	eqv e = { 0 };
	tb_init(&e.first);
	tb_init(&e.second);
	crdt_doc_listener l = { 0 };
	l.on_equivocation = on_eq;
	l.ud = &e;
	crdt_doc_set_listener(b.d, &l);
	receive_all(&b, &p);
	/* The half that comes first is logged spliced. */
	uint32_t ri;
	crdt__lent le;
	cr_assert_eq(crdt__rep_find(b.d, &p.id[0].replica, &ri), 0);
	cr_assert(crdt__log_get(&b.d->log, ri, p.id[0].counter, &le));
	cr_assert(crdt__lent_spliced(le));
	cr_assert_eq(crdt_doc_receive(b.d, q.m[0].data, q.m[0].len, NULL),
	    0);
	cr_assert_eq(e.n, 1);
	cr_assert(bytes_eq(e.first.data, e.first.len, p.m[0].data,
	    p.m[0].len), "the first half is not the logged message");
	cr_assert(bytes_eq(e.second.data, e.second.len, q.m[0].data,
	    q.m[0].len));
	/* c learns both halves from b's sync and reports the same pair. */
	crdt_doc_set_listener(c.d, &l);
	sync_round(c.d, b.d);
	cr_assert_geq(e.n, 2);
	same_state(b.d, c.d);
	crdt_buf_fini(&e.first);
	crdt_buf_fini(&e.second);
	posts_fini(&p);
	posts_fini(&q);
	node_free(&a);
	node_free(&a2);
	node_free(&b);
	node_free(&c);
	ASSERT_NO_LEAKS();
}

/* The digest of a writer's range hashes the messages, not how they are
 * stored: the same over a log rebuilt with plain copies. */
Test(log_splice, digests_do_not_depend_on_splicing)
{
	node a, b;
	posts p = { .n = 0 };
	node_new(&a, 1, PLAIN);
	node_new(&b, 2, PLAIN);
	post_all(&a, &p, NPOST, "a");
	receive_all(&b, &p);
	uint32_t ri;
	cr_assert_eq(crdt__rep_find(b.d, &p.id[0].replica, &ri), 0);
	uint8_t d1[CRDT__DG_BYTES], d2[CRDT__DG_BYTES];
	cr_assert_eq(crdt__dg_compute(b.d, NULL, ri, 1, NPOST, d1), 0);
	/* The same messages, logged plain, in a log whose generations are
	 * all new (no cached digest block applies). */
	crdt__msglog plain;
	crdt__log_init(&plain, &b.cfg.alloc, b.d->log.max_msgs,
	    b.d->log.max_bytes);
	plain.gen_seq = b.d->log.gen_seq + 1000;
	cr_assert_eq(crdt__log_reserve_replicas(&plain, b.d->log.nr), 0);
	for (size_t i = 0; i < b.d->log.nr; i++)
		crdt__log_add_replica(&plain);
	for (size_t i = 0; i < p.n; i++) {
		cr_assert_eq(crdt__log_reserve(&plain, ri, p.m[i].len), 0);
		crdt__log_push(&plain, ri, p.id[i].counter, p.m[i].data,
		    p.m[i].len, NULL);
	}
	cr_assert_eq(crdt__log_spliced(&plain), 0);
	crdt__msglog kept = b.d->log;
	b.d->log = plain;
	cr_assert_eq(crdt__dg_compute(b.d, NULL, ri, 1, NPOST, d2), 0);
	b.d->log = kept;
	crdt__log_fini(&plain);
	cr_assert(bytes_eq(d1, sizeof d1, d2, sizeof d2),
	    "a spliced log hashes to another digest");
	/* And a digest over a range with other bytes differs. */
	cr_assert_eq(crdt__dg_compute(b.d, NULL, ri, 2, NPOST, d2), 0);
	cr_assert(!bytes_eq(d1, sizeof d1, d2, sizeof d2));
	posts_fini(&p);
	node_free(&a);
	node_free(&b);
	ASSERT_NO_LEAKS();
}

/* Attaching a store copies the log into it: spliced entries go whole,
 * and a replica restarted from the store serves the same bytes. */
Test(log_splice, a_store_gets_whole_messages)
{
	char dir[TEST_DIR_MAX], db[TEST_DB_MAX];
	node a, b, r;
	posts p = { .n = 0 };
	node_new(&a, 1, PLAIN);
	node_new(&b, 2, PLAIN);
	post_all(&a, &p, NPOST, "a");
	receive_all(&b, &p);
	test_tmpdb("splice", dir, db);
	crdt_store *s;
	cr_assert_eq(crdt_store_open_sqlite(&b.cfg, db, NULL, &s), 0);
	cr_assert_eq(crdt_doc_attach_store(b.d, s, 0), 0);
	node_free(&b);
	/* The restarted replica: same ID (seed 2), fresh document. */
	node_new(&r, 2, PLAIN);
	cr_assert_eq(crdt_doc_open_store(r.d, s, 0), 0);
	log_holds(r.d, &p);
	same_state(a.d, r.d);
	node_free(&r);
	crdt_store_close(s);
	test_tmpdb_remove(dir, db);
	posts_fini(&p);
	node_free(&a);
	ASSERT_NO_LEAKS();
}
