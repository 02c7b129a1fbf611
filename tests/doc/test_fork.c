/*
 * Forks of one's own history (doc.h, crdt_doc_fork_status): a replica
 * that learns that more of its own counter exists than it holds (restored
 * from an old backup, two devices sharing an ID) reports it, refuses to
 * commit until its own messages came back, and never issues a reused dot;
 * a hostile peer's claim only holds commits (until dismissed) and never
 * moves the clock.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_util.h"

#define MAX_FRAMES 64

typedef struct forks {
	int calls;
	uint64_t own, known;
	bool proven;
	void *caller;
} forks;

static void
on_fork(void *ud, uint64_t own, uint64_t known, bool proven, void *caller)
{
	forks *f = ud;
	f->calls++;
	f->own = own;
	f->known = known;
	f->proven = proven;
	f->caller = caller;
}

static void
listen(crdt_doc *d, forks *f)
{
	crdt_doc_listener l;
	memset(&l, 0, sizeof l);
	memset(f, 0, sizeof *f);
	l.ud = f;
	l.on_fork = on_fork;
	crdt_doc_set_listener(d, &l);
}

static crdt_doc *
doc(uint8_t n)
{
	crdt_config cfg;
	crdt_doc *d;
	test_config(&cfg, NULL);
	crdt_replica_id id = test_id(n);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &d), 0);
	cr_assert_eq(crdt_doc_register(d, "notes", CRDT_OBJ_GSET, NULL), 0);
	return d;
}

/* A signed replica with the identity of `seed` (two calls with one seed:
 * two devices holding one key). */
static crdt_doc *
signed_doc(uint8_t seed, crdt_identity **ident)
{
	uint8_t s[32] = { 0 };
	crdt_config cfg;
	crdt_replica_id id;
	crdt_doc *d;
	s[0] = seed;
	test_config(&cfg, NULL);
	cr_assert_eq(crdt_identity_from_seed(&cfg, s, ident), 0);
	crdt_identity_replica_id(*ident, &id);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &d), 0);
	crdt_doc_security sec = { true, *ident, false, NULL, 0, NULL, false };
	cr_assert_eq(crdt_doc_set_security(d, &sec), 0);
	cr_assert_eq(crdt_doc_register(d, "notes", CRDT_OBJ_GSET, NULL), 0);
	return d;
}

static void
add(crdt_doc *d, const char *s, crdt_buf *out)
{
	cr_assert_eq(crdt_doc_gset_add(d, 0, s, strlen(s), out), 0, "%s", s);
}

static bool
has(const crdt_doc *d, const char *s)
{
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(d, 0, &g), 0);
	return crdt_gset_contains(g, s, strlen(s));
}

static uint64_t
own_counter(const crdt_doc *d)
{
	uint64_t own, known;
	(void)crdt_doc_fork_status(d, &own, &known);
	return own;
}

/* The next frame of a round: `to` handles `f`, its reply goes to `f`. */
static int
step(crdt_doc *to, crdt_buf *f, void *caller)
{
	crdt_buf r;
	tb_init(&r);
	int rc = crdt_doc_sync_handle(to, f->data, f->len, caller, &r);
	crdt_buf_fini(f);
	*f = r;
	return rc;
}

/* A whole round started by `a`; every frame must be accepted. */
static void
sync_round(crdt_doc *a, crdt_doc *b)
{
	crdt_buf f;
	tb_init(&f);
	cr_assert_eq(crdt_doc_sync_start(a, &f), 0);
	crdt_doc *to = b, *from = a;
	for (size_t k = 0; f.len > 0; k++) {
		cr_assert_lt(k, MAX_FRAMES, "a sync round never ends");
		cr_assert_eq(step(to, &f, from), 0);
		crdt_doc *x = from;
		from = to;
		to = x;
	}
	crdt_buf_fini(&f);
}

static void
assert_same(const crdt_doc *a, const crdt_doc *b)
{
	crdt_buf x, y;
	tb_init(&x);
	tb_init(&y);
	cr_assert_eq(crdt_doc_save(a, &x), 0);
	cr_assert_eq(crdt_doc_save(b, &y), 0);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len),
	    "replicas differ after sync");
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

static void
assert_refused(crdt_doc *d)
{
	crdt_buf m;
	tb_init(&m);
	cr_assert_eq(crdt_doc_gset_add(d, 0, "refused", 7, &m), CRDT_EFORKED);
	cr_assert_eq(m.len, 0);
	cr_assert_eq(crdt_doc_begin(d), 0);
	cr_assert_eq(crdt_doc_gset_add(d, 0, "refused", 7, NULL), 0);
	cr_assert_eq(crdt_doc_commit(d, &m), CRDT_EFORKED);
	cr_assert_eq(m.len, 0);
	crdt_doc_abort(d);
	cr_assert_not(has(d, "refused"));
	crdt_buf_fini(&m);
}

/* The dot of a message just committed. */
static crdt_dot
dot_of(const crdt_buf *m)
{
	crdt_dot dot;
	cr_assert_eq(crdt_msg_peek(m->data, m->len, &dot, NULL), 0);
	return dot;
}

/* A HELLO frame of an unbound document whose clock claims `c` for `id`
 * (and nothing else). */
static void
hello_claim(crdt_buf *f, crdt_replica_id id, uint64_t c)
{
	static const uint8_t unbound[CRDT_DOC_ID_BYTES];
	tb_init(f);
	mp_array(f, 4);
	mp_uint(f, 3);
	mp_uint(f, 7);
	mp_bin(f, unbound, sizeof unbound);
	mp_array(f, 2);
	mp_id(f, id);
	mp_uint(f, c);
}

/* An unsigned message [2, 5, sender, counter, hlc, deps, payload, nil]
 * adding `elem`; `dep` (counter 0 = none) its one dependency. */
static void
forged_msg(crdt_buf *m, crdt_replica_id sender, uint64_t counter,
    uint64_t hlc, crdt_replica_id dep, uint64_t depc, const char *elem)
{
	crdt_buf p;
	tb_init(&p);
	mp_array(&p, 1);
	mp_array(&p, 2);
	mp_uint(&p, 0);
	mp_bin(&p, elem, strlen(elem));
	tb_init(m);
	mp_array(m, 8);
	mp_uint(m, 2);
	mp_uint(m, 5);
	mp_id(m, sender);
	mp_uint(m, counter);
	mp_uint(m, hlc);
	mp_array(m, depc > 0 ? 2 : 0);
	if (depc > 0) {
		mp_id(m, dep);
		mp_uint(m, depc);
	}
	mp_bin(m, p.data, p.len);
	mp_nil(m);
	crdt_buf_fini(&p);
}

/* S commits five times and syncs with P, but keeps a backup from after
 * its second commit; S2 is S restored from it. */
static void
restored(crdt_doc **s2, crdt_doc **p)
{
	crdt_doc *s = doc(1);
	crdt_buf m, snap;
	tb_init(&m);
	tb_init(&snap);
	*p = doc(2);
	add(s, "s1", &m);
	add(s, "s2", &m);
	cr_assert_eq(crdt_doc_save(s, &snap), 0);
	add(s, "s3", &m);
	add(s, "s4", &m);
	add(s, "s5", &m);
	sync_round(s, *p);
	cr_assert(has(*p, "s5"));
	crdt_doc_free(s);
	*s2 = doc(1);
	cr_assert_eq(crdt_doc_load(*s2, snap.data, snap.len, NULL), 0);
	cr_assert_eq(own_counter(*s2), 2);
	cr_assert_not(crdt_doc_fork_status(*s2, NULL, NULL));
	crdt_buf_fini(&m);
	crdt_buf_fini(&snap);
}

Test(fork, restored_from_an_old_backup_refuses_commits_until_caught_up)
{
	crdt_doc *s, *p;
	forks f;
	crdt_buf fr, m;
	uint64_t own, known;
	int tag;

	restored(&s, &p);
	listen(s, &f);
	tb_init(&m);
	/* P starts: its HELLO says S:5 while S holds S:2. */
	tb_init(&fr);
	cr_assert_eq(crdt_doc_sync_start(p, &fr), 0);
	uint64_t hlc0 = crdt_doc_hlc(s);
	cr_assert_eq(step(s, &fr, &tag), 0);
	cr_assert_eq(f.calls, 1);
	cr_assert_eq(f.own, 2);
	cr_assert_eq(f.known, 5);
	cr_assert_not(f.proven);
	cr_assert_eq(f.caller, &tag);
	cr_assert(crdt_doc_fork_status(s, &own, &known));
	cr_assert_eq(own, 2);
	cr_assert_eq(known, 5);
	cr_assert_eq(crdt_doc_hlc(s), hlc0, "a claim moved the clock");
	assert_refused(s);
	/* The same claim again is not reported again. */
	crdt_buf h;
	tb_init(&h);
	cr_assert_eq(crdt_doc_sync_start(p, &h), 0);
	cr_assert_eq(step(s, &h, NULL), 0);
	crdt_buf_fini(&h);
	cr_assert_eq(f.calls, 1);
	/* The round goes on: S's reply, P's DATA with S:3..5. */
	for (size_t k = 0; fr.len > 0; k++) {
		cr_assert_lt(k, MAX_FRAMES);
		cr_assert_eq(step(k % 2 == 0 ? p : s, &fr, NULL), 0);
	}
	crdt_buf_fini(&fr);
	cr_assert_not(crdt_doc_fork_status(s, &own, &known));
	cr_assert_eq(own, 5);
	cr_assert_eq(known, 5);
	cr_assert(has(s, "s3") && has(s, "s5"));
	/* Commits work again, above the old dots. */
	add(s, "s6", &m);
	crdt_dot dot = dot_of(&m);
	cr_assert_eq(dot.counter, 6);
	cr_assert_eq(crdt_doc_receive(p, m.data, m.len, NULL), 0);
	cr_assert(has(p, "s6"));
	sync_round(p, s);
	assert_same(s, p);
	crdt_buf_fini(&m);
	crdt_doc_free(s);
	crdt_doc_free(p);
}

Test(fork, reported_even_when_the_same_frame_brings_the_messages_back)
{
	crdt_doc *s, *p;
	forks f;
	crdt_buf fr, m;

	restored(&s, &p);
	listen(s, &f);
	tb_init(&m);
	/* S starts: P's DATA answer carries S's clock and S:3..5. */
	tb_init(&fr);
	cr_assert_eq(crdt_doc_sync_start(s, &fr), 0);
	cr_assert_eq(step(p, &fr, NULL), 0);
	cr_assert_eq(step(s, &fr, NULL), 0);
	crdt_buf_fini(&fr);
	cr_assert_eq(f.calls, 1);
	cr_assert_eq(f.own, 2);
	cr_assert_eq(f.known, 5);
	cr_assert_not(crdt_doc_fork_status(s, NULL, NULL));
	add(s, "s6", &m);
	cr_assert_eq(dot_of(&m).counter, 6);
	crdt_buf_fini(&m);
	crdt_doc_free(s);
	crdt_doc_free(p);
}

Test(fork, a_snapshot_carrying_our_counter_ends_the_fork)
{
	/* A snapshot is trusted state: it carries S's counter, the load
	 * raises it, and the fork ends. */
	crdt_doc *s, *p;
	restored(&s, &p);
	crdt_buf fr;
	tb_init(&fr);
	cr_assert_eq(crdt_doc_sync_start(p, &fr), 0);
	cr_assert_eq(step(s, &fr, NULL), 0);
	cr_assert(crdt_doc_fork_status(s, NULL, NULL));
	crdt_buf_fini(&fr);
	crdt_buf snap;
	tb_init(&snap);
	cr_assert_eq(crdt_doc_save(p, &snap), 0);
	cr_assert_eq(crdt_doc_load(s, snap.data, snap.len, NULL), 0);
	cr_assert_not(crdt_doc_fork_status(s, NULL, NULL));
	cr_assert_eq(own_counter(s), 5);
	crdt_buf_fini(&snap);
	crdt_doc_free(s);
	crdt_doc_free(p);
}

Test(fork, two_devices_sharing_an_id)
{
	crdt_doc *a1 = doc(1), *a2 = doc(1), *p = doc(2);
	forks f;
	crdt_buf m1, m2, m3, pm;
	tb_init(&m1);
	tb_init(&m2);
	tb_init(&m3);
	tb_init(&pm);
	listen(a2, &f);
	add(a1, "a1", &m1);
	add(a1, "a2", &m2);
	add(a1, "a3", &m3);
	sync_round(a1, p);
	add(p, "p1", &pm); /* depends on A:3 */

	/* A2 gets P's message: it names A:3 while A2 holds nothing. */
	cr_assert_eq(crdt_doc_receive(a2, pm.data, pm.len, &pm), 0);
	cr_assert_eq(crdt_doc_buffered(a2), 1);
	cr_assert_eq(f.calls, 1);
	cr_assert_eq(f.own, 0);
	cr_assert_eq(f.known, 3);
	cr_assert_eq(f.caller, &pm);
	assert_refused(a2);
	/* A1's third message alone: still waiting, the claim is not higher. */
	cr_assert_eq(crdt_doc_receive(a2, m3.data, m3.len, NULL), 0);
	cr_assert_eq(f.calls, 1);
	assert_refused(a2);
	/* The first two come: A2 holds A:3, and everything unblocks. */
	cr_assert_eq(crdt_doc_receive(a2, m1.data, m1.len, NULL), 0);
	assert_refused(a2);
	cr_assert_eq(crdt_doc_receive(a2, m2.data, m2.len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(a2), 0);
	cr_assert_not(crdt_doc_fork_status(a2, NULL, NULL));
	cr_assert(has(a2, "p1"));
	crdt_buf n;
	tb_init(&n);
	add(a2, "a4", &n);
	cr_assert_eq(dot_of(&n).counter, 4, "a dot was reused");
	cr_assert_eq(crdt_doc_receive(a1, pm.data, pm.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(a1, n.data, n.len, NULL), 0);
	cr_assert(has(a1, "a4"));
	/* And the device that fell behind learns it from the other. */
	forks f1;
	listen(a1, &f1);
	crdt_buf_clear(&n);
	add(a2, "a5", &n);
	crdt_buf h;
	tb_init(&h);
	cr_assert_eq(crdt_doc_sync_start(a2, &h), 0);
	cr_assert_eq(step(a1, &h, NULL), 0);
	crdt_buf_fini(&h);
	cr_assert_eq(f1.calls, 1);
	cr_assert_eq(f1.own, 4);
	cr_assert_eq(f1.known, 5);
	cr_assert(crdt_doc_fork_status(a1, NULL, NULL));
	assert_refused(a1);
	cr_assert_eq(crdt_doc_receive(a1, n.data, n.len, NULL), 0);
	cr_assert_not(crdt_doc_fork_status(a1, NULL, NULL));
	crdt_buf_fini(&n);
	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	crdt_buf_fini(&m3);
	crdt_buf_fini(&pm);
	crdt_doc_free(a1);
	crdt_doc_free(a2);
	crdt_doc_free(p);
}

typedef struct equivs {
	int calls;
	crdt_dot dot;
} equivs;

static void
on_equiv(void *ud, crdt_dot dot, const uint8_t *first, size_t flen,
    const uint8_t *second, size_t slen)
{
	equivs *e = ud;
	(void)first;
	(void)flen;
	(void)second;
	(void)slen;
	e->calls++;
	e->dot = dot;
}

static void
listen_equiv(crdt_doc *d, equivs *e)
{
	crdt_doc_listener l;
	memset(&l, 0, sizeof l);
	memset(e, 0, sizeof *e);
	l.ud = e;
	l.on_equivocation = on_equiv;
	crdt_doc_set_listener(d, &l);
}

/* Both devices committed counter 1 before either heard of the other:
 * the one that learns of the fork offers its own messages, so the peer
 * sees the reused dot as an equivocation, and the evidence comes back. */
Test(fork, a_dot_both_devices_issued_becomes_an_equivocation)
{
	crdt_doc *a1 = doc(1), *a2 = doc(1), *p = doc(2);
	crdt_buf m;
	tb_init(&m);
	add(a1, "a1", &m);
	add(a1, "a2", &m);
	sync_round(a1, p);
	add(a2, "other", &m); /* the second (A, 1) */
	equivs ep, e2;
	listen_equiv(p, &ep);
	listen_equiv(a2, &e2);
	sync_round(p, a2);
	cr_assert_eq(ep.calls, 1, "the peer did not see the reused dot");
	cr_assert_eq(ep.dot.counter, 1);
	cr_assert_eq(e2.calls, 1, "the evidence did not come back");
	cr_assert(has(p, "other"), "the union is applied");
	cr_assert(has(a2, "a1") && has(a2, "a2"));
	cr_assert_not(crdt_doc_fork_status(a2, NULL, NULL));
	crdt_buf_clear(&m);
	add(a2, "a3", &m);
	cr_assert_eq(dot_of(&m).counter, 3);
	sync_round(a2, p);
	assert_same(a2, p);
	sync_round(a1, p);
	assert_same(a1, p);
	cr_assert(has(a1, "other"));
	crdt_buf_fini(&m);
	crdt_doc_free(a1);
	crdt_doc_free(a2);
	crdt_doc_free(p);
}

Test(fork, signed_devices_sharing_a_key_prove_the_fork)
{
	crdt_identity *i1, *i2;
	crdt_doc *a1 = signed_doc(9, &i1), *a2 = signed_doc(9, &i2);
	forks f;
	crdt_buf m1, m2;
	tb_init(&m1);
	tb_init(&m2);
	listen(a2, &f);
	add(a1, "a1", &m1);
	add(a1, "a2", &m2);
	/* A1's second message, signed by the shared key, waits on A:1. */
	cr_assert_eq(crdt_doc_receive(a2, m2.data, m2.len, NULL), 0);
	cr_assert_eq(f.calls, 1);
	cr_assert_eq(f.known, 2);
	cr_assert(f.proven);
	assert_refused(a2);
	cr_assert_eq(crdt_doc_receive(a2, m1.data, m1.len, NULL), 0);
	cr_assert_not(crdt_doc_fork_status(a2, NULL, NULL));
	crdt_buf n;
	tb_init(&n);
	add(a2, "a3", &n);
	cr_assert_eq(dot_of(&n).counter, 3);
	cr_assert_eq(crdt_doc_receive(a1, n.data, n.len, NULL), 0);
	cr_assert(has(a1, "a3"));
	crdt_buf_fini(&n);
	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	crdt_doc_free(a1);
	crdt_doc_free(a2);
	crdt_identity_free(i1);
	crdt_identity_free(i2);
}

/* A claim of `c` for the victim's own ID, by HELLO; the clock and state
 * must not move, and commits stop until dismissed. */
static void
hostile_hello(crdt_doc *v, uint64_t c, forks *f)
{
	crdt_buf h, r;
	tb_init(&r);
	uint64_t own0 = own_counter(v), hlc0 = crdt_doc_hlc(v);
	int calls = f->calls;
	hello_claim(&h, *crdt_doc_self(v), c);
	cr_assert_eq(crdt_doc_sync_handle(v, h.data, h.len, NULL, &r), 0);
	cr_assert_eq(f->calls, calls + 1);
	cr_assert_eq(f->known, c);
	cr_assert_not(f->proven);
	cr_assert_eq(own_counter(v), own0, "a claim moved our counter");
	cr_assert_eq(crdt_doc_hlc(v), hlc0, "a claim moved our clock");
	assert_refused(v);
	crdt_buf_fini(&h);
	crdt_buf_fini(&r);
}

static void
dismiss_and_commit(crdt_doc *v, uint64_t c, forks *f, const char *elem)
{
	crdt_buf h, r, m;
	tb_init(&r);
	tb_init(&m);
	uint64_t own0 = own_counter(v);
	cr_assert_eq(crdt_doc_fork_resolve(v), 0);
	cr_assert_not(crdt_doc_fork_status(v, NULL, NULL));
	add(v, elem, &m);
	cr_assert_eq(dot_of(&m).counter, own0 + 1);
	cr_assert(has(v, elem));
	/* The dismissed claim again: it blocks nothing, says nothing. */
	int calls = f->calls;
	hello_claim(&h, *crdt_doc_self(v), c);
	cr_assert_eq(crdt_doc_sync_handle(v, h.data, h.len, NULL, &r), 0);
	cr_assert_eq(f->calls, calls);
	cr_assert_not(crdt_doc_fork_status(v, NULL, NULL));
	crdt_buf_clear(&m);
	add(v, "after", &m);
	crdt_buf_fini(&h);
	crdt_buf_fini(&r);
	crdt_buf_fini(&m);
}

Test(fork, a_hostile_unsigned_peer_holds_commits_only_until_dismissed)
{
	crdt_doc *v = doc(1);
	forks f;
	crdt_buf m;
	tb_init(&m);
	listen(v, &f);
	add(v, "v1", &m);
	hostile_hello(v, 1000, &f);
	dismiss_and_commit(v, 1000, &f, "v2");
	/* A higher claim blocks again: the application judges each. */
	hostile_hello(v, UINT64_MAX, &f);
	dismiss_and_commit(v, UINT64_MAX, &f, "v3");

	/* A forged message under our own ID far ahead: it waits, says
	 * fork (unproven: unsigned mode), and never moves the clock, even
	 * stamped at the end of time. */
	crdt_doc *w = doc(3);
	forks g;
	listen(w, &g);
	crdt_buf x;
	uint64_t hlc0 = crdt_doc_hlc(w);
	forged_msg(&x, *crdt_doc_self(w), UINT64_MAX, UINT64_MAX,
	    test_id(4), 0, "forged");
	cr_assert_eq(crdt_doc_receive(w, x.data, x.len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(w), 1);
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.known, UINT64_MAX);
	cr_assert_not(g.proven);
	cr_assert_eq(own_counter(w), 0);
	cr_assert_eq(crdt_doc_hlc(w), hlc0);
	cr_assert_not(has(w, "forged"));
	assert_refused(w);
	cr_assert_eq(crdt_doc_fork_resolve(w), 0);
	crdt_buf_clear(&m);
	add(w, "mine", &m);
	cr_assert_eq(dot_of(&m).counter, 1);
	cr_assert_lt(crdt_doc_hlc(w), UINT64_MAX / 2);
	/* A dependency naming our ID far ahead, from another sender. */
	crdt_buf y;
	forged_msg(&y, test_id(5), 1, 1, *crdt_doc_self(w), 500, "dep");
	cr_assert_eq(crdt_doc_receive(w, y.data, y.len, NULL), 0);
	cr_assert_eq(g.calls, 1, "a claim below the dismissed one");
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	crdt_buf_fini(&m);
	crdt_doc_free(v);
	crdt_doc_free(w);
}

Test(fork, a_hostile_peer_in_signed_mode_cannot_move_the_clock_or_stop_commits)
{
	crdt_identity *iv;
	crdt_doc *v = signed_doc(7, &iv);
	forks f;
	crdt_buf m;
	tb_init(&m);
	listen(v, &f);
	add(v, "v1", &m);
	/* An unsigned message under our ID: refused, no claim. */
	crdt_buf x;
	uint64_t hlc0 = crdt_doc_hlc(v);
	forged_msg(&x, *crdt_doc_self(v), 50, UINT64_MAX, test_id(4), 0,
	    "forged");
	cr_assert_eq(crdt_doc_receive(v, x.data, x.len, NULL), CRDT_EBADSIG);
	cr_assert_eq(f.calls, 0);
	cr_assert_eq(crdt_doc_hlc(v), hlc0);
	cr_assert_eq(crdt_doc_buffered(v), 0);
	/* A HELLO's clock is unsigned in every mode: in signed mode it is a
	 * peer's word, reported (proven = false) but not enforced, since a
	 * peer must not be able to stop an honest replica's writes (found by
	 * fuzz_byzantine: a hostile sync peer held every honest commit). */
	crdt_buf h, r;
	tb_init(&r);
	uint64_t own0 = own_counter(v);
	hello_claim(&h, *crdt_doc_self(v), UINT64_MAX);
	cr_assert_eq(crdt_doc_sync_handle(v, h.data, h.len, NULL, &r), 0);
	cr_assert_eq(f.calls, 1);
	cr_assert_eq(f.known, UINT64_MAX);
	cr_assert_not(f.proven);
	cr_assert_eq(own_counter(v), own0, "a claim moved our counter");
	cr_assert_eq(crdt_doc_hlc(v), hlc0, "a claim moved our clock");
	cr_assert_not(crdt_doc_fork_status(v, NULL, NULL));
	crdt_buf_clear(&m);
	add(v, "v2", &m);
	cr_assert_eq(dot_of(&m).counter, own0 + 1);
	/* The same claim again says nothing more. */
	crdt_buf_clear(&r);
	cr_assert_eq(crdt_doc_sync_handle(v, h.data, h.len, NULL, &r), 0);
	cr_assert_eq(f.calls, 1);
	crdt_buf_fini(&h);
	crdt_buf_fini(&r);
	crdt_buf_fini(&x);
	crdt_buf_fini(&m);
	crdt_doc_free(v);
	crdt_identity_free(iv);
}

Test(fork, a_refused_frame_or_message_claims_nothing)
{
	crdt_doc *v = doc(1);
	forks f;
	listen(v, &f);
	crdt_buf h, r;
	tb_init(&r);
	/* Trailing byte: the frame is refused whole. */
	hello_claim(&h, *crdt_doc_self(v), 9);
	mp_nil(&h);
	cr_assert_eq(crdt_doc_sync_handle(v, h.data, h.len, NULL, &r),
	    CRDT_EMALFORMED);
	cr_assert_eq(r.len, 0);
	cr_assert_eq(f.calls, 0);
	cr_assert_not(crdt_doc_fork_status(v, NULL, NULL));
	/* A message the buffer has no room for: not kept, no claim. */
	crdt_config cfg;
	crdt_doc *t;
	test_config(&cfg, NULL);
	cfg.max_buffered_msgs = 1;
	crdt_replica_id id = test_id(1);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &t), 0);
	cr_assert_eq(crdt_doc_register(t, "notes", CRDT_OBJ_GSET, NULL), 0);
	listen(t, &f);
	crdt_buf a, b;
	forged_msg(&a, test_id(6), 2, 1, id, 0, "x");
	forged_msg(&b, id, 7, 1, id, 0, "y");
	cr_assert_eq(crdt_doc_receive(t, a.data, a.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(t, b.data, b.len, NULL), CRDT_EBUFFULL);
	cr_assert_eq(f.calls, 0);
	cr_assert_not(crdt_doc_fork_status(t, NULL, NULL));
	/* Argument errors. */
	cr_assert_not(crdt_doc_fork_status(NULL, NULL, NULL));
	cr_assert_eq(crdt_doc_fork_resolve(NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_doc_fork_resolve(v), 0, "not forked: a no-op");
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	crdt_buf_fini(&h);
	crdt_buf_fini(&r);
	crdt_doc_free(v);
	crdt_doc_free(t);
}
