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
 * duplicate of a buffered message is found in O(1). Open addressing with
 * a keyed hash: a peer choosing dots cannot force collisions.
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

typedef struct crdt__dotslot {
	uint64_t c;
	uint32_t r;
	uint32_t msg; /* UINT32_MAX = empty */
} crdt__dotslot;

typedef struct crdt__dots {
	const crdt_allocator *a;
	crdt__dotslot *s;
	size_t nslots, n; /* nslots a power of two, or 0 */
	uint8_t key[16];
} crdt__dots;

/* An empty table with a fresh random hash key. CRDT_ECRYPTO. */
int crdt__dots_init(crdt__dots *t, const crdt_allocator *a);
void crdt__dots_fini(crdt__dots *t);
/* The slot of dot (r, c), or NULL. */
crdt__dotslot *crdt__dots_find(const crdt__dots *t, uint32_t r, uint64_t c);
/* Room for one more dot: crdt__dots_insert() then cannot fail. */
int crdt__dots_reserve(crdt__dots *t);
/* Map dot (r, c), which is not in the table, to message `msg`. */
void crdt__dots_insert(crdt__dots *t, uint32_t r, uint64_t c, uint32_t msg);
void crdt__dots_remove(crdt__dots *t, crdt__dotslot *s);

#endif /* CRDT_CAUSAL_H */
