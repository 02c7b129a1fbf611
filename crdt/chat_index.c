/*
 * The chat thread's derived index (chat_impl.h; its layout is described
 * at the top of chat.c): built when a state is decoded or merged, and
 * folded after each committed transaction from room the apply walk
 * reserved, so queries never build or allocate.
 */
#include "chat_impl.h"

/* ---------------------------------------------------------------- */
/* index maintenance                                                */

static void
user_fini(void *e, const crdt_allocator *a)
{
	user_ent *u = e;
	crdt__free(a, u->read.v, u->read.cap * sizeof *u->read.v);
	crdt__free(a, u->h, u->caph * sizeof *u->h);
}

static void
rep_fini(void *e, const crdt_allocator *a)
{
	rep_ent *r = e;
	crdt__free(a, r->ctr.v, r->ctr.cap * sizeof *r->ctr.v);
}

void
crdt__chat_ix_clear(crdt_chat *c)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	crdt__free(a, ix->nodes, ix->capn * sizeof *ix->nodes);
	crdt__free(a, ix->gnode, ix->capg * sizeof *ix->gnode);
	crdt__free(a, ix->rl, ix->caprl * sizeof *ix->rl);
	crdt__free(a, ix->rf, ix->caprf * sizeof *ix->rf);
	crdt__free(a, ix->ul, ix->capul * sizeof *ix->ul);
	crdt__table_fini(&ix->dots, NULL);
	crdt__table_fini(&ix->reps, rep_fini);
	crdt__table_fini(&ix->ureps, rep_fini);
	crdt__table_fini(&ix->users, user_fini);
	crdt__free(a, ix->acked.v, ix->acked.cap * sizeof *ix->acked.v);
	uint8_t key[16];
	const crdt_chat *owner = ix->owner;
	memcpy(key, ix->prio_key, sizeof key);
	memset(ix, 0, sizeof *ix);
	memcpy(ix->prio_key, key, sizeof key);
	ix->owner = owner;
	ix->root = NIL;
}

int
crdt__chat_ix_init(crdt_chat *c)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	ix->root = NIL;
	CRDT_TRY(crdt__table_init(&ix->dots, a, sizeof(dot_ent)));
	CRDT_TRY(crdt__table_init(&ix->reps, a, sizeof(rep_ent)));
	CRDT_TRY(crdt__table_init(&ix->ureps, a, sizeof(rep_ent)));
	CRDT_TRY(crdt__table_init(&ix->users, a, sizeof(user_ent)));
	ix->ok = true;
	return 0;
}

dot_ent *
crdt__chat_dot_get(chat_index *ix, crdt_dot d, bool create, int *rc)
{
	uint8_t k[24];
	crdt__chat_dot_key(k, d);
	return crdt__chat_tab_get(&ix->dots, k, sizeof k, create, rc);
}

/* The dot's hash under the chat's secret key: slot and treap priority.
 * Keyed, so a peer cannot choose dots that collide or unbalance the
 * treap. */
uint32_t
crdt__chat_dot_hash32(const chat_index *ix, crdt_dot d)
{
	uint8_t k[24];
	crdt__chat_dot_key(k, d);
	return (uint32_t)(crdt__siphash(ix->prio_key, k, sizeof k) >> 32);
}

uint32_t
crdt__chat_node_find(const crdt_chat *c, crdt_dot d, uint32_t h)
{
	const chat_index *ix = c->ix;
	uint8_t k[24];
	size_t pos = 0, gi;
	crdt__chat_dot_key(k, d);
	/* Every record of the dot (rivals included) maps to its one node
	 * once folded. An undo takes back only records no fold has seen
	 * (the fold runs after the commit point), and a rebuild starts
	 * gnode afresh, so a set cell is never another dot's. */
	while ((gi = crdt__gset_ident_next(c->msgs, k, sizeof k, h, &pos)) !=
	    SIZE_MAX) {
		if (gi >= ix->capg || ix->gnode[gi] >= ix->nn)
			continue; /* not folded yet (NIL) */
		/* The entry's record names d (ident_next compared it), so
		 * the node is d's: it shows this record or a rival of it. */
		assert(crdt_dot_cmp(crdt__chat_node_id(ix,
		    &ix->nodes[ix->gnode[gi]]), d) == 0);
		return ix->gnode[gi];
	}
	return NIL;
}

/* gnode for msgs entries 0 .. need - 1; new cells are NIL. */
int
crdt__chat_gnode_grow(chat_index *ix, const crdt_allocator *a, size_t need)
{
	size_t old = ix->capg;
	void *v = ix->gnode;
	CRDT_TRY(crdt__grow(a, &v, &ix->capg, need, sizeof *ix->gnode));
	ix->gnode = v;
	memset(ix->gnode + old, 0xff, (ix->capg - old) * sizeof *ix->gnode);
	return 0;
}

/* Read-only: the reactions and rejection of a dot, NULL when none. */
const dot_ent *
crdt__chat_dot_of(const crdt_chat *c, crdt_dot id)
{
	int rc;
	return crdt__chat_dot_get(c->ix, id, false, &rc);
}

/* Lookup only (no allocation): used by const queries. */
user_ent *
crdt__chat_user_find(const chat_index *ix, const void *u, size_t n)
{
	uint32_t h = crdt__table_hash(&ix->users, u, n);
	return crdt__table_find(&ix->users, u, n, h);
}

static int
user_cmp(const void *ctx, size_t a, size_t b)
{
	const crdt__table *t = ctx;
	const user_ent *x = crdt__table_at(t, a), *y = crdt__table_at(t, b);
	return crdt__key_cmp(x->k.ptr, x->k.len, y->k.ptr, y->k.len);
}

/* The entry of user `u`, created (and put in the users' byte-order tree)
 * on first sight. */
user_ent *
crdt__chat_user_get(chat_index *ix, const crdt_allocator *a, const uint8_t *u,
    size_t n, int *rc)
{
	user_ent *e = crdt__chat_user_find(ix, u, n);
	*rc = 0;
	if (e != NULL)
		return e;
	if (!crdt__chat_user_len_ok(n)) {
		*rc = CRDT_EMALFORMED;
		return NULL;
	}
	/* Links first: once the entry exists it must be in the tree. */
	if ((*rc = crdt__chat_ol_reserve(a, &ix->ul, &ix->capul,
	    ix->users.n + 1)) < 0)
		return NULL;
	e = crdt__chat_tab_get(&ix->users, u, n, true, rc);
	if (e == NULL) {
		if (*rc == 0)
			*rc = CRDT_ENOMEM;
		return NULL;
	}
	size_t i = ix->users.n - 1;
	uint32_t prio = (uint32_t)crdt__siphash(ix->prio_key, e->k.ptr,
	    e->k.len);
	crdt__chat_ot_insert(ix->ul, &ix->uroot, i, prio, user_cmp, &ix->users);
	return e;
}

/* The (user, replica) entry of a record; created on demand. */
static rep_ent *
urep_get(chat_index *ix, const uint8_t *user, size_t ul,
    const crdt_replica_id *rep, bool create, int *rc)
{
	uint8_t key[16 + USER_MAX];
	/* parse_msgrec bounds user_len; never copy more than the key. */
	if (!crdt__chat_user_len_ok(ul)) {
		*rc = CRDT_EMALFORMED;
		return NULL;
	}
	memcpy(key, user, ul);
	memcpy(key + ul, rep->bytes, 16);
	return crdt__chat_tab_get(&ix->ureps, key, ul + 16, create, rc);
}

/*
 * The replica, (user, replica) and user entries of a message, created on
 * first sight. Consecutive messages usually share author and replica, and
 * prep_post() (chat.c) asks for the entries of exactly the message
 * crdt__chat_ix_add_msg() folds after commit: the entries of the last few
 * pairs found (by index; entries never move between indices or leave these
 * tables) answer both without hashing, so each key is hashed at most once
 * per message, and not at all while a few writers interleave.
 */
int
crdt__chat_msg_ents(chat_index *ix, const crdt_allocator *a,
    const crdt_replica_id *id,
    const uint8_t *user, size_t ul, rep_ent **rep, rep_ent **urep,
    user_ent **user_out)
{
	int rc;

	for (unsigned i = 0; i < ix->nlast; i++) {
		rep_ent *re = crdt__table_at(&ix->reps, ix->last[i].rep);
		user_ent *u = crdt__table_at(&ix->users, ix->last[i].user);
		if (u->k.len == ul &&
		    memcmp(re->k.ptr, id->bytes, 16) == 0 &&
		    memcmp(u->k.ptr, user, ul) == 0) {
			*rep = re;
			*urep = crdt__table_at(&ix->ureps, ix->last[i].urep);
			*user_out = u;
			return 0;
		}
	}
	rep_ent *re = crdt__chat_tab_get(&ix->reps, id->bytes, 16, true, &rc);
	if (re == NULL)
		return rc ? rc : CRDT_ENOMEM;
	rep_ent *ue = urep_get(ix, user, ul, id, true, &rc);
	if (ue == NULL)
		return rc ? rc : CRDT_ENOMEM;
	user_ent *u = crdt__chat_user_get(ix, a, user, ul, &rc);
	if (u == NULL)
		return rc ? rc : CRDT_ENOMEM;
	unsigned slot = ix->next_last;
	ix->next_last = (slot + 1) % CHAT_LAST;
	if (ix->nlast < CHAT_LAST)
		ix->nlast++;
	ix->last[slot].rep = (uint32_t)(((uint8_t *)re - ix->reps.ents) /
	    ix->reps.stride);
	ix->last[slot].urep = (uint32_t)(((uint8_t *)ue - ix->ureps.ents) /
	    ix->ureps.stride);
	ix->last[slot].user = (uint32_t)(((uint8_t *)u - ix->users.ents) /
	    ix->users.stride);
	*rep = re;
	*urep = ue;
	*user_out = u;
	return 0;
}

/* The replica's shared (user, replica) entry gets its own copy of the
 * replica's counters (rep_ent): only the representation changes, so a
 * copy made before a transaction that then rolls back describes the same
 * lists. */
int
crdt__chat_urep_unshare(chat_index *ix, const crdt_allocator *a, rep_ent *re)
{
	if (re->sole == 0)
		return 0;
	rep_ent *o = crdt__table_at(&ix->ureps, re->sole - 1);
	void *v = NULL;
	size_t cap = 0;
	assert(o->shared && o->ctr.n == 0 && re->ctr.n > 0);
	CRDT_TRY(crdt__grow(a, &v, &cap, re->ctr.n, sizeof *re->ctr.v));
	memcpy(v, re->ctr.v, re->ctr.n * sizeof *re->ctr.v);
	crdt__free(a, o->ctr.v, o->ctr.cap * sizeof *o->ctr.v);
	o->ctr.v = v;
	o->ctr.n = re->ctr.n;
	o->ctr.cap = cap;
	o->ctr.sorted = re->ctr.sorted;
	o->shared = false;
	re->sole = 0;
	return 0;
}

void
crdt__chat_urep_share(chat_index *ix, const crdt_allocator *a, rep_ent *re,
    rep_ent *ue)
{
	/* Room a rolled-back post reserved describes nothing. */
	assert(re->sole == 0 && re->ctr.n == 0 && ue->ctr.n == 0);
	crdt__free(a, ue->ctr.v, ue->ctr.cap * sizeof *ue->ctr.v);
	memset(&ue->ctr, 0, sizeof ue->ctr);
	re->sole = (uint32_t)(((uint8_t *)ue - ix->ureps.ents) /
	    ix->ureps.stride) + 1;
	ue->shared = true;
}

/*
 * A second record for a message ID already indexed: two writers used one
 * replica ID (an equivocating peer, or a device restored without its
 * state). Nothing can be refused here without making acceptance depend on
 * arrival order, so both records stay in the replicated set (a union, like
 * every G-Set) and the index shows the one with the smallest bytes: every
 * replica shows the same one, whichever arrived first. Returns IX_HIDDEN
 * when the shown record stays, IX_REPLACED when the new one takes over.
 */
static int
ix_rival(crdt_chat *c, uint32_t y, const uint8_t *rec, size_t len,
    size_t gi, const msgrec *m, size_t *pos)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	tnode *n = &ix->nodes[y];
	msgrec old;
	int rc;

	const crdt__key *cur = crdt__chat_node_rec(c, n);
	if (crdt__key_cmp(rec, len, cur->ptr, cur->len) >= 0)
		return IX_HIDDEN;
	CRDT_TRY(crdt__chat_parse_msgrec(cur->ptr, cur->len, &old));
	if (old.user_len != m->user_len ||
	    memcmp(old.user, m->user, m->user_len) != 0) {
		/* Move the message between authors: allocate first. */
		rep_ent *ue = urep_get(ix, m->user, m->user_len,
		    &m->id.replica, true, &rc);
		if (ue == NULL)
			return rc ? rc : CRDT_ENOMEM;
		user_ent *u = crdt__chat_user_get(ix, a, m->user, m->user_len,
		    &rc);
		if (u == NULL)
			return rc ? rc : CRDT_ENOMEM;
		/* The message leaves its author's list: the replica's list
		 * is no longer that author's alone. */
		rep_ent *re = crdt__chat_tab_get(&ix->reps,
		    m->id.replica.bytes, 16, false, &rc);
		if (re == NULL) /* indexed, so its replica's entry is there */
			return rc ? rc : CRDT_EINVAL;
		CRDT_TRY(crdt__chat_urep_unshare(ix, a, re));
		assert(!ue->shared);
		CRDT_TRY(crdt__chat_u64v_add(a, &ue->ctr, m->id.counter,
		    ix->bulk));
		u->posted++;
		rep_ent *oe = urep_get(ix, old.user, old.user_len,
		    &old.id.replica, false, &rc);
		user_ent *ou = crdt__chat_user_find(ix, old.user, old.user_len);
		if (oe != NULL)
			crdt__chat_u64v_erase(&oe->ctr, m->id.counter);
		if (ou != NULL)
			ou->posted--;
	}
	crdt__chat_treap_remove(ix, y);
	n = &ix->nodes[y];
	n->ord = m->ord;
	n->gi = (uint32_t)gi;
	crdt__chat_treap_insert(ix, y);
	if (pos != NULL)
		*pos = crdt__chat_rank(ix, y);
	return IX_REPLACED;
}

/* A record entered msgs: index it. Returns IX_SHOWN with its position, or
 * what ix_rival returns for a second record of one message ID. */
int
crdt__chat_ix_add_msg(crdt_chat *c, const uint8_t *rec, size_t len, size_t *pos,
    crdt_dot *id, const msgrec *pre, bool lone, size_t idx)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	msgrec m;

	if (len > UINT32_MAX)
		return CRDT_ETOOBIG;
	if (pre != NULL) {
		m = *pre;
#ifndef NDEBUG
		msgrec chk;
		assert(crdt__chat_parse_msgrec(rec, len, &chk) == 0 &&
		    crdt__chat_msgrec_same(&chk, &m));
#endif
	} else {
		CRDT_TRY(crdt__chat_parse_msgrec(rec, len, &m));
	}
	*id = m.id;
	/* Every record counts, shown or not: the key is a function of the
	 * replicated set, whatever order the records came in. */
	if (m.ord > ix->max_ord)
		ix->max_ord = m.ord;
	/* The messages set hashed this record's ID under our key already
	 * (crdt__chat_rec_ident): the same value, no second SipHash. */
	uint32_t eh;
	uint32_t h = crdt__gset_ident_hash(c->msgs, crdt__chat_rec_ident,
	    ix->prio_key, idx, &eh) ? eh : crdt__chat_dot_hash32(ix, m.id);
	assert(h == crdt__chat_dot_hash32(ix, m.id));
	/* Reserved before the commit point on the apply path (prep_post). */
	CRDT_TRY(crdt__chat_gnode_reserve(ix, a, idx + 1));
	uint32_t y = lone ? NIL : crdt__chat_node_find(c, m.id, h);
	assert(!lone || crdt__chat_node_find(c, m.id, h) == NIL);
	if (y != NIL) {
		/* Shown or not, this record is its message's. */
		int rc = ix_rival(c, y, rec, len, idx, &m, pos);
		if (rc >= 0)
			ix->gnode[idx] = y;
		return rc;
	}
	CRDT_TRY(crdt__chat_node_room(ix, a, idx + 1));
	rep_ent *re, *ue;
	user_ent *u;
	CRDT_TRY(crdt__chat_msg_ents(ix, a, &m.id.replica, m.user, m.user_len,
	    &re, &ue,
	    &u));
	/* Room in both lists before either changes: no undo needed. */
	CRDT_TRY(crdt__chat_ctr_room(ix, a, re, ue));
	crdt__chat_ctr_add(ix, a, re, ue, m.id.counter);
	u->posted++;
	uint32_t x = (uint32_t)ix->nn++;
	tnode *n = &ix->nodes[x];
	memset(n, 0, sizeof *n);
	n->ord = m.ord;
	n->gi = (uint32_t)idx;
	n->l = n->r = n->p = NIL;
	n->size = 1;
	/* The dot's keyed hash doubles as the treap priority. */
	n->prio = h;
	ix->gnode[idx] = x;
	crdt__chat_treap_insert(ix, x);
	if (pos != NULL) /* O(log n): only when somebody listens */
		*pos = crdt__chat_rank(ix, x);
	return IX_SHOWN;
}

static int
hist_cmp(const hist *a, const hist *b)
{
	if (a->stamp != b->stamp)
		return a->stamp < b->stamp ? -1 : 1;
	int c = crdt_replica_id_cmp(&a->writer, &b->writer);
	if (c != 0 || a->joined == b->joined)
		return c;
	/* One writer, one stamp, both a join and a leave: only an
	 * equivocating writer does that. A total order keeps the outcome
	 * independent of arrival; the leave sorts last, so it wins. */
	return a->joined ? -1 : 1;
}

/* A record entered marks: fold it into the index. */
int
crdt__chat_ix_add_mark(crdt_chat *c, const uint8_t *rec, size_t len,
    crdt_dot *about)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	markrec mk;
	int rc;

	CRDT_TRY(crdt__chat_parse_mark(rec, len, &mk));
	if (mk.kind == CRDT__CHAT_REC_READ) {
		user_ent *ue = crdt__chat_user_get(ix, a, mk.user, mk.user_len,
		    &rc);
		if (ue == NULL)
			return rc ? rc : CRDT_ENOMEM;
		return crdt__chat_rclock_raise(a, &ue->read, mk.d);
	}
	if (mk.kind == CRDT__CHAT_REC_MEMBER) {
		user_ent *ue = crdt__chat_user_get(ix, a, mk.user, mk.user_len,
		    &rc);
		if (ue == NULL)
			return rc ? rc : CRDT_ENOMEM;
		void *v = ue->h;
		CRDT_TRY(crdt__grow(a, &v, &ue->caph, ue->nh + 1,
		    sizeof *ue->h));
		ue->h = v;
		/* Binary search, then one move: changes usually come in
		 * stamp order (an append). */
		size_t lo = 0, hi = ue->nh;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (hist_cmp(&ue->h[mid], &mk.h) <= 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		memmove(&ue->h[lo + 1], &ue->h[lo],
		    (ue->nh - lo) * sizeof *ue->h);
		ue->h[lo] = mk.h;
		ue->nh++;
		return 0;
	}
	if (mk.kind == CRDT__CHAT_REC_ACK) {
		return crdt__chat_rclock_raise(a, &ix->acked, mk.d);
	}
	/* CRDT__CHAT_REC_REJECT (parse_mark accepts no other kind) */
	dot_ent *x = crdt__chat_dot_get(ix, mk.d, true, &rc);
	if (x == NULL)
		return rc ? rc : CRDT_ENOMEM;
	/* Two rejections of one message: keep the smaller reason so the
	 * choice does not depend on arrival order. */
	if (x->reason == NULL ||
	    crdt__key_cmp(mk.why, mk.why_len, x->reason, x->reason_len) < 0) {
		x->reason = mk.why;
		x->reason_len = mk.why_len;
	}
	*about = mk.d;
	return 0;
}

static int
rkey_cmp(const void *ctx, size_t a, size_t b)
{
	const crdt__key *x = crdt__map_entry(ctx, a, NULL);
	const crdt__key *y = crdt__map_entry(ctx, b, NULL);
	return crdt__key_cmp(x->ptr, x->len, y->ptr, y->len);
}

/*
 * Reaction map entry `idx` is new or has a new winner: fold its current
 * state in. Idempotent: the entry's flags say whether it is already in its
 * message's tree and counted as on, so the count follows the state however
 * many undo records one transaction left for the key (off then on is two
 * records, both seen after commit with the final state).
 */
int
crdt__chat_ix_react(crdt_chat *c, size_t idx, crdt_dot *about)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	const crdt__reg *reg;
	const crdt__key *k = crdt__map_entry(c->reacts, idx, &reg);
	rkey rk;
	int rc;

	if (idx >= UINT32_MAX - 1)
		return CRDT_ETOOBIG;
	CRDT_TRY(crdt__chat_parse_rkey(k->ptr, k->len, &rk));
	CRDT_TRY(crdt__chat_ol_reserve(a, &ix->rl, &ix->caprl, idx + 1));
	if (idx >= ix->caprf) {
		void *v = ix->rf;
		size_t old = ix->caprf;
		CRDT_TRY(crdt__grow(a, &v, &ix->caprf, idx + 1,
		    sizeof *ix->rf));
		ix->rf = v;
		memset(ix->rf + old, 0, ix->caprf - old);
	}
	dot_ent *x = crdt__chat_dot_get(ix, rk.d, true, &rc);
	if (x == NULL)
		return rc ? rc : CRDT_ENOMEM;
	uint8_t *f = &ix->rf[idx];
	if (!(*f & RF_INDEXED)) {
		uint8_t b[4];
		for (int i = 0; i < 4; i++)
			b[i] = (uint8_t)(idx >> (8 * i));
		uint32_t prio = (uint32_t)crdt__siphash(ix->prio_key, b,
		    sizeof b);
		crdt__chat_ot_insert(ix->rl, &x->rroot, idx, prio, rkey_cmp,
		    c->reacts);
		*f |= RF_INDEXED;
	}
	bool on = reg->state == CRDT__REG_VALUE;
	if (on && !(*f & RF_ON)) {
		x->reactions++;
		*f |= RF_ON;
	} else if (!on && (*f & RF_ON)) {
		x->reactions--;
		*f &= (uint8_t)~RF_ON;
	}
	*about = rk.d;
	return 0;
}

static void
sort_counters(crdt__table *t)
{
	for (size_t i = 0; i < t->n; i++)
		crdt__chat_u64v_sort(&((rep_ent *)crdt__table_at(t, i))->ctr);
}

/* Index the records from msgs entry `m0`, marks entry `k0` on, and every
 * reaction entry (idempotent), then sort what was appended in bulk. */
int
crdt__chat_ix_fold(crdt_chat *c, size_t m0, size_t k0)
{
	size_t pos;
	crdt_dot id;

	int rc = 0;

	c->ix->bulk = true;
	c->ix->pend.ok = false;
	for (size_t i = m0; rc >= 0 && i < crdt_gset_size(c->msgs); i++) {
		const crdt__key *k = crdt__gset_entry_key(c->msgs, i);
		rc = crdt__chat_ix_add_msg(c, k->ptr, k->len, &pos, &id, NULL,
		    false, i);
	}
	for (size_t i = k0; rc >= 0 && i < crdt_gset_size(c->marks); i++) {
		const crdt__key *k = crdt__gset_entry_key(c->marks, i);
		rc = crdt__chat_ix_add_mark(c, k->ptr, k->len, &id);
	}
	for (size_t i = 0; rc >= 0 && i < crdt__map_nentries(c->reacts); i++)
		rc = crdt__chat_ix_react(c, i, &id);
	sort_counters(&c->ix->reps);
	sort_counters(&c->ix->ureps);
	c->ix->bulk = false;
	return rc < 0 ? rc : 0;
}

/* Rebuild the whole index from the replicated state. On failure the index
 * is empty and marked stale (ok = false). */
int
crdt__chat_ix_rebuild(crdt_chat *c)
{
	crdt__chat_ix_clear(c);
	CRDT_TRY(crdt__chat_ix_init(c));
	c->ix->ok = false;
	CRDT_TRY(crdt__chat_ix_fold(c, 0, 0));
	c->ix->ok = true;
	return 0;
}

/*
 * The same index from a state the columnar decoder built: msgs entries
 * are ascending record bytes, so the records of one message ID are
 * adjacent and the first is the one shown (ix_rival keeps the smaller
 * bytes); the decoder already read each record's ID, order key and user,
 * so nothing is parsed again; and the tree is built from the nodes in key
 * order (crdt__chat_treap_build: linear when the records' order keys
 * ascend with (replica, counter), as they do for honest writers, whose
 * every post sorts after their previous one). Marks and reactions fold as
 * in a rebuild. On failure the index is empty and marked stale.
 */
int
crdt__chat_ix_bulk(crdt_chat *c, const chat_bulk *bk)
{
	const crdt_allocator *a = crdt__chat_ix_alloc(c);
	size_t n = crdt_gset_size(c->msgs);

	crdt__chat_ix_clear(c);
	CRDT_TRY(crdt__chat_ix_init(c));
	chat_index *ix = c->ix;
	ix->ok = false;
	if (n != bk->n || n >= UINT32_MAX - 1)
		return CRDT_EINVAL; /* not the state bk describes */
	ix->bulk = true;
	if (n > 0) {
		CRDT_TRY(crdt__chat_gnode_reserve(ix, a, n));
		void *v = ix->nodes;
		CRDT_TRY(crdt__grow(a, &v, &ix->capn, n, sizeof *ix->nodes));
		ix->nodes = v;
	}
	crdt_dot prev = { { { 0 } }, 0 };
	for (size_t i = 0; i < n; i++) {
		const bulk_rec *b = &bk->v[i];
		crdt_dot id;
		memcpy(id.replica.bytes, bk->ids + (size_t)b->rep * 16, 16);
		id.counter = b->counter;
		if (b->ord > ix->max_ord)
			ix->max_ord = b->ord;
		/* A second record of one ID: larger bytes, not shown, but
		 * its message's all the same. */
		if (i > 0 && crdt_dot_cmp(prev, id) == 0) {
			ix->gnode[i] = (uint32_t)ix->nn - 1;
			continue;
		}
		prev = id;
		const bulk_user *us = &bk->users[b->user];
		rep_ent *re, *ue;
		user_ent *u;
		CRDT_TRY(crdt__chat_msg_ents(ix, a, &id.replica, us->p, us->n,
		    &re, &ue, &u));
		CRDT_TRY(crdt__chat_ctr_room(ix, a, re, ue));
		crdt__chat_ctr_add(ix, a, re, ue, id.counter);
		u->posted++;
		/* The set hashed the record's ID under our key already. */
		uint32_t eh;
		uint32_t h = crdt__gset_ident_hash(c->msgs, crdt__chat_rec_ident,
		    ix->prio_key, i, &eh) ? eh : crdt__chat_dot_hash32(ix, id);
		assert(h == crdt__chat_dot_hash32(ix, id));
		uint32_t x = (uint32_t)ix->nn++;
		tnode *t = &ix->nodes[x];
		t->ord = b->ord;
		t->gi = (uint32_t)i;
		t->prio = h;
		t->l = t->r = t->p = NIL;
		t->size = 1;
		ix->gnode[i] = x;
	}
	CRDT_TRY(crdt__chat_treap_build(ix, a));
	/* Marks and reactions, then the counters appended in bulk sorted. */
	CRDT_TRY(crdt__chat_ix_fold(c, n, 0));
	ix->ok = true;
	return 0;
}

/*
 * Queries read the index as it is: it is built at load and kept current
 * at every commit and receive (room reserved before the commit point), so
 * no query allocates or rebuilds behind `const`. A stale index (only an
 * allocation failure while loading a state that was then discarded, or a
 * fold failure the reservations rule out) is reported, never repaired
 * here: the next write rebuilds it and can fail with its own error.
 */
int
crdt__chat_ensure(const crdt_chat *c)
{
	return c->ix->ok ? 0 : CRDT_ENOMEM;
}
