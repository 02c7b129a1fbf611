/*
 * Trust levels for state. A snapshot is merged state that nothing in it
 * proves: crdt_doc_load() is for state the application trusts, and sync
 * (the channel for untrusted peers) carries snapshots in signed mode only
 * when the application opted in (sync_snapshots), and in encrypted mode
 * only sealed under the document key. Whatever the trust, every field of
 * a snapshot is checked like a message's, and a refused snapshot changes
 * nothing: the document saves the same bytes as before.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_util.h"

static const uint8_t key1[32] = { 7, 7, 7, 1 };

typedef struct node {
	crdt_doc *d;
	crdt_identity *ident;
	crdt_replica_id id;
	uint8_t pk[32];
	test_clock clk;
} node;

typedef struct opts {
	bool sign, enc, keyless, opt_in;
	const uint8_t *admin_pk;
	size_t log_max, max_replicas;
} opts;

/* A replica with identity `seed` and one LWW register "title" (after the
 * allowlist when `admin_pk` is set). */
static void
node_new(node *n, uint8_t seed, const opts *o)
{
	uint8_t s[32] = { 0 };
	crdt_config cfg;

	memset(n, 0, sizeof *n);
	n->clk.ms = UINT64_C(1700000000000);
	s[0] = seed;
	test_config(&cfg, &n->clk);
	if (o->log_max)
		cfg.log_max_msgs = o->log_max;
	if (o->max_replicas)
		cfg.max_replicas = o->max_replicas;
	cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
	crdt_identity_replica_id(n->ident, &n->id);
	crdt_identity_public_key(n->ident, n->pk);
	cr_assert_eq(crdt_doc_new(&cfg, &n->id, &n->d), 0);
	crdt_doc_security sec = {
		.signed_mode = o->sign,
		.identity = o->sign ? n->ident : NULL,
		.encrypted = o->enc,
		.key = o->enc && !o->keyless ? key1 : NULL,
		.epoch = 1,
		.admin_key = o->admin_pk,
		.sync_snapshots = o->opt_in,
	};
	cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	cr_assert_eq(crdt_doc_register(n->d, "title", CRDT_OBJ_LWW, NULL), 0);
}

static void
node_free(node *n)
{
	crdt_doc_free(n->d);
	crdt_identity_free(n->ident);
}

static uint32_t
title(const node *n)
{
	uint32_t t;
	cr_assert_eq(crdt_doc_lookup(n->d, "title", &t), 0);
	return t;
}

static void
set_title(node *n, const char *v, crdt_buf *msg)
{
	crdt_buf own;
	tb_init(&own);
	int rc = crdt_doc_lww_set(n->d, title(n), v, strlen(v),
	    msg ? msg : &own);
	cr_assert_eq(rc, 0, "commit: %s", crdt_err_name(rc));
	crdt_buf_fini(&own);
}

static bool
title_is(const node *n, const char *v)
{
	const crdt_lww *r;
	const uint8_t *p;
	size_t len;
	if (crdt_doc_lww(n->d, title(n), &r) != 0 ||
	    crdt_lww_get(r, &p, &len) != 0)
		return v == NULL;
	return v != NULL && bytes_eq(p, len, v, strlen(v));
}

static void
save(const node *n, crdt_buf *s)
{
	tb_init(s);
	cr_assert_eq(crdt_doc_save(n->d, s), 0);
}

/* The document still saves exactly `before`. */
static void
assert_unchanged(const node *n, const crdt_buf *before)
{
	crdt_buf now;
	save(n, &now);
	cr_assert(bytes_eq(now.data, now.len, before->data, before->len),
	    "a refused snapshot changed the document (%zu -> %zu bytes)",
	    before->len, now.len);
	crdt_buf_fini(&now);
}

static bool
has(const uint8_t *b, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; k <= n && i + k <= n; i++)
		if (memcmp(b + i, needle, k) == 0)
			return true;
	return false;
}

/* DATA = [1, 8, [], [], snapshot, []] carrying `snap`. */
static void
data_frame(crdt_buf *f, const uint8_t *snap, size_t len)
{
	tb_init(f);
	mp_array(f, 6);
	mp_uint(f, 1);
	mp_uint(f, 8);
	mp_array(f, 0);
	mp_array(f, 0);
	mp_bin(f, snap, len);
	mp_array(f, 0);
}

/* Sync rounds a <-> b (HELLO from each side, every reply delivered);
 * the first error goes to *err, and every frame to `seen` if given. */
static void
sync_rounds(node *a, node *b, int rounds, int *err, crdt_buf *seen)
{
	*err = 0;
	for (int k = 0; k < 2 * rounds; k++) {
		node *from = k % 2 ? b : a, *to = k % 2 ? a : b;
		crdt_buf f, r;
		tb_init(&f);
		tb_init(&r);
		cr_assert_eq(crdt_doc_sync_start(from->d, &f), 0);
		for (int hop = 0; hop < 16 && f.len > 0; hop++) {
			if (seen != NULL)
				mp_raw(seen, f.data, f.len);
			crdt_buf_clear(&r);
			int rc = crdt_doc_sync_handle(to->d, f.data, f.len,
			    NULL, &r);
			if (rc < 0 && *err == 0)
				*err = rc;
			crdt_buf t = f;
			f = r;
			r = t;
			node *x = from;
			from = to;
			to = x;
		}
		crdt_buf_fini(&f);
		crdt_buf_fini(&r);
	}
}

/* A keyless, unpermitted peer's DATA frame holding a forged snapshot
 * (its title written by `w`, clock entry of `w` at 2^62): the forged
 * state is built by an honest unsigned document, so only trust is
 * missing. */
static void
forged_snapshot(crdt_buf *snap, const crdt_replica_id *w, const char *v)
{
	crdt_config cfg;
	crdt_doc *f;
	test_config(&cfg, NULL);
	cr_assert_eq(crdt_doc_new(&cfg, w, &f), 0);
	uint32_t t;
	cr_assert_eq(crdt_doc_register(f, "title", CRDT_OBJ_LWW, &t), 0);
	tb_init(snap);
	cr_assert_eq(crdt_doc_lww_set(f, t, v, strlen(v), snap), 0);
	crdt_buf_clear(snap);
	cr_assert_eq(crdt_doc_save(f, snap), 0);
	crdt_doc_free(f);
}

Test(trust_snapshot, signed_mode_refuses_a_snapshot_in_a_data_frame)
{
	opts o = { .sign = true };
	node v, h;
	node_new(&v, 1, &o);
	node_new(&h, 2, &o);
	crdt_buf snap, frame, before, reply, m;
	forged_snapshot(&snap, &h.id, "forged");
	data_frame(&frame, snap.data, snap.len);
	save(&v, &before);
	tb_init(&reply);
	cr_assert_eq(crdt_doc_sync_handle(v.d, frame.data, frame.len, NULL,
			 &reply),
	    CRDT_EPERM);
	cr_assert_eq(reply.len, 0);
	assert_unchanged(&v, &before);
	cr_assert(title_is(&v, NULL));
	/* The writer it named still gets its genuine message in. */
	tb_init(&m);
	set_title(&h, "honest", &m);
	cr_assert_eq(crdt_doc_receive(v.d, m.data, m.len, NULL), 0);
	cr_assert(title_is(&v, "honest"));
	set_title(&v, "mine", NULL);
	cr_assert(title_is(&v, "mine"));
	/* crdt_doc_load() is the application's trusted path: it merges. */
	cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL), 0);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&frame);
	crdt_buf_fini(&before);
	crdt_buf_fini(&reply);
	crdt_buf_fini(&m);
	node_free(&v);
	node_free(&h);
}

Test(trust_snapshot, signed_mode_sends_messages_not_a_snapshot)
{
	/* The source's log holds one message of two: a lagging peer gets
	 * what the log holds of complete runs, never the state. With the
	 * opt-in, sync sends and takes the snapshot. */
	for (int opt = 0; opt < 2; opt++) {
		opts so = { .sign = true, .log_max = 1, .opt_in = opt };
		opts po = { .sign = true, .opt_in = opt };
		node s, p;
		node_new(&s, 1, &so);
		node_new(&p, 2, &po);
		set_title(&s, "one", NULL);
		set_title(&s, "two", NULL);
		crdt_buf seen;
		tb_init(&seen);
		int err;
		sync_rounds(&p, &s, 2, &err, &seen);
		/* Without the opt-in the source cannot serve the peer, and
		 * says so (CRDT_ENOTFOUND: sync with a replica whose log
		 * holds it), rather than sending state. */
		cr_assert_eq(err, opt ? 0 : CRDT_ENOTFOUND, "sync: %s",
		    crdt_err_name(err));
		/* Only a snapshot names the objects. */
		cr_assert_eq(has(seen.data, seen.len, "title"), opt == 1);
		cr_assert_eq(title_is(&p, "two"), opt == 1);
		crdt_buf_fini(&seen);
		node_free(&s);
		node_free(&p);
	}
}

Test(trust_snapshot, encrypted_sync_sends_sealed_snapshots_only)
{
	opts ko = { .sign = true, .enc = true, .log_max = 1 };
	opts fo = { .sign = true, .enc = true };
	opts ro = { .sign = true, .enc = true, .keyless = true };
	node k, f, r;
	node_new(&k, 1, &ko);
	node_new(&f, 2, &fo);
	node_new(&r, 3, &ro);
	set_title(&k, "SECRET one", NULL);
	set_title(&k, "SECRET two", NULL);
	/* A keyless empty HELLO, then sync rounds with a keyless relay. */
	static const uint8_t hello[] = { 0x93, 0x01, 0x07, 0x90 };
	crdt_buf reply, seen;
	tb_init(&reply);
	tb_init(&seen);
	cr_assert_eq(crdt_doc_sync_handle(k.d, hello, sizeof hello, NULL,
			 &reply),
	    0);
	cr_assert_gt(reply.len, 0);
	cr_assert(!has(reply.data, reply.len, "SECRET"));
	cr_assert(!has(reply.data, reply.len, "title"));
	int err;
	sync_rounds(&r, &k, 2, &err, &seen);
	cr_assert(!has(seen.data, seen.len, "SECRET"));
	/* A keyed peer that is behind catches up from the sealed state. */
	sync_rounds(&f, &k, 2, &err, NULL);
	cr_assert_eq(err, 0, "sync: %s", crdt_err_name(err));
	cr_assert(title_is(&f, "SECRET two"));
	/* A plaintext snapshot in an encrypted document's frame is
	 * refused like a plaintext message. */
	crdt_buf snap, frame, before;
	forged_snapshot(&snap, &k.id, "written without the key");
	data_frame(&frame, snap.data, snap.len);
	save(&f, &before);
	crdt_buf_clear(&reply);
	cr_assert_eq(crdt_doc_sync_handle(f.d, frame.data, frame.len, NULL,
			 &reply),
	    CRDT_EDECRYPT);
	assert_unchanged(&f, &before);
	cr_assert(title_is(&f, "SECRET two"));
	crdt_buf_fini(&snap);
	crdt_buf_fini(&frame);
	crdt_buf_fini(&before);
	crdt_buf_fini(&reply);
	crdt_buf_fini(&seen);
	node_free(&k);
	node_free(&f);
	node_free(&r);
}

Test(trust_snapshot, encrypted_with_allowlist_needs_the_opt_in)
{
	/* The key does not make a writer when an allowlist names fewer
	 * writers than key holders: no snapshot unless opted in. */
	uint8_t s[32] = { 9 };
	crdt_identity *ai;
	uint8_t apk[32];
	cr_assert_eq(crdt_identity_from_seed(NULL, s, &ai), 0);
	crdt_identity_public_key(ai, apk);
	for (int opt = 0; opt < 2; opt++) {
		opts o = { .sign = true, .enc = true, .admin_pk = apk,
			.opt_in = opt };
		node a, p;
		node_new(&a, 9, &o); /* the admin: seed 9 */
		node_new(&p, 2, &o);
		set_title(&a, "a1", NULL);
		set_title(&a, "a2", NULL);
		crdt_buf sealed, frame, before, reply;
		tb_init(&sealed);
		cr_assert_eq(crdt_doc_save_sealed(a.d, &sealed), 0);
		data_frame(&frame, sealed.data, sealed.len);
		save(&p, &before);
		tb_init(&reply);
		int rc = crdt_doc_sync_handle(p.d, frame.data, frame.len, NULL,
		    &reply);
		if (opt) {
			cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
			cr_assert(title_is(&p, "a2"));
		} else {
			cr_assert_eq(rc, CRDT_EPERM, "%s", crdt_err_name(rc));
			assert_unchanged(&p, &before);
		}
		crdt_buf_fini(&sealed);
		crdt_buf_fini(&frame);
		crdt_buf_fini(&before);
		crdt_buf_fini(&reply);
		node_free(&a);
		node_free(&p);
	}
	crdt_identity_free(ai);
}

Test(trust_snapshot, unsigned_mode_syncs_snapshots_as_before)
{
	opts so = { .log_max = 1 }, po = { 0 };
	node s, p;
	node_new(&s, 1, &so);
	node_new(&p, 2, &po);
	set_title(&s, "one", NULL);
	set_title(&s, "two", NULL);
	int err;
	sync_rounds(&p, &s, 1, &err, NULL);
	cr_assert_eq(err, 0);
	cr_assert(title_is(&p, "two"));
	node_free(&s);
	node_free(&p);
}

Test(trust_snapshot, refused_snapshot_leaves_no_replica_ids)
{
	/* A snapshot naming more replicas than max_replicas is refused and
	 * leaves the table as it was: a new writer still gets in. */
	opts o = { .max_replicas = 4 };
	node v, h;
	node_new(&v, 1, &o);
	node_new(&h, 2, &o);
	crdt_buf s, before, m;
	tb_init(&s);
	mp_array(&s, 7);
	mp_uint(&s, 1);
	mp_uint(&s, 6);
	mp_array(&s, 2 * 8);
	for (uint8_t i = 0; i < 8; i++) {
		mp_id(&s, test_id((uint8_t)(100 + i)));
		mp_uint(&s, 1);
	}
	mp_uint(&s, 0);
	mp_array(&s, 1);
	mp_array(&s, 3);
	mp_bin(&s, "title", 5);
	mp_uint(&s, CRDT_OBJ_LWW);
	crdt_buf st;
	tb_init(&st);
	mk_lww_op(&st, 0, test_id(100), false, NULL, 0);
	mp_bin(&s, st.data, st.len);
	mp_array(&s, 0);
	mp_array(&s, 0);
	save(&v, &before);
	int rc = crdt_doc_load(v.d, s.data, s.len, NULL);
	cr_assert_lt(rc, 0);
	assert_unchanged(&v, &before);
	tb_init(&m);
	set_title(&h, "new writer", &m);
	cr_assert_eq(crdt_doc_receive(v.d, m.data, m.len, NULL), 0);
	cr_assert(title_is(&v, "new writer"));
	crdt_buf_fini(&s);
	crdt_buf_fini(&st);
	crdt_buf_fini(&before);
	crdt_buf_fini(&m);
	node_free(&v);
	node_free(&h);
}

static size_t biggest;
static void *
big_alloc(void *ud, size_t n)
{
	(void)ud;
	if (n > biggest)
		biggest = n;
	return malloc(n);
}
static void *
big_realloc(void *ud, void *p, size_t o, size_t n)
{
	(void)ud;
	(void)o;
	if (n > biggest)
		biggest = n;
	return realloc(p, n);
}
static void
big_free(void *ud, void *p, size_t n)
{
	(void)ud;
	(void)n;
	free(p);
}

Test(trust_snapshot, list_counts_are_checked_against_the_bytes_left)
{
	/* A buffered list (then an evidence list) claiming 64 Ki entries
	 * over 64 KiB of filler: refused before any array is sized by the
	 * count (8 bytes an entry would be 8x the input). */
	for (int which = 0; which < 2; which++) {
		crdt_config cfg;
		crdt_doc *d;
		crdt_replica_id id = test_id(1);
		crdt_config_default(&cfg);
		cfg.alloc = (crdt_allocator){ big_alloc, big_realloc, big_free,
			NULL };
		cr_assert_eq(crdt_doc_new(&cfg, &id, &d), 0);
		uint32_t t;
		cr_assert_eq(crdt_doc_register(d, "t", CRDT_OBJ_GSET, &t), 0);
		crdt_buf s;
		tb_init(&s);
		mp_array(&s, 7);
		mp_uint(&s, 1);
		mp_uint(&s, 6);
		mp_array(&s, 0);
		mp_uint(&s, 0);
		mp_array(&s, 1);
		mp_array(&s, 3);
		mp_bin(&s, "t", 1);
		mp_uint(&s, CRDT_OBJ_GSET);
		static const uint8_t empty_gset[] = { 0x93, 0x01, 0x01, 0x90 };
		mp_bin(&s, empty_gset, sizeof empty_gset);
		uint32_t claim = 1u << 16;
		if (which == 1)
			mp_array(&s, 0);
		mp_array(&s, claim);
		for (uint32_t i = 0; i < claim; i++)
			mp_nil(&s);
		biggest = 0;
		cr_assert_eq(crdt_doc_load(d, s.data, s.len, NULL),
		    CRDT_EMALFORMED);
		cr_assert_leq(biggest, 4 * s.len, "%zu-byte allocation for a "
		    "%zu-byte snapshot", biggest, s.len);
		crdt_buf_fini(&s);
		crdt_doc_free(d);
	}
}

Test(trust_snapshot, snapshot_carries_what_the_allowlist_judges_by)
{
	/* R1 applied the grant and W's first write; R2 loaded R1's
	 * snapshot. W's next write lists no admin dependency (its first
	 * did): both judge it alike and end byte-identical. */
	uint8_t s[32] = { 9 };
	crdt_identity *ai;
	uint8_t apk[32];
	cr_assert_eq(crdt_identity_from_seed(NULL, s, &ai), 0);
	crdt_identity_public_key(ai, apk);
	opts o = { .sign = true, .admin_pk = apk };
	node a, w, r1, r2;
	node_new(&a, 9, &o);
	node_new(&w, 2, &o);
	node_new(&r1, 3, &o);
	node_new(&r2, 4, &o);
	crdt_buf g, m1, m2, snap;
	tb_init(&g);
	tb_init(&m1);
	tb_init(&m2);
	cr_assert_eq(crdt_doc_allow(a.d, &w.id, true, &g), 0);
	cr_assert_eq(crdt_doc_receive(w.d, g.data, g.len, NULL), 0);
	set_title(&w, "w1", &m1);
	cr_assert_eq(crdt_doc_receive(r1.d, g.data, g.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(r1.d, m1.data, m1.len, NULL), 0);
	save(&r1, &snap);
	cr_assert_eq(crdt_doc_load(r2.d, snap.data, snap.len, NULL), 0);
	/* (W,2) lists no admin dependency: nothing new since (W,1). */
	set_title(&w, "w2", &m2);
	cr_assert_eq(crdt_doc_receive(r1.d, m2.data, m2.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(r2.d, m2.data, m2.len, NULL), 0);
	cr_assert(title_is(&r1, "w2") && title_is(&r2, "w2"));
	crdt_buf s1, s2;
	save(&r1, &s1);
	save(&r2, &s2);
	cr_assert(bytes_eq(s1.data, s1.len, s2.data, s2.len));
	/* A document without an allowlist keeps the 9-field layout. */
	node u;
	opts uo = { .sign = true };
	node_new(&u, 5, &uo);
	set_title(&u, "x", NULL);
	crdt_buf us;
	save(&u, &us);
	cr_assert_eq(us.data[0], 0x99);
	crdt_buf_fini(&us);
	node_free(&u);
	crdt_buf_fini(&g);
	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&s1);
	crdt_buf_fini(&s2);
	node_free(&a);
	node_free(&w);
	node_free(&r1);
	node_free(&r2);
	crdt_identity_free(ai);
}

static int
key_cmp(const crdt_buf *a, const crdt_buf *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = n ? memcmp(a->data, b->data, n) : 0;
	return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* `snap` (its evidence list empty, last) with evidence [x, y] sorted. */
static void
with_evidence(crdt_buf *out, const crdt_buf *snap, const crdt_buf *x,
    const crdt_buf *y)
{
	cr_assert_eq(snap->data[snap->len - 1], 0x90);
	tb_init(out);
	mp_raw(out, snap->data, snap->len - 1);
	mp_array(out, 2);
	const crdt_buf *lo = key_cmp(x, y) < 0 ? x : y;
	mp_bin(out, lo->data, lo->len);
	mp_bin(out, (lo == x ? y : x)->data, (lo == x ? y : x)->len);
}

Test(trust_snapshot, load_refuses_evidence_that_receive_refuses)
{
	/* Two variants of (W,1) from two documents under W's identity; one
	 * has its stamp flipped after signing / sealing. The loader refuses
	 * what crdt_doc_receive() refuses, and the document is unchanged. */
	for (int enc = 0; enc < 2; enc++) {
		/* Signed: the signature fails first; encrypted alone: the
		 * AEAD (the stamp is associated data). */
		opts o = { .sign = !enc, .enc = enc };
		node v, w1, w2, fresh;
		node_new(&v, 1, &o);
		node_new(&w1, 2, &o);
		node_new(&w2, 2, &o);
		node_new(&fresh, 3, &o);
		crdt_buf m1, m2, bad, snap, evs, before;
		int rc;
		tb_init(&m1);
		tb_init(&m2);
		set_title(&w1, "one", &m1);
		set_title(&w2, "two", &m2);
		cr_assert_eq(crdt_doc_receive(v.d, m1.data, m1.len, NULL), 0);
		save(&v, &snap);
		tb_init(&bad);
		mp_raw(&bad, m2.data, m2.len);
		cr_assert_eq(bad.data[22], 0xcf); /* hlc: uint64 at 23..30 */
		bad.data[30] ^= 1;
		int want = enc ? CRDT_EDECRYPT : CRDT_EBADSIG;
		rc = crdt_doc_receive(fresh.d, bad.data, bad.len, NULL);
		cr_assert_eq(rc, want, "receive (enc %d): %s", enc,
		    crdt_err_name(rc));
		with_evidence(&evs, &snap, &m1, &bad);
		save(&fresh, &before);
		rc = crdt_doc_load(fresh.d, evs.data, evs.len, NULL);
		cr_assert_eq(rc, want, "load: %s", crdt_err_name(rc));
		assert_unchanged(&fresh, &before);
		/* The genuine pair loads and is kept as it came. */
		crdt_buf_fini(&evs);
		with_evidence(&evs, &snap, &m1, &m2);
		cr_assert_eq(crdt_doc_load(fresh.d, evs.data, evs.len, NULL), 0);
		crdt_buf now;
		save(&fresh, &now);
		cr_assert(bytes_eq(now.data, now.len, evs.data, evs.len));
		crdt_buf_fini(&now);
		crdt_buf_fini(&m1);
		crdt_buf_fini(&m2);
		crdt_buf_fini(&bad);
		crdt_buf_fini(&snap);
		crdt_buf_fini(&evs);
		crdt_buf_fini(&before);
		node_free(&v);
		node_free(&w1);
		node_free(&w2);
		node_free(&fresh);
	}
}

/* Unsigned (W,1) = [1, 5, W, 1, hlc, [], payload, nil]. */
static void
raw_msg_from(crdt_buf *m, uint8_t w, const crdt_buf *payload)
{
	tb_init(m);
	mp_array(m, 8);
	mp_uint(m, 1);
	mp_uint(m, 5);
	mp_id(m, test_id(w));
	mp_uint(m, 1);
	mp_uint(m, UINT64_C(1700000000000) << 16);
	mp_array(m, 0);
	mp_bin(m, payload->data, payload->len);
	mp_nil(m);
}

static void
raw_msg(crdt_buf *m, const crdt_buf *payload)
{
	raw_msg_from(m, 2, payload);
}

/* [[0, v]]: the title set to `v`. */
static void
title_ops(crdt_buf *p, const char *v)
{
	tb_init(p);
	mp_array(p, 1);
	mp_array(p, 2);
	mp_uint(p, 0);
	mp_bin(p, v, strlen(v));
}

Test(trust_snapshot, load_error_means_nothing_changed)
{
	/* Evidence for two dots where the evidence bound holds one: the
	 * load used to merge the state, then fail on the second dot. Now it
	 * is refused before the commit point and the document saves the
	 * same bytes. */
	opts o = { 0 };
	node v;
	node_new(&v, 1, &o);
	crdt_buf p[4], m[4];
	const char *vals[4] = { "a", "b", "c", "d" };
	for (int i = 0; i < 4; i++) {
		title_ops(&p[i], vals[i]);
		raw_msg_from(&m[i], (uint8_t)(2 + i / 2), &p[i]);
	}
	cr_assert_eq(crdt_doc_receive(v.d, m[0].data, m[0].len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(v.d, m[2].data, m[2].len, NULL), 0);
	crdt_buf snap, evs;
	save(&v, &snap);
	cr_assert_eq(snap.data[snap.len - 1], 0x90);
	tb_init(&evs);
	mp_raw(&evs, snap.data, snap.len - 1);
	mp_array(&evs, 4);
	for (int dot = 0; dot < 2; dot++) {
		crdt_buf *x = &m[2 * dot], *y = &m[2 * dot + 1];
		const crdt_buf *lo = key_cmp(x, y) < 0 ? x : y;
		const crdt_buf *hi = lo == x ? y : x;
		mp_bin(&evs, lo->data, lo->len);
		mp_bin(&evs, hi->data, hi->len);
	}
	crdt_config cfg;
	test_config(&cfg, NULL);
	cfg.max_buffered_msgs = 1;
	crdt_replica_id id = test_id(9);
	node f;
	memset(&f, 0, sizeof f);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &f.d), 0);
	cr_assert_eq(crdt_doc_register(f.d, "title", CRDT_OBJ_LWW, NULL), 0);
	crdt_buf before;
	save(&f, &before);
	cr_assert_eq(crdt_doc_load(f.d, evs.data, evs.len, NULL),
	    CRDT_EBUFFULL);
	assert_unchanged(&f, &before);
	cr_assert(title_is(&f, NULL));
	/* With room for both it loads and keeps them as they came. */
	node g;
	node_new(&g, 8, &o);
	cr_assert_eq(crdt_doc_load(g.d, evs.data, evs.len, NULL), 0);
	crdt_buf now;
	save(&g, &now);
	cr_assert(bytes_eq(now.data, now.len, evs.data, evs.len));
	for (int i = 0; i < 4; i++) {
		crdt_buf_fini(&p[i]);
		crdt_buf_fini(&m[i]);
	}
	crdt_buf_fini(&snap);
	crdt_buf_fini(&evs);
	crdt_buf_fini(&before);
	crdt_buf_fini(&now);
	crdt_doc_free(f.d);
	node_free(&v);
	node_free(&g);
}

Test(trust_snapshot, load_refuses_evidence_with_bad_ops)
{
	/* An op on an unknown object, and an op list with a non-minimal
	 * count: refused on receipt, so refused as evidence too. */
	opts o = { 0 };
	node v;
	node_new(&v, 1, &o);
	crdt_buf good_p, good, snap;
	tb_init(&good_p);
	mp_array(&good_p, 1);
	mp_array(&good_p, 2);
	mp_uint(&good_p, 0);
	mp_bin(&good_p, "x", 1);
	raw_msg(&good, &good_p);
	cr_assert_eq(crdt_doc_receive(v.d, good.data, good.len, NULL), 0);
	save(&v, &snap);
	for (int k = 0; k < 2; k++) {
		crdt_buf p, bad, evs, before;
		tb_init(&p);
		if (k == 0) {
			mp_array(&p, 1);
			mp_array(&p, 2);
			mp_uint(&p, 5); /* no object 5 */
			mp_bin(&p, "y", 1);
		} else {
			mp_byte(&p, 0xdc); /* array16 holding one op */
			mp_byte(&p, 0);
			mp_byte(&p, 1);
			mp_array(&p, 2);
			mp_uint(&p, 0);
			mp_bin(&p, "y", 1);
		}
		raw_msg(&bad, &p);
		node fresh;
		node_new(&fresh, 3, &o);
		int want = k == 0 ? CRDT_ESCHEMA : CRDT_EMALFORMED;
		cr_assert_eq(crdt_doc_receive(fresh.d, bad.data, bad.len, NULL),
		    want);
		with_evidence(&evs, &snap, &good, &bad);
		save(&fresh, &before);
		int rc = crdt_doc_load(fresh.d, evs.data, evs.len, NULL);
		cr_assert_eq(rc, want, "load: %s", crdt_err_name(rc));
		assert_unchanged(&fresh, &before);
		crdt_buf_fini(&p);
		crdt_buf_fini(&bad);
		crdt_buf_fini(&evs);
		crdt_buf_fini(&before);
		node_free(&fresh);
	}
	crdt_buf_fini(&good_p);
	crdt_buf_fini(&good);
	crdt_buf_fini(&snap);
	node_free(&v);
}

/* A device restarts from its own snapshot with its clock an hour behind
 * the stamps it wrote (beyond max_drift_ms): its own saved stamp comes
 * back, so a write made right after the restart wins over its earlier
 * writes everywhere, while a peer's far-future stamp still does not drag
 * the clock. */
Test(trust_snapshot, a_restart_restores_the_replicas_own_stamp)
{
	opts o = { .sign = false };
	node a, peer;
	node_new(&a, 1, &o);
	node_new(&peer, 2, &o);
	crdt_buf m1, m2, snap;
	tb_init(&m1);
	tb_init(&m2);
	set_title(&a, "before the restart", &m1);
	uint64_t before = crdt_doc_hlc(a.d);
	cr_assert_eq(crdt_doc_receive(peer.d, m1.data, m1.len, NULL), 0);
	save(&a, &snap);

	node a2; /* the same replica ID, a fresh process */
	node_new(&a2, 1, &o);
	a2.clk.ms -= 3600 * 1000;
	cr_assert_eq(crdt_doc_load(a2.d, snap.data, snap.len, NULL), 0);
	cr_assert_geq(crdt_doc_hlc(a2.d), before,
	    "own stamp not restored: %llu < %llu",
	    (unsigned long long)crdt_doc_hlc(a2.d),
	    (unsigned long long)before);
	set_title(&a2, "after the restart", &m2);
	cr_assert(crdt_doc_hlc(a2.d) > before);
	cr_assert_eq(crdt_doc_receive(peer.d, m2.data, m2.len, NULL), 0);
	cr_assert(title_is(&peer, "after the restart"));
	cr_assert(title_is(&a2, "after the restart"));

	/* Someone else's stamp an hour ahead is applied, not adopted. */
	node far, b;
	node_new(&far, 3, &o);
	node_new(&b, 4, &o);
	far.clk.ms += 3600 * 1000;
	crdt_buf m3, s2;
	tb_init(&m3);
	set_title(&far, "from the future", &m3);
	cr_assert_eq(crdt_doc_receive(a2.d, m3.data, m3.len, NULL), 0);
	save(&a2, &s2);
	cr_assert_eq(crdt_doc_load(b.d, s2.data, s2.len, NULL), 0);
	cr_assert(crdt_doc_hlc(b.d) >> 16 <= b.clk.ms + 60000,
	    "a peer's far-future stamp dragged the clock on load");
	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	crdt_buf_fini(&m3);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&s2);
	node_free(&a);
	node_free(&a2);
	node_free(&peer);
	node_free(&far);
	node_free(&b);
}
