/*
 * Wait heaps and the dot table of the causal buffer (causal.h).
 */
#include "causal.h"

int
crdt__wheap_reserve(crdt__wheap *h, const crdt_allocator *a)
{
	void *v = h->v;
	CRDT_TRY(crdt__grow(a, &v, &h->cap, h->n + 1, sizeof *h->v));
	h->v = v;
	return 0;
}

/*
 * A 4-ary heap: half the levels of a binary one, and a node's four
 * children are 64 contiguous bytes. A shuffled delivery pops from heaps
 * far larger than the caches, where each level visited is a miss, so
 * fewer levels is fewer misses (docs/performance.md, *The causal
 * buffer*); the comparisons per pop stay about the same.
 */
#define WH_D 4

void
crdt__wheap_push(crdt__wheap *h, crdt__wait w)
{
	size_t i = h->n++;
	while (i > 0) {
		size_t p = (i - 1) / WH_D;
		if (h->v[p].c <= w.c)
			break;
		h->v[i] = h->v[p];
		i = p;
	}
	h->v[i] = w;
}

crdt__wait
crdt__wheap_pop(crdt__wheap *h)
{
	crdt__wait top = h->v[0];
	crdt__wait last = h->v[--h->n];
	size_t i = 0, n = h->n;
	for (;;) {
		size_t c = WH_D * i + 1;
		if (c >= n)
			break;
		size_t end = CRDT_MIN(c + WH_D, n), m = c;
		for (size_t k = c + 1; k < end; k++)
			if (h->v[k].c < h->v[m].c)
				m = k;
		if (h->v[m].c >= last.c)
			break;
		h->v[i] = h->v[m];
		i = m;
	}
	if (n > 0)
		h->v[i] = last;
	return top;
}

void
crdt__wheap_fini(crdt__wheap *h, const crdt_allocator *a)
{
	crdt__free(a, h->v, h->cap * sizeof *h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

int
crdt__dots_init(crdt__dots *t, const crdt_allocator *a)
{
	memset(t, 0, sizeof *t);
	t->a = a;
	return crdt__random(t->key, sizeof t->key);
}

void
crdt__dots_fini(crdt__dots *t)
{
	crdt__free(t->a, t->s, t->nslots * sizeof *t->s);
	t->s = NULL;
	t->nslots = t->n = 0;
	for (size_t i = 0; i < t->nrg; i++)
		crdt__free(t->a, t->rg[i].v, t->rg[i].cap * sizeof *t->rg[i].v);
	crdt__free(t->a, t->rg, t->caprg * sizeof *t->rg);
	t->rg = NULL;
	t->nrg = t->caprg = 0;
	t->total = 0;
}

/* ---- the hash table, for what the rings do not take ---- */

static uint64_t
dot_hash(const crdt__dots *t, uint32_t r, uint64_t c)
{
	uint8_t k[12];
	memcpy(k, &r, 4);
	memcpy(k + 4, &c, 8);
	return crdt__siphash(t->key, k, sizeof k);
}

static crdt__dotslot *
hash_find(const crdt__dots *t, uint32_t r, uint64_t c)
{
	if (t->n == 0)
		return NULL;
	size_t mask = t->nslots - 1;
	for (size_t i = (size_t)dot_hash(t, r, c) & mask;; i = (i + 1) & mask) {
		crdt__dotslot *s = &t->s[i];
		if (s->msg == UINT32_MAX)
			return NULL;
		if (s->r == r && s->c == c)
			return s;
	}
}

static void
dots_place(crdt__dotslot *slots, size_t n, uint64_t h, crdt__dotslot v)
{
	size_t mask = n - 1;
	size_t i = (size_t)h & mask;
	while (slots[i].msg != UINT32_MAX)
		i = (i + 1) & mask;
	slots[i] = v;
}

static int
hash_reserve(crdt__dots *t)
{
	size_t ns = t->nslots ? t->nslots : 64;
	while (t->n + 1 > ns / 2)
		ns *= 2;
	if (ns == t->nslots)
		return 0;
	crdt__dotslot *s = crdt__malloc(t->a, ns * sizeof *s);
	if (s == NULL)
		return CRDT_ENOMEM;
	for (size_t i = 0; i < ns; i++)
		s[i].msg = UINT32_MAX;
	for (size_t i = 0; i < t->nslots; i++)
		if (t->s[i].msg != UINT32_MAX)
			dots_place(s, ns, dot_hash(t, t->s[i].r, t->s[i].c),
			    t->s[i]);
	crdt__free(t->a, t->s, t->nslots * sizeof *t->s);
	t->s = s;
	t->nslots = ns;
	return 0;
}

/* Backward-shift deletion keeps linear probing chains intact without
 * tombstones. */
static void
hash_remove(crdt__dots *t, crdt__dotslot *s)
{
	size_t mask = t->nslots - 1;
	size_t i = (size_t)(s - t->s);
	size_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (t->s[j].msg == UINT32_MAX)
			break;
		size_t home = (size_t)dot_hash(t, t->s[j].r, t->s[j].c) & mask;
		/* Move j into the hole i unless its home lies in (i, j]. */
		bool stays = i <= j ? (home > i && home <= j) :
		    (home > i || home <= j);
		if (!stays) {
			t->s[i] = t->s[j];
			i = j;
		}
	}
	t->s[i].msg = UINT32_MAX;
	t->n--;
	/* Empty: give the slots back (a burst of far-ahead dots would
	 * otherwise keep its high-water mark). */
	if (t->n == 0) {
		crdt__free(t->a, t->s, t->nslots * sizeof *t->s);
		t->s = NULL;
		t->nslots = 0;
	}
}

/* ---- the rings ---- */

/* A replica's first ring is 8 cells (32 bytes): a flood of new replica
 * IDs with a message each costs little more here than in the hash
 * table. */
enum { RING_MIN = 8, RING_SLACK = 8 };

/* The ring cell of (r, c), or NULL when c is outside r's window. */
static uint32_t *
ring_cell(const crdt__dots *t, uint32_t r, uint64_t c)
{
	if (r >= t->nrg)
		return NULL;
	const crdt__dring *g = &t->rg[r];
	if (g->n == 0 || c < g->lo || c > g->hi)
		return NULL;
	return &g->v[c & (g->cap - 1)];
}

/* The cells a ring holding `n` dots may have: beyond that, a counter
 * goes to the hash table (see causal.h). */
static uint64_t
ring_limit(uint32_t n)
{
	return (uint64_t)n * 4 + RING_SLACK;
}

/* Whether (r, c) goes to r's ring, and the cells the ring needs then:
 * at most 4 a dot plus 8, or `allow`, whichever is more. */
static bool
ring_takes(const crdt__dots *t, uint32_t r, uint64_t c, uint64_t allow,
    uint64_t *need)
{
	const crdt__dring *g = r < t->nrg ? &t->rg[r] : NULL;
	if (g == NULL || g->n == 0) {
		*need = RING_MIN;
		return true;
	}
	if (g->n == UINT32_MAX)
		return false;
	uint64_t lo = CRDT_MIN(g->lo, c), hi = CRDT_MAX(g->hi, c);
	if (hi - lo >= CRDT_MAX(ring_limit(g->n + 1), allow))
		return false;
	*need = hi - lo + 1;
	return true;
}

bool
crdt__dots_get_slow(const crdt__dots *t, uint32_t r, uint64_t c,
    uint32_t *msg)
{
	const uint32_t *cell = ring_cell(t, r, c);
	if (cell != NULL && *cell != 0) {
		*msg = *cell - 1;
		return true;
	}
	const crdt__dotslot *s = hash_find(t, r, c);
	if (s == NULL)
		return false;
	*msg = s->msg;
	return true;
}

/* Ring g with room for `need` counters from its window; cells move to
 * their index under the new size. */
static int
ring_grow(crdt__dots *t, crdt__dring *g, uint64_t need)
{
	if (need <= g->cap)
		return 0;
	uint64_t cap = g->cap ? g->cap : RING_MIN;
	while (cap < need)
		cap *= 2;
	if (cap > UINT32_MAX / 2 + 1 || cap > SIZE_MAX / sizeof *g->v)
		return CRDT_ENOMEM;
	uint32_t *v = crdt__malloc(t->a, (size_t)cap * sizeof *v);
	if (v == NULL)
		return CRDT_ENOMEM;
	memset(v, 0, (size_t)cap * sizeof *v);
	if (g->n > 0) /* hi - lo < g->cap: no overflow, no wrap */
		for (uint64_t k = 0; k <= g->hi - g->lo; k++) {
			uint64_t c = g->lo + k;
			v[c & (cap - 1)] = g->v[c & (g->cap - 1)];
		}
	crdt__free(t->a, g->v, g->cap * sizeof *g->v);
	g->v = v;
	g->cap = (uint32_t)cap;
	return 0;
}

int
crdt__dots_reserve(crdt__dots *t, uint32_t r, uint64_t c, uint64_t allow)
{
	uint64_t need;
	if (!ring_takes(t, r, c, allow, &need))
		return hash_reserve(t);
	if (r >= t->caprg) {
		size_t cap = t->caprg ? t->caprg : 8;
		while (cap <= r)
			cap *= 2;
		crdt__dring *rg = crdt__malloc(t->a, cap * sizeof *rg);
		if (rg == NULL)
			return CRDT_ENOMEM;
		if (t->nrg > 0)
			memcpy(rg, t->rg, t->nrg * sizeof *rg);
		crdt__free(t->a, t->rg, t->caprg * sizeof *t->rg);
		t->rg = rg;
		t->caprg = cap;
	}
	while (t->nrg <= r)
		t->rg[t->nrg++] = (crdt__dring){ NULL, 0, 0, 0, 0 };
	return ring_grow(t, &t->rg[r], need);
}

void
crdt__dots_insert(crdt__dots *t, uint32_t r, uint64_t c, uint64_t allow,
    uint32_t msg)
{
	uint64_t need;
	t->total++;
	if (!ring_takes(t, r, c, allow, &need)) {
		dots_place(t->s, t->nslots, dot_hash(t, r, c),
		    (crdt__dotslot){ c, r, msg });
		t->n++;
		return;
	}
	crdt__dring *g = &t->rg[r];
	assert(need <= g->cap);
	if (g->n == 0) {
		g->lo = g->hi = c;
	} else {
		g->lo = CRDT_MIN(g->lo, c);
		g->hi = CRDT_MAX(g->hi, c);
	}
	g->v[c & (g->cap - 1)] = msg + 1;
	g->n++;
}

void
crdt__dots_set(crdt__dots *t, uint32_t r, uint64_t c, uint32_t msg)
{
	uint32_t *cell = ring_cell(t, r, c);
	if (cell != NULL && *cell != 0) {
		*cell = msg + 1;
		return;
	}
	crdt__dotslot *s = hash_find(t, r, c);
	assert(s != NULL);
	s->msg = msg;
}

void
crdt__dots_remove(crdt__dots *t, uint32_t r, uint64_t c)
{
	uint32_t *cell = ring_cell(t, r, c);
	t->total--;
	if (cell == NULL || *cell == 0) {
		crdt__dotslot *s = hash_find(t, r, c);
		assert(s != NULL);
		hash_remove(t, s);
		return;
	}
	crdt__dring *g = &t->rg[r];
	*cell = 0;
	g->n--;
	/* Messages leave from the bottom (released in counter order): the
	 * window follows them up, O(1), no scan. Elsewhere the bounds stay
	 * as they are; they only need to contain what is held. */
	if (g->n == 0) {
		g->lo = g->hi = 0;
		/* A large empty ring goes back; a small one stays for the
		 * next out-of-order burst. */
		if (g->cap > 4 * RING_MIN) {
			crdt__free(t->a, g->v, g->cap * sizeof *g->v);
			g->v = NULL;
			g->cap = 0;
		}
	} else if (c == g->lo) {
		g->lo++;
	} else if (c == g->hi) {
		g->hi--;
	}
}
