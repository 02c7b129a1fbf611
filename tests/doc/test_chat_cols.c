/*
 * The chat state's columnar message records (version 2, docs/chat.md,
 * "State encoding"). A thread with every optional field round-trips to
 * the same bytes; replicas with one state save one encoding; a version-1
 * state still loads and is saved as version 2; and hand-made columns the
 * encoder would never write (truncated columns, counts that disagree,
 * deltas past their range, non-minimal varints, unsorted or unused table
 * entries, a dot the ID implies, duplicate records) are refused whole with
 * the document unchanged. The columns are written here by an independent
 * LEB128 writer, from the normative layout.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

#define T0 UINT64_C(1700000000000)
#define ORD_CAP (UINT64_C(1) << 63)

typedef struct peer {
	crdt_doc *d;
	test_clock clk;
	crdt_config cfg;
} peer;

static void
peer_new_lim(peer *p, uint8_t idn, size_t max_elems)
{
	crdt_replica_id id = test_id(idn);
	p->clk.ms = T0;
	test_config(&p->cfg, &p->clk);
	if (max_elems != 0)
		p->cfg.limits.max_elems = max_elems;
	cr_assert_eq(crdt_doc_new(&p->cfg, &id, &p->d), 0);
	cr_assert_eq(crdt_doc_register_chat(p->d, "thread", NULL, NULL), 0);
}

static void
peer_new(peer *p, uint8_t idn)
{
	peer_new_lim(p, idn, 0);
}

static const crdt_chat *
thread(const peer *p)
{
	const crdt_chat *c;
	cr_assert_eq(crdt_doc_chat(p->d, 0, &c), 0);
	return c;
}

static crdt_dot
post(peer *p, const char *user, const char *body, const crdt_dot *reply,
    const char *meta, crdt_buf *out)
{
	crdt_chat_post m = { user, strlen(user), body, strlen(body), reply,
		meta, meta ? strlen(meta) : 0 };
	crdt_dot id;
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_chat_post(p->d, 0, &m, &id, out), 0);
	return id;
}

static void
deliver(peer *to, const crdt_buf *m)
{
	cr_assert_eq(crdt_doc_receive(to->d, m->data, m->len, NULL), 0);
}

static void
save(const peer *p, crdt_buf *out)
{
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_save(p->d, out), 0);
}

static bool
contains(const crdt_buf *b, const void *pat, size_t n)
{
	for (size_t i = 0; i + n <= b->len; i++)
		if (memcmp(b->data + i, pat, n) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------------- */
/* round trips                                                      */

static void
assert_same_msg(const crdt_chat_msg *a, const crdt_chat_msg *b)
{
	cr_assert_eq(crdt_dot_cmp(a->id, b->id), 0);
	cr_assert_eq(a->sent_at, b->sent_at);
	cr_assert_eq(a->order, b->order);
	cr_assert(bytes_eq(a->user, a->user_len, b->user, b->user_len));
	cr_assert(bytes_eq(a->body, a->body_len, b->body, b->body_len));
	cr_assert_eq(a->has_reply_to, b->has_reply_to);
	if (a->has_reply_to)
		cr_assert_eq(crdt_dot_cmp(a->reply_to, b->reply_to), 0);
	cr_assert_eq(a->meta == NULL, b->meta == NULL);
	if (a->meta != NULL)
		cr_assert(bytes_eq(a->meta, a->meta_len, b->meta, b->meta_len));
}

/* Two writers, one with a clock an hour behind (order > sent_at), posts
 * within one millisecond (a logical stamp part), replies, meta, an empty
 * body, three users: loaded into a fresh replica, every message reads the
 * same, and the snapshot saves to the same bytes. Replicas that received
 * the messages in other orders save the same bytes too. */
Test(chat_cols, every_field_round_trips_to_the_same_bytes)
{
	peer a, b, v, w;
	crdt_buf m[8], snap, snap2, snap3;

	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&b, 2);
	peer_new(&v, 3);
	peer_new(&w, 4);
	for (int i = 0; i < 8; i++)
		tb_init(&m[i]);
	tb_init(&snap);
	tb_init(&snap2);
	tb_init(&snap3);
	b.clk.ms = T0 - 3600 * 1000;
	crdt_dot q = post(&a, "amy", "question?", NULL, NULL, &m[0]);
	post(&a, "amy", "", NULL, "{\"k\":1}", &m[1]); /* same ms */
	deliver(&b, &m[0]);
	deliver(&b, &m[1]);
	crdt_dot r = post(&b, "bob", "answer", &q, NULL, &m[2]);
	post(&b, "carl", "with meta and reply", &r, "x", &m[3]);
	a.clk.ms += 5;
	deliver(&a, &m[2]);
	deliver(&a, &m[3]);
	post(&a, "amy", "later", &r, NULL, &m[4]);
	/* v in order, w in another causal order */
	for (int i = 0; i < 5; i++)
		deliver(&v, &m[i]);
	deliver(&w, &m[0]);
	deliver(&w, &m[1]);
	deliver(&w, &m[2]);
	deliver(&w, &m[4]);
	deliver(&w, &m[3]);
	save(&v, &snap);
	save(&w, &snap2);
	/* The snapshots differ in nothing the thread holds: the chat state
	 * bytes are one encoding. Compare the whole frame minus the replica
	 * specific parts by loading both into fresh replicas. */
	peer x, y;
	peer_new(&x, 9);
	peer_new(&y, 9);
	cr_assert_eq(crdt_doc_load(x.d, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_doc_load(y.d, snap2.data, snap2.len, NULL), 0);
	save(&x, &snap3);
	crdt_buf s4;
	tb_init(&s4);
	save(&y, &s4);
	cr_assert(bytes_eq(snap3.data, snap3.len, s4.data, s4.len),
	    "replicas with one state saved different bytes");
	cr_assert(bytes_eq(snap.data, snap.len, snap3.data, snap3.len),
	    "a loaded snapshot saves other bytes");
	const crdt_chat *cv = thread(&v), *cx = thread(&x);
	cr_assert_eq(crdt_chat_count(cv), 5);
	cr_assert_eq(crdt_chat_count(cx), 5);
	bool saw_ord = false, saw_logical = false;
	for (size_t i = 0; i < 5; i++) {
		crdt_chat_msg e, g;
		cr_assert_eq(crdt_chat_at(cv, i, &e), 0);
		cr_assert_eq(crdt_chat_at(cx, i, &g), 0);
		assert_same_msg(&e, &g);
		saw_ord |= e.order != e.sent_at;
		saw_logical |= (e.sent_at & 0xffff) != 0;
	}
	cr_assert(saw_ord && saw_logical, "the thread lacks a case");
	/* The chat state is version 2: [2, 9, ...] */
	static const uint8_t v2[] = { 0x95, 0x02, 0x09 };
	cr_assert(contains(&snap, v2, sizeof v2));
	for (int i = 0; i < 8; i++)
		crdt_buf_fini(&m[i]);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&snap2);
	crdt_buf_fini(&snap3);
	crdt_buf_fini(&s4);
	crdt_doc_free(a.d);
	crdt_doc_free(b.d);
	crdt_doc_free(v.d);
	crdt_doc_free(w.d);
	crdt_doc_free(x.d);
	crdt_doc_free(y.d);
	ASSERT_NO_LEAKS();
}

/* ---------------------------------------------------------------- */
/* hand-made columns                                                */

static void
vu(crdt_buf *b, uint64_t v)
{
	do {
		uint8_t x = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v != 0)
			x |= 0x80;
		mp_byte(b, x);
	} while (v != 0);
}

static uint64_t
zig(int64_t d)
{
	return ((uint64_t)d << 1) ^ (uint64_t)(d >> 63);
}

enum { C_RUNS, C_CTR, C_FLAGS, C_STAMP, C_USER, C_BLEN, C_EXTRA, C_BODY,
	NCOLS };

/* What the msgs bin holds: head (n, replica table, user dictionary) and
 * the eight columns. */
typedef struct cols {
	crdt_buf head, c[NCOLS];
	size_t cut; /* bytes dropped from the end of the bin */
	uint64_t claim_n;
} cols;

static void
cols_init(cols *k)
{
	memset(k, 0, sizeof *k);
	tb_init(&k->head);
	for (int i = 0; i < NCOLS; i++)
		tb_init(&k->c[i]);
}

static void
cols_fini(cols *k)
{
	crdt_buf_fini(&k->head);
	for (int i = 0; i < NCOLS; i++)
		crdt_buf_fini(&k->c[i]);
}

static void
head(cols *k, uint64_t n, const uint8_t *ids, size_t nids,
    const char *const *users, size_t nusers)
{
	crdt_buf_clear(&k->head);
	vu(&k->head, n);
	vu(&k->head, nids);
	for (size_t i = 0; i < nids; i++) {
		crdt_replica_id id = test_id(ids[i]);
		mp_raw(&k->head, id.bytes, sizeof id.bytes);
	}
	vu(&k->head, nusers);
	for (size_t i = 0; i < nusers; i++) {
		vu(&k->head, strlen(users[i]));
		mp_raw(&k->head, users[i], strlen(users[i]));
	}
}

/* The valid base: replica 7 posts "hi" (counter 1) and "yo" (counter 2)
 * as "amy", one second apart. */
static void
base(cols *k)
{
	static const uint8_t ids[] = { 7 };
	static const char *const users[] = { "amy" };
	cols_fini(k);
	cols_init(k);
	head(k, 2, ids, 1, users, 1);
	vu(&k->c[C_RUNS], 2);
	vu(&k->c[C_CTR], 1);
	vu(&k->c[C_CTR], 1);
	mp_byte(&k->c[C_FLAGS], 0);
	mp_byte(&k->c[C_FLAGS], 0);
	vu(&k->c[C_STAMP], zig((int64_t)T0));
	vu(&k->c[C_STAMP], zig(1000));
	vu(&k->c[C_USER], 0);
	vu(&k->c[C_USER], 0);
	vu(&k->c[C_BLEN], 2);
	vu(&k->c[C_BLEN], 2);
	mp_raw(&k->c[C_BODY], "hiyo", 4);
}

static void
cols_bin(const cols *k, crdt_buf *out)
{
	crdt_buf_clear(out);
	mp_raw(out, k->head.data, k->head.len);
	for (int i = 0; i < NCOLS; i++) {
		vu(out, k->c[i].len);
		mp_raw(out, k->c[i].data, k->c[i].len);
	}
	out->len -= k->cut;
}

/* A version-1 snapshot frame (no document ID) holding the thread as a
 * version-2 chat state whose msgs are `k`; the clock covers replica 7 up
 * to counter 10. */
static void
snapshot_of(const cols *k, crdt_buf *snap)
{
	crdt_buf bin, map, marks, chat;
	tb_init(&bin);
	tb_init(&map);
	tb_init(&marks);
	tb_init(&chat);
	cols_bin(k, &bin);
	mp_array(&map, 3);
	mp_uint(&map, 1);
	mp_uint(&map, 3);
	mp_array(&map, 0);
	mp_array(&marks, 3);
	mp_uint(&marks, 1);
	mp_uint(&marks, 1);
	mp_array(&marks, 0);
	mp_array(&chat, 5);
	mp_uint(&chat, 2);
	mp_uint(&chat, 9);
	mp_bin(&chat, bin.data, bin.len);
	mp_bin(&chat, map.data, map.len);
	mp_bin(&chat, marks.data, marks.len);
	crdt_buf_clear(snap);
	mp_array(snap, 7);
	mp_uint(snap, 1);
	mp_uint(snap, 6);
	mp_array(snap, 2);
	mp_id(snap, test_id(7));
	mp_uint(snap, 10);
	mp_uint(snap, (T0 + 1000) << 16);
	mp_array(snap, 1);
	mp_array(snap, 3);
	mp_bin(snap, "thread", 6);
	mp_uint(snap, 4);
	mp_bin(snap, chat.data, chat.len);
	mp_array(snap, 0);
	mp_array(snap, 0);
	crdt_buf_fini(&bin);
	crdt_buf_fini(&map);
	crdt_buf_fini(&marks);
	crdt_buf_fini(&chat);
}

/* The control: the hand-made columns load, read as written, and the
 * document saves exactly those column bytes again (the encoder writes the
 * documented layout). A G-Set dot other than the record's ID is carried
 * in the extra column and kept. */
Test(chat_cols, handmade_columns_load_and_save_the_same_bytes)
{
	peer v;
	cols k;
	crdt_buf snap, bin, out;

	test_alloc_reset();
	cols_init(&k);
	tb_init(&snap);
	tb_init(&bin);
	tb_init(&out);
	for (int variant = 0; variant < 2; variant++) {
		peer_new(&v, 1);
		base(&k);
		if (variant == 1) {
			/* record 2's G-Set dot is (7, 5) */
			k.c[C_FLAGS].data[1] = 16;
			vu(&k.c[C_EXTRA], 0);
			vu(&k.c[C_EXTRA], 5);
		}
		snapshot_of(&k, &snap);
		cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL), 0);
		const crdt_chat *c = thread(&v);
		cr_assert_eq(crdt_chat_count(c), 2);
		crdt_chat_msg m;
		cr_assert_eq(crdt_chat_at(c, 1, &m), 0);
		cr_assert_eq(m.id.counter, 2);
		cr_assert_eq(m.sent_at, (T0 + 1000) << 16);
		cr_assert(bytes_eq(m.body, m.body_len, "yo", 2));
		cr_assert(bytes_eq(m.user, m.user_len, "amy", 3));
		save(&v, &out);
		cols_bin(&k, &bin);
		cr_assert(contains(&out, bin.data, bin.len),
		    "variant %d: the saved columns differ", variant);
		crdt_doc_free(v.d);
	}
	cols_fini(&k);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&bin);
	crdt_buf_fini(&out);
	ASSERT_NO_LEAKS();
}

/* One way to break the base columns. */
typedef struct breakage {
	const char *what;
	void (*apply)(cols *k);
	int want;
} breakage;

static void
b_cut(cols *k)
{
	k->cut = 1; /* the body column claims a byte that is not there */
}
static void
b_runs_short(cols *k)
{
	crdt_buf_clear(&k->c[C_RUNS]);
	vu(&k->c[C_RUNS], 1);
}
static void
b_n_too_big(cols *k)
{
	static const uint8_t ids[] = { 7 };
	static const char *const users[] = { "amy" };
	head(k, 1000, ids, 1, users, 1);
}
static void
b_ctr_overflow(cols *k)
{
	crdt_buf_clear(&k->c[C_CTR]);
	vu(&k->c[C_CTR], UINT64_MAX);
	vu(&k->c[C_CTR], 1);
}
static void
b_ctr_zero(cols *k)
{
	k->c[C_CTR].data[0] = 0;
}
static void
b_stamp_negative(cols *k)
{
	crdt_buf_clear(&k->c[C_STAMP]);
	vu(&k->c[C_STAMP], zig((int64_t)T0));
	vu(&k->c[C_STAMP], zig(-(int64_t)T0 - 1));
}
static void
b_stamp_past_48_bits(cols *k)
{
	crdt_buf_clear(&k->c[C_STAMP]);
	vu(&k->c[C_STAMP], zig((int64_t)T0));
	vu(&k->c[C_STAMP], zig((int64_t)(UINT64_C(1) << 48) - (int64_t)T0));
}
static void
b_varint_not_minimal(cols *k)
{
	crdt_buf_clear(&k->c[C_CTR]);
	mp_byte(&k->c[C_CTR], 0x81); /* 1 as two bytes */
	mp_byte(&k->c[C_CTR], 0x00);
	vu(&k->c[C_CTR], 1);
}
static void
b_varint_past_64_bits(cols *k)
{
	crdt_buf_clear(&k->c[C_CTR]);
	for (int i = 0; i < 9; i++)
		mp_byte(&k->c[C_CTR], 0x80);
	mp_byte(&k->c[C_CTR], 0x02);
	vu(&k->c[C_CTR], 1);
}
static void
b_varint_unterminated(cols *k)
{
	crdt_buf_clear(&k->c[C_USER]);
	vu(&k->c[C_USER], 0);
	mp_byte(&k->c[C_USER], 0x80);
}
static void
b_ids_unsorted(cols *k)
{
	static const uint8_t ids[] = { 8, 7 };
	static const char *const users[] = { "amy" };
	head(k, 2, ids, 2, users, 1);
	crdt_buf_clear(&k->c[C_RUNS]);
	vu(&k->c[C_RUNS], 0);
	vu(&k->c[C_RUNS], 2);
}
static void
b_id_unused(cols *k)
{
	static const uint8_t ids[] = { 7, 8 };
	static const char *const users[] = { "amy" };
	head(k, 2, ids, 2, users, 1);
	vu(&k->c[C_RUNS], 0);
}
static void
b_user_unused(cols *k)
{
	static const uint8_t ids[] = { 7 };
	static const char *const users[] = { "amy", "bob" };
	head(k, 2, ids, 1, users, 2);
}
static void
b_users_unsorted(cols *k)
{
	static const uint8_t ids[] = { 7 };
	static const char *const users[] = { "bob", "amy" };
	head(k, 2, ids, 1, users, 2);
	crdt_buf_clear(&k->c[C_USER]);
	vu(&k->c[C_USER], 0);
	vu(&k->c[C_USER], 1);
}
static void
b_user_empty(cols *k)
{
	static const uint8_t ids[] = { 7 };
	static const char *const users[] = { "" };
	head(k, 2, ids, 1, users, 1);
}
static void
b_user_256(cols *k)
{
	static char u[257];
	memset(u, 'u', 256);
	const char *users[] = { u };
	static const uint8_t ids[] = { 7 };
	head(k, 2, ids, 1, users, 1);
}
static void
b_user_index(cols *k)
{
	k->c[C_USER].data[1] = 1;
}
static void
b_flags_unknown(cols *k)
{
	k->c[C_FLAGS].data[0] = 32;
}
static void
b_dot_implied(cols *k)
{
	k->c[C_FLAGS].data[1] = 16;
	vu(&k->c[C_EXTRA], 0);
	vu(&k->c[C_EXTRA], 2); /* (7, 2): the record's own ID */
}
static void
b_extra_left_over(cols *k)
{
	vu(&k->c[C_EXTRA], 0);
}
static void
b_body_left_over(cols *k)
{
	mp_raw(&k->c[C_BODY], "!", 1);
}
static void
b_flags_short(cols *k)
{
	k->c[C_FLAGS].len = 1;
}
static void
b_duplicate(cols *k)
{
	/* counter delta 0, same stamp, same body: one record twice */
	crdt_buf_clear(&k->c[C_CTR]);
	vu(&k->c[C_CTR], 1);
	vu(&k->c[C_CTR], 0);
	crdt_buf_clear(&k->c[C_STAMP]);
	vu(&k->c[C_STAMP], zig((int64_t)T0));
	vu(&k->c[C_STAMP], zig(0));
	crdt_buf_clear(&k->c[C_BODY]);
	mp_raw(&k->c[C_BODY], "hihi", 4);
}
static void
b_ord_past_cap(cols *k)
{
	k->c[C_FLAGS].data[0] = 2;
	vu(&k->c[C_EXTRA], ORD_CAP); /* sent_at + 2^63 > ORD_CAP */
}
static void
b_logical_zero(cols *k)
{
	k->c[C_FLAGS].data[0] = 1;
	vu(&k->c[C_EXTRA], 0);
}
static void
b_logical_past_16_bits(cols *k)
{
	k->c[C_FLAGS].data[0] = 1;
	vu(&k->c[C_EXTRA], 0x10000);
}
static void
b_reply_index(cols *k)
{
	k->c[C_FLAGS].data[1] = 4;
	vu(&k->c[C_EXTRA], 1); /* no replica 1 */
	vu(&k->c[C_EXTRA], 1);
}
static void
b_meta_too_long(cols *k)
{
	k->c[C_FLAGS].data[1] = 8;
	vu(&k->c[C_EXTRA], 5);
	mp_raw(&k->c[C_EXTRA], "ab", 2);
}

static const breakage breakages[] = {
	{ "truncated column", b_cut, CRDT_EMALFORMED },
	{ "runs sum below n", b_runs_short, CRDT_EMALFORMED },
	{ "n past the bytes", b_n_too_big, CRDT_EMALFORMED },
	{ "counter delta overflows", b_ctr_overflow, CRDT_EMALFORMED },
	{ "counter 0", b_ctr_zero, CRDT_EMALFORMED },
	{ "stamp delta below zero", b_stamp_negative, CRDT_EMALFORMED },
	{ "stamp past 48 bits", b_stamp_past_48_bits, CRDT_EMALFORMED },
	{ "non-minimal varint", b_varint_not_minimal, CRDT_EMALFORMED },
	{ "varint past 64 bits", b_varint_past_64_bits, CRDT_EMALFORMED },
	{ "unterminated varint", b_varint_unterminated, CRDT_EMALFORMED },
	{ "replica table unsorted", b_ids_unsorted, CRDT_EMALFORMED },
	{ "replica unused", b_id_unused, CRDT_EMALFORMED },
	{ "user unused", b_user_unused, CRDT_EMALFORMED },
	{ "users unsorted", b_users_unsorted, CRDT_EMALFORMED },
	{ "empty user", b_user_empty, CRDT_EMALFORMED },
	{ "256-byte user", b_user_256, CRDT_EMALFORMED },
	{ "user index past the table", b_user_index, CRDT_EMALFORMED },
	{ "unknown flag", b_flags_unknown, CRDT_EMALFORMED },
	{ "dot the ID implies", b_dot_implied, CRDT_EMALFORMED },
	{ "bytes left in extra", b_extra_left_over, CRDT_EMALFORMED },
	{ "bytes left in bodies", b_body_left_over, CRDT_EMALFORMED },
	{ "flags column short", b_flags_short, CRDT_EMALFORMED },
	{ "duplicate record", b_duplicate, CRDT_EMALFORMED },
	{ "order past ORD_CAP", b_ord_past_cap, CRDT_EMALFORMED },
	{ "logical part 0", b_logical_zero, CRDT_EMALFORMED },
	{ "logical part past 16 bits", b_logical_past_16_bits,
		CRDT_EMALFORMED },
	{ "reply replica index", b_reply_index, CRDT_EMALFORMED },
	{ "meta past its column", b_meta_too_long, CRDT_EMALFORMED },
};

/* Every breakage is refused with its code and the document, which holds a
 * thread of its own, saves the same bytes as before; the base still loads
 * afterwards. */
Test(chat_cols, broken_columns_refused_whole)
{
	peer v;
	cols k;
	crdt_buf snap, before, after, m;

	test_alloc_reset();
	peer_new(&v, 1);
	cols_init(&k);
	tb_init(&snap);
	tb_init(&before);
	tb_init(&after);
	tb_init(&m);
	post(&v, "victim", "mine", NULL, NULL, &m);
	for (size_t i = 0; i < sizeof breakages / sizeof breakages[0]; i++) {
		base(&k);
		breakages[i].apply(&k);
		snapshot_of(&k, &snap);
		save(&v, &before);
		int rc = crdt_doc_load(v.d, snap.data, snap.len, NULL);
		cr_assert_eq(rc, breakages[i].want, "%s: %s", breakages[i].what,
		    crdt_err_name(rc));
		save(&v, &after);
		cr_assert(bytes_eq(before.data, before.len, after.data,
		    after.len), "%s changed the document", breakages[i].what);
		cr_assert_eq(crdt_chat_count(thread(&v)), 1);
	}
	base(&k);
	snapshot_of(&k, &snap);
	cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL), 0);
	cr_assert_eq(crdt_chat_count(thread(&v)), 3);
	cols_fini(&k);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_buf_fini(&m);
	crdt_doc_free(v.d);
	ASSERT_NO_LEAKS();
}

/* The record count is bounded by limits.max_elems like the G-Set state it
 * replaces (three elements a record), before anything is sized by it. */
Test(chat_cols, record_count_bounded_by_max_elems)
{
	peer v;
	cols k;
	crdt_buf snap;

	test_alloc_reset();
	peer_new_lim(&v, 1, 20);
	cols_init(&k);
	tb_init(&snap);
	base(&k);
	snapshot_of(&k, &snap);
	cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL), 0);
	static const uint8_t ids[] = { 7 };
	static const char *const users[] = { "amy" };
	head(&k, 7, ids, 1, users, 1); /* 21 > 20 */
	snapshot_of(&k, &snap);
	cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL),
	    CRDT_ETOOBIG);
	cols_fini(&k);
	crdt_buf_fini(&snap);
	crdt_doc_free(v.d);
	ASSERT_NO_LEAKS();
}

/* A rebuilt record longer than limits.max_value_bytes is refused like the
 * G-Set element it would be (CRDT_ETOOBIG), and changes nothing. */
Test(chat_cols, record_over_max_value_bytes_refused)
{
	peer v;
	cols k;
	crdt_buf snap, before, after;

	test_alloc_reset();
	test_clock clk = { T0, 0 };
	test_config(&v.cfg, &clk);
	v.cfg.limits.max_value_bytes = 40; /* the base's records are 47 */
	crdt_replica_id id = test_id(1);
	cr_assert_eq(crdt_doc_new(&v.cfg, &id, &v.d), 0);
	cr_assert_eq(crdt_doc_register_chat(v.d, "thread", NULL, NULL), 0);
	cols_init(&k);
	tb_init(&snap);
	tb_init(&before);
	tb_init(&after);
	base(&k);
	snapshot_of(&k, &snap);
	save(&v, &before);
	cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL),
	    CRDT_ETOOBIG);
	save(&v, &after);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	cols_fini(&k);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_doc_free(v.d);
	ASSERT_NO_LEAKS();
}

/* Every allocation of a columnar load failing in turn: ENOMEM and the
 * document unchanged; then the load succeeds. */
Test(chat_cols, allocation_failures_change_nothing)
{
	peer a, v;
	crdt_buf snap, before, after, m;
	crdt_dot prev;

	test_alloc_reset();
	peer_new(&a, 1);
	peer_new(&v, 2);
	tb_init(&snap);
	tb_init(&before);
	tb_init(&after);
	tb_init(&m);
	prev = post(&a, "amy", "one", NULL, NULL, &m);
	post(&a, "bob", "two", &prev, "meta", &m);
	post(&a, "amy", "three", NULL, NULL, &m);
	save(&a, &snap);
	save(&v, &before);
	crdt_doc_free(v.d);
	bool fired = true;
	size_t k, refused = 0;
	for (k = 0; k < 10000 && fired; k++) {
		peer_new(&v, 2);
		test_alloc_fail_at((long)k);
		int rc = crdt_doc_load(v.d, snap.data, snap.len, NULL);
		fired = test_alloc_fired();
		test_alloc_disarm();
		if (rc == CRDT_ENOMEM) {
			refused++;
			save(&v, &after);
			cr_assert(bytes_eq(before.data, before.len, after.data,
			    after.len), "failure %zu changed the document", k);
		} else {
			cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
		}
		if (!fired) {
			cr_assert_eq(rc, 0);
			cr_assert_eq(crdt_chat_count(thread(&v)), 3);
		}
		crdt_doc_free(v.d);
	}
	cr_assert(!fired);
	cr_assert_gt(refused, 5);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_buf_fini(&m);
	crdt_doc_free(a.d);
	ASSERT_NO_LEAKS();
}

/* ---------------------------------------------------------------- */
/* the index built in bulk                                          */

/* Every position, neighbour and unread count of `c` as in `ref`. */
static void
assert_same_index(const crdt_chat *ref, const crdt_chat *c)
{
	static const char *users[] = { "amy", "bob", "cy" };
	size_t n = crdt_chat_count(ref);
	cr_assert_eq(crdt_chat_count(c), n);
	for (size_t i = 0; i < n; i++) {
		crdt_chat_msg e, g;
		size_t pos;
		cr_assert_eq(crdt_chat_at(ref, i, &e), 0);
		cr_assert_eq(crdt_chat_at(c, i, &g), 0);
		assert_same_msg(&e, &g);
		cr_assert_eq(crdt_chat_position(c, e.id, &pos), 0);
		cr_assert_eq(pos, i);
		cr_assert_eq(crdt_chat_get(c, e.id, &g), 0);
		assert_same_msg(&e, &g);
	}
	for (int u = 0; u < 3; u++)
		cr_assert_eq(crdt_chat_unread(c, users[u], strlen(users[u])),
		    crdt_chat_unread(ref, users[u], strlen(users[u])));
}

/* Three writers whose clocks disagree (order keys interleave across
 * replicas, so the loaded nodes are not in key order and the build
 * sorts them), random causal delivery: the replica that loads the
 * snapshot has the index the incremental one built, and keeps it through
 * more posts inserted into the bulk-built tree. 20 seeds. */
Test(chat_cols, bulk_index_equals_incremental_index)
{
	static const char *users[] = { "amy", "bob", "cy" };
	uint64_t seed = test_seed(0xc01c0);
	for (uint64_t s = 0; s < 20; s++) {
		test_rng rng;
		test_rng_init(&rng, test_seed_mix(seed, s));
		peer w[3], v, x;
		crdt_buf snap, m;
		tb_init(&snap);
		tb_init(&m);
		test_alloc_reset();
		for (int k = 0; k < 3; k++) {
			peer_new(&w[k], (uint8_t)(1 + k));
			w[k].clk.ms = T0 + test_rng_below(&rng, 5000);
		}
		peer_new(&v, 9);
		for (int i = 0; i < 120; i++) {
			int k = (int)test_rng_below(&rng, 3);
			w[k].clk.ms += test_rng_below(&rng, 3);
			crdt_dot id = post(&w[k], users[test_rng_below(&rng, 3)],
			    "body", NULL, NULL, &m);
			(void)id;
			/* to the reader and, sometimes, to the other writers */
			deliver(&v, &m);
			for (int j = 0; j < 3; j++)
				if (j != k && test_rng_chance(&rng, 1, 2))
					cr_assert_geq(crdt_doc_receive(w[j].d,
					    m.data, m.len, NULL), 0);
		}
		crdt_buf mk;
		tb_init(&mk);
		cr_assert_eq(crdt_doc_chat_mark_read(v.d, 0, "amy", 3, &mk), 0);
		save(&v, &snap);
		peer_new(&x, 9);
		cr_assert_eq(crdt_doc_load(x.d, snap.data, snap.len, NULL), 0);
		assert_same_index(thread(&v), thread(&x));
		for (int i = 0; i < 30; i++) {
			post(&w[i % 3], users[i % 3], "more", NULL, NULL, &m);
			deliver(&v, &m);
			deliver(&x, &m);
		}
		assert_same_index(thread(&v), thread(&x));
		crdt_buf_fini(&snap);
		crdt_buf_fini(&m);
		crdt_buf_fini(&mk);
		for (int k = 0; k < 3; k++)
			crdt_doc_free(w[k].d);
		crdt_doc_free(v.d);
		crdt_doc_free(x.d);
		ASSERT_NO_LEAKS();
	}
}

/* Two records of one message ID (an equivocating writer) in hand-made
 * columns: one message shown, the one with the smaller bytes, whichever
 * the snapshot lists; both stay in the state (re-saved columns equal). */
Test(chat_cols, two_records_of_one_id_show_the_smaller)
{
	peer v;
	cols k;
	crdt_buf snap, bin, out;

	test_alloc_reset();
	peer_new(&v, 1);
	cols_init(&k);
	tb_init(&snap);
	tb_init(&bin);
	tb_init(&out);
	base(&k);
	crdt_buf_clear(&k.c[C_CTR]);
	vu(&k.c[C_CTR], 1);
	vu(&k.c[C_CTR], 0); /* (7, 1) twice */
	crdt_buf_clear(&k.c[C_STAMP]);
	vu(&k.c[C_STAMP], zig((int64_t)T0));
	vu(&k.c[C_STAMP], zig(0));
	snapshot_of(&k, &snap);
	cr_assert_eq(crdt_doc_load(v.d, snap.data, snap.len, NULL), 0);
	const crdt_chat *c = thread(&v);
	cr_assert_eq(crdt_chat_count(c), 1);
	crdt_chat_msg m;
	cr_assert_eq(crdt_chat_at(c, 0, &m), 0);
	cr_assert(bytes_eq(m.body, m.body_len, "hi", 2)); /* "hi" < "yo" */
	save(&v, &out);
	cols_bin(&k, &bin);
	cr_assert(contains(&out, bin.data, bin.len));
	cols_fini(&k);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&bin);
	crdt_buf_fini(&out);
	crdt_doc_free(v.d);
	ASSERT_NO_LEAKS();
}

/* Saving a thread under every allocation failure in turn: ENOMEM and the
 * output buffer as it was; then the save gives the same bytes as an
 * unhindered one. */
Test(chat_cols, save_allocation_failures_leave_the_output_alone)
{
	peer a;
	crdt_buf m, ref, out;
	crdt_dot q;

	test_alloc_reset();
	peer_new(&a, 1);
	tb_init(&m);
	tb_init(&ref);
	q = post(&a, "amy", "one", NULL, NULL, &m);
	post(&a, "bob", "two", &q, "meta", &m);
	save(&a, &ref);
	bool fired = true;
	size_t k, refused = 0;
	for (k = 0; k < 10000 && fired; k++) {
		crdt_buf_init(&out, test_alloc_hook());
		mp_raw(&out, "keep", 4);
		test_alloc_fail_at((long)k);
		int rc = crdt_doc_save(a.d, &out);
		fired = test_alloc_fired();
		test_alloc_disarm();
		if (rc == CRDT_ENOMEM) {
			refused++;
			cr_assert_eq(out.len, 4);
			cr_assert_eq(memcmp(out.data, "keep", 4), 0);
		} else {
			cr_assert_eq(rc, 0, "%s", crdt_err_name(rc));
			cr_assert(bytes_eq(out.data + 4, out.len - 4, ref.data,
			    ref.len));
		}
		crdt_buf_fini(&out);
	}
	cr_assert(!fired);
	cr_assert_gt(refused, 5);
	crdt_buf_fini(&m);
	crdt_buf_fini(&ref);
	crdt_doc_free(a.d);
	ASSERT_NO_LEAKS();
}

/* The base thread as a version-1 state: msgs as a G-Set state of the two
 * records, each beside its dot. */
static void
v1_snapshot_of_base(crdt_buf *snap)
{
	crdt_buf rec[2], msgs, map, marks, chat;
	static const char *const bodies[] = { "hi", "yo" };
	tb_init(&msgs);
	tb_init(&map);
	tb_init(&marks);
	tb_init(&chat);
	for (int i = 0; i < 2; i++) {
		tb_init(&rec[i]);
		uint64_t stamp = (T0 + 1000 * (uint64_t)i) << 16;
		mp_array(&rec[i], 8);
		mp_id(&rec[i], test_id(7));
		mp_uint(&rec[i], (uint64_t)i + 1);
		mp_uint(&rec[i], stamp);
		mp_uint(&rec[i], stamp);
		mp_bin(&rec[i], "amy", 3);
		mp_bin(&rec[i], bodies[i], 2);
		mp_nil(&rec[i]);
		mp_nil(&rec[i]);
	}
	mp_array(&msgs, 3);
	mp_uint(&msgs, 1);
	mp_uint(&msgs, 1);
	mp_array(&msgs, 6);
	for (int i = 0; i < 2; i++) {
		mp_bin(&msgs, rec[i].data, rec[i].len);
		mp_id(&msgs, test_id(7));
		mp_uint(&msgs, (uint64_t)i + 1);
	}
	mp_array(&map, 3);
	mp_uint(&map, 1);
	mp_uint(&map, 3);
	mp_array(&map, 0);
	mp_array(&marks, 3);
	mp_uint(&marks, 1);
	mp_uint(&marks, 1);
	mp_array(&marks, 0);
	mp_array(&chat, 5);
	mp_uint(&chat, 1);
	mp_uint(&chat, 9);
	mp_bin(&chat, msgs.data, msgs.len);
	mp_bin(&chat, map.data, map.len);
	mp_bin(&chat, marks.data, marks.len);
	crdt_buf_clear(snap);
	mp_array(snap, 7);
	mp_uint(snap, 1);
	mp_uint(snap, 6);
	mp_array(snap, 2);
	mp_id(snap, test_id(7));
	mp_uint(snap, 10);
	mp_uint(snap, (T0 + 1000) << 16);
	mp_array(snap, 1);
	mp_array(snap, 3);
	mp_bin(snap, "thread", 6);
	mp_uint(snap, 4);
	mp_bin(snap, chat.data, chat.len);
	mp_array(snap, 0);
	mp_array(snap, 0);
	for (int i = 0; i < 2; i++)
		crdt_buf_fini(&rec[i]);
	crdt_buf_fini(&msgs);
	crdt_buf_fini(&map);
	crdt_buf_fini(&marks);
	crdt_buf_fini(&chat);
}

/* A version-1 state still loads, and gives the document the version-2
 * state holds for the same thread: both replicas save the same bytes,
 * with the base's columns in them. */
Test(chat_cols, version_1_state_loads_as_its_version_2_twin)
{
	peer v, w;
	cols k;
	crdt_buf s1, s2, o1, o2, bin;

	test_alloc_reset();
	peer_new(&v, 1);
	peer_new(&w, 1);
	cols_init(&k);
	tb_init(&s1);
	tb_init(&s2);
	tb_init(&o1);
	tb_init(&o2);
	tb_init(&bin);
	v1_snapshot_of_base(&s1);
	base(&k);
	snapshot_of(&k, &s2);
	cr_assert_eq(crdt_doc_load(v.d, s1.data, s1.len, NULL), 0);
	cr_assert_eq(crdt_doc_load(w.d, s2.data, s2.len, NULL), 0);
	cr_assert_eq(crdt_chat_count(thread(&v)), 2);
	save(&v, &o1);
	save(&w, &o2);
	cr_assert(bytes_eq(o1.data, o1.len, o2.data, o2.len));
	cols_bin(&k, &bin);
	cr_assert(contains(&o1, bin.data, bin.len));
	cols_fini(&k);
	crdt_buf_fini(&s1);
	crdt_buf_fini(&s2);
	crdt_buf_fini(&o1);
	crdt_buf_fini(&o2);
	crdt_buf_fini(&bin);
	crdt_doc_free(v.d);
	crdt_doc_free(w.d);
	ASSERT_NO_LEAKS();
}
