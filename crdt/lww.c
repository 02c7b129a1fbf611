/*
 * LWW register and LWW map. Both rest on crdt__reg: a value (or "cleared")
 * and the stamp (HLC, replica) of the write that put it there. A write
 * replaces the register only when it is greater in the total order
 * (stamp, presence, value bytes), so applying writes in any order, any
 * number of times, ends with the same winner.
 */
#include "internal.h"

int
crdt__reg_cmp(const crdt__reg *r, uint64_t hlc, const crdt_replica_id *id,
    bool present, const uint8_t *val, size_t len)
{
	if (r->state == CRDT__REG_UNSET)
		return 1;
	int c = crdt_stamp_cmp(hlc, id, r->hlc, &r->id);
	if (c != 0)
		return c;
	bool rp = r->state == CRDT__REG_VALUE;
	if (present != rp)
		return present ? 1 : -1;
	if (!present)
		return 0;
	return crdt__key_cmp(val, len, r->val, r->len);
}

/* Write if it wins. 1 = changed, 0 = lost or redundant, <0 = ENOMEM with
 * the register untouched. */
static int
reg_write(const crdt_allocator *a, crdt__reg *r, uint64_t hlc,
    const crdt_replica_id *id, bool present, const uint8_t *val, size_t len)
{
	if (crdt__reg_cmp(r, hlc, id, present, val, len) <= 0)
		return 0;
	uint8_t *copy = NULL;
	if (present) {
		copy = crdt__memdup(a, val, len);
		if (copy == NULL)
			return CRDT_ENOMEM;
	}
	crdt__free(a, r->val, r->len);
	r->val = copy;
	r->len = present ? len : 0;
	r->hlc = hlc;
	r->id = *id;
	r->state = present ? CRDT__REG_VALUE : CRDT__REG_CLEARED;
	return 1;
}

/* Install a write whose value copy was made beforehand (cannot fail). */
static void
reg_install(const crdt_allocator *a, crdt__reg *r, const crdt__reg *w,
    uint8_t *copy)
{
	crdt__free(a, r->val, r->len);
	*r = *w;
	r->val = copy;
}

static void
reg_fini(const crdt_allocator *a, crdt__reg *r)
{
	crdt__free(a, r->val, r->len);
	memset(r, 0, sizeof *r);
}

static bool
reg_same(const crdt__reg *a, const crdt__reg *b)
{
	if (a->state != b->state)
		return false;
	if (a->state == CRDT__REG_UNSET)
		return true;
	return a->hlc == b->hlc && crdt_replica_id_cmp(&a->id, &b->id) == 0 &&
	    a->len == b->len && (a->len == 0 || memcmp(a->val, b->val,
	    a->len) == 0);
}

static int
w_write(crdt_buf *out, uint64_t hlc, const crdt_replica_id *id, bool present,
    const void *val, size_t len)
{
	CRDT_TRY(crdt__w_uint(out, hlc));
	CRDT_TRY(crdt__w_id(out, id));
	return present ? crdt__w_bin(out, val, len) : crdt__w_nil(out);
}

static int
w_reg(crdt_buf *out, const crdt__reg *r)
{
	return w_write(out, r->hlc, &r->id, r->state == CRDT__REG_VALUE, r->val,
	    r->len);
}

/* A decoded write: borrowed value pointer into the input. */
typedef struct wr {
	uint64_t hlc;
	crdt_replica_id id;
	bool present;
	const uint8_t *val;
	size_t len;
} wr;

static int
rd_write(crdt__rd *r, wr *w)
{
	CRDT_TRY(crdt__rd_uint(r, &w->hlc));
	CRDT_TRY(crdt__rd_id(r, &w->id));
	return crdt__rd_opt_bin(r, &w->val, &w->len, &w->present);
}

/* Advance the local clock past a stamp we applied. A stamp beyond the
 * drift bound is kept in the state but does not move our clock (see
 * clock.h); the write itself is accepted either way, because acceptance
 * must not depend on the receiver's wall clock. */
static void
observe(crdt_hlc *h, uint64_t hlc)
{
	int rc = crdt_hlc_update(h, hlc, NULL);
	(void)rc; /* EDRIFT / EOVERFLOW: clock deliberately left alone */
}

static int
obj_init(const crdt_config *cfg, const crdt_replica_id *self,
    crdt_config *c)
{
	if (self == NULL)
		return CRDT_EINVAL;
	return crdt__config_resolve(cfg, c);
}

/* ---- register ---- */

struct crdt_lww {
	crdt_config cfg;
	crdt_replica_id self;
	crdt_hlc clock;
	crdt__reg r;
};

int
crdt_lww_new(const crdt_config *cfg, const crdt_replica_id *self,
    crdt_lww **out)
{
	crdt_config c;

	if (out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(obj_init(cfg, self, &c));
	crdt_lww *r = crdt__malloc(&c.alloc, sizeof *r);
	if (r == NULL)
		return CRDT_ENOMEM;
	memset(r, 0, sizeof *r);
	r->cfg = c;
	r->self = *self;
	crdt_hlc_init(&r->clock, &c);
	*out = r;
	return 0;
}

void
crdt_lww_free(crdt_lww *r)
{
	if (r == NULL)
		return;
	crdt_allocator a = r->cfg.alloc;
	reg_fini(&a, &r->r);
	crdt__free(&a, r, sizeof *r);
}

static int
lww_local(crdt_lww *r, bool present, const void *value, size_t len,
    crdt_buf *op_out)
{
	uint64_t ts;

	if (r == NULL || op_out == NULL || (present && value == NULL &&
	    len != 0))
		return CRDT_EINVAL;
	if (len > r->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	crdt_hlc saved = r->clock;
	size_t mark = op_out->len;
	int rc = crdt_hlc_now(&r->clock, &ts);
	if (rc == 0)
		rc = crdt__w_header(op_out, CRDT__KIND_LWW, 3);
	if (rc == 0)
		rc = w_write(op_out, ts, &r->self, present, value, len);
	if (rc == 0)
		rc = reg_write(&r->cfg.alloc, &r->r, ts, &r->self, present,
		    value, len);
	if (rc < 0) {
		r->clock = saved;
		op_out->len = mark;
		return rc;
	}
	return 0;
}

/* Replace `r` by the write if it wins, recording the old register in `u`
 * (kept alive, freed at commit). */
static int
reg_write_undo(const crdt_allocator *a, crdt__reg *r, uint64_t hlc,
    const crdt_replica_id *id, bool present, const uint8_t *val, size_t len,
    crdt__undo_rec *rec)
{
	if (crdt__reg_cmp(r, hlc, id, present, val, len) <= 0)
		return 0;
	uint8_t *copy = NULL;
	if (present) {
		copy = crdt__memdup(a, val, len);
		if (copy == NULL)
			return CRDT_ENOMEM;
	}
	rec->old = *r;
	r->val = copy;
	r->len = present ? len : 0;
	r->hlc = hlc;
	r->id = *id;
	r->state = present ? CRDT__REG_VALUE : CRDT__REG_CLEARED;
	return 1;
}

/* Undo of one LWW or map record (crdt__undo_rollback, undo.c). */
static void lww_undo(crdt__undo_rec *rec);

int
crdt__lww_write(crdt_lww *r, uint64_t hlc, const crdt_replica_id *id,
    bool present, const uint8_t *val, size_t len, crdt__undo *u, uint32_t obj)
{
	CRDT_TRY(crdt__undo_reserve(u, 1));
	crdt__undo_rec *rec = &u->v[u->n];
	memset(rec, 0, sizeof *rec);
	rec->restore = lww_undo;
	rec->target = r;
	rec->obj = obj;
	int rc = reg_write_undo(&r->cfg.alloc, &r->r, hlc, id, present, val,
	    len, rec);
	if (rc > 0) {
		rec->kind = CRDT__UNDO_LWW;
		u->n++;
	}
	return rc < 0 ? rc : 0;
}

const crdt__reg *
crdt__lww_reg(const crdt_lww *r)
{
	return &r->r;
}

bool
crdt__lww_is_set(const crdt_lww *r)
{
	return r->r.state == CRDT__REG_VALUE;
}

int
crdt_lww_set(crdt_lww *r, const void *value, size_t len, crdt_buf *op_out)
{
	return lww_local(r, true, value, len, op_out);
}

int
crdt_lww_clear(crdt_lww *r, crdt_buf *op_out)
{
	return lww_local(r, false, NULL, 0, op_out);
}

int
crdt_lww_apply_op(crdt_lww *r, const void *op, size_t len)
{
	crdt__rd rd;
	size_t n;
	wr w;

	if (r == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__rd_init(&rd, &r->cfg.limits, op, len));
	CRDT_TRY(crdt__rd_header(&rd, CRDT__KIND_LWW, &n));
	if (n != 5)
		return CRDT_EMALFORMED;
	CRDT_TRY(rd_write(&rd, &w));
	CRDT_TRY(crdt__rd_done(&rd));
	CRDT_TRY(reg_write(&r->cfg.alloc, &r->r, w.hlc, &w.id, w.present,
	    w.val, w.len));
	observe(&r->clock, w.hlc);
	return 0;
}

int
crdt_lww_merge(crdt_lww *dst, const crdt_lww *src)
{
	if (dst == NULL || src == NULL)
		return CRDT_EINVAL;
	if (src->r.state == CRDT__REG_UNSET)
		return 0;
	CRDT_TRY(reg_write(&dst->cfg.alloc, &dst->r, src->r.hlc, &src->r.id,
	    src->r.state == CRDT__REG_VALUE, src->r.val, src->r.len));
	observe(&dst->clock, src->r.hlc);
	return 0;
}

int
crdt_lww_get(const crdt_lww *r, const uint8_t **value, size_t *len)
{
	if (r == NULL)
		return CRDT_EINVAL;
	if (r->r.state != CRDT__REG_VALUE)
		return CRDT_ENOTFOUND;
	if (value != NULL)
		*value = r->r.val;
	if (len != NULL)
		*len = r->r.len;
	return 0;
}

int
crdt_lww_stamp(const crdt_lww *r, uint64_t *hlc, crdt_replica_id *writer)
{
	if (r == NULL)
		return CRDT_EINVAL;
	if (r->r.state == CRDT__REG_UNSET)
		return CRDT_ENOTFOUND;
	if (hlc != NULL)
		*hlc = r->r.hlc;
	if (writer != NULL)
		*writer = r->r.id;
	return 0;
}

uint64_t
crdt_lww_clock(const crdt_lww *r)
{
	return r ? crdt_hlc_last(&r->clock) : 0;
}

int
crdt_lww_encode(const crdt_lww *r, crdt_buf *out)
{
	if (r == NULL || out == NULL)
		return CRDT_EINVAL;
	size_t mark = out->len;
	bool set = r->r.state != CRDT__REG_UNSET;
	int rc = crdt__w_header(out, CRDT__KIND_LWW, set ? 3 : 0);
	if (rc == 0 && set)
		rc = w_reg(out, &r->r);
	if (rc < 0)
		out->len = mark;
	return rc;
}

int
crdt_lww_decode(const crdt_config *cfg, const crdt_replica_id *self,
    const void *bytes, size_t len, crdt_lww **out)
{
	crdt__rd rd;
	crdt_lww *r;
	size_t n;
	wr w;

	if (out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_lww_new(cfg, self, &r));
	int rc = crdt__rd_init(&rd, &r->cfg.limits, bytes, len);
	if (rc == 0)
		rc = crdt__rd_header(&rd, CRDT__KIND_LWW, &n);
	if (rc == 0 && n != 2 && n != 5)
		rc = CRDT_EMALFORMED;
	if (rc == 0 && n == 5) {
		rc = rd_write(&rd, &w);
		if (rc == 0)
			rc = crdt__rd_done(&rd);
		if (rc == 0)
			rc = reg_write(&r->cfg.alloc, &r->r, w.hlc, &w.id,
			    w.present, w.val, w.len);
		if (rc >= 0)
			observe(&r->clock, w.hlc);
	} else if (rc == 0) {
		rc = crdt__rd_done(&rd);
	}
	if (rc < 0) {
		crdt_lww_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

bool
crdt_lww_equal(const crdt_lww *a, const crdt_lww *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return reg_same(&a->r, &b->r);
}

/* ---- map ---- */

typedef struct map_entry {
	crdt__key k;
	crdt__reg r;
} map_entry;

struct crdt_lww_map {
	crdt_config cfg;
	crdt_replica_id self;
	crdt_hlc clock;
	crdt__table t;
	size_t live;
};

int
crdt_lww_map_new(const crdt_config *cfg, const crdt_replica_id *self,
    crdt_lww_map **out)
{
	crdt_config c;

	if (out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(obj_init(cfg, self, &c));
	crdt_lww_map *m = crdt__malloc(&c.alloc, sizeof *m);
	if (m == NULL)
		return CRDT_ENOMEM;
	memset(m, 0, sizeof *m);
	m->cfg = c;
	m->self = *self;
	crdt_hlc_init(&m->clock, &c);
	int rc = crdt__table_init(&m->t, &m->cfg.alloc, sizeof(map_entry));
	if (rc < 0) {
		crdt_lww_map_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

static void
map_entry_fini(void *ent, const crdt_allocator *a)
{
	reg_fini(a, &((map_entry *)ent)->r);
}

void
crdt_lww_map_free(crdt_lww_map *m)
{
	if (m == NULL)
		return;
	crdt_allocator a = m->cfg.alloc;
	crdt__table_fini(&m->t, map_entry_fini);
	crdt__free(&a, m, sizeof *m);
}

static void
track_live(crdt_lww_map *m, uint8_t before, uint8_t after)
{
	m->live += (after == CRDT__REG_VALUE) - (before == CRDT__REG_VALUE);
}

/* Apply one write to `key`; the map is untouched on failure. */
static int
map_put(crdt_lww_map *m, const uint8_t *key, size_t klen, const wr *w)
{
	const crdt_allocator *a = &m->cfg.alloc;
	uint32_t h = crdt__table_hash(&m->t, key, klen);
	map_entry *e = crdt__table_find(&m->t, key, klen, h);
	if (e != NULL) {
		uint8_t before = e->r.state;
		int rc = reg_write(a, &e->r, w->hlc, &w->id, w->present,
		    w->val, w->len);
		if (rc > 0)
			track_live(m, before, e->r.state);
		return rc < 0 ? rc : 0;
	}
	CRDT_TRY(crdt__table_reserve(&m->t, 1));
	uint8_t *kcopy = crdt__memdup(a, key, klen);
	if (kcopy == NULL)
		return CRDT_ENOMEM;
	crdt__reg r = { 0 };
	if (reg_write(a, &r, w->hlc, &w->id, w->present, w->val, w->len) < 0) {
		crdt__free(a, kcopy, klen);
		return CRDT_ENOMEM;
	}
	e = crdt__table_insert(&m->t, kcopy, klen, h);
	e->r = r;
	track_live(m, CRDT__REG_UNSET, r.state);
	return 0;
}

static int
map_local(crdt_lww_map *m, const void *key, size_t klen, bool present,
    const void *value, size_t vlen, crdt_buf *op_out)
{
	wr w;

	if (m == NULL || op_out == NULL || (key == NULL && klen != 0) ||
	    (present && value == NULL && vlen != 0))
		return CRDT_EINVAL;
	if (klen > m->cfg.limits.max_value_bytes ||
	    vlen > m->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	crdt_hlc saved = m->clock;
	size_t mark = op_out->len;
	int rc = crdt_hlc_now(&m->clock, &w.hlc);
	w.id = m->self;
	w.present = present;
	w.val = value;
	w.len = present ? vlen : 0;
	if (rc == 0)
		rc = crdt__w_header(op_out, CRDT__KIND_MAP, 4);
	if (rc == 0)
		rc = w_write(op_out, w.hlc, &w.id, present, value, w.len);
	if (rc == 0)
		rc = crdt__w_bin(op_out, key, klen);
	if (rc == 0)
		rc = map_put(m, key, klen, &w);
	if (rc < 0) {
		m->clock = saved;
		op_out->len = mark;
		return rc;
	}
	return 0;
}

int
crdt__map_write(crdt_lww_map *m, const uint8_t *key, size_t klen,
    uint64_t hlc, const crdt_replica_id *id, bool present,
    const uint8_t *val, size_t vlen, crdt__undo *u, uint32_t obj)
{
	const crdt_allocator *a = &m->cfg.alloc;
	CRDT_TRY(crdt__undo_reserve(u, 1));
	crdt__undo_rec *rec = &u->v[u->n];
	memset(rec, 0, sizeof *rec);
	rec->restore = lww_undo;
	rec->target = m;
	rec->obj = obj;
	uint32_t h = crdt__table_hash(&m->t, key, klen);
	map_entry *e = crdt__table_find(&m->t, key, klen, h);
	if (e != NULL) {
		uint8_t before = e->r.state;
		int rc = reg_write_undo(a, &e->r, hlc, id, present, val, vlen,
		    rec);
		if (rc > 0) {
			track_live(m, before, e->r.state);
			rec->kind = CRDT__UNDO_MAP_REG;
			rec->idx = (size_t)((uint8_t *)e - m->t.ents) /
			    m->t.stride;
			u->n++;
		}
		return rc < 0 ? rc : 0;
	}
	wr w = { hlc, *id, present, val, vlen };
	CRDT_TRY(map_put(m, key, klen, &w));
	rec->kind = CRDT__UNDO_MAP_NEW;
	rec->idx = m->t.n - 1;
	u->n++;
	return 0;
}

size_t
crdt__map_nentries(const crdt_lww_map *m)
{
	return m->t.n;
}

const crdt__key *
crdt__map_entry(const crdt_lww_map *m, size_t idx, const crdt__reg **reg)
{
	const map_entry *e = crdt__table_at(&m->t, idx);
	if (reg != NULL)
		*reg = &e->r;
	return &e->k;
}

static void
lww_undo(crdt__undo_rec *rec)
{
	switch (rec->kind) {
	case CRDT__UNDO_LWW: {
		crdt_lww *r = rec->target;
		crdt__free(&r->cfg.alloc, r->r.val, r->r.len);
		r->r = rec->old;
		break;
	}
	case CRDT__UNDO_MAP_REG: {
		crdt_lww_map *m = rec->target;
		map_entry *e = crdt__table_at(&m->t, rec->idx);
		track_live(m, e->r.state, rec->old.state);
		crdt__free(&m->cfg.alloc, e->r.val, e->r.len);
		e->r = rec->old;
		break;
	}
	case CRDT__UNDO_MAP_NEW: {
		crdt_lww_map *m = rec->target;
		map_entry *e = crdt__table_pop(&m->t);
		track_live(m, e->r.state, CRDT__REG_UNSET);
		crdt__free(&m->cfg.alloc, e->k.ptr, e->k.len);
		reg_fini(&m->cfg.alloc, &e->r);
		break;
	}
	default:
		break;
	}
}

int
crdt_lww_map_set(crdt_lww_map *m, const void *key, size_t klen,
    const void *value, size_t vlen, crdt_buf *op_out)
{
	return map_local(m, key, klen, true, value, vlen, op_out);
}

int
crdt_lww_map_remove(crdt_lww_map *m, const void *key, size_t klen,
    crdt_buf *op_out)
{
	return map_local(m, key, klen, false, NULL, 0, op_out);
}

int
crdt_lww_map_apply_op(crdt_lww_map *m, const void *op, size_t len)
{
	crdt__rd rd;
	size_t n, klen;
	const uint8_t *key;
	wr w;

	if (m == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__rd_init(&rd, &m->cfg.limits, op, len));
	CRDT_TRY(crdt__rd_header(&rd, CRDT__KIND_MAP, &n));
	if (n != 6)
		return CRDT_EMALFORMED;
	CRDT_TRY(rd_write(&rd, &w));
	CRDT_TRY(crdt__rd_bin(&rd, &key, &klen));
	CRDT_TRY(crdt__rd_done(&rd));
	CRDT_TRY(map_put(m, key, klen, &w));
	observe(&m->clock, w.hlc);
	return 0;
}

/* Scratch copies for one src entry during a merge. */
typedef struct merge_copy {
	uint8_t *key;
	uint8_t *val;
	bool needed;
} merge_copy;

static void
free_copies(const crdt_allocator *a, const crdt_lww_map *src, merge_copy *c,
    size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const map_entry *e = crdt__table_at(&src->t, i);
		crdt__free(a, c[i].key, e->k.len);
		crdt__free(a, c[i].val, e->r.len);
	}
	crdt__free(a, c, src->t.n * sizeof *c);
}

int
crdt_lww_map_merge(crdt_lww_map *dst, const crdt_lww_map *src)
{
	if (dst == NULL || src == NULL)
		return CRDT_EINVAL;
	if (dst == src || src->t.n == 0)
		return 0;
	const crdt_allocator *a = &dst->cfg.alloc;
	if (src->t.n > SIZE_MAX / sizeof(merge_copy))
		return CRDT_ENOMEM;
	merge_copy *c = crdt__malloc(a, src->t.n * sizeof *c);
	if (c == NULL)
		return CRDT_ENOMEM;
	memset(c, 0, src->t.n * sizeof *c);
	/* Phase 1: every allocation (slots, key and value copies). */
	size_t fresh = 0;
	for (size_t i = 0; i < src->t.n; i++) {
		const map_entry *e = crdt__table_at(&src->t, i);
		uint32_t h = crdt__table_hash(&dst->t, e->k.ptr, e->k.len);
		const map_entry *d = crdt__table_find(&dst->t, e->k.ptr,
		    e->k.len, h);
		bool present = e->r.state == CRDT__REG_VALUE;
		if (d == NULL) {
			fresh++;
			c[i].key = crdt__memdup(a, e->k.ptr, e->k.len);
			if (c[i].key == NULL)
				goto nomem;
		} else if (crdt__reg_cmp(&d->r, e->r.hlc, &e->r.id, present,
			       e->r.val, e->r.len) <= 0) {
			continue;
		}
		c[i].needed = true;
		if (present) {
			c[i].val = crdt__memdup(a, e->r.val, e->r.len);
			if (c[i].val == NULL)
				goto nomem;
		}
	}
	if (crdt__table_reserve(&dst->t, fresh) < 0)
		goto nomem;
	/* Phase 2: cannot fail. */
	uint64_t top = 0;
	for (size_t i = 0; i < src->t.n; i++) {
		const map_entry *e = crdt__table_at(&src->t, i);
		top = CRDT_MAX(top, e->r.hlc);
		if (!c[i].needed)
			continue;
		map_entry *d;
		uint8_t before = CRDT__REG_UNSET;
		if (c[i].key != NULL) {
			uint32_t h = crdt__table_hash(&dst->t, e->k.ptr,
			    e->k.len);
			d = crdt__table_insert(&dst->t, c[i].key, e->k.len, h);
		} else {
			uint32_t h = crdt__table_hash(&dst->t, e->k.ptr,
			    e->k.len);
			d = crdt__table_find(&dst->t, e->k.ptr, e->k.len, h);
			before = d->r.state;
		}
		reg_install(a, &d->r, &e->r, c[i].val);
		track_live(dst, before, d->r.state);
	}
	crdt__free(a, c, src->t.n * sizeof *c);
	observe(&dst->clock, top);
	return 0;
nomem:
	free_copies(a, src, c, src->t.n);
	return CRDT_ENOMEM;
}

int
crdt_lww_map_get(const crdt_lww_map *m, const void *key, size_t klen,
    const uint8_t **value, size_t *vlen)
{
	if (m == NULL || (key == NULL && klen != 0))
		return CRDT_EINVAL;
	uint32_t h = crdt__table_hash(&m->t, key, klen);
	const map_entry *e = crdt__table_find(&m->t, key, klen, h);
	if (e == NULL || e->r.state != CRDT__REG_VALUE)
		return CRDT_ENOTFOUND;
	if (value != NULL)
		*value = e->r.val;
	if (vlen != NULL)
		*vlen = e->r.len;
	return 0;
}

size_t
crdt_lww_map_size(const crdt_lww_map *m)
{
	return m ? m->live : 0;
}

int
crdt_lww_map_foreach(const crdt_lww_map *m, crdt_lww_map_visit_fn fn, void *ud)
{
	const crdt__key **v;

	if (m == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__table_sorted(&m->t, &v));
	for (size_t i = 0; i < m->t.n; i++) {
		const map_entry *e = (const map_entry *)v[i];
		if (e->r.state != CRDT__REG_VALUE)
			continue;
		int rc = fn(ud, e->k.ptr, e->k.len, e->r.val, e->r.len);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
map_encode_body(const crdt_lww_map *m, crdt_buf *out)
{
	const crdt__key **v;

	CRDT_TRY(crdt__table_sorted(&m->t, &v));
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_MAP, 1));
	CRDT_TRY(crdt__w_array(out, m->t.n * 4));
	for (size_t i = 0; i < m->t.n; i++) {
		const map_entry *e = (const map_entry *)v[i];
		CRDT_TRY(crdt__w_bin(out, e->k.ptr, e->k.len));
		CRDT_TRY(w_reg(out, &e->r));
	}
	return 0;
}

int
crdt_lww_map_encode(const crdt_lww_map *m, crdt_buf *out)
{
	if (m == NULL || out == NULL)
		return CRDT_EINVAL;
	size_t mark = out->len;
	int rc = map_encode_body(m, out);
	if (rc < 0)
		out->len = mark;
	return rc;
}

static int
map_decode_body(crdt__rd *r, crdt_lww_map *m)
{
	size_t n, items;
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	uint64_t top = 0;

	CRDT_TRY(crdt__rd_header(r, CRDT__KIND_MAP, &n));
	if (n != 3)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__rd_array(r, &items));
	if (items % 4 != 0)
		return CRDT_EMALFORMED;
	items /= 4;
	/* key bin >= 1, stamp >= 1, writer, value or nil >= 1 */
	CRDT_TRY(crdt__rd_fits(r, items, 2 + CRDT__MIN_ID_UINT));
	CRDT_TRY(crdt__table_reserve(&m->t, items));
	for (size_t i = 0; i < items; i++) {
		const uint8_t *key;
		size_t klen;
		wr w;
		CRDT_TRY(crdt__rd_bin(r, &key, &klen));
		CRDT_TRY(rd_write(r, &w));
		if (i > 0 && crdt__key_cmp(prev, prev_len, key, klen) >= 0)
			return CRDT_EMALFORMED;
		prev = key;
		prev_len = klen;
		CRDT_TRY(map_put(m, key, klen, &w));
		top = CRDT_MAX(top, w.hlc);
	}
	CRDT_TRY(crdt__rd_done(r));
	observe(&m->clock, top);
	return 0;
}

int
crdt_lww_map_decode(const crdt_config *cfg, const crdt_replica_id *self,
    const void *bytes, size_t len, crdt_lww_map **out)
{
	crdt__rd r;
	crdt_lww_map *m;

	if (out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_lww_map_new(cfg, self, &m));
	int rc = crdt__rd_init(&r, &m->cfg.limits, bytes, len);
	if (rc == 0)
		rc = map_decode_body(&r, m);
	if (rc < 0) {
		crdt_lww_map_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

bool
crdt_lww_map_equal(const crdt_lww_map *a, const crdt_lww_map *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->t.n != b->t.n)
		return false;
	for (size_t i = 0; i < a->t.n; i++) {
		const map_entry *e = crdt__table_at(&a->t, i);
		uint32_t h = crdt__table_hash(&b->t, e->k.ptr, e->k.len);
		const map_entry *f = crdt__table_find(&b->t, e->k.ptr,
		    e->k.len, h);
		if (f == NULL || !reg_same(&e->r, &f->r))
			return false;
	}
	return true;
}
