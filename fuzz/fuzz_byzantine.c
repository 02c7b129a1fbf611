/* Convergence with a Byzantine peer: three honest replicas of a signed
 * document with an allowlist (replica 0 is the admin; 1 and 2 are allowed
 * from the start) and one attacker, B, who holds a real identity and two
 * forks of its own replica (so it can equivocate), sometimes allowed and
 * sometimes revoked, and who sends honest and forged traffic: its own
 * signed messages, variants of them, replays, mutated messages, mutated
 * sync frames, messages signed for another document. The input may also
 * make the document encrypted.
 *
 * Oracle: every honest local op succeeds whatever B did; nothing crashes
 * or leaks; after a loss-free heal among the honest replicas alone (every
 * sync round run to its end, rounds repeated until one takes nothing in)
 * they hold byte-identical snapshots, except for the causal buffer, where
 * a message of B that waits for a dependency that never comes may sit on
 * the replicas B sent it to (it is compared when every buffer is empty).
 *
 * Honest replicas that applied different variants of one of B's dots
 * have equal clocks; the variant digests of sync frames (version 4,
 * docs/document.md, "Variant digests") must bring those variants
 * together, and the oracle judges sync alone (docs/testing.md,
 * "Byzantine target").
 * Environment: FUZZ_BYZ_HAND_OVER=1 (debugging only) first heals, then
 * hands replica 0 the variants of B's dots that the others' logs hold and
 * its own does not, and heals again (how the harness closed the gap
 * before sync could); FUZZ_BYZ_SAFETY_ONLY=1 judges only
 * crashes, leaks, sanitizer reports and honest writes; FUZZ_BYZ_ONE_FORK=1
 * keeps everything B's second fork writes from the honest replicas (B
 * never equivocates: a divergence that stays is not the open one);
 * FUZZ_DEBUG=1 says what was handed over and which snapshot field
 * differs. */
#include "fuzz.h"

#include <crdt/secure.h>

#define POOL 48
#define HONEST 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t doc_key[CRDT_DOC_KEY_BYTES] = { 0x6b, 0x65, 0x79 };

/* The attacker's traffic may be refused with any code: only what
 * follows is judged. */
static void
ignore(int rc)
{
	(void)rc;
}

static crdt_identity *
ident(uint8_t seed)
{
	uint8_t s[CRDT_SEED_BYTES] = { 0 };
	crdt_identity *id;
	s[0] = seed;
	s[1] = 0xb2;
	if (crdt_identity_from_seed(NULL, s, &id) != 0)
		abort();
	return id;
}

/* A replica of document `docno` signed by `id` (borrowed). */
static crdt_doc *
replica(crdt_identity *id, const uint8_t admin_pk[CRDT_PUBLIC_KEY_BYTES],
    uint8_t docno, bool enc)
{
	crdt_config cfg;
	crdt_doc *d;
	crdt_replica_id rid;
	crdt_config_default(&cfg);
	cfg.clock = fuzz_clock;
	cfg.limits.max_bytes = 1 << 20;
	cfg.limits.max_elems = 1 << 16;
	cfg.max_buffered_msgs = 256;
	cfg.max_buffered_bytes = 1 << 20;
	/* Every message stays in the log: a lagging honest replica catches
	 * up by messages (signed mode sends no snapshot). */
	cfg.log_max_msgs = 4096;
	memset(cfg.doc_id.bytes, docno, sizeof cfg.doc_id.bytes);
	crdt_identity_replica_id(id, &rid);
	crdt_doc_security sec = { .signed_mode = true, .identity = id,
		.encrypted = enc, .key = enc ? doc_key : NULL, .epoch = 1,
		.admin_key = admin_pk };
	if (crdt_doc_new(&cfg, &rid, &d) != 0 ||
	    crdt_doc_set_security(d, &sec) != 0 ||
	    crdt_doc_register(d, "set", CRDT_OBJ_GSET, NULL) != 0 ||
	    crdt_doc_register(d, "reg", CRDT_OBJ_LWW, NULL) != 0 ||
	    crdt_doc_register(d, "map", CRDT_OBJ_MAP, NULL) != 0 ||
	    crdt_doc_register_chat(d, "chat", NULL, NULL) != 0)
		abort();
	return d;
}

/* Object numbers: the allowlist is registered first. */
static int
local_op(crdt_doc *d, unsigned k, const uint8_t *p, size_t n, crdt_buf *out)
{
	uint32_t set, reg, map, chat;
	if (crdt_doc_lookup(d, "set", &set) != 0 ||
	    crdt_doc_lookup(d, "reg", &reg) != 0 ||
	    crdt_doc_lookup(d, "map", &map) != 0 ||
	    crdt_doc_lookup(d, "chat", &chat) != 0)
		abort();
	crdt_chat_post post = { "u", 1, p, n, NULL, NULL, 0 };
	fuzz_ms += 7;
	switch (k % 5) {
	case 0:
		return crdt_doc_gset_add(d, set, p, n, out);
	case 1:
		return crdt_doc_lww_set(d, reg, p, n, out);
	case 2:
		return crdt_doc_map_set(d, map, p, n < 2 ? n : 2, p, n, out);
	case 3:
		return crdt_doc_chat_post(d, chat, &post, NULL, out);
	default:
		return crdt_doc_chat_react(d, chat,
		    (crdt_dot){ *crdt_doc_self(d), 1 }, "u", 1, p,
		    n < 2 ? n : 2, n % 2 == 0, out);
	}
}

/* One sync round x -> y -> x -> y; frame k is corrupted at byte `at`
 * (xor `with`) when bit k of `bad` is set. Honest frames only when
 * bad == 0. Errors are the receiver's business: it must just not break. */
static void
round_trip(crdt_doc *x, crdt_doc *y, unsigned bad, size_t at, uint8_t with)
{
	crdt_buf f[4];
	crdt_doc *to[3] = { y, x, y };
	for (int i = 0; i < 4; i++)
		crdt_buf_init(&f[i], NULL);
	if (crdt_doc_sync_start(x, &f[0]) != 0)
		abort();
	for (unsigned k = 0; k < 3 && f[k].len > 0; k++) {
		if ((bad & (1u << k)) && with != 0)
			f[k].data[at % f[k].len] ^= with;
		int rc = crdt_doc_sync_handle(to[k], f[k].data, f[k].len,
		    NULL, &f[k + 1]);
		if (rc != 0 && bad == 0 && getenv("FUZZ_DEBUG") != NULL)
			fprintf(stderr, "honest sync frame %u: %s\n", k,
			    crdt_err_name(rc));
	}
	for (int i = 0; i < 4; i++)
		crdt_buf_fini(&f[i]);
}

/* Bounds of the heal: frames of one sync round, and rounds (each with
 * both non-hub replicas). A round ends by itself (every frame past the
 * third is paid for by progress, sync.c) and a pass that takes nothing in
 * ends the heal; the bounds only keep a regression from hanging. */
#define HEAL_FRAMES 256
#define HEAL_PASSES 32

/* One loss-free sync round x -> y -> x -> ... until a side has nothing
 * to answer (round_trip() stops after three frames: a fourth, which a
 * replica sends when the third released what its buffer held, was lost,
 * and with it what it carried). Returns how many messages it took in
 * (applied, buffered or kept as equivocation evidence) on either side. */
static size_t
heal_round(crdt_doc *x, crdt_doc *y)
{
	crdt_buf f, g;
	crdt_doc *to = y;
	size_t took = 0;
	int frames = 0;
	crdt_buf_init(&f, NULL);
	crdt_buf_init(&g, NULL);
	if (crdt_doc_sync_start(x, &f) != 0)
		abort();
	while (f.len > 0) {
		crdt_sync_report rep;
		FUZZ_ASSERT(++frames <= HEAL_FRAMES);
		crdt_buf_clear(&g);
		int rc = crdt_doc_sync_handle_status(to, f.data, f.len, NULL,
		    &g, &rep);
		if (rc != 0 && getenv("FUZZ_DEBUG") != NULL)
			fprintf(stderr, "heal frame %d: %s\n", frames,
			    crdt_err_name(rc));
		FUZZ_ASSERT(rc == 0); /* an honest frame, nothing lost */
		took += rep.applied + rep.buffered + rep.equivocation;
		crdt_buf t = f;
		f = g;
		g = t;
		to = to == y ? x : y;
	}
	crdt_buf_fini(&f);
	crdt_buf_fini(&g);
	return took;
}

/* Heal among the honest replicas only, through replica 0, until a pass
 * takes nothing in. */
static void
heal(crdt_doc **h)
{
	int pass;
	for (pass = 0; pass < HEAL_PASSES; pass++) {
		size_t took = 0;
		for (int i = 1; i < HONEST; i++)
			took += heal_round(h[0], h[i]);
		if (took == 0)
			break;
	}
	FUZZ_ASSERT(pass < HEAL_PASSES);
}

/* Hand replica 0 (when `give`, FUZZ_BYZ_HAND_OVER) the variants of B's
 * dots that another honest replica's log holds and its own does not
 * (debugging: how the harness closed the gap before sync's variant
 * digests did). Only the hub gets them,
 * so the heal that follows must carry them on as evidence (DATA frames).
 * Returns how many such variants there are. */
static size_t
hand_over_variants(crdt_doc **h, const crdt_replica_id *bid, bool give)
{
	size_t given = 0;
	for (int i = 1; i < HONEST; i++) {
		crdt_vclock *vc;
		if (crdt_doc_vclock(h[i], &vc) != 0)
			abort();
		uint64_t top = crdt_vclock_get(vc, bid);
		crdt_vclock_free(vc);
		for (uint64_t c = 1; c <= top; c++) {
			crdt_dot dot = { *bid, c };
			const uint8_t *m, *o;
			size_t n, on;
			if (crdt_doc_log_get(h[i], dot, &m, &n) != 0 ||
			    (crdt_doc_log_get(h[0], dot, &o, &on) == 0 &&
				on == n && memcmp(o, m, n) == 0))
				continue;
			int rc = give ? crdt_doc_receive(h[0], m, n, NULL) : 0;
			given++;
			if (getenv("FUZZ_DEBUG") != NULL)
				fprintf(stderr, "B's dot %llu: h%d's variant "
				    "is not h0's: %s\n",
				    (unsigned long long)c, i,
				    give ? crdt_err_name(rc) : "kept apart");
		}
	}
	return given;
}

/* Skip one value of the library's msgpack subset; NULL on anything else. */
static const uint8_t *
skip(const uint8_t *p, const uint8_t *end, int depth)
{
	if (p >= end || depth > 32)
		return NULL;
	uint8_t t = *p++;
	size_t n = 0, w = 0;
	if (t <= 0x7f || t == 0xc0)
		return p;
	if (t >= 0xcc && t <= 0xcf)
		return (size_t)(end - p) >= (size_t)1 << (t - 0xcc) ?
		    p + ((size_t)1 << (t - 0xcc)) :
		    NULL;
	if (t >= 0xc4 && t <= 0xc6)
		w = (size_t)1 << (t - 0xc4);
	else if (t == 0xdc || t == 0xdd)
		w = t == 0xdc ? 2 : 4;
	else if ((t & 0xf0) == 0x90)
		n = t & 0x0f;
	else
		return NULL;
	if ((size_t)(end - p) < w)
		return NULL;
	for (size_t i = 0; i < w; i++)
		n = n << 8 | *p++;
	if (t >= 0xc4 && t <= 0xc6)
		return (size_t)(end - p) >= n ? p + n : NULL;
	for (size_t i = 0; i < n && p != NULL; i++)
		p = skip(p, end, depth + 1);
	return p;
}

/* Whether two snapshots are equal in every field but `buffered` (the
 * 8th of [2, 6, doc_id, clock, stamps, hlc_max, objects, buffered,
 * admin_seen?, evidence]). */
static int
same_but_buffer(const crdt_buf *a, const crdt_buf *b)
{
	const uint8_t *pa = a->data, *ea = pa + a->len;
	const uint8_t *pb = b->data, *eb = pb + b->len;
	if (a->len < 1 || b->len < 1 || pa[0] != pb[0] || pa[0] < 0x99 ||
	    pa[0] > 0x9a)
		return 0;
	int fields = pa[0] & 0x0f;
	pa++;
	pb++;
	for (int f = 0; f < fields; f++) {
		const uint8_t *na = skip(pa, ea, 0), *nb = skip(pb, eb, 0);
		FUZZ_ASSERT(na != NULL && nb != NULL);
		if (f != 7 && (na - pa != nb - pb ||
				  memcmp(pa, pb, (size_t)(na - pa)) != 0)) {
			if (getenv("FUZZ_DEBUG") != NULL)
				fprintf(stderr, "snapshot field %d of %d "
				    "differs\n", f, fields);
			return 0;
		}
		pa = na;
		pb = nb;
	}
	return pa == ea && pb == eb;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_in in = { data, size };
	bool enc = fuzz_u8(&in) & 1;
	crdt_identity *hid[HONEST], *bid = ident(9), *xid = ident(10);
	crdt_doc *h[HONEST];
	uint8_t admin_pk[CRDT_PUBLIC_KEY_BYTES];
	crdt_buf pool[POOL], bpool[POOL];
	size_t np = 0, nbp = 0;
	/* FUZZ_BYZ_ONE_FORK (triage): B's second fork writes but nothing it
	 * writes or syncs reaches an honest replica, so B never equivocates;
	 * bfork[k]: which fork wrote bpool[k]. */
	bool one_fork = getenv("FUZZ_BYZ_ONE_FORK") != NULL;
	uint8_t bfork[POOL] = { 0 };

	fuzz_ms = UINT64_C(1700000000000);
	for (int i = 0; i < HONEST; i++)
		hid[i] = ident((uint8_t)(1 + i));
	crdt_identity_public_key(hid[0], admin_pk);
	for (int i = 0; i < HONEST; i++)
		h[i] = replica(hid[i], admin_pk, 1, enc);
	/* B's two forks of one replica, and an honest identity's replica of
	 * another document (same admin, schema and key). */
	crdt_doc *b[2] = { replica(bid, admin_pk, 1, enc),
		replica(bid, admin_pk, 1, enc) };
	crdt_doc *other = replica(xid, admin_pk, 2, enc);
	crdt_doc *other_admin = replica(hid[0], admin_pk, 2, enc);
	for (size_t i = 0; i < POOL; i++) {
		crdt_buf_init(&pool[i], NULL);
		crdt_buf_init(&bpool[i], NULL);
	}
	/* The admin allows 1 and 2; everyone (B's forks too) hears it. */
	for (int i = 1; i < HONEST; i++) {
		crdt_buf g;
		crdt_buf_init(&g, NULL);
		crdt_replica_id w;
		crdt_identity_replica_id(hid[i], &w);
		if (crdt_doc_allow(h[0], &w, true, &g) != 0)
			abort();
		for (int j = 1; j < HONEST; j++)
			FUZZ_ASSERT(crdt_doc_receive(h[j], g.data, g.len,
					NULL) == 0);
		ignore(crdt_doc_receive(b[0], g.data, g.len, NULL));
		ignore(crdt_doc_receive(b[1], g.data, g.len, NULL));
		crdt_buf_fini(&g);
	}

	while (in.n >= 4) {
		uint8_t op = fuzz_u8(&in), a = fuzz_u8(&in), c = fuzz_u8(&in);
		uint8_t v = fuzz_u8(&in);
		crdt_doc *x = h[a % HONEST], *y = h[c % HONEST];
		const uint8_t *p;
		size_t n;
		switch (op % 10) {
		case 0:
		case 1:
		case 2: { /* an honest write: must always work */
			n = fuzz_take(&in, v % 5, &p);
			crdt_buf *m = &pool[np++ % POOL];
			crdt_buf_clear(m);
			FUZZ_ASSERT(local_op(x, op + c, p, n, m) == 0);
			ignore(crdt_doc_receive(b[v & 1], m->data, m->len, NULL));
			break;
		}
		case 3: /* deliver an honest message to an honest replica */
			if (np > 0) {
				crdt_buf *m = &pool[a % (np < POOL ? np : POOL)];
				int rc = crdt_doc_receive(y, m->data, m->len,
				    NULL);
				if (rc != 0 && getenv("FUZZ_DEBUG") != NULL)
					fprintf(stderr, "honest message: %s\n",
					    crdt_err_name(rc));
				FUZZ_ASSERT(rc == 0 || rc == CRDT_EBUFFULL);
			}
			break;
		case 4: { /* the admin allows or revokes B */
			crdt_buf *m = &pool[np++ % POOL];
			crdt_buf_clear(m);
			crdt_replica_id w;
			crdt_identity_replica_id(bid, &w);
			FUZZ_ASSERT(crdt_doc_allow(h[0], &w, v & 1, m) == 0);
			ignore(crdt_doc_receive(b[0], m->data, m->len, NULL));
			ignore(crdt_doc_receive(b[1], m->data, m->len, NULL));
			break;
		}
		case 5: { /* B writes on one of its forks and sends it */
			n = fuzz_take(&in, v % 5, &p);
			bfork[nbp % POOL] = a & 1;
			crdt_buf *m = &bpool[nbp++ % POOL];
			crdt_buf_clear(m);
			if (local_op(b[a & 1], op + v, p, n, m) == 0 &&
			    !(one_fork && (a & 1)))
				ignore(crdt_doc_receive(y, m->data, m->len,
				    NULL));
			break;
		}
		case 6: /* B replays or mutates one of its messages */
			if (nbp > 0) {
				size_t k = a % (nbp < POOL ? nbp : POOL);
				crdt_buf *m = &bpool[k];
				if (m->len == 0 || (one_fork && bfork[k]))
					break;
				size_t at = (size_t)c * 7 % m->len;
				m->data[at] ^= v;
				ignore(crdt_doc_receive(y, m->data, m->len,
				    NULL));
				m->data[at] ^= v;
			}
			break;
		case 7: /* a forged copy of an honest message */
			if (np > 0 && v != 0) {
				crdt_buf *m = &pool[a % (np < POOL ? np : POOL)];
				if (m->len == 0)
					break;
				size_t at = (size_t)c * 5 % m->len;
				m->data[at] ^= v;
				int rc = crdt_doc_receive(y, m->data, m->len,
				    NULL);
				m->data[at] ^= v;
				FUZZ_ASSERT(rc != 0 || crdt_doc_buffered(y) <
						       (size_t)-1);
			}
			break;
		case 8: { /* another document's message: a grant and a write */
			crdt_buf m;
			crdt_buf_init(&m, NULL);
			crdt_replica_id w;
			crdt_identity_replica_id(xid, &w);
			n = fuzz_take(&in, v % 5, &p);
			if ((v & 1 ? crdt_doc_allow(other_admin, &w, true, &m) :
				     local_op(other, op, p, n, &m)) == 0)
				ignore(crdt_doc_receive(y, m.data, m.len, NULL));
			crdt_buf_fini(&m);
			break;
		}
		default: /* sync, honest or with B, frames maybe corrupted */
			if ((v & 1) && !(one_fork && (a & 1)))
				round_trip(b[a & 1], y, c, v, (uint8_t)(op ^ c));
			else if (!(v & 1) && x != y)
				round_trip(x, y, c >> 5, v, (uint8_t)(op ^ a));
		}
	}
	/* Heal among the honest replicas only, through replica 0; with
	 * FUZZ_BYZ_HAND_OVER, then hand over by hand the variants the heal
	 * left apart and heal again (FUZZ_DEBUG lists them either way). */
	heal(h);
	crdt_replica_id bidr;
	crdt_identity_replica_id(bid, &bidr);
	bool give = getenv("FUZZ_BYZ_HAND_OVER") != NULL;
	if (hand_over_variants(h, &bidr, give) > 0 && give)
		heal(h);
	if (getenv("FUZZ_DEBUG") != NULL)
		for (int i = 0; i < HONEST; i++) {
			crdt_vclock *vc;
			if (crdt_doc_vclock(h[i], &vc) != 0)
				abort();
			fprintf(stderr, "h%d buffered %zu:", i,
			    crdt_doc_buffered(h[i]));
			for (size_t e = 0; e < crdt_vclock_size(vc); e++) {
				crdt_replica_id rid;
				uint64_t c;
				if (crdt_vclock_entry(vc, e, &rid, &c) == 0)
					fprintf(stderr, " %02x:%llu",
					    rid.bytes[0],
					    (unsigned long long)c);
			}
			fprintf(stderr, "\n");
			crdt_vclock_free(vc);
		}
	crdt_buf s0;
	fuzz_save(h[0], &s0);
	bool empty = crdt_doc_buffered(h[0]) == 0;
	for (int i = 1; i < HONEST; i++)
		empty = empty && crdt_doc_buffered(h[i]) == 0;
	/* FUZZ_BYZ_SAFETY_ONLY: judge only crashes, leaks, sanitizer reports
	 * and honest writes. */
	bool converge = getenv("FUZZ_BYZ_SAFETY_ONLY") == NULL;
	for (int i = 1; converge && i < HONEST; i++) {
		crdt_buf si;
		fuzz_save(h[i], &si);
		FUZZ_ASSERT(same_but_buffer(&s0, &si));
		if (empty)
			FUZZ_ASSERT(s0.len == si.len &&
			    memcmp(s0.data, si.data, si.len) == 0);
		crdt_buf_fini(&si);
	}
	/* And they can all still write, and be heard. */
	for (int i = 0; i < HONEST; i++) {
		crdt_buf m;
		crdt_buf_init(&m, NULL);
		FUZZ_ASSERT(local_op(h[i], 0, (const uint8_t *)"ok", 2, &m) ==
		    0);
		FUZZ_ASSERT(crdt_doc_receive(h[(i + 1) % HONEST], m.data,
				m.len, NULL) == 0);
		crdt_buf_fini(&m);
	}
	crdt_buf_fini(&s0);
	for (int i = 0; i < HONEST; i++) {
		crdt_doc_free(h[i]);
		crdt_identity_free(hid[i]);
	}
	crdt_doc_free(b[0]);
	crdt_doc_free(b[1]);
	crdt_doc_free(other);
	crdt_doc_free(other_admin);
	crdt_identity_free(bid);
	crdt_identity_free(xid);
	for (size_t i = 0; i < POOL; i++) {
		crdt_buf_fini(&pool[i]);
		crdt_buf_fini(&bpool[i]);
	}
	return 0;
}
