/*
 * The allowlist index (acl.h).
 */
#include "acl.h"

static void
ent_fini(void *e, const crdt_allocator *a)
{
	crdt__acl_ent *x = e;
	crdt__free(a, x->h, x->cap * sizeof *x->h);
}

int
crdt__acl_init(crdt__table *t, const crdt_allocator *a)
{
	return crdt__table_init(t, a, sizeof(crdt__acl_ent));
}

void
crdt__acl_fini(crdt__table *t)
{
	crdt__table_fini(t, ent_fini);
}

void
crdt__acl_swap(crdt__table *dst, crdt__table *src)
{
	crdt__acl_fini(dst);
	*dst = *src;
}

/* Parse record [writer, admin counter, allowed]. */
static int
rd_rec(const uint8_t *rec, size_t len, crdt_replica_id *w,
    crdt__acl_change *ch)
{
	static const crdt_limits lim = { SIZE_MAX, SIZE_MAX, SIZE_MAX, 4 };
	crdt__rd r;
	uint64_t allowed;

	CRDT_TRY(crdt__rd_init(&r, &lim, rec, len));
	CRDT_TRY(crdt__rd_array_n(&r, 3));
	CRDT_TRY(crdt__rd_id(&r, w));
	if (ch == NULL)
		return 0;
	CRDT_TRY(crdt__rd_uint(&r, &ch->c));
	CRDT_TRY(crdt__rd_uint(&r, &allowed));
	ch->allowed = allowed != 0;
	return 0;
}

/* The entry of `w`, added with no history when absent (an entry with no
 * history reads as "not allowed", the same as no entry, so it may stay if
 * what added it is refused). */
static int
ent_get(crdt__table *t, const crdt_replica_id *w, crdt__acl_ent **out)
{
	uint32_t h = crdt__table_hash(t, w->bytes, 16);
	crdt__acl_ent *e = crdt__table_find(t, w->bytes, 16, h);
	if (e == NULL) {
		CRDT_TRY(crdt__table_reserve(t, 1));
		uint8_t *k = crdt__memdup(t->a, w->bytes, 16);
		if (k == NULL)
			return CRDT_ENOMEM;
		e = crdt__table_insert(t, k, 16, h);
		e->h = NULL;
		e->n = e->cap = e->pend = 0;
	}
	*out = e;
	return 0;
}

int
crdt__acl_add(crdt__table *t, const uint8_t *rec, size_t len)
{
	crdt_replica_id w;
	crdt__acl_change ch;
	crdt__acl_ent *e;

	CRDT_TRY(rd_rec(rec, len, &w, &ch));
	CRDT_TRY(ent_get(t, &w, &e));
	void *v = e->h;
	CRDT_TRY(crdt__grow(t->a, &v, &e->cap, e->n + 1, sizeof *e->h));
	e->h = v;
	size_t i = e->n;
	/* ascending counter; at equal counters a revoke sorts last (wins) */
	while (i > 0 && (e->h[i - 1].c > ch.c ||
	    (e->h[i - 1].c == ch.c && !e->h[i - 1].allowed && ch.allowed))) {
		e->h[i] = e->h[i - 1];
		i--;
	}
	e->h[i] = ch;
	e->n++;
	return 0;
}

int
crdt__acl_build(crdt__table *t, const crdt_allocator *a, const crdt_gset *g)
{
	crdt__table nt;
	CRDT_TRY(crdt__acl_init(&nt, a));
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < crdt_gset_size(g); i++) {
		const crdt__key *k = crdt__gset_entry_key(g, i);
		rc = crdt__acl_add(&nt, k->ptr, k->len);
	}
	if (rc < 0)
		crdt__acl_fini(&nt);
	else
		*t = nt;
	return rc;
}

int
crdt__acl_room(crdt__table *t, const uint8_t *rec, size_t len)
{
	crdt_replica_id w;
	crdt__acl_ent *e;

	CRDT_TRY(rd_rec(rec, len, &w, NULL));
	CRDT_TRY(ent_get(t, &w, &e));
	void *v = e->h;
	CRDT_TRY(crdt__grow(t->a, &v, &e->cap, e->n + e->pend + 1,
	    sizeof *e->h));
	e->h = v;
	e->pend++;
	return 0;
}

void
crdt__acl_settle(crdt__table *t, const uint8_t *rec, size_t len)
{
	crdt_replica_id w;
	if (rd_rec(rec, len, &w, NULL) != 0)
		return;
	uint32_t h = crdt__table_hash(t, w.bytes, 16);
	crdt__acl_ent *e = crdt__table_find(t, w.bytes, 16, h);
	if (e != NULL)
		e->pend = 0;
}

bool
crdt__acl_allows(const crdt__table *t, const crdt_replica_id *w, uint64_t a)
{
	uint32_t h = crdt__table_hash(t, w->bytes, 16);
	const crdt__acl_ent *e = crdt__table_find(t, w->bytes, 16, h);
	bool ok = false;
	for (size_t i = 0; e != NULL && i < e->n && e->h[i].c <= a; i++)
		ok = e->h[i].allowed;
	return ok;
}
