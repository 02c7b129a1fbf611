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
}

static uint64_t
dot_hash(const crdt__dots *t, uint32_t r, uint64_t c)
{
	uint8_t k[12];
	memcpy(k, &r, 4);
	memcpy(k + 4, &c, 8);
	return crdt__siphash(t->key, k, sizeof k);
}

crdt__dotslot *
crdt__dots_find(const crdt__dots *t, uint32_t r, uint64_t c)
{
	if (t->nslots == 0)
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

int
crdt__dots_reserve(crdt__dots *t)
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

void
crdt__dots_insert(crdt__dots *t, uint32_t r, uint64_t c, uint32_t msg)
{
	dots_place(t->s, t->nslots, dot_hash(t, r, c),
	    (crdt__dotslot){ c, r, msg });
	t->n++;
}

/* Backward-shift deletion keeps linear probing chains intact without
 * tombstones. */
void
crdt__dots_remove(crdt__dots *t, crdt__dotslot *s)
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
}
