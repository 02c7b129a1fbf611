/*
 * Standalone vector clock: entries sorted by replica ID in one array, so
 * lookups are binary searches and merge/compare are linear merges. (The
 * document runtime keeps its own dense per-index clock; this type is the
 * public value and wire form.)
 */
#include "internal.h"

typedef struct vc_entry {
	crdt_replica_id id;
	uint64_t counter;
} vc_entry;

struct crdt_vclock {
	crdt_config cfg;
	vc_entry *v;
	size_t n, cap;
};

int
crdt_vclock_new(const crdt_config *cfg, crdt_vclock **out)
{
	crdt_config c;

	if (out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	crdt_vclock *vc = crdt__malloc(&c.alloc, sizeof *vc);
	if (vc == NULL)
		return CRDT_ENOMEM;
	memset(vc, 0, sizeof *vc);
	vc->cfg = c;
	*out = vc;
	return 0;
}

void
crdt_vclock_free(crdt_vclock *vc)
{
	if (vc == NULL)
		return;
	crdt_allocator a = vc->cfg.alloc;
	crdt__free(&a, vc->v, vc->cap * sizeof *vc->v);
	crdt__free(&a, vc, sizeof *vc);
}

int
crdt_vclock_clone(const crdt_vclock *vc, crdt_vclock **out)
{
	crdt_vclock *c;

	if (vc == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_vclock_new(&vc->cfg, &c));
	void *v = NULL;
	int rc = crdt__grow(&c->cfg.alloc, &v, &c->cap, vc->n, sizeof *c->v);
	if (rc < 0) {
		crdt_vclock_free(c);
		return rc;
	}
	c->v = v;
	if (vc->n)
		memcpy(c->v, vc->v, vc->n * sizeof *c->v);
	c->n = vc->n;
	*out = c;
	return 0;
}

/* Index of the first entry with id >= `id`. */
static size_t
lower_bound(const crdt_vclock *vc, const crdt_replica_id *id, bool *found)
{
	size_t lo = 0, hi = vc->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (crdt_replica_id_cmp(&vc->v[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < vc->n && crdt_replica_id_cmp(&vc->v[lo].id, id) == 0;
	return lo;
}

uint64_t
crdt_vclock_get(const crdt_vclock *vc, const crdt_replica_id *id)
{
	bool found;

	if (vc == NULL || id == NULL)
		return 0;
	size_t i = lower_bound(vc, id, &found);
	return found ? vc->v[i].counter : 0;
}

int
crdt_vclock_set(crdt_vclock *vc, const crdt_replica_id *id, uint64_t counter)
{
	bool found;

	if (vc == NULL || id == NULL)
		return CRDT_EINVAL;
	size_t i = lower_bound(vc, id, &found);
	if (found) {
		if (counter != 0) {
			vc->v[i].counter = counter;
		} else {
			memmove(&vc->v[i], &vc->v[i + 1],
			    (vc->n - i - 1) * sizeof *vc->v);
			vc->n--;
		}
		return 0;
	}
	if (counter == 0)
		return 0;
	void *v = vc->v;
	CRDT_TRY(crdt__grow(&vc->cfg.alloc, &v, &vc->cap, vc->n + 1,
	    sizeof *vc->v));
	vc->v = v;
	memmove(&vc->v[i + 1], &vc->v[i], (vc->n - i) * sizeof *vc->v);
	vc->v[i].id = *id;
	vc->v[i].counter = counter;
	vc->n++;
	return 0;
}

int
crdt_vclock_merge(crdt_vclock *dst, const crdt_vclock *src)
{
	if (dst == NULL || src == NULL)
		return CRDT_EINVAL;
	/* Count the union first so the only allocation happens before any
	 * entry changes: dst is untouched on CRDT_ENOMEM. */
	size_t i = 0, j = 0, n = 0;
	while (i < dst->n || j < src->n) {
		int c = i == dst->n ? 1 :
		    j == src->n     ? -1 :
				      crdt_replica_id_cmp(&dst->v[i].id,
					  &src->v[j].id);
		i += c <= 0;
		j += c >= 0;
		n++;
	}
	if (n == dst->n) {
		for (i = 0, j = 0; j < src->n; j++) {
			while (crdt_replica_id_cmp(&dst->v[i].id,
				   &src->v[j].id) < 0)
				i++;
			dst->v[i].counter = CRDT_MAX(dst->v[i].counter,
			    src->v[j].counter);
		}
		return 0;
	}
	vc_entry *m = crdt__malloc(&dst->cfg.alloc, n * sizeof *m);
	if (m == NULL)
		return CRDT_ENOMEM;
	size_t k = 0;
	for (i = 0, j = 0; i < dst->n || j < src->n; k++) {
		int c = i == dst->n ? 1 :
		    j == src->n     ? -1 :
				      crdt_replica_id_cmp(&dst->v[i].id,
					  &src->v[j].id);
		if (c < 0) {
			m[k] = dst->v[i++];
		} else if (c > 0) {
			m[k] = src->v[j++];
		} else {
			/* CRDT_MAX evaluates its arguments twice: no j++
			 * inside it. */
			uint64_t sc = src->v[j++].counter;
			m[k] = dst->v[i++];
			m[k].counter = CRDT_MAX(m[k].counter, sc);
		}
	}
	crdt__free(&dst->cfg.alloc, dst->v, dst->cap * sizeof *dst->v);
	dst->v = m;
	dst->n = dst->cap = n;
	return 0;
}

crdt_order
crdt_vclock_compare(const crdt_vclock *a, const crdt_vclock *b)
{
	bool less = false, greater = false;
	size_t an = a ? a->n : 0, bn = b ? b->n : 0;
	size_t i = 0, j = 0;

	while (i < an || j < bn) {
		int c = i == an ? 1 :
		    j == bn     ? -1 :
				  crdt_replica_id_cmp(&a->v[i].id, &b->v[j].id);
		if (c < 0) {
			greater = true; /* a has an entry b lacks */
			i++;
		} else if (c > 0) {
			less = true;
			j++;
		} else {
			if (a->v[i].counter < b->v[j].counter)
				less = true;
			else if (a->v[i].counter > b->v[j].counter)
				greater = true;
			i++;
			j++;
		}
	}
	if (less && greater)
		return CRDT_ORDER_CONCURRENT;
	if (less)
		return CRDT_ORDER_BEFORE;
	if (greater)
		return CRDT_ORDER_AFTER;
	return CRDT_ORDER_EQUAL;
}

bool
crdt_vclock_covers(const crdt_vclock *vc, crdt_dot dot)
{
	return crdt_vclock_get(vc, &dot.replica) >= dot.counter;
}

size_t
crdt_vclock_size(const crdt_vclock *vc)
{
	return vc ? vc->n : 0;
}

int
crdt_vclock_entry(const crdt_vclock *vc, size_t i, crdt_replica_id *id,
    uint64_t *counter)
{
	if (vc == NULL || i >= vc->n)
		return CRDT_EINVAL;
	if (id != NULL)
		*id = vc->v[i].id;
	if (counter != NULL)
		*counter = vc->v[i].counter;
	return 0;
}

static int
encode_body(const crdt_vclock *vc, crdt_buf *out)
{
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_VCLOCK, 1));
	if (vc->n > SIZE_MAX / 2)
		return CRDT_ETOOBIG;
	CRDT_TRY(crdt__w_array(out, vc->n * 2));
	for (size_t i = 0; i < vc->n; i++) {
		CRDT_TRY(crdt__w_id(out, &vc->v[i].id));
		CRDT_TRY(crdt__w_uint(out, vc->v[i].counter));
	}
	return 0;
}

int
crdt_vclock_encode(const crdt_vclock *vc, crdt_buf *out)
{
	if (vc == NULL || out == NULL)
		return CRDT_EINVAL;
	size_t mark = out->len;
	int rc = encode_body(vc, out);
	if (rc < 0)
		out->len = mark;
	return rc;
}

static int
decode_body(crdt__rd *r, crdt_vclock *vc)
{
	size_t n, pairs;

	CRDT_TRY(crdt__rd_header(r, CRDT__KIND_VCLOCK, &n));
	if (n != 3)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__rd_array(r, &pairs));
	if (pairs % 2 != 0)
		return CRDT_EMALFORMED;
	pairs /= 2;
	CRDT_TRY(crdt__rd_fits(r, pairs, CRDT__MIN_ID_UINT));
	void *v = NULL;
	CRDT_TRY(crdt__grow(&vc->cfg.alloc, &v, &vc->cap, pairs,
	    sizeof *vc->v));
	vc->v = v;
	for (size_t i = 0; i < pairs; i++) {
		vc_entry e;
		CRDT_TRY(crdt__rd_id(r, &e.id));
		CRDT_TRY(crdt__rd_uint(r, &e.counter));
		if (e.counter == 0)
			return CRDT_EMALFORMED;
		if (i > 0 && crdt_replica_id_cmp(&vc->v[i - 1].id, &e.id) >= 0)
			return CRDT_EMALFORMED;
		vc->v[vc->n++] = e;
	}
	return crdt__rd_done(r);
}

int
crdt_vclock_decode(const crdt_config *cfg, const void *bytes, size_t len,
    crdt_vclock **out)
{
	crdt__rd r;
	crdt_vclock *vc;

	if (out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_vclock_new(cfg, &vc));
	int rc = crdt__rd_init(&r, &vc->cfg.limits, bytes, len);
	if (rc == 0)
		rc = decode_body(&r, vc);
	if (rc < 0) {
		crdt_vclock_free(vc);
		return rc;
	}
	*out = vc;
	return 0;
}
