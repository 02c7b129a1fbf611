/*
 * Equivocation evidence store (evidence.h).
 */
#include "evidence.h"

void
crdt__ev_init(crdt__evstore *s, const crdt_allocator *a, size_t max_dots,
    size_t max_variants, size_t max_bytes)
{
	memset(s, 0, sizeof *s);
	s->a = a;
	s->max_dots = max_dots;
	s->max_variants = max_variants;
	s->max_bytes = max_bytes;
}

/* Free one variant's bytes and take them off the counts. */
static void
drop_bytes(crdt__evstore *s, crdt__evid *e, size_t i)
{
	size_t len = e->v[i].len;
	crdt__free(s->a, e->v[i].bytes, len);
	e->bytes -= len;
	s->bytes -= len;
	if (e->r != UINT32_MAX)
		s->signer[e->r] -= len;
}

/* Free dot entry `e` (its variants and vector). */
static void
evid_free(crdt__evstore *s, crdt__evid *e)
{
	for (size_t j = 0; j < e->n; j++)
		drop_bytes(s, e, j);
	crdt__free(s->a, e->v, e->cap * sizeof *e->v);
}

void
crdt__ev_fini(crdt__evstore *s)
{
	for (size_t i = 0; i < s->n; i++)
		evid_free(s, &s->v[i]);
	crdt__free(s->a, s->v, s->cap * sizeof *s->v);
	crdt__free(s->a, s->signer, s->capsigner * sizeof *s->signer);
	memset(s, 0, sizeof *s);
}

crdt__evid *
crdt__ev_find(const crdt__evstore *s, crdt_dot dot, size_t *at)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (crdt_dot_cmp(s->v[mid].dot, dot) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return lo < s->n && crdt_dot_cmp(s->v[lo].dot, dot) == 0 ?
	    &s->v[lo] :
	    NULL;
}

bool
crdt__ev_has(const crdt__evid *e, const uint8_t *b, size_t len)
{
	for (size_t i = 0; e != NULL && i < e->n; i++)
		if (crdt__key_cmp(e->v[i].bytes, e->v[i].len, b, len) == 0)
			return true;
	return false;
}

static size_t
signer_bytes(const crdt__evstore *s, uint32_t r)
{
	return r < s->nsigner ? s->signer[r] : 0;
}

int
crdt__ev_fits(const crdt__evstore *s, crdt_dot dot, uint32_t r, size_t len,
    size_t more)
{
	size_t at;
	const crdt__evid *e = crdt__ev_find(s, dot, &at);
	size_t cap = s->max_bytes;
	if (e == NULL && s->n >= s->max_dots)
		return CRDT_EBUFFULL; /* bounded like the buffer */
	if ((e ? e->n : 0) + more > s->max_variants)
		return CRDT_ETOOBIG;
	if (len > cap - CRDT_MIN(cap, s->bytes))
		return CRDT_ETOOBIG;
	if (r != UINT32_MAX &&
	    len > cap / 4 - CRDT_MIN(cap / 4, signer_bytes(s, r)))
		return CRDT_ETOOBIG;
	return 0;
}

/* Room to count bytes to signer r; new counters start at 0. */
static int
signer_reserve(crdt__evstore *s, uint32_t r)
{
	if (r == UINT32_MAX || r < s->nsigner)
		return 0;
	void *v = s->signer;
	CRDT_TRY(crdt__grow(s->a, &v, &s->capsigner, (size_t)r + 1,
	    sizeof *s->signer));
	s->signer = v;
	memset(s->signer + s->nsigner, 0,
	    ((size_t)r + 1 - s->nsigner) * sizeof *s->signer);
	s->nsigner = (size_t)r + 1;
	return 0;
}

/* The vector grows geometrically and is freed with the size it has, so
 * insertion is linear only in the (bounded) variants of one dot. */
int
crdt__ev_add(crdt__evstore *s, crdt_dot dot, uint32_t r, const uint8_t *b,
    size_t len)
{
	const crdt_allocator *a = s->a;
	size_t at;
	crdt__evid *e = crdt__ev_find(s, dot, &at);
	if (crdt__ev_has(e, b, len))
		return 0;
	CRDT_TRY(crdt__ev_fits(s, dot, r, len, 1));
	if (e == NULL) {
		CRDT_TRY(signer_reserve(s, r));
		void *nv = s->v;
		CRDT_TRY(crdt__grow(a, &nv, &s->cap, s->n + 1, sizeof *s->v));
		s->v = nv;
	}
	crdt__logent *v = e ? e->v : NULL;
	size_t cap = e ? e->cap : 0;
	void *vv = v;
	CRDT_TRY(crdt__grow(a, &vv, &cap, (e ? e->n : 0) + 1, sizeof *v));
	v = vv;
	uint8_t *copy = crdt__memdup(a, b, len);
	if (copy == NULL) {
		if (e == NULL)
			crdt__free(a, v, cap * sizeof *v);
		else {
			e->v = v;
			e->cap = cap;
		}
		return CRDT_ENOMEM;
	}
	if (e == NULL) {
		memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof *s->v);
		s->n++;
		e = &s->v[at];
		memset(e, 0, sizeof *e);
		e->dot = dot;
		e->r = r;
	}
	e->v = v;
	e->cap = cap;
	size_t i = 0;
	while (i < e->n &&
	    crdt__key_cmp(e->v[i].bytes, e->v[i].len, b, len) < 0)
		i++;
	memmove(&e->v[i + 1], &e->v[i], (e->n - i) * sizeof *e->v);
	e->v[i] = (crdt__logent){ copy, len };
	e->n++;
	e->bytes += len;
	s->bytes += len;
	if (e->r != UINT32_MAX)
		s->signer[e->r] += len;
	s->gen++;
	return 1;
}

void
crdt__ev_remove(crdt__evstore *s, crdt_dot dot, const uint8_t *b, size_t len)
{
	size_t at;
	crdt__evid *e = crdt__ev_find(s, dot, &at);
	if (e == NULL)
		return;
	s->gen++;
	for (size_t i = 0; i < e->n; i++) {
		if (crdt__key_cmp(e->v[i].bytes, e->v[i].len, b, len) != 0)
			continue;
		drop_bytes(s, e, i);
		memmove(&e->v[i], &e->v[i + 1], (e->n - i - 1) * sizeof *e->v);
		e->n--;
		break;
	}
	if (e->n <= 1) {
		evid_free(s, e);
		memmove(&s->v[at], &s->v[at + 1],
		    (s->n - at - 1) * sizeof *s->v);
		s->n--;
	}
}

void
crdt__ev_prune(crdt__evstore *s)
{
	size_t k = 0;
	for (size_t i = 0; i < s->n; i++) {
		crdt__evid *e = &s->v[i];
		if (e->n >= 2) {
			s->v[k++] = *e;
			continue;
		}
		evid_free(s, e);
	}
	if (k != s->n)
		s->gen++;
	s->n = k;
}

size_t
crdt__ev_variants(const crdt__evstore *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].n >= 2)
			n += s->v[i].n;
	return n;
}

/*
 * A dot holds one variant here when the others are known only through
 * the state (a variant released from a snapshot's buffer with no log
 * entry to compare it with). That proves nothing to anyone, and an
 * evidence list needs two variants a dot (snapshot.c, sync.c): so it is
 * kept (a second variant that arrives later pairs with it) but neither
 * counted nor written, and a saved snapshot always loads again.
 */
int
crdt__ev_write(const crdt__evstore *s, crdt_buf *out)
{
	CRDT_TRY(crdt__w_array(out, crdt__ev_variants(s)));
	for (size_t i = 0; i < s->n; i++)
		for (size_t j = 0; s->v[i].n >= 2 && j < s->v[i].n; j++)
			CRDT_TRY(crdt__w_bin(out, s->v[i].v[j].bytes,
			    s->v[i].v[j].len));
	return 0;
}
