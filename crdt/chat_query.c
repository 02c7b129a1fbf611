/*
 * The chat thread's public read API (chat.h): every query reads the
 * index as it is (chat_index.c) and allocates nothing.
 */
#include "chat_impl.h"

/* ---------------------------------------------------------------- */
/* queries                                                          */

static void
fill(const crdt_chat *c, uint32_t x, crdt_chat_msg *out)
{
	const crdt__key *k = crdt__chat_node_rec(c, &c->ix->nodes[x]);
	msgrec m;
	memset(out, 0, sizeof *out);
	if (crdt__chat_parse_msgrec(k->ptr, k->len, &m) != 0)
		return;
	out->id = m.id;
	out->sent_at = m.sent_at;
	out->order = m.ord;
	out->user = m.user;
	out->user_len = m.user_len;
	out->body = m.body;
	out->body_len = m.body_len;
	out->has_reply_to = m.has_reply;
	out->reply_to = m.reply;
	out->meta = m.meta;
	out->meta_len = m.meta_len;
	/* Member when sent: the last membership change of the author with a
	 * stamp below the message's is a join. */
	const user_ent *u = crdt__chat_user_find(c->ix, m.user, m.user_len);
	if (u != NULL) {
		size_t lo = 0, hi = u->nh;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (u->h[mid].stamp < m.sent_at)
				lo = mid + 1;
			else
				hi = mid;
		}
		out->author_was_member = lo > 0 && u->h[lo - 1].joined;
	}
}

static uint32_t
find(const crdt_chat *c, crdt_dot id)
{
	return crdt__chat_node_find(c, id, crdt__chat_dot_hash32(c->ix,
	    id));
}

size_t
crdt_chat_count(const crdt_chat *c)
{
	/* Not the size of msgs: two records of one ID show as one. */
	return c != NULL && crdt__chat_ensure(c) == 0 ? c->ix->nn : 0;
}

int
crdt_chat_get(const crdt_chat *c, crdt_dot id, crdt_chat_msg *out)
{
	if (c == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	uint32_t x = find(c, id);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	fill(c, x, out);
	return 0;
}

int
crdt_chat_at(const crdt_chat *c, size_t pos, crdt_chat_msg *out)
{
	if (c == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	uint32_t x = crdt__chat_kth(c->ix, pos);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	fill(c, x, out);
	return 0;
}

int
crdt_chat_position(const crdt_chat *c, crdt_dot id, size_t *pos)
{
	if (c == NULL || pos == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	uint32_t x = find(c, id);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	*pos = crdt__chat_rank(c->ix, x);
	return 0;
}

int
crdt_chat_page(const crdt_chat *c, const crdt_dot *anchor, bool after,
    size_t k, crdt_dot *out, size_t *n)
{
	if (c == NULL || n == NULL || (out == NULL && k != 0))
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	const chat_index *ix = c->ix;
	uint32_t x;
	*n = 0;
	if (anchor == NULL) {
		size_t total = ix->nn;
		size_t first = total > k ? total - k : 0;
		x = crdt__chat_kth(ix, first);
		while (x != NIL && *n < k) {
			out[(*n)++] = crdt__chat_node_id(ix, &ix->nodes[x]);
			x = crdt__chat_step(ix, x, true);
		}
		return 0;
	}
	x = find(c, *anchor);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	if (after) {
		for (x = crdt__chat_step(ix, x, true); x != NIL && *n < k;
		     x = crdt__chat_step(ix, x, true))
			out[(*n)++] = crdt__chat_node_id(ix, &ix->nodes[x]);
		return 0;
	}
	/* Walk back k, then emit forwards so the page is in thread order. */
	size_t got = 0;
	uint32_t y = x;
	while (got < k) {
		uint32_t p = crdt__chat_step(ix, y, false);
		if (p == NIL)
			break;
		y = p;
		got++;
	}
	for (size_t i = 0; i < got; i++) {
		out[(*n)++] = crdt__chat_node_id(ix, &ix->nodes[y]);
		y = crdt__chat_step(ix, y, true);
	}
	return 0;
}

static bool
covered_by_ack(const crdt_chat *c, crdt_dot id)
{
	return crdt__chat_rclock_covers(&c->ix->acked, id);
}

bool
crdt_chat_has_read(const crdt_chat *c, const void *user, size_t user_len,
    crdt_dot id)
{
	if (c == NULL || user == NULL || crdt__chat_ensure(c) != 0)
		return false;
	const user_ent *u = crdt__chat_user_find(c->ix, user, user_len);
	return u != NULL && crdt__chat_rclock_covers(&u->read, id);
}

/* Someone other than the author has read it. */
static bool
read_by_other(const crdt_chat *c, uint32_t x)
{
	msgrec m;
	const crdt__table *t = &c->ix->users;
	const crdt__key *k = crdt__chat_node_rec(c, &c->ix->nodes[x]);
	if (crdt__chat_parse_msgrec(k->ptr, k->len, &m))
		return false;
	for (size_t i = 0; i < t->n; i++) {
		const user_ent *u = crdt__table_at(t, i);
		if (!crdt__chat_rclock_covers(&u->read, m.id))
			continue;
		if (u->k.len != m.user_len || memcmp(u->k.ptr, m.user,
		    m.user_len) != 0)
			return true;
	}
	return false;
}

int
crdt_chat_status_of(const crdt_chat *c, crdt_dot id, crdt_chat_status *st)
{
	if (c == NULL || st == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	uint32_t x = find(c, id);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	const dot_ent *e = crdt__chat_dot_of(c, id);
	if (e != NULL && e->reason != NULL)
		*st = CRDT_CHAT_REJECTED;
	else if (c->has_server && !covered_by_ack(c, id))
		*st = CRDT_CHAT_PENDING;
	else if (read_by_other(c, x))
		*st = CRDT_CHAT_READ;
	else
		*st = CRDT_CHAT_DELIVERED;
	return 0;
}

int
crdt_chat_rejection(const crdt_chat *c, crdt_dot id, const uint8_t **reason,
    size_t *len)
{
	if (c == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	const dot_ent *e = crdt__chat_dot_of(c, id);
	if (e == NULL || e->reason == NULL)
		return CRDT_ENOTFOUND;
	if (reason != NULL)
		*reason = e->reason;
	if (len != NULL)
		*len = e->reason_len;
	return 0;
}

size_t
crdt_chat_reaction_count(const crdt_chat *c, crdt_dot id)
{
	if (c == NULL || crdt__chat_ensure(c) != 0)
		return 0;
	const dot_ent *e = crdt__chat_dot_of(c, id);
	return e != NULL ? e->reactions : 0;
}

int
crdt_chat_reactions(const crdt_chat *c, crdt_dot id, crdt_chat_reaction_fn fn,
    void *ud)
{
	if (c == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	const dot_ent *e = crdt__chat_dot_of(c, id);
	if (e == NULL)
		return 0;
	/* In-order walk of the message's key tree: canonical byte order. */
	const olink *rl = c->ix->rl;
	for (uint32_t x = crdt__chat_ot_first(rl,
	    e->rroot); x != 0; x = crdt__chat_ot_next(rl, x)) {
		if (!(c->ix->rf[x - 1] & RF_ON))
			continue;
		const crdt__key *k = crdt__map_entry(c->reacts, x - 1, NULL);
		rkey rk;
		if (crdt__chat_parse_rkey(k->ptr, k->len, &rk) != 0)
			continue; /* validated when it entered the map */
		int v = fn(ud, rk.user, rk.user_len, rk.emoji, rk.emoji_len);
		if (v != 0)
			return v;
	}
	return 0;
}

int
crdt_chat_read_by(const crdt_chat *c, crdt_dot id, crdt_chat_user_fn fn,
    void *ud)
{
	if (c == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	const crdt__table *t = &c->ix->users;
	const olink *ul = c->ix->ul;
	for (uint32_t x = crdt__chat_ot_first(ul, c->ix->uroot); x != 0;
	     x = crdt__chat_ot_next(ul, x)) {
		const user_ent *u = crdt__table_at(t, x - 1);
		if (!crdt__chat_rclock_covers(&u->read, id))
			continue;
		int v = fn(ud, u->k.ptr, u->k.len);
		if (v != 0)
			return v;
	}
	return 0;
}

size_t
crdt_chat_unread(const crdt_chat *c, const void *user, size_t user_len)
{
	int rc;
	if (c == NULL || user == NULL || user_len > USER_MAX ||
	    crdt__chat_ensure(c) != 0)
		return 0;
	chat_index *ix = c->ix;
	const user_ent *u = crdt__chat_user_find(ix, user, user_len);
	size_t total = ix->nn, own = u ? u->posted : 0;
	size_t read_all = 0, read_own = 0;
	if (u != NULL) {
		uint8_t key[USER_MAX + 16];
		memcpy(key, user, user_len);
		for (size_t i = 0; i < u->read.n; i++) {
			crdt_replica_id id = u->read.v[i].id;
			uint64_t upto = u->read.v[i].c;
			if (upto == 0)
				continue; /* reserved, nothing read */
			rep_ent *re = crdt__chat_tab_get(&ix->reps, id.bytes,
			    16, false,
			    &rc);
			if (re != NULL)
				read_all += crdt__chat_u64v_upto(&re->ctr,
				    upto);
			memcpy(key + user_len, id.bytes, 16);
			rep_ent *ue = crdt__chat_tab_get(&ix->ureps, key,
			    user_len + 16,
			    false, &rc);
			if (ue != NULL)
				read_own += crdt__chat_u64v_upto(
				    crdt__chat_urep_ctr(re, ue), upto);
		}
	}
	/* unread = not covered, minus own messages not covered */
	return (total - read_all) - (own - read_own);
}

static bool
member_now(const user_ent *u)
{
	return u->nh > 0 && u->h[u->nh - 1].joined;
}

bool
crdt_chat_is_member(const crdt_chat *c, const void *user, size_t user_len)
{
	if (c == NULL || user == NULL || crdt__chat_ensure(c) != 0)
		return false;
	const user_ent *u = crdt__chat_user_find(c->ix, user, user_len);
	return u != NULL && member_now(u);
}

int
crdt_chat_members(const crdt_chat *c, crdt_chat_user_fn fn, void *ud)
{
	if (c == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	const crdt__table *t = &c->ix->users;
	const olink *ul = c->ix->ul;
	for (uint32_t x = crdt__chat_ot_first(ul, c->ix->uroot); x != 0;
	     x = crdt__chat_ot_next(ul, x)) {
		const user_ent *u = crdt__table_at(t, x - 1);
		if (!member_now(u))
			continue;
		int v = fn(ud, u->k.ptr, u->k.len);
		if (v != 0)
			return v;
	}
	return 0;
}

int
crdt_chat_outbox(const crdt_chat *c, const crdt_replica_id *self,
    int (*fn)(void *ud, crdt_dot id), void *ud)
{
	int rc;
	if (c == NULL || self == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__chat_ensure(c));
	/* Acks cover a prefix of each replica's counters, so the outbox is
	 * the suffix of our own counters past the acknowledged one; our own
	 * messages sort in counter order (each saw the previous). Cost
	 * O(log n + outbox). */
	rep_ent *re = crdt__chat_tab_get(&c->ix->reps, self->bytes, 16, false,
	    &rc);
	if (re == NULL || !c->has_server)
		return 0;
	uint64_t acked = crdt__chat_rclock_get(&c->ix->acked, self);
	for (size_t i = crdt__chat_u64v_upto(&re->ctr,
	    acked); i < re->ctr.n; i++) {
		crdt_dot id = { *self, re->ctr.v[i] };
		const dot_ent *e = crdt__chat_dot_of(c, id);
		if (e != NULL && e->reason != NULL)
			continue;
		int v = fn(ud, id);
		if (v != 0)
			return v;
	}
	return 0;
}
