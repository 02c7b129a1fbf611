/*
 * The document's replica table: replica IDs interned into dense numbers
 * (the vector clock, the causal buffer's heaps and the log are arrays
 * indexed by them, so the hot path never compares 16-byte IDs), and the
 * clock as a whole: its pair encoding and crdt_doc_vclock/missing.
 *
 * Every new sender or dependency costs a table entry, bounded by
 * cfg.max_replicas; an entry interned for a message or snapshot that is
 * then refused is forgotten (crdt__unintern_to), so junk IDs cannot fill
 * the table.
 */
#include <stdlib.h>

#include "doc_impl.h"

uint32_t
crdt__rep_index(const crdt_doc *d, const crdt_replica_id *id)
{
	uint32_t r;
	return crdt__rep_find(d, id, &r) == 0 ? r : UINT32_MAX;
}

int
crdt__rep_intern(crdt_doc *d, const crdt_replica_id *id, uint32_t *idx)
{
	if (crdt__rep_find(d, id, idx) == 0)
		return 0;
	/* Every new sender or dependency costs a table entry: bounded, as
	 * peers choose IDs freely. */
	if (d->nrs >= d->cfg.max_replicas)
		return CRDT_ETOOBIG;
	const crdt_allocator *a = &d->cfg.alloc;
	void *v = d->rs;
	CRDT_TRY(crdt__grow(a, &v, &d->caprs, d->nrs + 1, sizeof *d->rs));
	d->rs = v;
	CRDT_TRY(crdt__log_reserve_replicas(&d->log, d->nrs + 1));
	CRDT_TRY(crdt__table_reserve(&d->reps, 1));
	uint8_t *key = crdt__memdup(a, id->bytes, sizeof id->bytes);
	if (key == NULL)
		return CRDT_ENOMEM;
	uint32_t h = crdt__table_hash(&d->reps, id->bytes, sizeof id->bytes);
	rep_entry *e = crdt__table_insert(&d->reps, key, sizeof id->bytes, h);
	e->idx = (uint32_t)d->nrs;
	rstate *r = &d->rs[d->nrs];
	memset(r, 0, sizeof *r);
	r->id = *id;
	crdt__log_add_replica(&d->log);
	d->rep_cache[crdt__rep_slot(id)] = (uint32_t)d->nrs;
	*idx = (uint32_t)d->nrs++;
	return 0;
}

/* Forget replicas interned after the first `n` (LIFO): a refused message
 * must not leave its sender or dependencies in the table, or junk IDs
 * would fill `max_replicas` for good. */
void
crdt__unintern_to(crdt_doc *d, size_t n)
{
	while (d->nrs > n) {
		rstate *r = &d->rs[d->nrs - 1];
		crdt__key *k = crdt__table_pop(&d->reps);
		crdt__free(&d->cfg.alloc, k->ptr, k->len);
		crdt__wheap_fini(&r->heap, &d->cfg.alloc);
		crdt__free(&d->cfg.alloc, r->steps,
		    r->capsteps * sizeof *r->steps);
		d->nrs--;
	}
	crdt__log_drop_replicas(&d->log, n);
}

int
crdt__mark_dirty_slow(crdt_doc *d, uint32_t r)
{
	void *v = d->dirty;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->capdirty, d->ndirty + 1,
	    sizeof *d->dirty));
	d->dirty = v;
	d->dirty[d->ndirty++] = r;
	d->rs[r].dirty = true;
	return 0;
}

static int
rs_id_cmp(const void *x, const void *y)
{
	const rstate *a = *(const rstate *const *)x;
	const rstate *b = *(const rstate *const *)y;
	return crdt_replica_id_cmp(&a->id, &b->id);
}

enum { F_VC, F_SEEN, F_STAMP };

static uint64_t
rs_field(const rstate *r, int f)
{
	return f == F_SEEN ? r->admin_seen : f == F_STAMP ? r->stamp : r->vc;
}

/* The replicas whose `sel` field is non-zero, ascending by ID, and for
 * each `val` as pairs [id, v, ...] (`pairs`) or values [v, ...]. */
static int
w_rs(const crdt_doc *d, crdt_buf *out, int sel, int val, bool pairs)
{
	const crdt_allocator *a = &d->cfg.alloc;
	const rstate **v = crdt__malloc(a, d->nrs * sizeof *v);
	size_t n = 0;
	int rc = 0;

	if (v == NULL)
		return CRDT_ENOMEM;
	for (size_t i = 0; i < d->nrs; i++)
		if (rs_field(&d->rs[i], sel) > 0)
			v[n++] = &d->rs[i];
	if (n > 1)
		qsort(v, n, sizeof *v, rs_id_cmp);
	rc = crdt__w_array(out, pairs ? 2 * n : n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (pairs)
			rc = crdt__w_id(out, &v[i]->id);
		if (rc == 0)
			rc = crdt__w_uint(out, rs_field(v[i], val));
	}
	crdt__free(a, v, d->nrs * sizeof *v);
	return rc;
}

int
crdt__w_vc_pairs(const crdt_doc *d, crdt_buf *out)
{
	return w_rs(d, out, F_VC, F_VC, true);
}

int
crdt__w_admin_seen(const crdt_doc *d, crdt_buf *out)
{
	return w_rs(d, out, F_SEEN, F_SEEN, true);
}

int
crdt__w_stamps(const crdt_doc *d, crdt_buf *out)
{
	return w_rs(d, out, F_VC, F_STAMP, false);
}

/* Read [id, c, ...] ascending into a fresh array. */
int
crdt__rd_vc_pairs(const crdt_doc *d, crdt__rd *r, iddep **out,
    size_t *nout)
{
	size_t n;

	CRDT_TRY(crdt__rd_array(r, &n));
	if (n % 2 != 0)
		return CRDT_EMALFORMED;
	n /= 2;
	CRDT_TRY(crdt__rd_fits(r, n, CRDT__MIN_ID_UINT));
	iddep *v = crdt__malloc(&d->cfg.alloc, n * sizeof *v);
	if (v == NULL)
		return CRDT_ENOMEM;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = crdt__rd_id(r, &v[i].id);
		if (rc == 0)
			rc = crdt__rd_uint(r, &v[i].c);
		if (rc == 0 && (v[i].c == 0 || (i > 0 &&
		    crdt_replica_id_cmp(&v[i - 1].id, &v[i].id) >= 0)))
			rc = CRDT_EMALFORMED;
	}
	if (rc < 0) {
		crdt__free(&d->cfg.alloc, v, n * sizeof *v);
		return rc;
	}
	r->depth--;
	*out = v;
	*nout = n;
	return 0;
}

uint64_t
crdt__vc_pairs_get(const iddep *pairs, size_t n, const crdt_replica_id *id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = crdt_replica_id_cmp(&pairs[mid].id, id);
		if (c == 0)
			return pairs[mid].c;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

int
crdt_doc_vclock(const crdt_doc *d, crdt_vclock **out)
{
	crdt_vclock *vc;

	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_vclock_new(&d->cfg, &vc));
	for (size_t i = 0; i < d->nrs; i++) {
		int rc = crdt_vclock_set(vc, &d->rs[i].id, d->rs[i].vc);
		if (rc < 0) {
			crdt_vclock_free(vc);
			return rc;
		}
	}
	*out = vc;
	return 0;
}

int
crdt_doc_missing(const crdt_doc *d, crdt_vclock **out)
{
	crdt_vclock *vc;

	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_vclock_new(&d->cfg, &vc));
	for (size_t i = 0; i < d->nrs; i++) {
		const rstate *r = &d->rs[i];
		uint64_t top = 0;
		for (size_t j = 0; j < r->heap.n; j++)
			top = CRDT_MAX(top, r->heap.v[j].c);
		int rc = crdt_vclock_set(vc, &r->id, top);
		if (rc < 0) {
			crdt_vclock_free(vc);
			return rc;
		}
	}
	*out = vc;
	return 0;
}

/* The message log, by dot (crdt/msglog.c holds it per replica). */
int
crdt_doc_log_get(const crdt_doc *d, crdt_dot dot, const uint8_t **bytes,
    size_t *len)
{
	uint32_t ri;

	if (d == NULL)
		return CRDT_EINVAL;
	logent e;
	if (crdt__rep_find(d, &dot.replica, &ri) != 0 ||
	    !crdt__log_get(&d->log, ri, dot.counter, &e))
		return CRDT_ENOTFOUND;
	/* A spliced entry is put together in the document's view buffer. */
	const uint8_t *p;
	size_t n;
	CRDT_TRY(crdt__lent_view(e, d->logview, &p, &n));
	if (bytes != NULL)
		*bytes = p;
	if (len != NULL)
		*len = n;
	return 0;
}

size_t
crdt_doc_log_size(const crdt_doc *d)
{
	return d ? d->log.count : 0;
}
