/*
 * Byte-string keyed table: dense entries + open-addressed slot array with
 * linear probing. Keys are hashed with SipHash-2-4 under a per-table random
 * key, so a peer that chooses keys cannot force collisions (hash flooding).
 * The load factor stays below 3/4.
 */
#include <stdlib.h>

#include "internal.h"

/*
 * A slot is the entry's index + 1 in its low CRDT__TABLE_IBITS bits and
 * the top bits of the entry's hash above them (0: empty). A probe compares
 * that tag before it reads the entry: a lookup of a key the table does not
 * hold (every new element) reads the entries of only 1 in 32 of the slots
 * it passes, where it read all of them (each a cache miss in a table
 * larger than the caches: docs/performance.md, W1). No memory: a table
 * holds fewer than 2^27 entries (crdt__table_reserve).
 */
#define TAG_SHIFT CRDT__TABLE_IBITS
#define IDX_MASK ((UINT32_C(1) << TAG_SHIFT) - 1)

static inline uint32_t
tag_of(uint32_t hash)
{
	return hash >> TAG_SHIFT << TAG_SHIFT;
}

static inline bool
tag_is(uint32_t s, uint32_t hash)
{
	return (s & ~IDX_MASK) == tag_of(hash);
}

int
crdt__table_init(crdt__table *t, const crdt_allocator *a, size_t stride)
{
	memset(t, 0, sizeof *t);
	t->a = a;
	t->stride = stride;
	CRDT_TRY(crdt__random(t->sip, sizeof t->sip));
	t->sc = crdt__malloc(a, sizeof *t->sc);
	if (t->sc == NULL)
		return CRDT_ENOMEM;
	memset(t->sc, 0, sizeof *t->sc);
	return 0;
}

void
crdt__table_fini(crdt__table *t, void (*fini_ent)(void *,
    const crdt_allocator *))
{
	for (size_t i = 0; i < t->n; i++) {
		crdt__key *k = crdt__table_at(t, i);
		crdt__free(t->a, k->ptr, k->len);
		if (fini_ent != NULL)
			fini_ent(k, t->a);
	}
	crdt__free(t->a, t->ents, t->cap * t->stride);
	crdt__free(t->a, t->slots, t->nslots * sizeof *t->slots);
	if (t->sc != NULL) {
		crdt__free(t->a, t->sc->v, t->sc->cap * sizeof *t->sc->v);
		crdt__free(t->a, t->sc, sizeof *t->sc);
	}
	memset(t, 0, sizeof *t);
}

uint32_t
crdt__table_hash(const crdt__table *t, const void *key, size_t len)
{
	if (t->ident != NULL) {
		uint8_t id[CRDT__IDENT_MAX];
		size_t n = t->ident(key, len, id);
		if (n != 0 && n <= sizeof id)
			return (uint32_t)(crdt__siphash(t->sip, id, n) >> 32);
	}
	return (uint32_t)(crdt__siphash(t->sip, key, len) >> 32);
}

size_t
crdt__table_chain(const crdt__table *t, uint32_t hash, size_t limit)
{
	size_t c = 0;
	if (t->nslots == 0)
		return 0;
	size_t mask = t->nslots - 1;
	/* Entries with this hash all sit in the probe run from its home
	 * slot to the next empty slot (linear probing, no deletion but
	 * LIFO pops). */
	for (size_t i = hash & mask; c < limit; i = (i + 1) & mask) {
		uint32_t s = t->slots[i];
		if (s == 0)
			break;
		if (!tag_is(s, hash))
			continue;
		const crdt__key *k = crdt__table_at(t, (s & IDX_MASK) - 1);
		if (k->hash == hash)
			c++;
	}
	return c;
}

void *
crdt__table_find(const crdt__table *t, const void *key, size_t len,
    uint32_t hash)
{
	if (t->nslots == 0)
		return NULL;
	size_t mask = t->nslots - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		uint32_t s = t->slots[i];
		if (s == 0)
			return NULL;
		if (!tag_is(s, hash))
			continue;
		crdt__key *k = crdt__table_at(t, (s & IDX_MASK) - 1);
		if (k->hash == hash && k->len == len &&
		    (len == 0 || memcmp(k->ptr, key, len) == 0))
			return k;
	}
}

size_t
crdt__table_next(const crdt__table *t, uint32_t hash, size_t *pos)
{
	if (t->nslots == 0)
		return SIZE_MAX;
	size_t mask = t->nslots - 1;
	/* Every entry with this hash is in the probe run from its home to
	 * the next empty slot (see crdt__table_chain); *pos counts the
	 * slots of the run already visited, at most nslots. */
	for (; *pos < t->nslots; ++*pos) {
		uint32_t s = t->slots[(hash + *pos) & mask];
		if (s == 0)
			return SIZE_MAX;
		if (!tag_is(s, hash))
			continue;
		const crdt__key *k = crdt__table_at(t, (s & IDX_MASK) - 1);
		if (k->hash == hash) {
			++*pos;
			return (s & IDX_MASK) - 1;
		}
	}
	return SIZE_MAX;
}

/* Entry v - 1 (v <= IDX_MASK) with hash `hash` into the slots. */
static void
place(uint32_t *slots, size_t nslots, uint32_t hash, uint32_t v)
{
	size_t mask = nslots - 1;
	size_t i = hash & mask;
	while (slots[i] != 0)
		i = (i + 1) & mask;
	slots[i] = v | tag_of(hash);
}

int
crdt__table_reserve_slow(crdt__table *t, size_t extra)
{
	if (extra > CRDT__TABLE_MAX - t->n)
		return CRDT_ETOOBIG;
	size_t need = t->n + extra;
	void *ents = t->ents;
	CRDT_TRY(crdt__grow(t->a, &ents, &t->cap, need, t->stride));
	if (ents != t->ents) {
		/* The sorted view points into the entry array; a reserve
		 * that is not followed by an insert (a later allocation
		 * failed) must not leave it dangling. */
		t->sc->ok = false;
		t->ents = ents;
	}
	size_t ns = t->nslots ? t->nslots : 16;
	while (need > ns / 4 * 3)
		ns *= 2;
	if (ns == t->nslots)
		return 0;
	/* A 32-bit hash addresses at most 2^32 slots. */
	if (ns > (size_t)UINT32_MAX + 1 || ns > SIZE_MAX / sizeof(uint32_t))
		return CRDT_ENOMEM;
	uint32_t *slots = crdt__malloc(t->a, ns * sizeof *slots);
	if (slots == NULL)
		return CRDT_ENOMEM;
	memset(slots, 0, ns * sizeof *slots);
	/* In entry order, as they were inserted: then the newest entry is
	 * the last of its probe run, which crdt__table_pop relies on. */
	for (size_t i = 0; i < t->n; i++) {
		crdt__key *k = crdt__table_at(t, i);
		place(slots, ns, k->hash, (uint32_t)(i + 1));
	}
	crdt__free(t->a, t->slots, t->nslots * sizeof *t->slots);
	t->slots = slots;
	t->nslots = ns;
	return 0;
}

/* Recompute every entry's hash with the table's current ident and place
 * it again. With `limit` != 0, stop at the first entry that would make
 * more than `limit` share a hash: false. Cannot fail otherwise. */
static bool
rehash_all(crdt__table *t, size_t limit)
{
	if (t->nslots == 0)
		return true;
	memset(t->slots, 0, t->nslots * sizeof *t->slots);
	for (size_t i = 0; i < t->n; i++) {
		crdt__key *k = crdt__table_at(t, i);
		k->hash = crdt__table_hash(t, k->ptr, k->len);
		if (limit != 0 && crdt__table_chain(t, k->hash, limit) >=
		    limit)
			return false;
		place(t->slots, t->nslots, k->hash, (uint32_t)(i + 1));
	}
	return true;
}

int
crdt__table_rehash(crdt__table *t, size_t (*ident)(const uint8_t *, size_t,
    uint8_t *), const uint8_t *key, size_t limit)
{
	size_t (*old)(const uint8_t *, size_t, uint8_t *) = t->ident;
	uint8_t oldkey[sizeof t->sip];
	memcpy(oldkey, t->sip, sizeof oldkey);
	t->ident = ident;
	if (key != NULL)
		memcpy(t->sip, key, sizeof t->sip);
	if (rehash_all(t, limit))
		return 0;
	/* Back to the old hashes; every chain was within bounds then. */
	t->ident = old;
	memcpy(t->sip, oldkey, sizeof oldkey);
	(void)rehash_all(t, 0);
	return CRDT_ETOOBIG;
}

void *
crdt__table_insert(crdt__table *t, uint8_t *key, size_t len, uint32_t hash)
{
	assert(t->n < t->cap && (t->n + 1) <= t->nslots / 4 * 3);
	assert(len < UINT32_MAX); /* every input is (crdt_limits) */
	crdt__key *k = crdt__table_at(t, t->n);
	memset(k, 0, t->stride);
	k->ptr = key;
	k->len = (uint32_t)len;
	k->hash = hash;
	place(t->slots, t->nslots, hash, (uint32_t)(t->n + 1));
	t->n++;
	t->sc->ok = false;
	return k;
}

int
crdt__key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = CRDT_MIN(alen, blen);
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

static int
keyp_cmp(const void *x, const void *y)
{
	const crdt__key *a = *(const crdt__key *const *)x;
	const crdt__key *b = *(const crdt__key *const *)y;
	return crdt__key_cmp(a->ptr, a->len, b->ptr, b->len);
}

int
crdt__table_sorted(const crdt__table *t, const crdt__key ***out)
{
	struct crdt__sortcache *sc = t->sc;

	if (!sc->ok) {
		void *v = sc->v;
		CRDT_TRY(crdt__grow(t->a, &v, &sc->cap, t->n, sizeof *sc->v));
		sc->v = v;
		bool sorted = true;
		for (size_t i = 0; i < t->n; i++) {
			sc->v[i] = crdt__table_at(t, i);
			/* Entries often arrive in key order (a writer's own
			 * posts, a decoded state): one compare each instead
			 * of a sort. */
			if (sorted && i > 0)
				sorted = keyp_cmp(&sc->v[i - 1], &sc->v[i]) < 0;
		}
		if (t->n > 1 && !sorted)
			qsort(sc->v, t->n, sizeof *sc->v, keyp_cmp);
		sc->ok = true;
	}
	*out = sc->v;
	return 0;
}

void *
crdt__table_pop(crdt__table *t)
{
	assert(t->n > 0);
	crdt__key *k = crdt__table_at(t, t->n - 1);
	size_t mask = t->nslots - 1;
	for (size_t i = k->hash & mask;; i = (i + 1) & mask) {
		if ((t->slots[i] & IDX_MASK) == t->n) {
			t->slots[i] = 0;
			break;
		}
	}
	t->n--;
	t->sc->ok = false;
	return k;
}
