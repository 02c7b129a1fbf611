/*
 * Chat thread. The replicated state is three generic objects, so merge,
 * canonical encoding, atomic apply and snapshots are theirs:
 *
 *   msgs   G-Set of message records   [id, counter, order, sent_at, user,
 *                                      body, reply_to|nil, meta|nil]
 *   reacts LWW map: [id, counter, user, emoji] -> "" (on) | nil (off)
 *   marks  G-Set of typed records     [1, reader, id, counter]     read
 *                                     [2, user, joined, stamp, writer]
 *                                     [3, id, counter]             ack
 *                                     [4, id, counter, reason]     reject
 *
 * Everything else is a derived index, built when a state is decoded or
 * merged (where the load can still fail) and folded after each committed
 * transaction from room the apply walk reserved before the commit point
 * (so the fold cannot fail and queries never build anything):
 *   - an order-statistic treap over (order, replica ID, counter): insert,
 *     position, k-th and neighbours in O(log n), pages in O(log n + k);
 *   - dot -> message, reactions per message, read clocks per reader,
 *     membership history per user, the server's acknowledged clock,
 *     rejections, and per (replica) / (user, replica) sorted counters for
 *     O(replicas log n) unread counts (one list, shared, while a replica
 *     has one author: rep_ent in chat_impl.h).
 */
#include "chat_impl.h"

/* ---------------------------------------------------------------- */
/* record parsing                                                   */

static const crdt_limits big_limits = { SIZE_MAX, SIZE_MAX, SIZE_MAX, 8 };

static int
rd_dot(crdt__rd *r, crdt_dot *d)
{
	CRDT_TRY(crdt__rd_id(r, &d->replica));
	CRDT_TRY(crdt__rd_uint(r, &d->counter));
	return d->counter == 0 ? CRDT_EMALFORMED : 0;
}

static int
rd_opt_dot(crdt__rd *r, crdt_dot *d, bool *present)
{
	*present = false;
	if (r->p < r->end && *r->p == 0xc0) {
		r->p++;
		return 0;
	}
	CRDT_TRY(crdt__rd_array_n(r, 2));
	CRDT_TRY(rd_dot(r, d));
	r->depth--;
	*present = true;
	return 0;
}

bool
crdt__chat_user_len_ok(size_t n)
{
	return n > 0 && n <= USER_MAX;
}

/*
 * The record parsers are the validators too: a snapshot's records are
 * peer bytes, checked field by field like the op that would have written
 * them (crdt__chat_decode refuses the state whole on the first bad one),
 * and the index trusts only what they accept: user IDs of 1..USER_MAX
 * bytes, dots with counters >= 1, the exact array shapes, nothing after.
 */
int
crdt__chat_parse_msgrec(const uint8_t *p, size_t n, msgrec *m)
{
	crdt__rd r;
	bool has_meta;

	CRDT_TRY(crdt__rd_init(&r, &big_limits, p, n));
	CRDT_TRY(crdt__rd_array_n(&r, 8));
	CRDT_TRY(rd_dot(&r, &m->id));
	CRDT_TRY(crdt__rd_uint(&r, &m->ord));
	CRDT_TRY(crdt__rd_uint(&r, &m->sent_at));
	CRDT_TRY(crdt__rd_bin(&r, &m->user, &m->user_len));
	CRDT_TRY(crdt__rd_bin(&r, &m->body, &m->body_len));
	CRDT_TRY(rd_opt_dot(&r, &m->reply, &m->has_reply));
	CRDT_TRY(crdt__rd_opt_bin(&r, &m->meta, &m->meta_len, &has_meta));
	if (!has_meta)
		m->meta = NULL;
	if (!crdt__chat_user_len_ok(m->user_len))
		return CRDT_EMALFORMED;
	/* order = max(sent_at, seen + 1) with seen <= SEEN_MAX. */
	if (m->ord < m->sent_at || (m->ord > m->sent_at && m->ord > ORD_CAP))
		return CRDT_EMALFORMED;
	return crdt__rd_done(&r);
}

#ifndef NDEBUG
/* The fields the apply walk remembered are the ones parse_msgrec reads
 * (debug builds check every remembered post). */
bool
crdt__chat_msgrec_same(const msgrec *x, const msgrec *y)
{
	return crdt_dot_cmp(x->id, y->id) == 0 && x->ord == y->ord &&
	    x->sent_at == y->sent_at && x->user == y->user &&
	    x->user_len == y->user_len && x->body == y->body &&
	    x->body_len == y->body_len && x->meta == y->meta &&
	    (x->meta == NULL || x->meta_len == y->meta_len) &&
	    x->has_reply == y->has_reply &&
	    (!x->has_reply || crdt_dot_cmp(x->reply, y->reply) == 0);
}
#endif

int
crdt__chat_parse_rkey(const uint8_t *p, size_t n, rkey *k)
{
	crdt__rd r;
	CRDT_TRY(crdt__rd_init(&r, &big_limits, p, n));
	CRDT_TRY(crdt__rd_array_n(&r, 4));
	CRDT_TRY(rd_dot(&r, &k->d));
	CRDT_TRY(crdt__rd_bin(&r, &k->user, &k->user_len));
	CRDT_TRY(crdt__rd_bin(&r, &k->emoji, &k->emoji_len));
	if (!crdt__chat_user_len_ok(k->user_len))
		return CRDT_EMALFORMED;
	return crdt__rd_done(&r);
}

int
crdt__chat_parse_mark(const uint8_t *p, size_t len, markrec *m)
{
	crdt__rd r;
	size_t n;
	uint64_t joined;

	memset(m, 0, sizeof *m);
	CRDT_TRY(crdt__rd_init(&r, &big_limits, p, len));
	CRDT_TRY(crdt__rd_array(&r, &n));
	if (n == 0)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__rd_uint(&r, &m->kind));
	switch (m->kind) {
	case CRDT__CHAT_REC_READ:
		if (n != 4)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__rd_bin(&r, &m->user, &m->user_len));
		CRDT_TRY(rd_dot(&r, &m->d));
		break;
	case CRDT__CHAT_REC_MEMBER:
		if (n != 5)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__rd_bin(&r, &m->user, &m->user_len));
		CRDT_TRY(crdt__rd_uint(&r, &joined));
		CRDT_TRY(crdt__rd_uint(&r, &m->h.stamp));
		CRDT_TRY(crdt__rd_id(&r, &m->h.writer));
		if (joined > 1)
			return CRDT_EMALFORMED;
		m->h.joined = joined == 1;
		break;
	case CRDT__CHAT_REC_ACK:
		if (n != 3)
			return CRDT_EMALFORMED;
		CRDT_TRY(rd_dot(&r, &m->d));
		break;
	case CRDT__CHAT_REC_REJECT:
		if (n != 4)
			return CRDT_EMALFORMED;
		CRDT_TRY(rd_dot(&r, &m->d));
		CRDT_TRY(crdt__rd_bin(&r, &m->why, &m->why_len));
		break;
	default:
		return CRDT_EMALFORMED;
	}
	if ((m->kind == CRDT__CHAT_REC_READ ||
		m->kind == CRDT__CHAT_REC_MEMBER) &&
	    !crdt__chat_user_len_ok(m->user_len))
		return CRDT_EMALFORMED;
	return crdt__rd_done(&r);
}

/* ---------------------------------------------------------------- */
/* lifecycle, encoding, merge                                       */

int
crdt__chat_new(const crdt_config *cfg, const crdt_replica_id *self,
    const crdt_replica_id *server, crdt_chat **out)
{
	crdt_config cc;
	CRDT_TRY(crdt__config_resolve(cfg, &cc));
	crdt_chat *c = crdt__malloc(&cc.alloc, sizeof *c);
	if (c == NULL)
		return CRDT_ENOMEM;
	memset(c, 0, sizeof *c);
	c->cfg = cc;
	c->self = *self;
	if (server != NULL) {
		c->has_server = true;
		c->server = *server;
	}
	int rc = 0;
	c->ix = crdt__malloc(&cc.alloc, sizeof *c->ix);
	if (c->ix == NULL)
		rc = CRDT_ENOMEM;
	else {
		memset(c->ix, 0, sizeof *c->ix);
		c->ix->owner = c;
		c->ix->root = NIL;
		rc = crdt__random(c->ix->prio_key, sizeof c->ix->prio_key);
	}
	if (rc == 0)
		rc = crdt_gset_new(&c->cfg, self, &c->msgs);
	if (rc == 0)
		rc = crdt__gset_key_prefix(c->msgs, crdt__chat_rec_ident,
		    c->ix->prio_key);
	if (rc == 0)
		rc = crdt_lww_map_new(&c->cfg, self, &c->reacts);
	if (rc == 0)
		rc = crdt_gset_new(&c->cfg, self, &c->marks);
	if (rc == 0)
		rc = crdt__chat_ix_init(c);
	if (rc < 0) {
		crdt__chat_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
crdt__chat_free(crdt_chat *c)
{
	if (c == NULL)
		return;
	crdt_allocator a = c->cfg.alloc;
	if (c->ix != NULL) {
		crdt__chat_ix_clear(c);
		crdt__free(&a, c->ix, sizeof *c->ix);
	}
	crdt_gset_free(c->msgs);
	crdt_lww_map_free(c->reacts);
	crdt_gset_free(c->marks);
	crdt__free(&a, c, sizeof *c);
}

static int
chat_encode_body(const crdt_chat *c, crdt_buf *out, crdt_buf *tmp)
{
	/* [2, 9, msgs in columns, reacts, marks] (docs/chat.md) */
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_CHAT, 3));
	CRDT_TRY(crdt__chat_cols_encode(c, out));
	CRDT_TRY(crdt_lww_map_encode(c->reacts, tmp));
	CRDT_TRY(crdt__w_bin(out, tmp->data, tmp->len));
	crdt_buf_clear(tmp);
	CRDT_TRY(crdt_gset_encode(c->marks, tmp));
	return crdt__w_bin(out, tmp->data, tmp->len);
}

int
crdt__chat_encode(const crdt_chat *c, crdt_buf *out)
{
	crdt_buf tmp;
	crdt_buf_init(&tmp, &c->cfg.alloc);
	size_t mark = out->len;
	int rc = chat_encode_body(c, out, &tmp);
	crdt_buf_fini(&tmp);
	if (rc < 0)
		out->len = mark;
	return rc;
}

/*
 * Every record of a decoded state, checked like the op that would have
 * written it: a snapshot is peer bytes. One bad record refuses the whole
 * state (CRDT_EMALFORMED), so a load either keeps every record it holds or
 * changes nothing. O(state).
 */
static int
check_state(const crdt_gset *m, const crdt_lww_map *rx, const crdt_gset *mk,
    bool msgs_built)
{
	/* Records the columnar decoder built are the post op's by
	 * construction (chat_cols.c checks every field); a G-Set state's
	 * are peer bytes. */
	for (size_t i = 0; !msgs_built && i < crdt_gset_size(m); i++) {
		const crdt__key *e = crdt__gset_entry_key(m, i);
		msgrec mr;
		CRDT_TRY(crdt__chat_parse_msgrec(e->ptr, e->len, &mr));
	}
	for (size_t i = 0; i < crdt__map_nentries(rx); i++) {
		const crdt__reg *reg;
		const crdt__key *e = crdt__map_entry(rx, i, &reg);
		rkey k;
		CRDT_TRY(crdt__chat_parse_rkey(e->ptr, e->len, &k));
		/* on = "" (the op writes nothing else), off = cleared */
		if (reg->state == CRDT__REG_UNSET ||
		    (reg->state == CRDT__REG_VALUE && reg->len != 0))
			return CRDT_EMALFORMED;
	}
	for (size_t i = 0; i < crdt_gset_size(mk); i++) {
		const crdt__key *e = crdt__gset_entry_key(mk, i);
		markrec r;
		CRDT_TRY(crdt__chat_parse_mark(e->ptr, e->len, &r));
	}
	return 0;
}

int
crdt__chat_decode(const crdt_chat *like, const uint8_t *p, size_t n,
    crdt_chat **out)
{
	crdt__rd r;
	size_t k;
	const uint8_t *b[3];
	size_t bl[3];
	crdt_chat *c;

	CRDT_TRY(crdt__rd_init(&r, &like->cfg.limits, p, n));
	unsigned ver;
	CRDT_TRY(crdt__rd_header_v(&r, CRDT__KIND_CHAT, &k, &ver));
	if (k != 5)
		return CRDT_EMALFORMED;
	for (int i = 0; i < 3; i++)
		CRDT_TRY(crdt__rd_blob(&r, &b[i], &bl[i]));
	CRDT_TRY(crdt__rd_done(&r));
	CRDT_TRY(crdt__chat_new(&like->cfg, &like->self,
	    like->has_server ? &like->server : NULL, &c));
	crdt_gset *m = NULL, *mk = NULL;
	chat_bulk bk;
	memset(&bk, 0, sizeof bk);
	crdt_lww_map *rx = NULL;
	/* Version 1 holds msgs as a G-Set state, version 2 in columns. */
	int rc = ver == 1 ?
	    crdt_gset_decode(&c->cfg, &c->self, b[0], bl[0], &m) :
	    crdt__chat_cols_decode(c, b[0], bl[0], &m, &bk);
	if (rc == 0)
		rc = crdt_lww_map_decode(&c->cfg, &c->self, b[1], bl[1], &rx);
	if (rc == 0)
		rc = crdt_gset_decode(&c->cfg, &c->self, b[2], bl[2], &mk);
	if (rc == 0)
		rc = check_state(m, rx, mk, ver >= 2);
	/* Version 2 built the set keyed so already (a no-op then). */
	if (rc == 0)
		rc = crdt__gset_key_prefix(m, crdt__chat_rec_ident,
		    c->ix->prio_key);
	if (rc < 0) {
		crdt__chat_bulk_free(&c->cfg.alloc, &bk);
		crdt_gset_free(m);
		crdt_lww_map_free(rx);
		crdt_gset_free(mk);
		crdt__chat_free(c);
		return rc;
	}
	crdt_gset_free(c->msgs);
	crdt_lww_map_free(c->reacts);
	crdt_gset_free(c->marks);
	c->msgs = m;
	c->reacts = rx;
	c->marks = mk;
	/* Built now, where an error can still refuse the state, so queries
	 * never build anything. */
	rc = ver == 1 ? crdt__chat_ix_rebuild(c) : crdt__chat_ix_bulk(c, &bk);
	crdt__chat_bulk_free(&c->cfg.alloc, &bk);
	if (rc < 0) {
		crdt__chat_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int
crdt__chat_merge(crdt_chat *dst, const crdt_chat *src)
{
	/* Each sub-merge is atomic; a failure in the second or third leaves
	 * dst partly merged, which is why crdt_doc_load merges into a
	 * scratch copy and swaps it in only when all succeeded. */
	size_t m0 = crdt_gset_size(dst->msgs), k0 = crdt_gset_size(dst->marks);
	CRDT_TRY(crdt_gset_merge(dst->msgs, src->msgs));
	CRDT_TRY(crdt_lww_map_merge(dst->reacts, src->reacts));
	CRDT_TRY(crdt_gset_merge(dst->marks, src->marks));
	/* G-Set entries are appended: index the new ones; reaction entries
	 * may have changed winner, and folding one is idempotent. */
	if (!dst->ix->ok)
		return crdt__chat_ix_rebuild(dst);
	int rc = crdt__chat_ix_fold(dst, m0, k0);
	if (rc < 0)
		dst->ix->ok = false;
	return rc;
}

bool
crdt__chat_equal(const crdt_chat *a, const crdt_chat *b)
{
	return crdt_gset_equal(a->msgs, b->msgs) &&
	    crdt_lww_map_equal(a->reacts, b->reacts) &&
	    crdt_gset_equal(a->marks, b->marks);
}

uint64_t
crdt__chat_seen(const crdt_chat *c)
{
	/* Clamped: a post's own `seen` is never one receive refuses. */
	return crdt__chat_ensure(c) == 0 ? CRDT_MIN(c->ix->max_ord,
	    SEEN_MAX) : 0;
}

bool
crdt__chat_is_server(const crdt_chat *c, const crdt_replica_id *id)
{
	return c->has_server && crdt_replica_id_cmp(&c->server, id) == 0;
}

/* ---------------------------------------------------------------- */
/* room before commit                                               */

/*
 * The apply walk calls these after each chat write, before the commit
 * point: they create the (empty) index entries and the capacity that
 * crdt__chat_after() will fold the write into, so the fold after commit
 * never allocates and cannot fail. The index is therefore current after
 * every commit, receive and load, and no query ever builds or allocates.
 * If the transaction rolls back, what was made here describes nothing:
 * an empty entry, a counter-0 clock entry, spare capacity.
 */
static int
prep_user(crdt_chat *c, const uint8_t *u, size_t n, user_ent **out)
{
	int rc;
	user_ent *e = crdt__chat_user_get(c->ix, crdt__chat_ix_alloc(c), u, n,
	    &rc);
	if (e == NULL)
		return rc ? rc : CRDT_ENOMEM;
	*out = e;
	return 0;
}

/* One post per thread per transaction: room for one more message. */
static int
prep_post(crdt_chat *c, crdt_dot dot, const uint8_t *user, size_t ul,
    size_t rec_len)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	user_ent *u = NULL;

	if (rec_len > UINT32_MAX)
		return CRDT_ETOOBIG;
	/* After the messages set took the record: gnode covers its entry. */
	CRDT_TRY(crdt__chat_node_room(ix, a, crdt_gset_size(c->msgs)));
	rep_ent *re, *ue;
	CRDT_TRY(crdt__chat_msg_ents(ix, a, &dot.replica, user, ul, &re, &ue,
	    &u));
	/* Also materialises the replica's shared author list when this
	 * post (or a rival record) is another author's: the fold copies
	 * nothing. */
	return crdt__chat_ctr_room(ix, a, re, ue);
}

/* Links and flags for every reaction entry, and the message's entry. */
static int
prep_react(crdt_chat *c, crdt_dot d)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	size_t need = crdt__map_nentries(c->reacts);
	int rc;

	CRDT_TRY(crdt__chat_ol_reserve(a, &ix->rl, &ix->caprl, need));
	if (need > ix->caprf) {
		void *v = ix->rf;
		size_t old = ix->caprf;
		CRDT_TRY(crdt__grow(a, &v, &ix->caprf, need, sizeof *ix->rf));
		ix->rf = v;
		memset(ix->rf + old, 0, ix->caprf - old);
	}
	if (crdt__chat_dot_get(ix, d, true, &rc) == NULL)
		return rc ? rc : CRDT_ENOMEM;
	return 0;
}

/* A membership change: one more history slot per change this walk makes
 * for the user (`walk` tells this walk's reservations from a rolled-back
 * one's). */
static int
prep_member(crdt_chat *c, const uint8_t *user, size_t ul, uint64_t walk)
{
	user_ent *u = NULL;
	CRDT_TRY(prep_user(c, user, ul, &u));
	if (u->hwalk != walk) {
		u->hwalk = walk;
		u->hpend = 0;
	}
	if (u->hpend >= SIZE_MAX - u->nh - 1)
		return CRDT_ENOMEM;
	void *v = u->h;
	CRDT_TRY(crdt__grow(crdt__chat_ix_alloc(c), &v, &u->caph,
	    u->nh + u->hpend + 1,
	    sizeof *u->h));
	u->h = v;
	u->hpend++;
	return 0;
}

/* ---------------------------------------------------------------- */
/* ops                                                              */

/*
 * A message record is [ID, ...] with the ID a dot (bin 16, uint): the ID
 * names the record, and records sharing one are rivals (equivocation),
 * bounded per ID by the G-Set. The messages set hashes the ID's 24-byte
 * key (crdt__chat_dot_key) under the index's key, not the whole ~90-byte
 * record: the same hash the index uses for the dot (crdt__chat_dot_hash32),
 * so the fold takes it from the entry instead of hashing again. Bytes
 * that do not start like that are hashed whole (0).
 */
size_t
crdt__chat_rec_ident(const uint8_t *p, size_t len, uint8_t *out)
{
	if (len < 20 || p[0] != 0x98 || p[1] != 0xc4 || p[2] != 0x10)
		return 0;
	uint8_t t = p[19];
	size_t n = t <= 0x7f ? 0 : t == 0xcc ? 1 : t == 0xcd ? 2 :
	    t == 0xce ? 4 : t == 0xcf ? 8 : SIZE_MAX;
	if (n == SIZE_MAX || 20 + n > len)
		return 0;
	/* Checked: the record starts with a whole dot. */
	crdt__chat_dot_key(out, crdt__chat_rec_dot(p));
	return 24;
}

const uint8_t *
crdt__chat_rec_find(const crdt_chat *c, const uint8_t *p, size_t n)
{
	const crdt__key *k = crdt__gset_find(c->msgs, p, n);
	return k != NULL ? k->ptr : NULL;
}

static int
w_dot(crdt_buf *b, crdt_dot d)
{
	CRDT_TRY(crdt__w_id(b, &d.replica));
	return crdt__w_uint(b, d.counter);
}

/*
 * Validate (u == NULL) or apply one chat op. The reader is positioned
 * after [obj, kind; `n` is the op's array length. Writes go through the
 * undo log into the sub-objects; the index follows after commit.
 */
int
crdt__chat_op(crdt_chat *c, crdt__rd *r, size_t n, uint64_t kind,
    crdt_dot dot, uint64_t stamp, crdt__undo *u, uint32_t obj,
    crdt_buf *scratch, uint64_t walk, crdt__chat_tail *tail)
{
	int rc;

	/* Only after an impossible fold failure (see crdt__chat_after):
	 * catch up before writing. Folding is idempotent, so records this
	 * transaction already wrote are folded once more harmlessly. */
	if (u != NULL && !c->ix->ok)
		CRDT_TRY(crdt__chat_ix_rebuild(c));
	const uint8_t *a, *b;
	size_t al, bl;
	bool present;
	crdt_dot d;
	uint64_t x;

	switch (kind) {
	case CRDT__CHAT_OP_POST: {
		const uint8_t *meta;
		size_t ml;
		bool has_meta, has_reply;
		uint64_t seen;
		if (n != 7)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__rd_uint(r, &seen));
		const uint8_t *src = r->p;
		CRDT_TRY(crdt__rd_bin(r, &a, &al));
		CRDT_TRY(crdt__rd_bin(r, &b, &bl));
		CRDT_TRY(rd_opt_dot(r, &d, &has_reply));
		CRDT_TRY(crdt__rd_opt_bin(r, &meta, &ml, &has_meta));
		if (!crdt__chat_user_len_ok(al) || seen > SEEN_MAX)
			return CRDT_EMALFORMED;
		if (u == NULL)
			return 0;
		/* The op's tail from the user on, [user, body, reply, meta],
		 * is what the record's tail is written as (crdt__chat_tail). */
		size_t src_len = (size_t)(r->p - src), rec_tail;
		/* The order key: after everything the author had seen. */
		uint64_t ord = CRDT_MAX(stamp, seen + 1);
		/* Offsets of the byte fields (the buffer may move). */
		size_t uoff, boff, moff = 0;
		c->ix->pend.ok = false;
		crdt_buf_clear(scratch);
		CRDT_TRY(crdt__w_array(scratch, 8));
		CRDT_TRY(w_dot(scratch, dot));
		CRDT_TRY(crdt__w_uint(scratch, ord));
		CRDT_TRY(crdt__w_uint(scratch, stamp));
		rec_tail = scratch->len;
		CRDT_TRY(crdt__w_bin(scratch, a, al));
		uoff = scratch->len - al;
		CRDT_TRY(crdt__w_bin(scratch, b, bl));
		boff = scratch->len - bl;
		if (has_reply) {
			CRDT_TRY(crdt__w_array(scratch, 2));
			CRDT_TRY(w_dot(scratch, d));
		} else {
			CRDT_TRY(crdt__w_nil(scratch));
		}
		if (has_meta) {
			CRDT_TRY(crdt__w_bin(scratch, meta, ml));
			moff = scratch->len - ml;
		} else {
			CRDT_TRY(crdt__w_nil(scratch));
		}
		size_t n0 = crdt_gset_size(c->msgs);
		CRDT_TRY(crdt__gset_write(c->msgs, scratch->data, scratch->len,
		    dot, u, obj));
		CRDT_TRY(prep_post(c, dot, a, al, scratch->len));
		if (crdt_gset_size(c->msgs) == n0 + 1) {
			/* A new entry (not a known record): remember what
			 * the fold will need to know about it. */
			const crdt__key *k = crdt__gset_entry_key(c->msgs, n0);
			chat_index *ix = c->ix;
			msgrec *m = &ix->pend.m;
			m->id = dot;
			m->ord = ord;
			m->sent_at = stamp;
			m->user = k->ptr + uoff;
			m->user_len = al;
			m->body = k->ptr + boff;
			m->body_len = bl;
			m->meta = has_meta ? k->ptr + moff : NULL;
			m->meta_len = has_meta ? ml : 0;
			m->has_reply = has_reply;
			m->reply = has_reply ? d : (crdt_dot){ { { 0 } }, 0 };
			ix->pend.idx = n0;
			ix->pend.rec = k->ptr;
			ix->pend.len = k->len;
			ix->pend.lone = crdt__gset_last_chain(c->msgs) == 0;
			ix->pend.ok = true;
			/* Strict decoding re-encodes to the same bytes, so
			 * they agree; checked all the same, since what the
			 * log serves must be the message itself. */
			if (tail != NULL && k->len - rec_tail == src_len &&
			    memcmp(k->ptr + rec_tail, src, src_len) == 0)
				*tail = (crdt__chat_tail){ src, k->ptr, src_len,
					rec_tail };
		}
		return 0;
	}
	case CRDT__CHAT_OP_REACT:
		if (n != 7)
			return CRDT_EMALFORMED;
		CRDT_TRY(rd_dot(r, &d));
		CRDT_TRY(crdt__rd_bin(r, &a, &al));
		CRDT_TRY(crdt__rd_bin(r, &b, &bl));
		CRDT_TRY(crdt__rd_uint(r, &x));
		if (al == 0 || al > USER_MAX || x > 1)
			return CRDT_EMALFORMED;
		if (u == NULL)
			return 0;
		crdt_buf_clear(scratch);
		CRDT_TRY(crdt__w_array(scratch, 4));
		CRDT_TRY(w_dot(scratch, d));
		CRDT_TRY(crdt__w_bin(scratch, a, al));
		CRDT_TRY(crdt__w_bin(scratch, b, bl));
		CRDT_TRY(crdt__map_write(c->reacts, scratch->data,
		    scratch->len, stamp, &dot.replica, x == 1,
		    (const uint8_t *)"", 0, u, obj));
		return prep_react(c, d);
	case CRDT__CHAT_OP_READ:
	case CRDT__CHAT_OP_ACK: {
		size_t pairs;
		if (kind == CRDT__CHAT_OP_READ) {
			if (n != 4)
				return CRDT_EMALFORMED;
			CRDT_TRY(crdt__rd_bin(r, &a, &al));
			if (al == 0 || al > USER_MAX)
				return CRDT_EMALFORMED;
		} else {
			if (n != 3)
				return CRDT_EMALFORMED;
			if (!crdt__chat_is_server(c, &dot.replica))
				return CRDT_EPERM;
		}
		CRDT_TRY(crdt__rd_array(r, &pairs));
		if (pairs % 2 != 0)
			return CRDT_EMALFORMED;
		crdt_replica_id prev;
		for (size_t i = 0; i < pairs / 2; i++) {
			CRDT_TRY(rd_dot(r, &d));
			if (i > 0 && crdt_replica_id_cmp(&prev,
			    &d.replica) >= 0)
				return CRDT_EMALFORMED;
			prev = d.replica;
			if (u == NULL)
				continue;
			crdt_buf_clear(scratch);
			bool rd = kind == CRDT__CHAT_OP_READ;
			CRDT_TRY(crdt__w_array(scratch, rd ? 4 : 3));
			CRDT_TRY(crdt__w_uint(scratch, rd ?
			    CRDT__CHAT_REC_READ : CRDT__CHAT_REC_ACK));
			if (kind == CRDT__CHAT_OP_READ)
				CRDT_TRY(crdt__w_bin(scratch, a, al));
			CRDT_TRY(w_dot(scratch, d));
			CRDT_TRY(crdt__gset_write(c->marks, scratch->data,
			    scratch->len, dot, u, obj));
			if (kind == CRDT__CHAT_OP_READ) {
				user_ent *ue = NULL;
				CRDT_TRY(prep_user(c, a, al, &ue));
				CRDT_TRY(crdt__chat_rclock_reserve(
				    crdt__chat_ix_alloc(c), &ue->read,
				    &d.replica));
			} else {
				CRDT_TRY(crdt__chat_rclock_reserve(
				    crdt__chat_ix_alloc(c), &c->ix->acked,
				    &d.replica));
			}
		}
		r->depth--;
		return 0;
	}
	case CRDT__CHAT_OP_MEMBER:
		if (n != 4)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__rd_bin(r, &a, &al));
		CRDT_TRY(crdt__rd_uint(r, &x));
		if (al == 0 || al > USER_MAX || x > 1)
			return CRDT_EMALFORMED;
		if (u == NULL)
			return 0;
		crdt_buf_clear(scratch);
		CRDT_TRY(crdt__w_array(scratch, 5));
		CRDT_TRY(crdt__w_uint(scratch, CRDT__CHAT_REC_MEMBER));
		CRDT_TRY(crdt__w_bin(scratch, a, al));
		CRDT_TRY(crdt__w_uint(scratch, x));
		CRDT_TRY(crdt__w_uint(scratch, stamp));
		CRDT_TRY(crdt__w_id(scratch, &dot.replica));
		CRDT_TRY(crdt__gset_write(c->marks, scratch->data,
		    scratch->len, dot, u, obj));
		return prep_member(c, a, al, walk);
	case CRDT__CHAT_OP_REJECT:
		if (n != 5)
			return CRDT_EMALFORMED;
		CRDT_TRY(rd_dot(r, &d));
		CRDT_TRY(crdt__rd_bin(r, &a, &al));
		if (!crdt__chat_is_server(c, &dot.replica))
			return CRDT_EPERM;
		if (u == NULL)
			return 0;
		crdt_buf_clear(scratch);
		CRDT_TRY(crdt__w_array(scratch, 4));
		CRDT_TRY(crdt__w_uint(scratch, CRDT__CHAT_REC_REJECT));
		CRDT_TRY(w_dot(scratch, d));
		CRDT_TRY(crdt__w_bin(scratch, a, al));
		CRDT_TRY(crdt__gset_write(c->marks, scratch->data,
		    scratch->len, dot, u, obj));
		if (crdt__chat_dot_get(c->ix, d, true, &rc) == NULL)
			return rc ? rc : CRDT_ENOMEM;
		return 0;
	}
	(void)present;
	return CRDT_EMALFORMED;
}

/*
 * After commit: fold one undo record of this chat into the index and say
 * what a UI should hear. The apply walk reserved everything this needs
 * (prep_*), so it does not fail; should it ever, the index is marked
 * stale, queries report CRDT_ENOMEM and the next write rebuilds it.
 */
bool
crdt__chat_after(crdt_chat *c, const crdt__undo_rec *rec, crdt_change *ch,
    bool report)
{
	crdt_dot about;
	size_t pos;
	int rc = 0;

	memset(&about, 0, sizeof about);
	if (!c->ix->ok)
		return false; /* will be rebuilt; report nothing precise */
	if (rec->target == c->msgs && rec->kind == CRDT__UNDO_GSET_NEW) {
		const crdt__key *k = crdt__gset_entry_key(c->msgs, rec->idx);
		chat_index *ix = c->ix;
		bool mine = ix->pend.ok && ix->pend.idx == rec->idx &&
		    ix->pend.rec == k->ptr && ix->pend.len == k->len;
		rc = crdt__chat_ix_add_msg(c, k->ptr, k->len,
		    report ? &pos : NULL, &about, mine ? &ix->pend.m : NULL,
		    mine && ix->pend.lone, rec->idx);
		ix->pend.ok = false;
		if (rc == IX_HIDDEN)
			return false;
		ch->kind = rc == IX_SHOWN ? CRDT_CHANGE_CHAT_INSERT :
					    CRDT_CHANGE_CHAT_UPDATE;
		ch->msg = about;
		ch->position = report ? pos : 0;
	} else if (rec->target == c->marks &&
	    rec->kind == CRDT__UNDO_GSET_NEW) {
		const crdt__key *k = crdt__gset_entry_key(c->marks, rec->idx);
		rc = crdt__chat_ix_add_mark(c, k->ptr, k->len, &about);
		ch->kind = CRDT_CHANGE_CHAT_UPDATE;
		ch->msg = about;
	} else if (rec->target == c->reacts &&
	    (rec->kind == CRDT__UNDO_MAP_NEW ||
		rec->kind == CRDT__UNDO_MAP_REG)) {
		rc = crdt__chat_ix_react(c, rec->idx, &about);
		ch->kind = CRDT_CHANGE_CHAT_UPDATE;
		ch->msg = about;
	} else {
		return false;
	}
	if (rc < 0) {
		c->ix->ok = false;
		return false;
	}
	return true;
}
