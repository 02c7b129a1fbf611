/*
 * Signed and encrypted modes: each attack is rejected with its own error
 * and leaves the document byte-identical; a content-blind relay carries
 * encrypted traffic between keyed replicas and never holds plaintext.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

typedef struct node {
	crdt_doc *d;
	crdt_identity *ident;
	test_clock *clk;
} node;

static const uint8_t key1[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const uint8_t key2[32] = { 42, 42, 42 };

/* A replica with identity from `seed`; `key` NULL + encrypted = relay. */
static void
node_new(node *n, uint8_t seed, bool sign, bool enc, const uint8_t *key)
{
	uint8_t s[32] = { 0 };
	crdt_replica_id id;
	crdt_config cfg;
	test_clock *clk = calloc(1, sizeof *clk);
	clk->ms = UINT64_C(1700000000000);
	s[0] = seed;
	n->clk = clk;
	test_config(&cfg, NULL);
	cfg.clock = test_clock_read;
	cfg.clock_ud = clk;
	cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
	crdt_identity_replica_id(n->ident, &id);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &n->d), 0);
	/* Unsigned nodes do not sign either, so AEAD checks stand alone. */
	crdt_doc_security sec = { sign, sign ? n->ident : NULL, enc, key, 1, NULL, false };
	cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	cr_assert_eq(crdt_doc_register(n->d, "notes", CRDT_OBJ_GSET, NULL), 0);
	cr_assert_eq(crdt_doc_register_chat(n->d, "chat", NULL, NULL), 0);
}

static void
node_free(node *n)
{
	crdt_doc_free(n->d);
	crdt_identity_free(n->ident);
	free(n->clk);
}

static void
save(const node *n, crdt_buf *out)
{
	tb_init(out);
	cr_assert_eq(crdt_doc_save(n->d, out), 0);
}

/* `bytes` must be refused with `want`, and change nothing. */
static void
refused(node *n, const uint8_t *bytes, size_t len, int want)
{
	crdt_buf before, after;
	save(n, &before);
	size_t nb = crdt_doc_buffered(n->d);
	int rc = crdt_doc_receive(n->d, bytes, len, NULL);
	cr_assert_eq(rc, want, "got %s, want %s", crdt_err_name(rc),
	    crdt_err_name(want));
	save(n, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	cr_assert_eq(crdt_doc_buffered(n->d), nb);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
}

static bool
contains(const uint8_t *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(hay + i, needle, k) == 0)
			return true;
	return false;
}

Test(secure, identities_are_deterministic_and_ids_self_certifying)
{
	uint8_t seed[32] = { 7 }, pk[32];
	crdt_identity *a, *b;
	crdt_replica_id ia, ib, ip;

	cr_assert_eq(crdt_identity_from_seed(NULL, seed, &a), 0);
	cr_assert_eq(crdt_identity_from_seed(NULL, seed, &b), 0);
	crdt_identity_replica_id(a, &ia);
	crdt_identity_replica_id(b, &ib);
	cr_assert_eq(crdt_replica_id_cmp(&ia, &ib), 0);
	crdt_identity_public_key(a, pk);
	cr_assert_eq(crdt_replica_id_from_public_key(pk, &ip), 0);
	cr_assert_eq(crdt_replica_id_cmp(&ia, &ip), 0);
	pk[0] ^= 1;
	cr_assert_eq(crdt_replica_id_from_public_key(pk, &ip), 0);
	cr_assert_neq(crdt_replica_id_cmp(&ia, &ip), 0);
	cr_assert_eq(crdt_identity_from_seed(NULL, NULL, &a), CRDT_EINVAL);
	crdt_identity_free(a);
	crdt_identity_free(b);
	crdt_identity_free(NULL);
	cr_assert_eq(crdt_identity_new(NULL, &a), 0);
	crdt_identity_free(a);
}

Test(secure, settings_are_checked)
{
	node a;
	crdt_buf m;
	crdt_identity *other;
	uint8_t s[32] = { 99 };

	node_new(&a, 1, true, false, NULL);
	cr_assert_eq(crdt_identity_from_seed(NULL, s, &other), 0);
	crdt_doc_security bad = { true, other, false, NULL, 0, NULL, false };
	cr_assert_eq(crdt_doc_set_security(a.d, &bad), CRDT_EINVAL,
	    "identity must match the replica ID");
	crdt_doc_security nokey = { false, NULL, false, key1, 0, NULL, false };
	cr_assert_eq(crdt_doc_set_security(a.d, &nokey), CRDT_EINVAL);
	tb_init(&m);
	cr_assert_eq(crdt_doc_gset_add(a.d, 0, "x", 1, &m), 0);
	crdt_doc_security ok = { true, a.ident, false, NULL, 0, NULL, false };
	cr_assert_eq(crdt_doc_set_security(a.d, &ok), CRDT_ESTATE);
	cr_assert_eq(crdt_doc_add_key(a.d, 2, key2, true), CRDT_ESTATE);
	crdt_buf_fini(&m);
	crdt_identity_free(other);
	node_free(&a);
}

Test(secure, signed_messages_verify_and_every_forgery_is_refused)
{
	node a, b, c;
	crdt_buf m, mc, x;

	node_new(&a, 1, true, false, NULL);
	node_new(&b, 2, true, false, NULL);
	node_new(&c, 3, true, false, NULL);
	tb_init(&m);
	tb_init(&mc);
	tb_init(&x);
	cr_assert_eq(crdt_doc_gset_add(a.d, 0, "signed", 6, &m), 0);
	cr_assert_eq(crdt_doc_gset_add(c.d, 0, "by c", 4, &mc), 0);

	/* Forged signature: flip a bit of the last byte (the signature). */
	tb_init(&x);
	cr_assert_eq(crdt_buf_append(&x, m.data, m.len), 0);
	x.data[x.len - 1] ^= 0x01;
	refused(&b, x.data, x.len, CRDT_EBADSIG);
	/* Tampered header (a byte of the HLC): the signature covers it. */
	crdt_buf_clear(&x);
	cr_assert_eq(crdt_buf_append(&x, m.data, m.len), 0);
	x.data[25] ^= 0x40;
	refused(&b, x.data, x.len, CRDT_EBADSIG);
	/* Wrong key for the ID: C's message claiming to be A's. */
	crdt_buf_clear(&x);
	cr_assert_eq(crdt_buf_append(&x, mc.data, mc.len), 0);
	memcpy(x.data + 5, m.data + 5, 16); /* sender field */
	refused(&b, x.data, x.len, CRDT_EBADKEY);
	/* Unsigned: strip the auth slot (replace [pk, sig] by nil). */
	size_t auth_len = 1 + 2 + 32 + 2 + 64;
	crdt_buf_clear(&x);
	cr_assert_eq(crdt_buf_append(&x, m.data, m.len - auth_len), 0);
	uint8_t nil = 0xc0;
	cr_assert_eq(crdt_buf_append(&x, &nil, 1), 0);
	refused(&b, x.data, x.len, CRDT_EBADSIG);

	/* The genuine message is accepted; replaying it changes nothing. */
	cr_assert_eq(crdt_doc_receive(b.d, m.data, m.len, NULL), 0);
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(b.d, 0, &g), 0);
	cr_assert(crdt_gset_contains(g, "signed", 6));
	refused(&b, m.data, m.len, 0);

	crdt_buf_fini(&m);
	crdt_buf_fini(&mc);
	crdt_buf_fini(&x);
	node_free(&a);
	node_free(&b);
	node_free(&c);
}

Test(secure, a_signed_document_without_identity_cannot_commit)
{
	crdt_doc *d;
	crdt_replica_id id = test_id(5);
	crdt_buf m;
	cr_assert_eq(crdt_doc_new(NULL, &id, &d), 0);
	crdt_doc_security s = { true, NULL, false, NULL, 0, NULL, false };
	cr_assert_eq(crdt_doc_set_security(d, &s), 0);
	cr_assert_eq(crdt_doc_register(d, "x", CRDT_OBJ_GSET, NULL), 0);
	tb_init(&m);
	cr_assert_eq(crdt_doc_gset_add(d, 0, "a", 1, &m), CRDT_ESTATE);
	cr_assert_eq(m.len, 0);
	crdt_buf_fini(&m);
	crdt_doc_free(d);
}

Test(secure, encrypted_payloads_reject_tampering_and_need_the_key)
{
	node a, b, nok;
	crdt_buf m, x, plain;

	node_new(&a, 1, false, true, key1);
	node_new(&b, 2, false, true, key1);
	node_new(&nok, 3, false, true, key2); /* another document's key */
	tb_init(&m);
	tb_init(&x);
	cr_assert_eq(crdt_doc_gset_add(a.d, 0, "top-secret", 10, &m), 0);
	cr_assert(!contains(m.data, m.len, "top-secret"),
	    "the payload travels sealed");

	/* Bit flips in the ciphertext and in the header (associated data). */
	size_t spots[] = { m.len - 2, m.len - 20, 10, 25 };
	for (size_t i = 0; i < 4; i++) {
		crdt_buf_clear(&x);
		cr_assert_eq(crdt_buf_append(&x, m.data, m.len), 0);
		x.data[spots[i]] ^= 0x04;
		crdt_buf before, after;
		save(&b, &before);
		int rc = crdt_doc_receive(b.d, x.data, x.len, NULL);
		cr_assert(rc == CRDT_EDECRYPT || rc == CRDT_EMALFORMED,
		    "flip at %zu: %s", spots[i], crdt_err_name(rc));
		save(&b, &after);
		cr_assert(bytes_eq(before.data, before.len, after.data,
		    after.len));
		crdt_buf_fini(&before);
		crdt_buf_fini(&after);
	}
	/* Truncations at every length. */
	for (size_t k = 0; k < m.len; k++) {
		int rc = crdt_doc_receive(b.d, m.data, k, NULL);
		cr_assert_lt(rc, 0, "truncated to %zu accepted", k);
	}
	/* Same epoch, another key: indistinguishable from a forgery. */
	refused(&nok, m.data, m.len, CRDT_EDECRYPT);
	/* Plaintext traffic is refused in an encrypted document. */
	node p;
	node_new(&p, 1, false, false, NULL);
	tb_init(&plain);
	cr_assert_eq(crdt_doc_gset_add(p.d, 0, "plain", 5, &plain), 0);
	refused(&b, plain.data, plain.len, CRDT_EDECRYPT);

	cr_assert_eq(crdt_doc_receive(b.d, m.data, m.len, NULL), 0);
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(b.d, 0, &g), 0);
	cr_assert(crdt_gset_contains(g, "top-secret", 10));

	crdt_buf_fini(&m);
	crdt_buf_fini(&x);
	crdt_buf_fini(&plain);
	node_free(&a);
	node_free(&b);
	node_free(&nok);
	node_free(&p);
}

Test(secure, key_rotation_keeps_old_messages_readable)
{
	node a, b, old;
	crdt_buf m1, m2;

	node_new(&a, 1, false, true, key1);
	node_new(&b, 2, false, true, key1);
	node_new(&old, 3, false, true, key1);
	tb_init(&m1);
	tb_init(&m2);
	cr_assert_eq(crdt_doc_gset_add(a.d, 0, "epoch1", 6, &m1), 0);
	cr_assert_eq(crdt_doc_add_key(a.d, 2, key2, true), 0);
	cr_assert_eq(crdt_doc_add_key(b.d, 2, key2, false), 0);
	cr_assert_eq(crdt_doc_gset_add(a.d, 0, "epoch2", 6, &m2), 0);
	cr_assert_eq(crdt_doc_receive(b.d, m1.data, m1.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(b.d, m2.data, m2.len, NULL), 0);
	crdt_buf sa, sb;
	save(&a, &sa);
	save(&b, &sb);
	cr_assert(bytes_eq(sa.data, sa.len, sb.data, sb.len));
	/* A replica without the new key reads the old epoch only. */
	cr_assert_eq(crdt_doc_receive(old.d, m1.data, m1.len, NULL), 0);
	refused(&old, m2.data, m2.len, CRDT_ENOKEY);
	crdt_buf_fini(&sa);
	crdt_buf_fini(&sb);
	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	node_free(&a);
	node_free(&b);
	node_free(&old);
}

Test(secure, sealed_snapshots_round_trip_and_reject_tampering)
{
	node a, b, c;
	crdt_buf m, sealed, sa, sb, before, after;

	node_new(&a, 1, true, true, key1);
	node_new(&b, 2, true, true, key1);
	node_new(&c, 3, true, true, key1);
	tb_init(&m);
	tb_init(&sealed);
	cr_assert_eq(crdt_doc_gset_add(a.d, 0, "at-rest", 7, &m), 0);
	cr_assert_eq(crdt_doc_save_sealed(a.d, &sealed), 0);
	cr_assert(!contains(sealed.data, sealed.len, "at-rest"));
	cr_assert_eq(crdt_doc_load(b.d, sealed.data, sealed.len, NULL), 0);
	save(&a, &sa);
	save(&b, &sb);
	cr_assert(bytes_eq(sa.data, sa.len, sb.data, sb.len));
	sealed.data[sealed.len / 2] ^= 0x10;
	save(&c, &before);
	cr_assert_eq(crdt_doc_load(c.d, sealed.data, sealed.len, NULL),
	    CRDT_EDECRYPT);
	save(&c, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	crdt_buf *bufs[] = { &m, &sealed, &sa, &sb, &before, &after };
	for (size_t i = 0; i < 6; i++)
		crdt_buf_fini(bufs[i]);
	node_free(&a);
	node_free(&b);
	node_free(&c);
}

/* One sync round between x and y, each frame lost with probability
 * drop/100. */
static void
sync_round(test_rng *r, crdt_doc *x, crdt_doc *y, unsigned drop)
{
	crdt_buf f[4];
	for (int i = 0; i < 4; i++)
		tb_init(&f[i]);
	cr_assert_eq(crdt_doc_sync_start(x, &f[0]), 0);
	crdt_doc *to[3] = { y, x, y };
	for (int k = 0; k < 3 && f[k].len > 0; k++) {
		if (test_rng_below(r, 100) < drop)
			break;
		cr_assert_eq(crdt_doc_sync_handle(to[k], f[k].data, f[k].len,
				 NULL, &f[k + 1]), 0);
	}
	for (int i = 0; i < 4; i++)
		crdt_buf_fini(&f[i]);
}

/* Keyed replicas that only reach each other through a relay without the
 * key: pushes are lossy, sync rounds are lossy, then everything heals.
 * Every run converges and the relay never sees a plaintext body. */
Test(secure, a_keyless_relay_carries_encrypted_traffic_on_a_lossy_network)
{
	uint64_t seed = test_seed(0x5ec);
	test_rng r;
	test_rng_init(&r, seed);
	for (int run = 0; run < 40; run++) {
		node k[3], relay;
		crdt_buf m;
		for (int i = 0; i < 3; i++)
			node_new(&k[i], (uint8_t)(1 + i), true, true, key1);
		node_new(&relay, 9, true, true, NULL);
		tb_init(&m);
		for (int step = 0; step < 60; step++) {
			int who = (int)test_rng_below(&r, 3);
			char body[32];
			snprintf(body, sizeof body, "secret-%d-%d", run, step);
			crdt_buf_clear(&m);
			crdt_chat_post p = { "user", 4, body, strlen(body), NULL,
				NULL, 0 };
			cr_assert_eq(crdt_doc_chat_post(k[who].d, 1, &p, NULL,
					 &m), 0);
			/* Push to the relay, maybe lost. */
			if (test_rng_below(&r, 100) < 70)
				cr_assert_eq(crdt_doc_receive(relay.d, m.data,
						 m.len, NULL), 0);
			/* The relay forwards, sometimes, via sync. */
			if (test_rng_below(&r, 100) < 30)
				sync_round(&r, k[test_rng_below(&r, 3)].d,
				    relay.d, 30);
		}
		for (int pass = 0; pass < 2; pass++)
			for (int i = 0; i < 3; i++)
				sync_round(&r, k[i].d, relay.d, 0);
		crdt_buf s0, si;
		save(&k[0], &s0);
		for (int i = 1; i < 3; i++) {
			save(&k[i], &si);
			cr_assert(bytes_eq(s0.data, s0.len, si.data, si.len),
			    "seed %llu run %d: keyed replicas differ",
			    (unsigned long long)seed, run);
			crdt_buf_fini(&si);
		}
		const crdt_chat *c;
		cr_assert_eq(crdt_doc_chat(k[0].d, 1, &c), 0);
		cr_assert_eq(crdt_chat_count(c), 60);
		/* The relay holds every message, none readable. */
		cr_assert_eq(crdt_doc_log_size(relay.d), 60);
		crdt_vclock *vk, *vr;
		cr_assert_eq(crdt_doc_vclock(k[0].d, &vk), 0);
		cr_assert_eq(crdt_doc_vclock(relay.d, &vr), 0);
		cr_assert_eq(crdt_vclock_compare(vk, vr), CRDT_ORDER_EQUAL);
		crdt_vclock_free(vk);
		crdt_vclock_free(vr);
		crdt_buf rs;
		tb_init(&rs);
		cr_assert_eq(crdt_doc_save(relay.d, &rs), CRDT_ESTATE);
		cr_assert_eq(crdt_doc_sync_start(relay.d, &rs), 0);
		crdt_buf_fini(&rs);
		for (int i = 0; i < 3; i++) {
			for (uint64_t ctr = 1;; ctr++) {
				crdt_replica_id id;
				crdt_identity_replica_id(k[i].ident, &id);
				crdt_dot dot = { id, ctr };
				const uint8_t *b;
				size_t bl;
				if (crdt_doc_log_get(relay.d, dot, &b, &bl) != 0)
					break;
				cr_assert(!contains(b, bl, "secret-"),
				    "plaintext at the relay");
			}
		}
		crdt_buf_fini(&s0);
		crdt_buf_fini(&m);
		for (int i = 0; i < 3; i++)
			node_free(&k[i]);
		node_free(&relay);
	}
}

/* ---- equivocation ---- */

static int equivocations;
static void
on_equiv(void *ud, crdt_dot dot, const uint8_t *a, size_t al,
    const uint8_t *b, size_t bl)
{
	(void)ud;
	(void)dot;
	cr_assert(a != NULL && b != NULL && !bytes_eq(a, al, b, bl),
	    "evidence carries both different halves");
	equivocations++;
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
sync_full(crdt_doc *x, crdt_doc *y)
{
	test_rng r;
	test_rng_init(&r, 1);
	sync_round(&r, x, y, 0);
	sync_round(&r, y, x, 0);
}

/* Two documents share one identity (a restored backup, two tabs, or a
 * cheating signer) and both write counter 1. Replicas that see the halves
 * in either order, or one half inside a snapshot, or learn of the other
 * half only through sync, all end byte-identical, and each detection is
 * reported with both messages. */
static void
equivocation_case(bool sign)
{
	node a1, a2, b, c, d, e;
	crdt_buf m1, m2, snap;
	crdt_doc_listener l = { .on_equivocation = on_equiv };

	node_new(&a1, 1, sign, false, NULL);
	node_new(&a2, 1, sign, false, NULL); /* same seed: same replica ID */
	node_new(&b, 2, sign, false, NULL);
	node_new(&c, 3, sign, false, NULL);
	node_new(&d, 4, sign, false, NULL);
	node_new(&e, 5, sign, false, NULL);
	crdt_doc_set_listener(b.d, &l);
	crdt_doc_set_listener(c.d, &l);
	tb_init(&m1);
	tb_init(&m2);
	tb_init(&snap);
	cr_assert_eq(crdt_doc_gset_add(a1.d, 0, "left", 4, &m1), 0);
	cr_assert_eq(crdt_doc_gset_add(a2.d, 0, "right", 5, &m2), 0);
	crdt_dot d1, d2;
	cr_assert_eq(crdt_msg_peek(m1.data, m1.len, &d1, NULL), 0);
	cr_assert_eq(crdt_msg_peek(m2.data, m2.len, &d2, NULL), 0);
	cr_assert_eq(crdt_dot_cmp(d1, d2), 0, "the same dot");

	equivocations = 0;
	cr_assert_eq(crdt_doc_receive(b.d, m1.data, m1.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(b.d, m2.data, m2.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(c.d, m2.data, m2.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(c.d, m1.data, m1.len, NULL), 0);
	cr_assert_eq(equivocations, 2);
	/* Repeats are duplicates, not new evidence. */
	cr_assert_eq(crdt_doc_receive(c.d, m1.data, m1.len, NULL), 0);
	cr_assert_eq(equivocations, 2);
	same_saves(&b, &c, "either order of arrival converges");
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(b.d, 0, &g), 0);
	cr_assert(crdt_gset_contains(g, "left", 4) &&
	    crdt_gset_contains(g, "right", 5), "the union of both halves");
	/* D saw only one half; one sync round with B brings the other. */
	cr_assert_eq(crdt_doc_receive(d.d, m1.data, m1.len, NULL), 0);
	sync_full(d.d, b.d);
	same_saves(&d, &b, "the other half travels in sync");
	/* E saw only the other half; the first arrives inside a snapshot. */
	cr_assert_eq(crdt_doc_receive(e.d, m2.data, m2.len, NULL), 0);
	cr_assert_eq(crdt_doc_save(b.d, &snap), 0);
	cr_assert_eq(crdt_doc_load(e.d, snap.data, snap.len, NULL), 0);
	same_saves(&e, &b, "one half inside a snapshot");

	crdt_buf_fini(&m1);
	crdt_buf_fini(&m2);
	crdt_buf_fini(&snap);
	node *all[] = { &a1, &a2, &b, &c, &d, &e };
	for (size_t i = 0; i < 6; i++)
		node_free(all[i]);
}

Test(secure, equivocation_by_a_signer_is_reported_and_resolved)
{
	equivocation_case(true);
}

Test(secure, replica_id_reuse_in_an_unsigned_document_is_detected)
{
	equivocation_case(false);
}

/* ---- write permissions ---- */

static node adm_node;

/* A replica of a permissioned document administered by `admin_pk`. */
static void
pnode_new(node *n, uint8_t seed, const uint8_t *admin_pk)
{
	uint8_t s[32] = { 0 };
	crdt_replica_id id;
	crdt_config cfg;
	n->clk = calloc(1, sizeof *n->clk);
	n->clk->ms = UINT64_C(1700000000000);
	s[0] = seed;
	test_config(&cfg, NULL);
	cfg.clock = test_clock_read;
	cfg.clock_ud = n->clk;
	cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
	crdt_identity_replica_id(n->ident, &id);
	cr_assert_eq(crdt_doc_new(&cfg, &id, &n->d), 0);
	crdt_doc_security sec = { true, n->ident, false, NULL, 0, admin_pk, false };
	cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
	cr_assert_eq(crdt_doc_register(n->d, "notes", CRDT_OBJ_GSET, NULL), 0);
}

static void
recv_ok(node *n, const crdt_buf *m)
{
	int rc = crdt_doc_receive(n->d, m->data, m->len, NULL);
	cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
}

Test(secure, only_allowed_writers_write_and_the_decision_is_causal)
{
	uint8_t apk[32];
	node w1, w2, r1, r2, forger;
	crdt_buf grant, rev, m1, m2, m3, x;
	crdt_replica_id w1id, w2id;

	/* The admin's key comes from its seed; everyone names it. */
	{
		uint8_t s[32] = { 50 };
		crdt_identity *tmp;
		cr_assert_eq(crdt_identity_from_seed(NULL, s, &tmp), 0);
		crdt_identity_public_key(tmp, apk);
		crdt_identity_free(tmp);
	}
	pnode_new(&adm_node, 50, apk);
	pnode_new(&w1, 51, apk);
	pnode_new(&w2, 52, apk);
	pnode_new(&r1, 53, apk);
	pnode_new(&r2, 54, apk);
	crdt_identity_replica_id(w1.ident, &w1id);
	crdt_identity_replica_id(w2.ident, &w2id);
	crdt_buf *bufs[] = { &grant, &rev, &m1, &m2, &m3, &x };
	for (size_t i = 0; i < 6; i++)
		tb_init(bufs[i]);

	cr_assert_eq(crdt_doc_gset_add(w1.d, 1, "early", 5, &x), CRDT_EPERM,
	    "not allowed yet");
	cr_assert_eq(crdt_doc_allow(w1.d, &w2id, true, &x), CRDT_EPERM,
	    "only the admin changes the allowlist");
	cr_assert_eq(crdt_doc_gset_add(w1.d, 0, "x", 1, &x), CRDT_ESCHEMA,
	    "the allowlist object is not writable directly");
	cr_assert_eq(crdt_doc_allow(adm_node.d, &w1id, true, &grant), 0);
	recv_ok(&w1, &grant);
	cr_assert(crdt_doc_allowed(w1.d, &w1id));
	cr_assert(!crdt_doc_allowed(w1.d, &w2id));
	cr_assert_eq(crdt_doc_gset_add(w1.d, 1, "m1", 2, &m1), 0);
	/* The admin revokes W1; W1 has not seen it and writes m2. */
	cr_assert_eq(crdt_doc_allow(adm_node.d, &w1id, false, &rev), 0);
	cr_assert_eq(crdt_doc_gset_add(w1.d, 1, "m2", 2, &m2), 0);
	/* R1: grant, m1, revoke, m2. R2: m2, m1, revoke, grant (buffers). */
	recv_ok(&r1, &grant);
	recv_ok(&r1, &m1);
	recv_ok(&r1, &rev);
	recv_ok(&r1, &m2);
	recv_ok(&r2, &m2);
	recv_ok(&r2, &m1);
	recv_ok(&r2, &rev);
	recv_ok(&r2, &grant);
	cr_assert_eq(crdt_doc_buffered(r2.d), 0);
	same_saves(&r1, &r2, "concurrent write of a revoked writer: same "
			     "decision in both orders");
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(r1.d, 1, &g), 0);
	cr_assert(crdt_gset_contains(g, "m2", 2),
	    "written before W1 could know of the revocation");
	/* Once W1 has seen the revocation it can no longer write. */
	recv_ok(&w1, &rev);
	cr_assert_eq(crdt_doc_gset_add(w1.d, 1, "m3", 2, &m3), CRDT_EPERM);

	/* W2 was never allowed: a message it manages to produce (from a
	 * document configured without the allowlist but with the same
	 * layout) is refused everywhere, and so is a forged allowlist op. */
	{
		uint8_t s[32] = { 52 };
		node rogue;
		rogue.clk = calloc(1, sizeof *rogue.clk);
		rogue.clk->ms = UINT64_C(1700000000000);
		crdt_config cfg;
		test_config(&cfg, NULL);
		cfg.clock = test_clock_read;
		cfg.clock_ud = rogue.clk;
		cr_assert_eq(crdt_identity_from_seed(&cfg, s, &rogue.ident), 0);
		cr_assert_eq(crdt_doc_new(&cfg, &w2id, &rogue.d), 0);
		crdt_doc_security sec = { true, rogue.ident, false, NULL, 0,
			NULL, false };
		cr_assert_eq(crdt_doc_set_security(rogue.d, &sec), 0);
		cr_assert_eq(crdt_doc_register(rogue.d, "__acl", CRDT_OBJ_GSET,
				 NULL), 0);
		cr_assert_eq(crdt_doc_register(rogue.d, "notes", CRDT_OBJ_GSET,
				 NULL), 0);
		crdt_buf_clear(&x);
		cr_assert_eq(crdt_doc_gset_add(rogue.d, 1, "evil", 4, &x), 0);
		refused(&r1, x.data, x.len, CRDT_EPERM);
		node_free(&rogue);
	}
	{
		/* A replica that believes it is the admin of its own copy. */
		uint8_t fpk[32];
		uint8_t s[32] = { 55 };
		crdt_identity *tmp;
		cr_assert_eq(crdt_identity_from_seed(NULL, s, &tmp), 0);
		crdt_identity_public_key(tmp, fpk);
		crdt_identity_free(tmp);
		pnode_new(&forger, 55, fpk);
		crdt_buf_clear(&x);
		cr_assert_eq(crdt_doc_allow(forger.d, &w2id, true, &x), 0);
		refused(&r1, x.data, x.len, CRDT_EPERM);
		node_free(&forger);
	}
	for (size_t i = 0; i < 6; i++)
		crdt_buf_fini(bufs[i]);
	node *all[] = { &adm_node, &w1, &w2, &r1, &r2 };
	for (size_t i = 0; i < 5; i++)
		node_free(all[i]);
}

/* ---- the relay on the simulated network ---- */

static int
relay_setup(void *ud, crdt_doc *d, size_t i)
{
	(void)ud;
	/* Replica 0 is the hub: encrypted mode without a key. */
	crdt_doc_security s = { false, NULL, true, i == 0 ? NULL : key1, 1,
		NULL, false };
	int rc = crdt_doc_set_security(d, &s);
	if (rc == 0)
		rc = crdt_doc_register_chat(d, "chat", NULL, NULL);
	return rc;
}

Test(secure, keyed_replicas_converge_through_a_keyless_relay_on_the_sim)
{
	uint64_t base = test_seed(0x4e1a);
	for (int run = 0; run < 60; run++) {
		crdt_sim_config sc;
		crdt_sim *s;
		crdt_buf m;
		crdt_sim_config_default(&sc);
		sc.replicas = 4;
		sc.hub = 1;
		sc.seed = test_seed_mix(base, (uint64_t)run);
		cr_assert_eq(crdt_sim_new(NULL, &sc, relay_setup, NULL, &s), 0);
		tb_init(&m);
		for (int e = 0; e < 50; e++) {
			size_t who = 1 + crdt_sim_rand(s) % 3;
			char body[32];
			snprintf(body, sizeof body, "confidential-%d", e);
			crdt_chat_post p = { "u", 1, body, strlen(body), NULL,
				NULL, 0 };
			crdt_buf_clear(&m);
			cr_assert_eq(crdt_doc_chat_post(crdt_sim_doc(s, who), 0,
					 &p, NULL, &m), 0);
			cr_assert_eq(crdt_sim_step(s), 0);
		}
		cr_assert_eq(crdt_sim_heal(s), 0);
		cr_assert_eq(crdt_sim_check(s), 0, "run %d diverged", run);
		const crdt_chat *c;
		cr_assert_eq(crdt_doc_chat(crdt_sim_doc(s, 1), 0, &c), 0);
		cr_assert_eq(crdt_chat_count(c), 50);
		cr_assert_eq(crdt_doc_chat(crdt_sim_doc(s, 0), 0, &c), 0);
		cr_assert_eq(crdt_chat_count(c), 0, "the relay reads nothing");
		cr_assert_eq(crdt_doc_log_size(crdt_sim_doc(s, 0)), 50);
		crdt_buf_fini(&m);
		crdt_sim_free(s);
	}
}

/* Encrypted, signed and permissioned at once: the relay cannot read the
 * allowlist, forwards anyway; the keyed replica enforces it. */
Test(secure, a_relay_forwards_allowlist_traffic_it_cannot_read)
{
	uint8_t apk[32];
	node adm, w, relay, k, rogue_n;
	crdt_buf grant, m, bad;
	crdt_replica_id wid;
	struct {
		node *n;
		uint8_t seed;
		const uint8_t *key;
	} spec[4] = { { &adm, 60, key1 }, { &w, 61, key1 },
		{ &relay, 62, NULL }, { &k, 63, key1 } };
	{
		uint8_t s[32] = { 60 };
		crdt_identity *tmp;
		cr_assert_eq(crdt_identity_from_seed(NULL, s, &tmp), 0);
		crdt_identity_public_key(tmp, apk);
		crdt_identity_free(tmp);
	}
	for (int i = 0; i < 4; i++) {
		node *n = spec[i].n;
		uint8_t s[32] = { spec[i].seed };
		crdt_replica_id id;
		crdt_config cfg;
		n->clk = calloc(1, sizeof *n->clk);
		n->clk->ms = UINT64_C(1700000000000);
		test_config(&cfg, NULL);
		cfg.clock = test_clock_read;
		cfg.clock_ud = n->clk;
		cr_assert_eq(crdt_identity_from_seed(&cfg, s, &n->ident), 0);
		crdt_identity_replica_id(n->ident, &id);
		cr_assert_eq(crdt_doc_new(&cfg, &id, &n->d), 0);
		crdt_doc_security sec = { true, n->ident, true, spec[i].key, 1,
			apk, false };
		cr_assert_eq(crdt_doc_set_security(n->d, &sec), 0);
		cr_assert_eq(crdt_doc_register(n->d, "notes", CRDT_OBJ_GSET,
				 NULL), 0);
	}
	crdt_identity_replica_id(w.ident, &wid);
	tb_init(&grant);
	tb_init(&m);
	tb_init(&bad);
	cr_assert_eq(crdt_doc_allow(adm.d, &wid, true, &grant), 0);
	cr_assert_eq(crdt_doc_receive(w.d, grant.data, grant.len, NULL), 0);
	cr_assert_eq(crdt_doc_gset_add(w.d, 1, "ok", 2, &m), 0);
	/* Through the relay only. */
	cr_assert_eq(crdt_doc_receive(relay.d, m.data, m.len, NULL), 0);
	cr_assert_eq(crdt_doc_receive(relay.d, grant.data, grant.len, NULL),
	    0);
	test_rng r;
	test_rng_init(&r, 3);
	sync_round(&r, k.d, relay.d, 0);
	const crdt_gset *g;
	cr_assert_eq(crdt_doc_gset(k.d, 1, &g), 0);
	cr_assert(crdt_gset_contains(g, "ok", 2));
	/* A writer never allowed: the relay forwards, the keyed replica
	 * refuses. */
	{
		uint8_t s[32] = { 64 };
		crdt_replica_id id;
		crdt_config cfg;
		rogue_n.clk = calloc(1, sizeof *rogue_n.clk);
		rogue_n.clk->ms = UINT64_C(1700000000000);
		test_config(&cfg, NULL);
		cfg.clock = test_clock_read;
		cfg.clock_ud = rogue_n.clk;
		cr_assert_eq(crdt_identity_from_seed(&cfg, s, &rogue_n.ident), 0);
		crdt_identity_replica_id(rogue_n.ident, &id);
		cr_assert_eq(crdt_doc_new(&cfg, &id, &rogue_n.d), 0);
		crdt_doc_security sec = { true, rogue_n.ident, true, key1, 1,
			NULL, false };
		cr_assert_eq(crdt_doc_set_security(rogue_n.d, &sec), 0);
		cr_assert_eq(crdt_doc_register(rogue_n.d, "__acl",
				 CRDT_OBJ_GSET, NULL), 0);
		cr_assert_eq(crdt_doc_register(rogue_n.d, "notes",
				 CRDT_OBJ_GSET, NULL), 0);
		cr_assert_eq(crdt_doc_gset_add(rogue_n.d, 1, "evil", 4, &bad),
		    0);
	}
	cr_assert_eq(crdt_doc_receive(relay.d, bad.data, bad.len, NULL), 0,
	    "the relay cannot judge it");
	refused(&k, bad.data, bad.len, CRDT_EPERM);
	crdt_buf_fini(&grant);
	crdt_buf_fini(&m);
	crdt_buf_fini(&bad);
	node *all[] = { &adm, &w, &relay, &k, &rogue_n };
	for (size_t i = 0; i < 5; i++)
		node_free(all[i]);
}

/*
 * A message that waits in the causal buffer is applied when released: a
 * plaintext one (signed or not) from where its ops were when it arrived,
 * a sealed one opened again. Messages delivered newest first all wait,
 * then apply in one release; the result is byte-identical to in-order
 * delivery in every mode, duplicates of waiting messages change nothing,
 * and nothing is left in the buffer.
 */
Test(secure, buffered_messages_apply_alike_in_every_mode)
{
	for (int mode = 0; mode < 3; mode++) {
		bool sign = mode == 1, enc = mode == 2;
		node a, b, c;
		node_new(&a, 1, sign, enc, enc ? key1 : NULL);
		node_new(&b, 2, sign, enc, enc ? key1 : NULL);
		node_new(&c, 3, sign, enc, enc ? key1 : NULL);
		enum { N = 24 };
		crdt_buf msg[N];
		for (int i = 0; i < N; i++) {
			char body[32];
			snprintf(body, sizeof body, "message %d", i);
			tb_init(&msg[i]);
			a.clk->ms += 1000;
			if (i % 3 == 2) { /* two ops in one message */
				cr_assert_eq(crdt_doc_begin(a.d), 0);
				cr_assert_eq(crdt_doc_gset_add(a.d, 0, body,
				    strlen(body), NULL), 0);
				crdt_chat_post p = { "u", 1, body, strlen(body),
					NULL, NULL, 0 };
				cr_assert_eq(crdt_doc_chat_post(a.d, 1, &p, NULL,
				    NULL), 0);
				cr_assert_eq(crdt_doc_commit(a.d, &msg[i]), 0);
			} else {
				crdt_chat_post p = { "u", 1, body, strlen(body),
					NULL, NULL, 0 };
				cr_assert_eq(crdt_doc_chat_post(a.d, 1, &p, NULL,
				    &msg[i]), 0);
			}
		}
		for (int i = 0; i < N; i++)
			cr_assert_eq(crdt_doc_receive(b.d, msg[i].data,
			    msg[i].len, NULL), 0);
		for (int i = N - 1; i >= 1; i--) {
			cr_assert_eq(crdt_doc_receive(c.d, msg[i].data,
			    msg[i].len, NULL), 0);
			cr_assert_eq(crdt_doc_receive(c.d, msg[i].data,
			    msg[i].len, NULL), 0, "a duplicate of a waiting one");
			cr_assert_eq(crdt_doc_buffered(c.d), (size_t)(N - i),
			    "mode %d", mode);
		}
		cr_assert_eq(crdt_doc_receive(c.d, msg[0].data, msg[0].len,
		    NULL), 0);
		cr_assert_eq(crdt_doc_buffered(c.d), 0);
		crdt_buf sa, sb, sc;
		save(&a, &sa);
		save(&b, &sb);
		save(&c, &sc);
		cr_assert(bytes_eq(sa.data, sa.len, sb.data, sb.len));
		cr_assert(bytes_eq(sb.data, sb.len, sc.data, sc.len),
		    "mode %d: released messages differ", mode);
		const crdt_chat *ch;
		cr_assert_eq(crdt_doc_chat(c.d, 1, &ch), 0);
		cr_assert_eq(crdt_chat_count(ch), N);
		crdt_buf_fini(&sa);
		crdt_buf_fini(&sb);
		crdt_buf_fini(&sc);
		for (int i = 0; i < N; i++)
			crdt_buf_fini(&msg[i]);
		node_free(&a);
		node_free(&b);
		node_free(&c);
	}
}
