/*
 * Grow-only set of byte strings. Merge rule per element: union, and of two
 * dots for the same element keep the smaller (crdt_dot_cmp), which makes
 * the recorded dot independent of delivery order.
 */
#include <stdlib.h>

#include "internal.h"

typedef struct gs_entry {
	crdt__key k;
	crdt_dot dot;
} gs_entry;

struct crdt_gset {
	crdt_config cfg;
	crdt_replica_id self;
	uint64_t counter; /* last counter used or seen for `self` */
	/* With an identity prefix (crdt__gset_key_prefix): at most this
	 * many elements share one prefix, so they share one hash. */
	size_t max_chain;
	crdt__table t;
	/* The elements' bytes: a grow-only set frees them all at once, so
	 * no allocation per element (entries' k.ptr point here). */
	crdt__arena ar;
};

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
int
crdt__gset_write(crdt_gset *s, const uint8_t *elem, size_t len, crdt_dot dot,
    crdt__undo *u, uint32_t obj)
{
	crdt__undo_rec *rec = NULL;
	if (u != NULL) {
		CRDT_TRY(crdt__undo_reserve(u, 1));
		rec = &u->v[u->n];
		memset(rec, 0, sizeof *rec);
		rec->restore = gset_undo;
		rec->target = s;
		rec->obj = obj;
	}
	uint64_t h = crdt__table_hash(&s->t, elem, len);
	gs_entry *e = crdt__table_find(&s->t, elem, len, h);
	if (e != NULL) {
		if (crdt_dot_cmp(dot, e->dot) < 0) {
			if (rec != NULL) {
				rec->kind = CRDT__UNDO_GSET_DOT;
				rec->idx = (size_t)((uint8_t *)e - s->t.ents) /
				    s->t.stride;
				rec->old_dot = e->dot;
				u->n++;
			}
			e->dot = dot;
		}
		note_dot(s, dot);
		return 0;
	}
	if (s->t.ident != NULL &&
	    crdt__table_chain(&s->t, h, s->max_chain) >= s->max_chain)
		return CRDT_ETOOBIG;
	CRDT_TRY(crdt__table_reserve(&s->t, 1));
	uint8_t *copy = crdt__arena_copy(&s->ar, elem, len);
	if (copy == NULL)
		return CRDT_ENOMEM;
	e = crdt__table_insert(&s->t, copy, len, h);
	e->dot = dot;
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
    size_t, uint8_t *), const uint8_t key[16], size_t idx, uint64_t *h)
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
	size_t v = s->cfg.max_variants;
	s->max_chain = v > SIZE_MAX / 4 ? SIZE_MAX : CRDT_MAX(v * 4, 16);
	return crdt__table_rehash(&s->t, ident, key, s->max_chain);
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
		gs_entry *e = crdt__table_at(&s->t, rec->idx);
		e->dot = rec->old_dot;
		return;
	}
	gs_entry *e = crdt__table_pop(&s->t);
	crdt__arena_unbump(&s->ar, e->k.ptr, e->k.len);
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
		uint64_t h = crdt__table_hash(&dst->t, e->k.ptr, e->k.len);
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
	size_t fresh = 0;
	for (size_t i = 0; i < src->t.n; i++) {
		const gs_entry *e = crdt__table_at(&src->t, i);
		uint64_t h = crdt__table_hash(&dst->t, e->k.ptr, e->k.len);
		if (crdt__table_find(&dst->t, e->k.ptr, e->k.len, h) == NULL)
			fresh++;
	}
	uint8_t **keys = NULL;
	const crdt_allocator *a = &dst->cfg.alloc;
	if (fresh != 0 && dst->t.ident != NULL)
		CRDT_TRY(check_chains(dst, src, fresh));
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
			const gs_entry *e = crdt__table_at(&src->t, i);
			uint64_t h = crdt__table_hash(&dst->t, e->k.ptr,
			    e->k.len);
			if (crdt__table_find(&dst->t, e->k.ptr, e->k.len, h))
				continue;
			keys[k] = crdt__arena_copy(&dst->ar, e->k.ptr,
			    e->k.len);
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
		const gs_entry *e = crdt__table_at(&src->t, i);
		uint64_t h = crdt__table_hash(&dst->t, e->k.ptr, e->k.len);
		gs_entry *d = crdt__table_find(&dst->t, e->k.ptr, e->k.len, h);
		if (d == NULL) {
			d = crdt__table_insert(&dst->t, keys[k++], e->k.len, h);
			d->dot = e->dot;
		} else if (crdt_dot_cmp(e->dot, d->dot) < 0) {
			d->dot = e->dot;
		}
		note_dot(dst, e->dot);
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
	uint64_t h = crdt__table_hash(&s->t, elem, len);
	const gs_entry *e = crdt__table_find(&s->t, elem, len, h);
	if (e == NULL)
		return CRDT_ENOTFOUND;
	if (dot != NULL)
		*dot = e->dot;
	return 0;
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
		const gs_entry *e = (const gs_entry *)v[i];
		int rc = fn(ud, e->k.ptr, e->k.len, e->dot);
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
		const gs_entry *e = (const gs_entry *)v[i];
		CRDT_TRY(crdt__w_bin(out, e->k.ptr, e->k.len));
		CRDT_TRY(crdt__w_id(out, &e->dot.replica));
		CRDT_TRY(crdt__w_uint(out, e->dot.counter));
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
		const gs_entry *e = crdt__table_at(&a->t, i);
		uint64_t h = crdt__table_hash(&b->t, e->k.ptr, e->k.len);
		const gs_entry *f = crdt__table_find(&b->t, e->k.ptr, e->k.len,
		    h);
		if (f == NULL || crdt_dot_cmp(e->dot, f->dot) != 0)
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
crdt__gset_key_dot(const crdt__key *k)
{
	return ((const gs_entry *)k)->dot;
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
	CRDT_TRY(crdt__table_reserve(&s->t, 1));
	uint64_t h = crdt__table_hash(&s->t, elem, len);
	if (s->t.ident != NULL &&
	    crdt__table_chain(&s->t, h, s->max_chain) >= s->max_chain)
		return CRDT_ETOOBIG;
	gs_entry *e = crdt__table_insert(&s->t, elem, len, h);
	e->dot = dot;
	note_dot(s, dot);
	return 0;
}
