#ifndef CRDT_MSGLOG_H
#define CRDT_MSGLOG_H
/*
 * The message log: per replica, a contiguous run of its latest applied
 * messages (what sync serves and equivocation compares against), and the
 * order they were applied in. Below the document: it sees no crdt_doc,
 * only replica numbers (the document's interned indices) and bytes.
 *
 * The fifo records the order in which messages were applied (a causal
 * order, which DATA frames follow). Over a bound, the oldest message of
 * the replica holding the most messages (or bytes, for the byte bound)
 * goes: eviction is per writer, so one sender, however many messages it
 * pushes (a keyless relay cannot judge them), only ever flushes its own
 * history once it holds the largest share. Each push or eviction costs
 * O(log replicas); fifo entries of evicted messages are skipped and
 * compacted away, O(1) amortised.
 */
#include "internal.h"

/* One message's bytes (heap copy, owned by whoever holds the entry). */
typedef struct crdt__logent {
	uint8_t *bytes;
	size_t len;
} crdt__logent;

/* (replica, counter) of a logged message, in apply order. */
typedef struct crdt__fifo_ent {
	uint32_t r;
	uint64_t c;
} crdt__fifo_ent;

/* One replica's run: messages lo .. lo + n - 1 at v[start ..]. */
typedef struct crdt__rlog {
	uint64_t lo;
	crdt__logent *v;
	size_t start, n, cap;
	size_t bytes;   /* bytes of v[start ..] */
	size_t hpos[2]; /* place in heap[k] while n > 0 */
} crdt__rlog;

typedef struct crdt__msglog {
	const crdt_allocator *a;
	size_t max_msgs, max_bytes;
	crdt__rlog *r; /* indexed by replica number */
	size_t nr, capr;
	crdt__fifo_ent *fifo;
	size_t fifo_start, fifo_n, fifo_cap;
	size_t count, bytes; /* over every replica */
	/* Replicas with a non-empty log, max-heaps by n (messages) and by
	 * bytes: eviction takes from the largest. */
	uint32_t *heap[2];
	size_t heap_n[2], heap_cap[2];
} crdt__msglog;

/* An empty log holding at most max_msgs messages and max_bytes bytes. */
void crdt__log_init(crdt__msglog *l, const crdt_allocator *a,
    size_t max_msgs, size_t max_bytes);
/* Frees every logged message and the log's arrays. */
void crdt__log_fini(crdt__msglog *l);

/* Room for replicas up to number n - 1; then crdt__log_add_replica()
 * cannot fail for them. */
int crdt__log_reserve_replicas(crdt__msglog *l, size_t n);
/* Replica number l->nr, with an empty log whose next message is 1. */
void crdt__log_add_replica(crdt__msglog *l);
/* Forget replicas numbered n and above (their logs must be empty: they
 * were refused before anything of theirs was applied). */
void crdt__log_drop_replicas(crdt__msglog *l, size_t n);

/* Replica r's message c, or NULL when the log does not hold it. O(1). */
const crdt__logent *crdt__log_get(const crdt__msglog *l, uint32_t r,
    uint64_t c);
/* Room for one more entry for replica r in its run, the fifo and the
 * heaps; after this, crdt__log_push cannot fail. Once per message, and
 * the room is almost always there: that test is inline. */
int crdt__log_reserve_slow(crdt__msglog *l, uint32_t r);
static inline int
crdt__log_reserve(crdt__msglog *l, uint32_t r)
{
	const crdt__rlog *x = &l->r[r];
	if (x->start + x->n < x->cap &&
	    l->fifo_start + l->fifo_n < l->fifo_cap &&
	    l->heap_n[0] < l->heap_cap[0] && l->heap_n[1] < l->heap_cap[1])
		return 0;
	return crdt__log_reserve_slow(l, r);
}
/* Log replica r's message c (taking `bytes`), evicting over the bounds.
 * A c that does not follow the run (a snapshot jumped the replica)
 * restarts the run. */
void crdt__log_push(crdt__msglog *l, uint32_t r, uint64_t c, uint8_t *bytes,
    size_t len);
/* Empty replica r's run; its next message is `next`. */
void crdt__log_reset(crdt__msglog *l, uint32_t r, uint64_t next);

#endif /* CRDT_MSGLOG_H */
