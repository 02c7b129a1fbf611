/*
 * The ingest path at the trust boundary: what a peer's message can make a
 * document hold or show. A write is judged by the allowlist as of its
 * whole causal past, whether it arrives fresh, waits in the buffer or
 * comes as a second variant of a dot; both halves of an equivocation are
 * kept whichever waits; a stamp under our own ID does not move our clock;
 * and no sender can fill the replica table, the buffer or the evidence.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_util.h"

#define T0 UINT64_C(1700000000000)

typedef struct node {
	crdt_doc *d;
	crdt_identity *ident;
	crdt_replica_id id;
	uint8_t pk[32], sk[64]; /* the same key pair, for hand-made messages */
	test_clock clk;
} node;

/* A signed replica from `seed`; with `admin` (a public key) the document
 * has an allowlist. Objects: "__acl" (with an admin) then "notes". */
static void
node_cfg(node *n, uint8_t seed, const uint8_t *admin, const crdt_config *base)
{
	uint8_t s[32] = { 0 };
	crdt_config cfg;
	s[0] = seed;
	memset(n, 0, sizeof *n);
	n->clk.ms = T0;
	if (base != NULL)
		cfg = *base;
	else
		test_config(&cfg, NULL);
	cfg.clock = test_clock_read;
	cfg.clock_ud = &n->clk;
	cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
	crdt_identity_replica_id(n->ident, &n->id);
	cr_assert_eq(sodium_init() >= 0, true);
	crypto_sign_seed_keypair(n->pk, n->sk, s);
	uint8_t pk[32];
	crdt_identity_public_key(n->ident, pk);
	cr_assert(bytes_eq(pk, 32, n->pk, 32), "identities are Ed25519 from seed");
	cr_assert_eq(crdt_doc_new(&cfg, &n->id, &n->d), 0);
	crdt_doc_security sec = { true, n->ident, false, NULL, 0, admin, false };
	cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	cr_assert_eq(crdt_doc_register(n->d, "notes", CRDT_OBJ_GSET, NULL), 0);
}

static void
node_new(node *n, uint8_t seed, const uint8_t *admin)
{
	node_cfg(n, seed, admin, NULL);
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
	uint32_t on;
	cr_assert_eq(crdt_doc_lookup(n->d, "notes", &on), 0);
	return on;
}

static bool
has_note(const node *n, const char *s)
{
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(n->d, notes(n), &g), 0);
	return crdt_gset_contains(g, s, strlen(s));
}

static void
save(const node *n, crdt_buf *out)
{
	tb_init(out);
	cr_assert_eq(crdt_doc_save(n->d, out), 0);
}

static void
same_saves(const node *x, const node *y, const char *what)
{
	crdt_buf sx, sy;
	save(x, &sx);
	save(y, &sy);
	cr_assert(bytes_eq(sx.data, sx.len, sy.data, sy.len), "%s", what);
	crdt_buf_fini(&sx);
	crdt_buf_fini(&sy);
}

static void
recv_ok(node *n, const crdt_buf *m)
{
	int rc = crdt_doc_receive(n->d, m->data, m->len, NULL);
	cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
}

/* `m` is refused with `want` and the document is byte-identical. */
static void
refused(node *n, const crdt_buf *m, int want)
{
	crdt_buf before, after;
	save(n, &before);
	size_t nb = crdt_doc_buffered(n->d);
	int rc = crdt_doc_receive(n->d, m->data, m->len, NULL);
	cr_assert_eq(rc, want, "got %s, want %s", crdt_err_name(rc),
	    crdt_err_name(want));
	save(n, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len),
	    "a refused message changes nothing");
	cr_assert_eq(crdt_doc_buffered(n->d), nb);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
}

typedef struct xdep {
	crdt_replica_id id;
	uint64_t c;
} xdep;

static int
xdep_cmp(const void *a, const void *b)
{
	return crdt_replica_id_cmp(&((const xdep *)a)->id,
	    &((const xdep *)b)->id);
}

/* A message of `who` built by hand (docs/wire-format.md): one G-Set add
 * of `note` to object `on` (none when NULL), signed by `who` unless
 * `sign` is false. */
static void
hand_msg(crdt_buf *out, const node *who, const crdt_replica_id *as,
    uint64_t counter, uint64_t hlc, xdep *deps, size_t ndeps, uint32_t on,
    const char *note, bool sign)
{
	crdt_buf pay;
	tb_init(out);
	tb_init(&pay);
	if (note != NULL) {
		mp_array(&pay, 1);
		mp_array(&pay, 2);
		mp_uint(&pay, on);
		mp_bin(&pay, note, strlen(note));
	} else {
		mp_array(&pay, 0);
	}
	if (ndeps > 1)
		qsort(deps, ndeps, sizeof *deps, xdep_cmp);
	mp_array(out, 8);
	mp_uint(out, 1);
	mp_uint(out, 5);
	mp_id(out, *as);
	mp_uint(out, counter);
	mp_uint(out, hlc);
	mp_array(out, (uint32_t)(2 * ndeps));
	for (size_t i = 0; i < ndeps; i++) {
		mp_id(out, deps[i].id);
		mp_uint(out, deps[i].c);
	}
	mp_bin(out, pay.data, pay.len);
	crdt_buf_fini(&pay);
	if (!sign) {
		mp_nil(out);
		return;
	}
	uint8_t h[32], sig[64], pers[16] = "crdt.msg.v1";
	static const uint8_t salt[16];
	crypto_generichash_blake2b_salt_personal(h, sizeof h, out->data,
	    out->len, NULL, 0, salt, pers);
	crypto_sign_detached(sig, NULL, h, sizeof h, who->sk);
	mp_array(out, 2);
	mp_bin(out, who->pk, 32);
	mp_bin(out, sig, 64);
}

static uint64_t
stamp_now(const node *n)
{
	return (n->clk.ms + 10) << 16;
}

/* ---- permissions ---- */

/* A writer whose access was revoked re-signs its old dot (W,1) with new
 * ops, naming the revocation among the dependencies. The second variant
 * is a write made after the writer saw the revocation: refused on every
 * replica, the admin's included, like the same write as a fresh message. */
Test(trust_ingest, revoked_writer_cannot_write_by_resigning_an_old_dot)
{
	node a, w, v;
	crdt_buf g1, g2, w1, var, fresh;
	node_new(&a, 1, NULL);
	uint8_t apk[32];
	memcpy(apk, a.pk, 32);
	node_free(&a);
	node_new(&a, 1, apk);
	node_new(&w, 2, apk);
	node_new(&v, 3, apk);
	tb_init(&g1);
	tb_init(&g2);
	tb_init(&w1);
	cr_assert_eq(crdt_doc_allow(a.d, &w.id, true, &g1), 0);
	recv_ok(&w, &g1);
	cr_assert_eq(crdt_doc_gset_add(w.d, notes(&w), "before", 6, &w1), 0);
	recv_ok(&a, &w1);
	cr_assert_eq(crdt_doc_allow(a.d, &w.id, false, &g2), 0);
	recv_ok(&v, &g1);
	recv_ok(&v, &w1);
	recv_ok(&v, &g2);
	cr_assert(!crdt_doc_allowed(v.d, &w.id));

	xdep dep = { a.id, 2 };
	hand_msg(&fresh, &w, &w.id, 2, stamp_now(&v), &dep, 1, notes(&v),
	    "after", true);
	refused(&v, &fresh, CRDT_EPERM);
	for (int i = 0; i < 3; i++) {
		char note[16];
		snprintf(note, sizeof note, "after %d", i);
		dep = (xdep){ a.id, 2 };
		hand_msg(&var, &w, &w.id, 1, stamp_now(&v) + (uint64_t)i, &dep,
		    1, notes(&v), note, true);
		refused(&v, &var, CRDT_EPERM);
		refused(&a, &var, CRDT_EPERM);
		cr_assert(!has_note(&v, note) && !has_note(&a, note));
		crdt_buf_fini(&var);
	}
	cr_assert(has_note(&v, "before"), "the write made while allowed stays");
	same_saves(&a, &v, "admin and observer agree");

	crdt_buf_fini(&g1);
	crdt_buf_fini(&g2);
	crdt_buf_fini(&w1);
	crdt_buf_fini(&fresh);
	node_free(&a);
	node_free(&w);
	node_free(&v);
}

/* W lists an old admin counter (1, when it was allowed) but depends on
 * X's message, which X wrote after the admin revoked W (admin:3). W's
 * causal past holds the revocation, whatever W names: refused, and so is
 * its follow-up that names nothing. X's write stays. */
Test(trust_ingest, a_stale_admin_entry_does_not_hide_a_revocation_in_the_past)
{
	node a, w, x, v;
	crdt_buf g[3], x1, stale, next;
	node_new(&a, 1, NULL);
	uint8_t apk[32];
	memcpy(apk, a.pk, 32);
	node_free(&a);
	node_new(&a, 1, apk);
	node_new(&w, 2, apk);
	node_new(&x, 3, apk);
	node_new(&v, 4, apk);
	for (int i = 0; i < 3; i++)
		tb_init(&g[i]);
	tb_init(&x1);
	cr_assert_eq(crdt_doc_allow(a.d, &w.id, true, &g[0]), 0);
	cr_assert_eq(crdt_doc_allow(a.d, &x.id, true, &g[1]), 0);
	cr_assert_eq(crdt_doc_allow(a.d, &w.id, false, &g[2]), 0);
	for (int i = 0; i < 3; i++) {
		recv_ok(&x, &g[i]);
		recv_ok(&v, &g[i]);
	}
	cr_assert_eq(crdt_doc_gset_add(x.d, notes(&x), "x after", 7, &x1), 0);
	recv_ok(&v, &x1);

	xdep deps[2] = { { a.id, 1 }, { x.id, 1 } };
	hand_msg(&stale, &w, &w.id, 1, stamp_now(&v), deps, 2, notes(&v),
	    "w stale", true);
	refused(&v, &stale, CRDT_EPERM);
	hand_msg(&next, &w, &w.id, 2, stamp_now(&v) + 1, NULL, 0, notes(&v),
	    "w next", true);
	refused(&v, &next, CRDT_EPERM);
	cr_assert(!has_note(&v, "w stale") && !has_note(&v, "w next"));
	cr_assert(has_note(&v, "x after"));

	for (int i = 0; i < 3; i++)
		crdt_buf_fini(&g[i]);
	crdt_buf_fini(&x1);
	crdt_buf_fini(&stale);
	crdt_buf_fini(&next);
	node_free(&a);
	node_free(&w);
	node_free(&x);
	node_free(&v);
}

/* ---- equivocation while the first half waits ---- */

/* Two documents share one identity and both write (M,1) after X's first
 * message. Replicas that get both halves before X's message, in either
 * order, keep both waiting and end byte-identical with the union; a
 * snapshot saved while both wait loads elsewhere and holds both. */
Test(trust_ingest, both_halves_wait_and_converge_in_either_order)
{
	node x, m1, m2, r1, r2, r3, r4;
	crdt_buf x1, v1, v2, snap;
	node_new(&x, 1, NULL);
	node_new(&m1, 2, NULL);
	node_new(&m2, 2, NULL); /* the same replica ID */
	node_new(&r1, 3, NULL);
	node_new(&r2, 4, NULL);
	node_new(&r3, 5, NULL);
	node_new(&r4, 6, NULL);
	tb_init(&x1);
	tb_init(&v1);
	tb_init(&v2);
	cr_assert_eq(crdt_doc_gset_add(x.d, notes(&x), "x", 1, &x1), 0);
	recv_ok(&m1, &x1);
	recv_ok(&m2, &x1);
	cr_assert_eq(crdt_doc_gset_add(m1.d, notes(&m1), "one", 3, &v1), 0);
	cr_assert_eq(crdt_doc_gset_add(m2.d, notes(&m2), "two", 3, &v2), 0);

	recv_ok(&r1, &v1);
	recv_ok(&r1, &v2);
	cr_assert_eq(crdt_doc_buffered(r1.d), 2, "both halves wait");
	recv_ok(&r1, &v2); /* a repeat is a duplicate */
	cr_assert_eq(crdt_doc_buffered(r1.d), 2);
	recv_ok(&r1, &x1);
	recv_ok(&r2, &v2);
	recv_ok(&r2, &v1);
	recv_ok(&r2, &x1);
	cr_assert(has_note(&r1, "one") && has_note(&r1, "two"));
	same_saves(&r1, &r2, "either order ends byte-identical");

	recv_ok(&r3, &v2);
	recv_ok(&r3, &v1);
	save(&r3, &snap);
	cr_assert_eq(crdt_doc_load(r4.d, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_doc_buffered(r4.d), 2);
	recv_ok(&r4, &x1);
	same_saves(&r4, &r1, "both halves survive a snapshot");

	crdt_buf_fini(&x1);
	crdt_buf_fini(&v1);
	crdt_buf_fini(&v2);
	crdt_buf_fini(&snap);
	node *all[] = { &x, &m1, &m2, &r1, &r2, &r3, &r4 };
	for (size_t i = 0; i < 7; i++)
		node_free(all[i]);
}

/* ---- clock ---- */

/* In unsigned mode a peer claims our own replica ID with the last stamp
 * there is. However it is judged, our clock is not dragged along: later
 * commits succeed, show, and carry stamps near our physical clock. */
Test(trust_ingest, a_far_future_stamp_under_our_own_id_does_not_move_our_clock)
{
	crdt_config cfg;
	test_clock clk = { T0, 0 };
	crdt_replica_id me = test_id(7);
	crdt_doc *d;
	crdt_buf out, forged;
	uint32_t on;
	test_config(&cfg, &clk);
	cr_assert_eq(crdt_doc_new(&cfg, &me, &d), 0);
	cr_assert_eq(crdt_doc_register(d, "notes", CRDT_OBJ_GSET, &on), 0);
	tb_init(&out);
	cr_assert_eq(crdt_doc_gset_add(d, on, "a", 1, &out), 0);
	crdt_buf_clear(&out);
	cr_assert_eq(crdt_doc_gset_add(d, on, "b", 1, &out), 0);
	node none;
	memset(&none, 0, sizeof none);
	hand_msg(&forged, &none, &me, 3, UINT64_MAX, NULL, 0, on, NULL, false);
	int frc = crdt_doc_receive(d, forged.data, forged.len, NULL);
	(void)frc; /* applied or refused: not what this judges */
	for (int i = 0; i < 3; i++) {
		char v[8];
		snprintf(v, sizeof v, "c%d", i);
		clk.ms += 3600 * 1000;
		crdt_buf_clear(&out);
		int rc = crdt_doc_gset_add(d, on, v, strlen(v), &out);
		cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
		uint64_t h;
		cr_assert_eq(crdt_msg_peek(out.data, out.len, NULL, &h), 0);
		cr_assert_leq(CRDT_HLC_MS(h), clk.ms + cfg.max_drift_ms);
		const crdt_gset *g;
		cr_assert_eq(crdt_doc_gset(d, on, &g), 0);
		cr_assert(crdt_gset_contains(g, v, strlen(v)));
	}
	crdt_buf_fini(&out);
	crdt_buf_fini(&forged);
	crdt_doc_free(d);
}

/* ---- per-sender bounds ---- */

/* A non-member names many made-up replicas, more than the table holds.
 * It is refused before any of them is interned, so a newly allowed
 * writer is still taken, here and on a replica that loads our snapshot. */
Test(trust_ingest, a_non_member_cannot_fill_the_replica_table)
{
	crdt_config cfg;
	node a, mal, h, v, t;
	crdt_buf grant, hw, junk, snap;
	test_config(&cfg, NULL);
	cfg.max_replicas = 16;
	node_cfg(&a, 1, NULL, &cfg);
	uint8_t apk[32];
	memcpy(apk, a.pk, 32);
	node_free(&a);
	node_cfg(&a, 1, apk, &cfg);
	node_cfg(&mal, 2, apk, &cfg);
	node_cfg(&h, 3, apk, &cfg);
	node_cfg(&v, 4, apk, &cfg);
	node_cfg(&t, 5, apk, &cfg);
	xdep deps[40];
	for (uint8_t i = 0; i < 40; i++)
		deps[i] = (xdep){ test_id((uint8_t)(100 + i)), 1 };
	hand_msg(&junk, &mal, &mal.id, 1, stamp_now(&v), deps, 40, notes(&v),
	    "junk", true);
	refused(&v, &junk, CRDT_EPERM);

	tb_init(&grant);
	tb_init(&hw);
	cr_assert_eq(crdt_doc_allow(a.d, &h.id, true, &grant), 0);
	recv_ok(&h, &grant);
	cr_assert_eq(crdt_doc_gset_add(h.d, notes(&h), "honest", 6, &hw), 0);
	recv_ok(&v, &hw); /* before its grant: waits */
	recv_ok(&v, &grant);
	cr_assert(has_note(&v, "honest"));
	save(&v, &snap);
	cr_assert_eq(crdt_doc_load(t.d, snap.data, snap.len, NULL), 0);
	cr_assert(has_note(&t, "honest"));

	crdt_buf_fini(&grant);
	crdt_buf_fini(&hw);
	crdt_buf_fini(&junk);
	crdt_buf_fini(&snap);
	node *all[] = { &a, &mal, &h, &v, &t };
	for (size_t i = 0; i < 5; i++)
		node_free(all[i]);
}

/* One large message on a dependency nobody has must not pin the causal
 * buffer: a non-member's is refused outright, and an allowed writer can
 * hold only its own share, so another writer's out-of-order messages are
 * still taken and applied, and the snapshot loads elsewhere. */
Test(trust_ingest, one_sender_cannot_pin_the_causal_buffer)
{
	crdt_config cfg;
	node a, mal, w, h, v, t;
	crdt_buf g1, g2, big, h1, h2, snap;
	test_config(&cfg, NULL);
	cfg.max_buffered_bytes = 64 * 1024;
	cfg.max_sender_buffered = 16 * 1024;
	node_cfg(&a, 1, NULL, &cfg);
	uint8_t apk[32];
	memcpy(apk, a.pk, 32);
	node_free(&a);
	node_cfg(&a, 1, apk, &cfg);
	node_cfg(&mal, 2, apk, &cfg);
	node_cfg(&w, 3, apk, &cfg);
	node_cfg(&h, 4, apk, &cfg);
	node_cfg(&v, 5, apk, &cfg);
	node_cfg(&t, 6, apk, &cfg);
	char *note = malloc(60 * 1024);
	memset(note, 'j', 60 * 1024 - 1);
	note[60 * 1024 - 1] = '\0';
	xdep ghost = { test_id(0x99), 1 };
	hand_msg(&big, &mal, &mal.id, 1, stamp_now(&v), &ghost, 1, notes(&v),
	    note, true);
	refused(&v, &big, CRDT_EPERM);
	crdt_buf_fini(&big);

	tb_init(&g1);
	tb_init(&g2);
	cr_assert_eq(crdt_doc_allow(a.d, &w.id, true, &g1), 0);
	cr_assert_eq(crdt_doc_allow(a.d, &h.id, true, &g2), 0);
	recv_ok(&v, &g1);
	recv_ok(&w, &g1);
	/* An allowed writer's large message on a ghost: over its share. */
	note[20 * 1024] = '\0';
	xdep wdeps[2] = { { a.id, 1 }, ghost };
	hand_msg(&big, &w, &w.id, 1, stamp_now(&v), wdeps, 2, notes(&v), note,
	    true);
	refused(&v, &big, CRDT_EBUFFULL);
	free(note);

	recv_ok(&h, &g1);
	recv_ok(&h, &g2);
	tb_init(&h1);
	tb_init(&h2);
	cr_assert_eq(crdt_doc_gset_add(h.d, notes(&h), "one", 3, &h1), 0);
	cr_assert_eq(crdt_doc_gset_add(h.d, notes(&h), "two", 3, &h2), 0);
	recv_ok(&v, &h2); /* before h1 and its grant */
	recv_ok(&v, &g2);
	recv_ok(&v, &h1);
	cr_assert(has_note(&v, "one") && has_note(&v, "two"));
	save(&v, &snap);
	cr_assert_eq(crdt_doc_load(t.d, snap.data, snap.len, NULL), 0);
	cr_assert(has_note(&t, "two"));

	crdt_buf_fini(&g1);
	crdt_buf_fini(&g2);
	crdt_buf_fini(&big);
	crdt_buf_fini(&h1);
	crdt_buf_fini(&h2);
	crdt_buf_fini(&snap);
	node *all[] = { &a, &mal, &w, &h, &v, &t };
	for (size_t i = 0; i < 6; i++)
		node_free(all[i]);
}

/* One signer writes ten variants of one dot (ten documents sharing its
 * identity). A replica keeps at most max_variants of them as evidence;
 * the rest are refused and change nothing. Its snapshot reloads, and a
 * peer that saw only the first half ends byte-identical after sync. */
Test(trust_ingest, evidence_is_bounded_per_dot)
{
	crdt_config cfg;
	node m[10], v, p, r;
	crdt_buf msg[10], snap;
	test_config(&cfg, NULL);
	cfg.max_variants = 4;
	node_cfg(&v, 20, NULL, &cfg);
	node_cfg(&p, 21, NULL, &cfg);
	node_cfg(&r, 20, NULL, &cfg);
	for (int i = 0; i < 10; i++) {
		char note[8];
		snprintf(note, sizeof note, "v%d", i);
		node_cfg(&m[i], 9, NULL, &cfg);
		tb_init(&msg[i]);
		cr_assert_eq(crdt_doc_gset_add(m[i].d, notes(&m[i]), note,
		    strlen(note), &msg[i]), 0);
	}
	recv_ok(&p, &msg[0]);
	for (int i = 0; i < 4; i++)
		recv_ok(&v, &msg[i]);
	for (int i = 4; i < 10; i++)
		refused(&v, &msg[i], CRDT_ETOOBIG);
	cr_assert(has_note(&v, "v3") && !has_note(&v, "v4"));
	save(&v, &snap);
	cr_assert_eq(crdt_doc_load(r.d, snap.data, snap.len, NULL), 0);
	same_saves(&r, &v, "the victim restarts from its own snapshot");

	crdt_buf hello, data, back;
	for (int round = 0; round < 2; round++) {
		node *x = round ? &v : &p, *y = round ? &p : &v;
		tb_init(&hello);
		tb_init(&data);
		tb_init(&back);
		cr_assert_eq(crdt_doc_sync_start(x->d, &hello), 0);
		cr_assert_eq(crdt_doc_sync_handle(y->d, hello.data, hello.len,
		    NULL, &data), 0);
		if (data.len > 0)
			cr_assert_eq(crdt_doc_sync_handle(x->d, data.data,
			    data.len, NULL, &back), 0);
		crdt_buf_fini(&hello);
		crdt_buf_fini(&data);
		crdt_buf_fini(&back);
	}
	same_saves(&p, &v, "the peer converges with the victim");

	for (int i = 0; i < 10; i++) {
		crdt_buf_fini(&msg[i]);
		node_free(&m[i]);
	}
	crdt_buf_fini(&snap);
	node_free(&v);
	node_free(&p);
	node_free(&r);
}

/* ---- contracts ---- */

/* Setting security either takes effect whole or changes nothing: under
 * an allocation failure at every step, the call fails with CRDT_ENOMEM,
 * the same call then succeeds (no CRDT_ESTATE, no leak) and the document
 * works as configured. */
Test(trust_ingest, set_security_is_all_or_nothing)
{
	static const uint8_t key[32] = { 9, 8, 7 };
	bool failed = true;
	for (long n = 0; failed && n < 200; n++) {
		crdt_config cfg;
		crdt_identity *adm;
		crdt_replica_id id;
		crdt_doc *d;
		uint8_t seed[32] = { 1 }, apk[32];
		test_alloc_reset();
		test_config(&cfg, NULL);
		cr_assert_eq(crdt_identity_from_seed(&cfg, seed, &adm), 0);
		crdt_identity_replica_id(adm, &id);
		crdt_identity_public_key(adm, apk);
		cr_assert_eq(crdt_doc_new(&cfg, &id, &d), 0);
		crdt_doc_security sec = { true, adm, true, key, 3, apk, false };
		test_alloc_fail_at(n);
		int rc = crdt_doc_set_security(d, &sec);
		failed = test_alloc_fired();
		test_alloc_disarm();
		if (failed) {
			cr_assert_eq(rc, CRDT_ENOMEM, "step %ld: %s", n,
			    crdt_err_name(rc));
			rc = crdt_doc_set_security(d, &sec);
		}
		cr_assert_eq(rc, 0, "retry after step %ld: %s", n,
		    crdt_err_name(rc));
		uint32_t on;
		cr_assert_eq(crdt_doc_register(d, "notes", CRDT_OBJ_GSET, &on),
		    0);
		crdt_buf m;
		tb_init(&m);
		crdt_replica_id other = test_id(5);
		cr_assert_eq(crdt_doc_allow(d, &other, true, &m), 0);
		cr_assert(crdt_doc_allowed(d, &other));
		crdt_buf_clear(&m);
		cr_assert_eq(crdt_doc_gset_add(d, on, "x", 1, &m), 0);
		crdt_buf_fini(&m);
		crdt_doc_free(d);
		crdt_identity_free(adm);
		ASSERT_NO_LEAKS();
	}
	cr_assert(!failed, "every allocation step was tried");
}

/* The allowlist index follows the state at every receive and load, so
 * asking who may write allocates nothing: with every allocation failing,
 * a replica that loaded a snapshot still answers right. */
Test(trust_ingest, asking_who_may_write_allocates_nothing)
{
	node a, w, v, t;
	crdt_buf g, snap;
	test_alloc_reset();
	node_new(&a, 1, NULL);
	uint8_t apk[32];
	memcpy(apk, a.pk, 32);
	node_free(&a);
	node_new(&a, 1, apk);
	node_new(&w, 2, apk);
	node_new(&v, 3, apk);
	node_new(&t, 4, apk);
	tb_init(&g);
	cr_assert_eq(crdt_doc_allow(a.d, &w.id, true, &g), 0);
	recv_ok(&v, &g);
	save(&v, &snap);
	cr_assert_eq(crdt_doc_load(t.d, snap.data, snap.len, NULL), 0);
	test_alloc_fail_from(0);
	cr_assert(crdt_doc_allowed(v.d, &w.id));
	cr_assert(crdt_doc_allowed(t.d, &w.id));
	cr_assert(!crdt_doc_allowed(t.d, &v.id));
	cr_assert(!test_alloc_fired(), "no allocation was even tried");
	test_alloc_disarm();
	crdt_buf_fini(&g);
	crdt_buf_fini(&snap);
	node_free(&a);
	node_free(&w);
	node_free(&v);
	node_free(&t);
	ASSERT_NO_LEAKS();
}

/* A third variant whose ops are refused (an unknown object) leaves the
 * evidence of the first two exactly as it was, and every block of it is
 * freed with the size it was allocated with (the counting allocator
 * checks each free). */
Test(trust_ingest, a_refused_variant_leaves_the_evidence_exact)
{
	node m1, m2, m3, v;
	crdt_buf a1, a2, a3, bad, before, after;
	test_alloc_reset();
	node_new(&m1, 9, NULL);
	node_new(&m2, 9, NULL);
	node_new(&m3, 9, NULL);
	node_new(&v, 10, NULL);
	tb_init(&a1);
	tb_init(&a2);
	tb_init(&a3);
	cr_assert_eq(crdt_doc_gset_add(m1.d, notes(&m1), "p", 1, &a1), 0);
	cr_assert_eq(crdt_doc_gset_add(m2.d, notes(&m2), "q", 1, &a2), 0);
	cr_assert_eq(crdt_doc_gset_add(m3.d, notes(&m3), "r", 1, &a3), 0);
	recv_ok(&v, &a1);
	recv_ok(&v, &a2);
	recv_ok(&v, &a3);
	save(&v, &before);
	hand_msg(&bad, &m1, &m1.id, 1, stamp_now(&v), NULL, 0, 99, "s", true);
	int rc = crdt_doc_receive(v.d, bad.data, bad.len, NULL);
	cr_assert_eq(rc, CRDT_ESCHEMA, "%s", crdt_err_name(rc));
	save(&v, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	crdt_buf *all[] = { &a1, &a2, &a3, &bad, &before, &after };
	for (size_t i = 0; i < 6; i++)
		crdt_buf_fini(all[i]);
	node_free(&m1);
	node_free(&m2);
	node_free(&m3);
	node_free(&v);
	ASSERT_NO_LEAKS();
}

/* A snapshot carrying more variants of a dot than this replica keeps
 * still loads: its state (the union) is taken, the variants past the
 * bound are not kept, and the load reports success as it took effect. */
Test(trust_ingest, a_snapshot_over_the_evidence_bound_still_loads)
{
	crdt_config wide, narrow;
	node m[6], src, dst;
	crdt_buf msg[6], snap;
	test_config(&wide, NULL);
	wide.max_variants = 8;
	test_config(&narrow, NULL);
	narrow.max_variants = 2;
	node_cfg(&src, 20, NULL, &wide);
	node_cfg(&dst, 21, NULL, &narrow);
	for (int i = 0; i < 6; i++) {
		char note[8];
		snprintf(note, sizeof note, "v%d", i);
		node_cfg(&m[i], 9, NULL, &wide);
		tb_init(&msg[i]);
		cr_assert_eq(crdt_doc_gset_add(m[i].d, notes(&m[i]), note,
		    strlen(note), &msg[i]), 0);
		recv_ok(&src, &msg[i]);
	}
	save(&src, &snap);
	int rc = crdt_doc_load(dst.d, snap.data, snap.len, NULL);
	cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
	cr_assert(has_note(&dst, "v0") && has_note(&dst, "v5"));
	for (int i = 0; i < 6; i++) {
		crdt_buf_fini(&msg[i]);
		node_free(&m[i]);
	}
	crdt_buf_fini(&snap);
	node_free(&src);
	node_free(&dst);
}

static void
note(node *n, const char *s, crdt_buf *out)
{
	tb_init(out);
	int rc = crdt_doc_gset_add(n->d, notes(n), s, strlen(s), out);
	cr_assert_eq(rc, 0, "commit: %s", crdt_err_name(rc));
}

static void
grant(node *admin, const node *w, bool allowed, crdt_buf *out)
{
	tb_init(out);
	cr_assert_eq(crdt_doc_allow(admin->d, &w->id, allowed, out), 0);
}

/*
 * E (allowed) equivocates on its first dot: one variant written before
 * the admin's third message, one after it. H (allowed) depends on the
 * first variant and has not seen the admin's third message, so it names
 * admin counter 2; a replica holding E's second variant computes that
 * H's causal past holds 3. H is allowed as of both: every replica takes
 * H's message (the rule "named < causal past: refused" did not).
 */
Test(trust_ingest, equivocation_cannot_get_an_allowed_writer_refused)
{
	node a, h, e0, e1, r1, r2, z;
	node tmp; /* the admin's key, from its seed */
	node_new(&tmp, 1, NULL);
	uint8_t apk[32];
	memcpy(apk, tmp.pk, 32);
	node_free(&tmp);
	node_new(&a, 1, apk);
	node_new(&h, 2, apk);
	node_new(&e0, 3, apk);
	node_new(&e1, 3, apk); /* E's second device: the same identity */
	node_new(&r1, 4, apk);
	node_new(&r2, 5, apk);
	node_new(&z, 6, apk);

	crdt_buf g1, g2, g3;
	grant(&a, &h, true, &g1);
	grant(&a, &e0, true, &g2);
	grant(&a, &z, true, &g3); /* admin counter 3: H never sees it */
	node *all[] = { &h, &e0, &e1, &r1, &r2 };
	for (size_t i = 0; i < 5; i++) {
		recv_ok(all[i], &g1);
		recv_ok(all[i], &g2);
	}
	recv_ok(&e1, &g3);
	recv_ok(&r2, &g3);

	crdt_buf v0, v1, hm;
	note(&e0, "E before admin 3", &v0); /* (E,1), names admin 2 */
	note(&e1, "E after admin 3", &v1);  /* (E,1)', names admin 3 */
	recv_ok(&h, &v0);
	note(&h, "H, allowed all along", &hm); /* names admin 2, deps E:1 */

	recv_ok(&r1, &v0);
	recv_ok(&r2, &v1);
	recv_ok(&r1, &hm);
	recv_ok(&r2, &hm);
	cr_assert(has_note(&r1, "H, allowed all along"));
	cr_assert(has_note(&r2, "H, allowed all along"));

	/* Once both hold both variants they are the same, and r1 took E's
	 * second variant although its admin dependency came only after it
	 * (it waited in the buffer instead of being dropped). */
	recv_ok(&r1, &v1);
	recv_ok(&r2, &v0);
	recv_ok(&r1, &g3);
	same_saves(&r1, &r2, "r1 and r2 after both variants");

	crdt_buf *bufs[] = { &g1, &g2, &g3, &v0, &v1, &hm };
	for (size_t i = 0; i < 6; i++)
		crdt_buf_fini(bufs[i]);
	node *nodes[] = { &a, &h, &e0, &e1, &r1, &r2, &z };
	for (size_t i = 0; i < 7; i++)
		node_free(nodes[i]);
}

static crdt_recv_status
recv_status(node *n, const crdt_buf *m)
{
	crdt_recv_status st = 0;
	int rc = crdt_doc_receive_status(n->d, m->data, m->len, NULL, &st);
	cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
	return st;
}

/* Receive tells what happened: applied, buffered, a duplicate, or a
 * second variant of a dot, without changing what receive does. */
Test(trust_ingest, receive_says_applied_buffered_duplicate_or_equivocation)
{
	node w, w2, r;
	node_new(&w, 1, NULL);
	node_new(&w2, 1, NULL); /* w's second device: the same identity */
	node_new(&r, 2, NULL);
	crdt_buf m1, m2, v1;
	note(&w, "one", &m1);
	note(&w, "two", &m2);
	note(&w2, "one, other device", &v1); /* also (w, 1) */

	cr_assert_eq(recv_status(&r, &m2), CRDT_RECV_BUFFERED);
	cr_assert_eq(recv_status(&r, &m2), CRDT_RECV_DUPLICATE,
	    "waiting already");
	cr_assert_eq(crdt_doc_buffered(r.d), 1);
	cr_assert_eq(recv_status(&r, &m1), CRDT_RECV_APPLIED,
	    "applied, and released (w, 2)");
	cr_assert_eq(crdt_doc_buffered(r.d), 0);
	cr_assert(has_note(&r, "two"));
	cr_assert_eq(recv_status(&r, &m1), CRDT_RECV_DUPLICATE);
	cr_assert_eq(recv_status(&r, &m2), CRDT_RECV_DUPLICATE);
	cr_assert_eq(recv_status(&r, &v1), CRDT_RECV_EQUIVOCATION);
	cr_assert(has_note(&r, "one, other device"), "the union");
	cr_assert_eq(recv_status(&r, &v1), CRDT_RECV_DUPLICATE);

	/* Errors leave the status alone. */
	crdt_recv_status st = CRDT_RECV_APPLIED;
	crdt_buf bad;
	tb_init(&bad);
	mp_byte(&bad, 0x91);
	cr_assert_neq(crdt_doc_receive_status(r.d, bad.data, bad.len, NULL,
			  &st),
	    0);
	cr_assert_eq(st, CRDT_RECV_APPLIED);
	cr_assert_eq(crdt_doc_receive_status(r.d, m1.data, m1.len, NULL,
			 NULL),
	    CRDT_EINVAL);
	crdt_buf *bufs[] = { &m1, &m2, &v1, &bad };
	for (size_t i = 0; i < 4; i++)
		crdt_buf_fini(bufs[i]);
	node_free(&w);
	node_free(&w2);
	node_free(&r);
}
