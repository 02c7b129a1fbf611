#ifndef CRDT_CAUSAL_H
#define CRDT_CAUSAL_H
/*
 * The causal buffer's data structures, below the document (they see no
 * crdt_doc; replicas and buffered messages are numbers the document
 * gives): the per-replica wait heaps and the dot table.
 *
 * A message that cannot be applied yet waits on exactly one missing dot
 * (replica r, counter c): it sits in r's min-heap keyed by c. When r's
 * clock reaches c, the heap releases it; it then either waits on its next
 * missing dependency or is applied. Each message is therefore pushed at
 * most deps + 2 times, each push O(log n): N messages in any order cost
 * O(N log N), and nothing is ever rescanned.
 *
 * The dot table maps (replica, counter) to a buffered message, so a
 * duplicate of a buffered message is found in O(1) (below).
 */
#include "internal.h"

/* A buffered message `msg` waiting on counter c of the heap's replica. */
typedef struct crdt__wait {
	uint64_t c;
	uint32_t msg;
} crdt__wait;

typedef struct crdt__wheap {
	crdt__wait *v; /* min-heap by c */
	size_t n, cap;
} crdt__wheap;

/* Room for one more push. CRDT_ENOMEM. */
int crdt__wheap_reserve(crdt__wheap *h, const crdt_allocator *a);
void crdt__wheap_push(crdt__wheap *h, crdt__wait w);
/* The entry with the smallest c; the heap must not be empty. */
crdt__wait crdt__wheap_pop(crdt__wheap *h);
void crdt__wheap_fini(crdt__wheap *h, const crdt_allocator *a);

/*
 * The dot table. Per replica, a ring: one cell (buffered message + 1,
 * 0 = none) per counter of a window [lo, hi] of at most `cap` counters,
 * cell c & (cap - 1). A replica's buffered messages are usually a dense
 * run of counters just above its clock, released in counter order, so
 * the ring is a small array walked in order, where a hash table costs a
 * keyed hash and a cache miss per lookup. A counter the window cannot
 * take without growing past max(4 cells per dot the ring holds + 8,
 * `allow`) goes to the keyed hash table beside the rings. The caller
 * sets `allow` from what the replica holds in the buffer (buffer.c: one
 * cell per 8 bytes of its buffered messages, so a shuffled delivery's
 * counters, spread over the whole range from the first messages on, fit
 * once a few percent have come, and a ring never costs more than its
 * messages' bytes): memory stays O(buffered bytes) whatever the counters,
 * and a peer choosing them still cannot force collisions. A dot is in
 * its ring or in the hash table, never both.
 */
typedef struct crdt__dotslot {
	uint64_t c;
	uint32_t r;
	uint32_t msg; /* UINT32_MAX = empty */
} crdt__dotslot;

typedef struct crdt__dring {
	uint32_t *v;    /* cap cells, or NULL */
	uint64_t lo, hi; /* every dot held is in [lo, hi], hi - lo < cap */
	uint32_t cap, n; /* cap: 0 or a power of two; n: dots held */
} crdt__dring;

typedef struct crdt__dots {
	const crdt_allocator *a;
	crdt__dotslot *s; /* the hash table */
	size_t nslots, n; /* nslots a power of two, or 0; n: dots in it */
	uint8_t key[16];
	crdt__dring *rg;  /* by replica number, nrg of them */
	size_t nrg, caprg;
	size_t total;     /* dots held, rings and hash table */
} crdt__dots;

/* An empty table with a fresh random hash key. CRDT_ECRYPTO. */
int crdt__dots_init(crdt__dots *t, const crdt_allocator *a);
/* Frees everything; the table is empty and usable again. */
void crdt__dots_fini(crdt__dots *t);
bool crdt__dots_get_slow(const crdt__dots *t, uint32_t r, uint64_t c,
    uint32_t *msg);
/* Dot (r, c)'s buffered message, if the table holds the dot. O(1); an
 * empty table (every in-order message) answers inline. */
static inline bool
crdt__dots_get(const crdt__dots *t, uint32_t r, uint64_t c, uint32_t *msg)
{
	return t->total != 0 && crdt__dots_get_slow(t, r, c, msg);
}
/* Room for dot (r, c), which the table does not hold, with `allow` (see
 * above): then crdt__dots_insert(t, r, c, allow, ...) cannot fail.
 * CRDT_ENOMEM, and the table unchanged. */
int crdt__dots_reserve(crdt__dots *t, uint32_t r, uint64_t c,
    uint64_t allow);
/* Map dot (r, c), not in the table and reserved just before with the
 * same `allow`, to `msg`. */
void crdt__dots_insert(crdt__dots *t, uint32_t r, uint64_t c,
    uint64_t allow, uint32_t msg);
/* Dot (r, c), which the table holds, maps to `msg` from now on. */
void crdt__dots_set(crdt__dots *t, uint32_t r, uint64_t c, uint32_t msg);
/* Forget dot (r, c), which the table holds. */
void crdt__dots_remove(crdt__dots *t, uint32_t r, uint64_t c);

#endif /* CRDT_CAUSAL_H */
