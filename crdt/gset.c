/*
 * Grow-only set of byte strings. Merge rule per element: union, and of two
 * dots for the same element keep the smaller (crdt_dot_cmp), which makes
 * the recorded dot independent of delivery order.
 *
 * A set whose elements name themselves (crdt__gset_key_prefix with a
 * 24-byte identity: a chat record starts with its own dot) stores no dot
 * per element: the entry is the key alone (24 bytes instead of 48, one
 * per chat message) and the dot is read from the element. The rare
 * element whose dot is not its identity (a merged state said so, or the
 * element has no identity) keeps its dot in a side map, `ex`.
 */
#include <stdlib.h>

#include "internal.h"

typedef struct gs_entry {
	crdt__key k;
	crdt_dot dot;
} gs_entry;

/* Entry index -> dot, for the elements of an implied-dot set whose dot is
 * not their identity. Open addressing (index + 1, 0 = empty), probed from
 * a keyed hash of the index: a peer decides which entries land here. No
 * deletion: an entry popped by an undo may leave its slot behind, and the
 * next element inserted at that index overwrites it (ex_note). */
typedef struct gs_exmap {
	uint32_t *key;
	crdt_dot *dot;
	size_t n, cap; /* cap: 0 or a power of two, n <= cap / 4 * 3 */
} gs_exmap;

struct crdt_gset {
	crdt_config cfg;
	crdt_replica_id self;
	uint64_t counter; /* last counter used or seen for `self` */
	/* With an identity prefix (crdt__gset_key_prefix): at most this
	 * many elements share one prefix, so they share one hash. */
	size_t max_chain;
	/* Elements sharing the identity hash of the element the last write
	 * inserted, as it found them (SIZE_MAX: not counted, no identity
	 * prefix). */
	size_t last_chain;
	/* Entries are bare keys and the dot is the identity (see top). */
	bool implied;
	gs_exmap ex;
	crdt__table t;
	/* The elements' bytes: a grow-only set frees them all at once, so
	 * no allocation per element (entries' k.ptr point here). */
	crdt__arena ar;
};

#define IDENT_DOT 24 /* identity bytes that are a dot: replica, counter BE */

typedef size_t (*ident_fn)(const uint8_t *, size_t, uint8_t *);

/* The dot an element names through `ident`, if it names one. */
static bool
ident_dot_by(ident_fn ident, const uint8_t *p, size_t len, crdt_dot *d,
    uint8_t id[CRDT__IDENT_MAX])
{
	if (ident(p, len, id) != IDENT_DOT)
		return false;
	memcpy(d->replica.bytes, id, 16);
	d->counter = 0;
	for (int i = 16; i < IDENT_DOT; i++)
		d->counter = d->counter << 8 | id[i];
	return true;
}

static bool
ident_dot(const crdt_gset *s, const uint8_t *p, size_t len, crdt_dot *d,
    uint8_t id[CRDT__IDENT_MAX])
{
	return ident_dot_by(s->t.ident, p, len, d, id);
}

static size_t
ex_home(const crdt_gset *s, uint32_t idx, size_t mask)
{
	uint8_t b[4] = { (uint8_t)idx, (uint8_t)(idx >> 8),
		(uint8_t)(idx >> 16), (uint8_t)(idx >> 24) };
	return (size_t)crdt__siphash(s->t.sip, b, sizeof b) & mask;
}

static crdt_dot *
ex_find(const crdt_gset *s, size_t idx)
{
	const gs_exmap *m = &s->ex;
	if (m->n == 0)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = ex_home(s, (uint32_t)idx, mask);; i = (i + 1) & mask) {
		if (m->key[i] == 0)
			return NULL;
		if (m->key[i] == idx + 1)
			return &m->dot[i];
	}
}

/* Room for `extra` more exceptions: ex_put cannot fail after it. */
static int
ex_reserve(crdt_gset *s, size_t extra)
{
	gs_exmap *m = &s->ex;
	const crdt_allocator *a = &s->cfg.alloc;
	if (extra == 0)
		return 0;
	if (extra > SIZE_MAX / 8 - m->n)
		return CRDT_ENOMEM;
	size_t need = m->n + extra, cap = m->cap ? m->cap : 16;
	while (need > cap / 4 * 3)
		cap *= 2;
	if (cap == m->cap)
		return 0;
	uint32_t *key = crdt__malloc(a, cap * sizeof *key);
	crdt_dot *dot = crdt__malloc(a, cap * sizeof *dot);
	if (key == NULL || dot == NULL) {
		crdt__free(a, key, cap * sizeof *key);
		crdt__free(a, dot, cap * sizeof *dot);
		return CRDT_ENOMEM;
	}
	memset(key, 0, cap * sizeof *key);
	for (size_t j = 0; j < m->cap; j++) {
		if (m->key[j] == 0)
			continue;
		size_t i = ex_home(s, m->key[j] - 1, cap - 1);
		while (key[i] != 0)
			i = (i + 1) & (cap - 1);
		key[i] = m->key[j];
		dot[i] = m->dot[j];
	}
	crdt__free(a, m->key, m->cap * sizeof *m->key);
	crdt__free(a, m->dot, m->cap * sizeof *m->dot);
	m->key = key;
	m->dot = dot;
	m->cap = cap;
	return 0;
}

/* Entry idx's dot is `d`; room reserved (ex_reserve) unless idx has a
 * slot already. */
static void
ex_put(crdt_gset *s, size_t idx, crdt_dot d)
{
	crdt_dot *x = ex_find(s, idx);
	if (x != NULL) {
		*x = d;
		return;
	}
	gs_exmap *m = &s->ex;
	assert(m->cap != 0 && m->n + 1 <= m->cap / 4 * 3);
	size_t mask = m->cap - 1;
	size_t i = ex_home(s, (uint32_t)idx, mask);
	while (m->key[i] != 0)
		i = (i + 1) & mask;
	m->key[i] = (uint32_t)idx + 1;
	m->dot[i] = d;
	m->n++;
}

static void
ex_fini(crdt_gset *s)
{
	crdt__free(&s->cfg.alloc, s->ex.key, s->ex.cap * sizeof *s->ex.key);
	crdt__free(&s->cfg.alloc, s->ex.dot, s->ex.cap * sizeof *s->ex.dot);
	memset(&s->ex, 0, sizeof s->ex);
}

/* Whether storing dot `d` for element (p, len) needs an exception. */
static bool
needs_ex(const crdt_gset *s, const uint8_t *p, size_t len, crdt_dot d)
{
	uint8_t id[CRDT__IDENT_MAX];
	crdt_dot own;
	return s->implied && (!ident_dot(s, p, len, &own, id) ||
	    crdt_dot_cmp(own, d) != 0);
}

static crdt_dot
gs_dot(const crdt_gset *s, size_t idx)
{
	const crdt__key *k = crdt__table_at(&s->t, idx);
	if (!s->implied)
		return ((const gs_entry *)k)->dot;
	const crdt_dot *x = ex_find(s, idx);
	if (x != NULL)
		return *x;
	uint8_t id[CRDT__IDENT_MAX];
	crdt_dot d;
	bool ok = ident_dot(s, k->ptr, k->len, &d, id);
	assert(ok); /* an element without an identity has an exception */
	(void)ok;
	return d;
}

/* Set entry idx's dot: cannot fail when the caller checked needs_ex()
 * and reserved room for it, or when idx had an exception already. An
 * exception equal to the identity is harmless (gs_dot reads the same). */
static void
gs_set_dot(crdt_gset *s, size_t idx, crdt_dot d)
{
	if (!s->implied) {
		((gs_entry *)crdt__table_at(&s->t, idx))->dot = d;
		return;
	}
	const crdt__key *k = crdt__table_at(&s->t, idx);
	if (needs_ex(s, k->ptr, k->len, d) || ex_find(s, idx) != NULL)
		ex_put(s, idx, d);
}

/* The dot of entry idx, just inserted; `ex`: it is not the element's
 * identity (elem_hash), and room for the exception was reserved. */
static void
gs_init_dot(crdt_gset *s, size_t idx, crdt_dot d, bool ex)
{
	if (!s->implied)
		((gs_entry *)crdt__table_at(&s->t, idx))->dot = d;
	else if (ex || (s->ex.n != 0 && ex_find(s, idx) != NULL))
		ex_put(s, idx, d); /* or overwrite a popped entry's */
}

static size_t
gs_index(const crdt_gset *s, const void *e)
{
	return (size_t)((const uint8_t *)e - s->t.ents) / s->t.stride;
}

int
crdt_gset_new(const crdt_config *cfg, const crdt_replica_id *self,
    crdt_gset **out)
{
	crdt_config c;

	if (self == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	crdt_gset *s = crdt__malloc(&c.alloc, sizeof *s);
	if (s == NULL)
		return CRDT_ENOMEM;
	memset(s, 0, sizeof *s);
	s->cfg = c;
	s->self = *self;
	s->last_chain = SIZE_MAX;
	crdt__arena_init(&s->ar, &s->cfg.alloc);
	int rc = crdt__table_init(&s->t, &s->cfg.alloc, sizeof(gs_entry));
	if (rc < 0) {
		crdt_gset_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void
crdt_gset_free(crdt_gset *s)
{
	if (s == NULL)
		return;
	crdt_allocator a = s->cfg.alloc;
	/* The keys live in the arena: the table must not free them. */
	for (size_t i = 0; i < s->t.n; i++)
		((crdt__key *)crdt__table_at(&s->t, i))->ptr = NULL;
	crdt__table_fini(&s->t, NULL);
	crdt__arena_fini(&s->ar);
	ex_fini(s);
	crdt__free(&a, s, sizeof *s);
}

static void
note_dot(crdt_gset *s, crdt_dot dot)
{
	if (crdt_replica_id_cmp(&dot.replica, &s->self) == 0 &&
	    dot.counter > s->counter)
		s->counter = dot.counter;
}

/* Undo of one gset record (crdt__undo_rollback, undo.c). */
static void gset_undo(crdt__undo_rec *rec);

/* Insert or lower the dot of one element. All allocation happens before
 * the first change, so on failure the set is untouched. */
/* The element's hash, and in an implied-dot set whether storing `dot`
 * for it needs an exception (one identity parse for both). */
static uint32_t
elem_hash(const crdt_gset *s, const uint8_t *elem, size_t len, crdt_dot dot,
    bool *ex)
{
	*ex = false;
	if (!s->implied)
		return crdt__table_hash(&s->t, elem, len);
	uint8_t id[CRDT__IDENT_MAX];
	crdt_dot own;
	if (!ident_dot(s, elem, len, &own, id)) {
		*ex = true;
		return crdt__table_hash(&s->t, elem, len);
	}
	*ex = own.counter != dot.counter ||
	    memcmp(own.replica.bytes, dot.replica.bytes, 16) != 0;
	/* What crdt__table_hash computes for a 24-byte identity. */
	return (uint32_t)(crdt__siphash(s->t.sip, id, IDENT_DOT) >> 32);
}

int
crdt__gset_write(crdt_gset *s, const uint8_t *elem, size_t len, crdt_dot dot,
    crdt__undo *u, uint32_t obj)
{
	crdt__undo_rec *rec = NULL;
	bool ex;
	if (u != NULL) {
		CRDT_TRY(crdt__undo_reserve(u, 1));
		rec = &u->v[u->n];
		memset(rec, 0, sizeof *rec);
		rec->restore = gset_undo;
		rec->target = s;
		rec->obj = obj;
	}
	uint32_t h = elem_hash(s, elem, len, dot, &ex);
	crdt__key *e = crdt__table_find(&s->t, elem, len, h);
	if (e != NULL) {
		size_t idx = gs_index(s, e);
		crdt_dot cur = gs_dot(s, idx);
		if (crdt_dot_cmp(dot, cur) < 0) {
			if (ex && ex_find(s, idx) == NULL)
				CRDT_TRY(ex_reserve(s, 1));
			if (rec != NULL) {
				rec->kind = CRDT__UNDO_GSET_DOT;
				rec->idx = idx;
				rec->old_dot = cur;
				u->n++;
			}
			gs_set_dot(s, idx, dot);
		}
		note_dot(s, dot);
		return 0;
	}
	size_t chain = SIZE_MAX;
	if (s->t.ident != NULL &&
	    (chain = crdt__table_chain(&s->t, h, s->max_chain)) >=
		s->max_chain)
		return CRDT_ETOOBIG;
	CRDT_TRY(crdt__table_reserve(&s->t, 1));
	if (ex)
		CRDT_TRY(ex_reserve(s, 1));
	uint8_t *copy = crdt__arena_copy(&s->ar, elem, len);
	if (copy == NULL)
		return CRDT_ENOMEM;
	(void)crdt__table_insert(&s->t, copy, len, h);
	s->last_chain = chain;
	gs_init_dot(s, s->t.n - 1, dot, ex);
	note_dot(s, dot);
	if (rec != NULL) {
		rec->kind = CRDT__UNDO_GSET_NEW;
		rec->idx = s->t.n - 1;
		u->n++;
	}
	return 0;
}

static int
gset_put(crdt_gset *s, const uint8_t *elem, size_t len, crdt_dot dot)
{
	return crdt__gset_write(s, elem, len, dot, NULL, 0);
}

bool
crdt__gset_ident_hash(const crdt_gset *s, size_t (*ident)(const uint8_t *,
    size_t, uint8_t *), const uint8_t key[16], size_t idx, uint32_t *h)
{
	if (s->t.ident != ident || idx >= s->t.n ||
	    memcmp(s->t.sip, key, sizeof s->t.sip) != 0)
		return false;
	*h = ((const crdt__key *)crdt__table_at(&s->t, idx))->hash;
	return true;
}

int
crdt__gset_key_prefix(crdt_gset *s, size_t (*ident)(const uint8_t *,
    size_t, uint8_t *), const uint8_t *key)
{
	/* Room for every variant the document admits per dot and then some
	 * (merges of replicas that saw different ones); still a constant,
	 * so a hostile state cannot make a lookup walk a long chain. */
	if (s->t.ident == ident && (key == NULL ||
	    memcmp(s->t.sip, key, sizeof s->t.sip) == 0))
		return 0;
	size_t v = s->cfg.max_variants, chain0 = s->max_chain;
	s->max_chain = v > SIZE_MAX / 4 ? SIZE_MAX : CRDT_MAX(v * 4, 16);
	if (s->implied || ident == NULL) {
		int rc = crdt__table_rehash(&s->t, ident, key, s->max_chain);
		if (rc < 0)
			s->max_chain = chain0;
		return rc;
	}
	/* From dots stored per entry to dots read from the elements: the
	 * entries shrink to bare keys, and the elements whose dot is not
	 * their identity go to the side map. Everything that can fail comes
	 * first. */
	const crdt_allocator *a = &s->cfg.alloc;
	crdt__table *t = &s->t;
	size_t nex = 0;
	for (size_t i = 0; i < t->n; i++) {
		const gs_entry *e = crdt__table_at(t, i);
		uint8_t id[CRDT__IDENT_MAX];
		crdt_dot own;
		if (!ident_dot_by(ident, e->k.ptr, e->k.len, &own, id) ||
		    crdt_dot_cmp(own, e->dot) != 0)
			nex++;
	}
	crdt__key *ents = NULL;
	if (t->cap != 0) {
		ents = crdt__malloc(a, t->cap * sizeof *ents);
		if (ents == NULL) {
			s->max_chain = chain0;
			return CRDT_ENOMEM;
		}
	}
	int rc = ex_reserve(s, nex);
	if (rc == 0)
		rc = crdt__table_rehash(t, ident, key, s->max_chain);
	if (rc < 0) {
		crdt__free(a, ents, t->cap * sizeof *ents);
		ex_fini(s); /* it was empty: explicit dots need none */
		s->max_chain = chain0;
		return rc;
	}
	for (size_t i = 0; i < t->n; i++)
		ents[i] = ((const gs_entry *)crdt__table_at(t, i))->k;
	s->implied = true;
	for (size_t i = 0; i < t->n; i++) {
		const gs_entry *e = crdt__table_at(t, i);
		if (needs_ex(s, e->k.ptr, e->k.len, e->dot))
			ex_put(s, i, e->dot);
	}
	crdt__free(a, t->ents, t->cap * t->stride);
	t->ents = (uint8_t *)ents;
	t->stride = sizeof *ents;
	t->sc->ok = false;
	return 0;
}

size_t
crdt__gset_ident_next(const crdt_gset *s, const uint8_t *id, size_t idlen,
    uint32_t h, size_t *pos)
{
	uint8_t own[CRDT__IDENT_MAX];
	size_t i;
	if (s->t.ident == NULL)
		return SIZE_MAX;
	while ((i = crdt__table_next(&s->t, h, pos)) != SIZE_MAX) {
		const crdt__key *k = crdt__table_at(&s->t, i);
		if (s->t.ident(k->ptr, k->len, own) == idlen &&
		    memcmp(own, id, idlen) == 0)
			return i;
	}
	return SIZE_MAX;
}

size_t
crdt__gset_last_chain(const crdt_gset *s)
{
	return s->last_chain;
}

const crdt__key *
crdt__gset_entry_key(const crdt_gset *s, size_t idx)
{
	return crdt__table_at(&s->t, idx);
}

static void
gset_undo(crdt__undo_rec *rec)
{
	crdt_gset *s = rec->target;
	if (rec->kind == CRDT__UNDO_GSET_DOT) {
		/* idx got an exception when its dot was lowered, if it needed
		 * one: restoring overwrites it, with no allocation. */
		gs_set_dot(s, rec->idx, rec->old_dot);
		return;
	}
	/* An exception of the popped entry stays behind; the next element
	 * inserted at that index overwrites it (gs_set_dot). */
	crdt__key *e = crdt__table_pop(&s->t);
	crdt__arena_unbump(&s->ar, e->ptr, e->len);
}

static int
encode_op(crdt_buf *out, crdt_dot dot, const void *elem, size_t len)
{
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_GSET, 3));
	CRDT_TRY(crdt__w_id(out, &dot.replica));
	CRDT_TRY(crdt__w_uint(out, dot.counter));
	return crdt__w_bin(out, elem, len);
}

int
crdt_gset_add(crdt_gset *s, const void *elem, size_t len, crdt_buf *op_out)
{
	if (s == NULL || op_out == NULL || (elem == NULL && len != 0))
		return CRDT_EINVAL;
	if (len > s->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	if (s->counter == UINT64_MAX)
		return CRDT_EOVERFLOW;
	crdt_dot dot = { s->self, s->counter + 1 };
	size_t mark = op_out->len;
	int rc = encode_op(op_out, dot, elem, len);
	if (rc == 0)
		rc = gset_put(s, elem, len, dot);
	if (rc < 0) {
		op_out->len = mark;
		return rc;
	}
	return 0;
}

int
crdt_gset_apply_op(crdt_gset *s, const void *op, size_t len)
{
	crdt__rd r;
	size_t n;
	crdt_dot dot;
	const uint8_t *elem;
	size_t elen;

	if (s == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__rd_init(&r, &s->cfg.limits, op, len));
	CRDT_TRY(crdt__rd_header(&r, CRDT__KIND_GSET, &n));
	if (n != 5)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__rd_id(&r, &dot.replica));
	CRDT_TRY(crdt__rd_uint(&r, &dot.counter));
	CRDT_TRY(crdt__rd_bin(&r, &elem, &elen));
	CRDT_TRY(crdt__rd_done(&r));
	if (dot.counter == 0)
		return CRDT_EMALFORMED;
	return gset_put(s, elem, elen, dot);
}

static int
cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

/* A merge into a set with an identity prefix must keep every chain within
 * max_chain: count the `fresh` new elements per hash (sorted) on top of
 * the elements dst already has with that hash. O(fresh log fresh). */
static int
check_chains(const crdt_gset *dst, const crdt_gset *src, size_t fresh)
{
	const crdt_allocator *a = &dst->cfg.alloc;
	if (fresh > SIZE_MAX / sizeof(uint64_t))
		return CRDT_ENOMEM;
	uint64_t *hs = crdt__malloc(a, fresh * sizeof *hs);
	if (hs == NULL)
		return CRDT_ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < src->t.n && k < fresh; i++) {
		const gs_entry *e = crdt__table_at(&src->t, i);
		uint32_t h = crdt__table_hash(&dst->t, e->k.ptr, e->k.len);
		if (crdt__table_find(&dst->t, e->k.ptr, e->k.len, h) == NULL)
			hs[k++] = h;
	}
	qsort(hs, k, sizeof *hs, cmp_u64);
	int rc = 0;
	for (size_t i = 0; i < k && rc == 0;) {
		size_t j = i + 1;
		while (j < k && hs[j] == hs[i])
			j++;
		if (j - i > dst->max_chain || crdt__table_chain(&dst->t,
		    hs[i], dst->max_chain) > dst->max_chain - (j - i))
			rc = CRDT_ETOOBIG;
		i = j;
	}
	crdt__free(a, hs, fresh * sizeof *hs);
	return rc;
}

int
crdt_gset_merge(crdt_gset *dst, const crdt_gset *src)
{
	if (dst == NULL || src == NULL)
		return CRDT_EINVAL;
	if (dst == src)
		return 0;
	/* Phase 1: find what is new, reserve room and copy keys. Phase 2
	 * cannot fail. Keys are parked in a scratch array meanwhile. */
	size_t fresh = 0, nex = 0;
	for (size_t i = 0; i < src->t.n; i++) {
		const crdt__key *e = crdt__table_at(&src->t, i);
		crdt_dot sd = gs_dot(src, i);
		uint32_t h = crdt__table_hash(&dst->t, e->ptr, e->len);
		const crdt__key *d = crdt__table_find(&dst->t, e->ptr, e->len,
		    h);
		if (d == NULL) {
			fresh++;
			nex += needs_ex(dst, e->ptr, e->len, sd);
		} else if (crdt_dot_cmp(sd, gs_dot(dst, gs_index(dst, d))) <
		    0 && needs_ex(dst, e->ptr, e->len, sd)) {
			nex++;
		}
	}
	uint8_t **keys = NULL;
	const crdt_allocator *a = &dst->cfg.alloc;
	if (fresh != 0 && dst->t.ident != NULL)
		CRDT_TRY(check_chains(dst, src, fresh));
	CRDT_TRY(ex_reserve(dst, nex));
	if (fresh != 0) {
		CRDT_TRY(crdt__table_reserve(&dst->t, fresh));
		if (fresh > SIZE_MAX / sizeof *keys)
			return CRDT_ENOMEM;
		keys = crdt__malloc(a, fresh * sizeof *keys);
		if (keys == NULL)
			return CRDT_ENOMEM;
		crdt__arena_mark mark = crdt__arena_mark_now(&dst->ar);
		size_t k = 0;
		for (size_t i = 0; i < src->t.n && k < fresh; i++) {
			const crdt__key *e = crdt__table_at(&src->t, i);
			uint32_t h = crdt__table_hash(&dst->t, e->ptr, e->len);
			if (crdt__table_find(&dst->t, e->ptr, e->len, h))
				continue;
			keys[k] = crdt__arena_copy(&dst->ar, e->ptr, e->len);
			if (keys[k] == NULL) {
				/* Drop the copies made so far. */
				crdt__arena_reset(&dst->ar, mark);
				goto nomem;
			}
			k++;
		}
	}
	size_t k = 0;
	for (size_t i = 0; i < src->t.n; i++) {
		const crdt__key *e = crdt__table_at(&src->t, i);
		crdt_dot sd = gs_dot(src, i);
		uint32_t h = crdt__table_hash(&dst->t, e->ptr, e->len);
		crdt__key *d = crdt__table_find(&dst->t, e->ptr, e->len, h);
		if (d == NULL) {
			(void)crdt__table_insert(&dst->t, keys[k++], e->len, h);
			gs_set_dot(dst, dst->t.n - 1, sd);
		} else if (crdt_dot_cmp(sd, gs_dot(dst, gs_index(dst, d))) <
		    0) {
			gs_set_dot(dst, gs_index(dst, d), sd);
		}
		note_dot(dst, sd);
	}
	crdt__free(a, keys, fresh * sizeof *keys);
	return 0;
nomem:
	crdt__free(a, keys, fresh * sizeof *keys);
	return CRDT_ENOMEM;
}

int
crdt_gset_lookup(const crdt_gset *s, const void *elem, size_t len,
    crdt_dot *dot)
{
	if (s == NULL || (elem == NULL && len != 0))
		return CRDT_EINVAL;
	uint32_t h = crdt__table_hash(&s->t, elem, len);
	const crdt__key *e = crdt__table_find(&s->t, elem, len, h);
	if (e == NULL)
		return CRDT_ENOTFOUND;
	if (dot != NULL)
		*dot = gs_dot(s, gs_index(s, e));
	return 0;
}

const crdt__key *
crdt__gset_find(const crdt_gset *s, const void *elem, size_t len)
{
	return crdt__table_find(&s->t, elem, len,
	    crdt__table_hash(&s->t, elem, len));
}

bool
crdt_gset_contains(const crdt_gset *s, const void *elem, size_t len)
{
	return crdt_gset_lookup(s, elem, len, NULL) == 0;
}

size_t
crdt_gset_size(const crdt_gset *s)
{
	return s ? s->t.n : 0;
}

int
crdt_gset_foreach(const crdt_gset *s, crdt_gset_visit_fn fn, void *ud)
{
	const crdt__key **v;

	if (s == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__table_sorted(&s->t, &v));
	for (size_t i = 0; i < s->t.n; i++) {
		const crdt__key *e = v[i];
		int rc = fn(ud, e->ptr, e->len, gs_dot(s, gs_index(s, e)));
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
encode_state(const crdt_gset *s, crdt_buf *out)
{
	const crdt__key **v;

	CRDT_TRY(crdt__table_sorted(&s->t, &v));
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_GSET, 1));
	CRDT_TRY(crdt__w_array(out, s->t.n * 3));
	for (size_t i = 0; i < s->t.n; i++) {
		const crdt__key *e = v[i];
		crdt_dot d = gs_dot(s, gs_index(s, e));
		CRDT_TRY(crdt__w_bin(out, e->ptr, e->len));
		CRDT_TRY(crdt__w_id(out, &d.replica));
		CRDT_TRY(crdt__w_uint(out, d.counter));
	}
	return 0;
}

int
crdt_gset_encode(const crdt_gset *s, crdt_buf *out)
{
	if (s == NULL || out == NULL)
		return CRDT_EINVAL;
	size_t mark = out->len;
	int rc = encode_state(s, out);
	if (rc < 0)
		out->len = mark;
	return rc;
}

static int
decode_state(crdt__rd *r, crdt_gset *s)
{
	size_t n, items;
	const uint8_t *prev = NULL;
	size_t prev_len = 0;

	CRDT_TRY(crdt__rd_header(r, CRDT__KIND_GSET, &n));
	if (n != 3)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__rd_array(r, &items));
	if (items % 3 != 0)
		return CRDT_EMALFORMED;
	items /= 3;
	/* element bin >= 1, replica, counter */
	CRDT_TRY(crdt__rd_fits(r, items, 1 + CRDT__MIN_ID_UINT));
	CRDT_TRY(crdt__table_reserve(&s->t, items));
	for (size_t i = 0; i < items; i++) {
		const uint8_t *elem;
		size_t len;
		crdt_dot dot;
		CRDT_TRY(crdt__rd_bin(r, &elem, &len));
		CRDT_TRY(crdt__rd_id(r, &dot.replica));
		CRDT_TRY(crdt__rd_uint(r, &dot.counter));
		if (dot.counter == 0)
			return CRDT_EMALFORMED;
		/* Canonical: strictly ascending, so no duplicates either. */
		if (i > 0 && crdt__key_cmp(prev, prev_len, elem, len) >= 0)
			return CRDT_EMALFORMED;
		prev = elem;
		prev_len = len;
		CRDT_TRY(gset_put(s, elem, len, dot));
	}
	return crdt__rd_done(r);
}

int
crdt_gset_decode(const crdt_config *cfg, const crdt_replica_id *self,
    const void *bytes, size_t len, crdt_gset **out)
{
	crdt__rd r;
	crdt_gset *s;

	if (out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_gset_new(cfg, self, &s));
	int rc = crdt__rd_init(&r, &s->cfg.limits, bytes, len);
	if (rc == 0)
		rc = decode_state(&r, s);
	if (rc < 0) {
		crdt_gset_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

bool
crdt_gset_equal(const crdt_gset *a, const crdt_gset *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->t.n != b->t.n)
		return false;
	for (size_t i = 0; i < a->t.n; i++) {
		const crdt__key *e = crdt__table_at(&a->t, i);
		uint32_t h = crdt__table_hash(&b->t, e->ptr, e->len);
		const crdt__key *f = crdt__table_find(&b->t, e->ptr, e->len, h);
		if (f == NULL || crdt_dot_cmp(gs_dot(a, i),
		    gs_dot(b, gs_index(b, f))) != 0)
			return false;
	}
	return true;
}

/* ---- bulk access for columnar encodings (chat_cols.c) ---- */

int
crdt__gset_sorted(const crdt_gset *s, const crdt__key ***v)
{
	return crdt__table_sorted(&s->t, v);
}

crdt_dot
crdt__gset_key_dot(const crdt_gset *s, const crdt__key *k)
{
	return gs_dot(s, gs_index(s, k));
}

bool
crdt__gset_key_own(const crdt_gset *s, const crdt__key *k)
{
	return s->implied && ex_find(s, gs_index(s, k)) == NULL;
}

int
crdt__gset_bulk_reserve(crdt_gset *s, size_t n)
{
	return crdt__table_reserve(&s->t, n);
}

uint8_t *
crdt__gset_bulk_room(crdt_gset *s, size_t len)
{
	return crdt__arena_copy(&s->ar, NULL, len);
}

/* The caller proved `elem` greater than every element already in the set
 * (a decoder checking strict order), so it is new: no lookup. `elem` is
 * the set's own room (crdt__gset_bulk_room). */
int
crdt__gset_bulk_add(crdt_gset *s, uint8_t *elem, size_t len, crdt_dot dot)
{
	bool ex;
	CRDT_TRY(crdt__table_reserve(&s->t, 1));
	uint32_t h = elem_hash(s, elem, len, dot, &ex);
	if (s->t.ident != NULL &&
	    crdt__table_chain(&s->t, h, s->max_chain) >= s->max_chain)
		return CRDT_ETOOBIG;
	if (ex)
		CRDT_TRY(ex_reserve(s, 1));
	(void)crdt__table_insert(&s->t, elem, len, h);
	gs_init_dot(s, s->t.n - 1, dot, ex);
	note_dot(s, dot);
	return 0;
}
