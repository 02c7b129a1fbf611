/*
 * The causal buffer (part of the ingest pipeline, doc_impl.h): messages
 * held until their dependencies arrive, released as clocks move. The heaps
 * and the dot table it rests on are causal.h; a released message is
 * applied through the same apply_core as a fresh one (doc.c).
 *
 * Variants of one dot that both wait share the dot's table slot as a
 * chain (next_var), so whichever is applied first, the other joins as an
 * equivocation, on every replica alike.
 */
#include "doc_impl.h"

/* One cache line each (doc_impl.h). */
_Static_assert(sizeof(bmsg) <= 64, "bmsg is one cache line");

void
crdt__bmsg_release(crdt_doc *d, uint32_t m)
{
	const crdt_allocator *a = &d->cfg.alloc;
	bmsg *b = &d->bm[m];
	d->nbuffered--;
	d->buffered_bytes -= b->len;
	d->rs[b->sender].buf_bytes -= b->len;
	crdt__free(a, b->deps, b->ndeps * sizeof *b->deps + b->len);
	b->deps = NULL;
	b->live = false;
	b->next_var = d->free_bm;
	d->free_bm = m;
}

/* Take buffered message m off its dot's chain of variants. */
static void
dot_unlink(crdt_doc *d, uint32_t m)
{
	bmsg *b = &d->bm[m];
	uint32_t head;
	if (!crdt__dots_get(&d->dots, b->sender, b->counter, &head))
		return;
	if (head == m) {
		if (b->next_var != UINT32_MAX)
			crdt__dots_set(&d->dots, b->sender, b->counter,
			    b->next_var);
		else
			crdt__dots_remove(&d->dots, b->sender, b->counter);
		return;
	}
	for (uint32_t p = head; p != UINT32_MAX; p = d->bm[p].next_var) {
		if (d->bm[p].next_var == m) {
			d->bm[p].next_var = b->next_var;
			return;
		}
	}
}

/* Is buffered message m, whose dot is applied meanwhile, a variant the
 * equivocation rule takes (rather than a copy of what is applied)? */
bool
crdt__covered_variant(const crdt_doc *d, const bmsg *b)
{
	const rstate *r = &d->rs[b->sender];
	size_t at;
	if (b->variant)
		return true;
	crdt_dot dot = { r->id, b->counter };
	logent e;
	if (crdt__log_get(&d->log, b->sender, b->counter, &e))
		return !crdt__lent_eq(e, crdt__bm_bytes(b), b->len);
	const crdt__evid *ev = crdt__ev_find(&d->ev, dot, &at);
	return ev != NULL && !crdt__ev_has(ev, crdt__bm_bytes(b), b->len);
}

/* The next dot message m waits for, or false when it is ready. */
static bool
next_missing(crdt_doc *d, bmsg *b, uint32_t *r, uint64_t *c)
{
	if (d->rs[b->sender].vc < b->counter - 1) {
		*r = b->sender;
		*c = b->counter - 1;
		return true;
	}
	while (b->next_dep < b->ndeps) {
		dep *e = &b->deps[b->next_dep];
		if (d->rs[e->r].vc < e->c) {
			*r = e->r;
			*c = e->c;
			return true;
		}
		b->next_dep++;
	}
	return false;
}

static int
heap_reserve(crdt_doc *d, uint32_t ri)
{
	return crdt__wheap_reserve(&d->rs[ri].heap, &d->cfg.alloc);
}

static int apply_buffered(crdt_doc *d, uint32_t m);

/* Entries a drained wait heap keeps (16 bytes each). */
enum { HEAP_KEEP = 256 };

/*
 * The buffer is empty: free its message table and dot index, so memory
 * after an out-of-order delivery drains is what in-order delivery leaves
 * (bench "memory after out-of-order delivery drains"). The next buffered
 * message grows them again; both are amortised O(1) per message.
 */
static void
buffer_trim(crdt_doc *d)
{
	const crdt_allocator *a = &d->cfg.alloc;
	if (d->capbm > 0) {
		crdt__free(a, d->bm, d->capbm * sizeof *d->bm);
		d->bm = NULL;
		d->nbm = d->capbm = 0;
		d->free_bm = UINT32_MAX;
	}
	if (d->dots.total == 0 && (d->dots.caprg > 0 || d->dots.nslots > 0))
		crdt__dots_fini(&d->dots);
}

static int admit_covered(crdt_doc *d, uint32_t m);

/*
 * Release what waits on replicas whose clock moved. `stack` starts with
 * `first`; every message applied pushes its sender. Each waiting message
 * is looked at once per dependency it waited on.
 */
int
crdt__release(crdt_doc *d, uint32_t first)
{
	uint32_t stack_small[16];
	uint32_t *stack = stack_small;
	size_t sn = 0, scap = 16;
	int rc = 0;

	stack[sn++] = first;
	while (sn > 0 && rc == 0) {
		uint32_t ri = stack[--sn];
		rstate *r = &d->rs[ri];
		while (r->heap.n > 0 && r->heap.v[0].c <= r->vc) {
			crdt__wait w = crdt__wheap_pop(&r->heap);
			bmsg *b = &d->bm[w.msg];
			uint32_t wr = 0;
			uint64_t wc = 0;
			bool covered = b->counter <= d->rs[b->sender].vc;
			if (covered && !crdt__covered_variant(d, b)) {
				/* Covered meanwhile (a snapshot, or this very
				 * message applied another way): redundant. */
				dot_unlink(d, w.msg);
				crdt__bmsg_release(d, w.msg);
				continue;
			}
			if (next_missing(d, b, &wr, &wc)) {
				/* Cannot fail: the slot just popped is free
				 * when wr == ri; otherwise reserve. */
				if (wr != ri && heap_reserve(d, wr) < 0) {
					/* re-queue */
					crdt__wheap_push(&r->heap, w);
					rc = CRDT_ENOMEM;
					break;
				}
				crdt__wheap_push(&d->rs[wr].heap,
				    (crdt__wait){ wc, w.msg });
				continue;
			}
			uint32_t sender = b->sender;
			if (covered) {
				/* Another variant of its dot was applied
				 * first: it joins as an equivocation. */
				rc = admit_covered(d, w.msg);
				if (rc < 0) {
					crdt__wheap_push(&r->heap, w);
					break;
				}
				continue;
			}
			rc = apply_buffered(d, w.msg);
			if (rc < 0) {
				/* Keep it; it is ready and will be retried
				 * when this replica's clock is next looked
				 * at. */
				crdt__wheap_push(&r->heap, w);
				break;
			}
			if (sn == scap) {
				size_t ncap = scap * 2;
				uint32_t *ns = crdt__malloc(&d->cfg.alloc,
				    ncap * sizeof *ns);
				if (ns == NULL) {
					rc = CRDT_ENOMEM;
					break;
				}
				memcpy(ns, stack, sn * sizeof *ns);
				if (stack != stack_small)
					crdt__free(&d->cfg.alloc, stack,
					    scap * sizeof *stack);
				stack = ns;
				scap = ncap;
			}
			stack[sn++] = sender;
		}
		/* A drained heap gives its memory back (a shuffled delivery
		 * otherwise keeps its high-water mark for good). O(1); the
		 * loop above has stopped pushing to it. A small one stays:
		 * heaps that empty and refill all the time would otherwise
		 * be freed and grown again on every message. */
		if (r->heap.n == 0 && r->heap.cap > HEAP_KEEP)
			crdt__wheap_fini(&r->heap, &d->cfg.alloc);
	}
	if (stack != stack_small)
		crdt__free(&d->cfg.alloc, stack, scap * sizeof *stack);
	if (d->nbuffered == 0)
		buffer_trim(d);
	return rc;
}

static int
apply_buffered(crdt_doc *d, uint32_t m)
{
	bmsg *b = &d->bm[m];
	msgview mv;
	/* Already validated when it was buffered. A plaintext one kept where
	 * its ops are; a sealed one is read and opened again (its plaintext
	 * is not kept: the buffer holds what was received). */
	const uint8_t *bytes = crdt__bm_bytes(b);
	if (b->view) {
		mv.hlc = b->hlc;
		mv.payload = b->poff == UINT32_MAX ? NULL : bytes + b->poff;
		mv.plen = b->plen;
	} else {
		CRDT_TRY(crdt__parse_msg(d, bytes, b->len, &mv, false));
		CRDT_TRY(crdt__open_msg(d, &mv, false)); /* verified then */
	}
	d->store_quiet++; /* stored when it was buffered */
	int rc = crdt__apply_msg(d, b->sender, b->counter, mv.hlc, bytes,
	    b->len, mv.payload, mv.plen, CRDT_UPDATE_REMOTE, b->caller,
	    crdt__listed_admin(d, b->deps, b->ndeps),
	    crdt__causal_admin(d, b->sender, b->counter, b->deps, b->ndeps));
	d->store_quiet--;
	/* Out of memory: keep it for a retry. Refused (a writer outside the
	 * allowlist, decided by its causal past, so everywhere alike): drop
	 * it as any replica would have. */
	if (rc == CRDT_ENOMEM)
		return rc;
	dot_unlink(d, m);
	crdt__bmsg_release(d, m);
	return 0;
}


/* A buffered variant whose dot another variant took meanwhile, now ready:
 * judged by the same equivocation rule as one that arrives after. */
static int
admit_covered(crdt_doc *d, uint32_t m)
{
	bmsg *b = &d->bm[m];
	msgview mv;
	int rc = crdt__parse_msg(d, crdt__bm_bytes(b), b->len, &mv, false);
	if (rc == 0) {
		d->store_quiet++; /* stored when it was buffered */
		/* One buffered as a variant is taken as one even where
		 * nothing here differs from it (it came in a snapshot). */
		rc = crdt__equivocation(d, &mv, b->sender, b->caller,
		    b->variant);
		d->store_quiet--;
	}
	if (rc == CRDT_ENOMEM)
		return rc;
	/* Refused (not allowed, over the evidence bounds): dropped as every
	 * replica with the same past drops it. */
	dot_unlink(d, m);
	crdt__bmsg_release(d, m);
	return 0;
}

/*
 * Hold a message until its dependencies arrive. `head` is a buffered
 * variant of the same dot (UINT32_MAX: none); the new one joins its chain
 * so the dot table keeps one slot per dot and both halves wait. Each
 * sender holds at most max_sender_buffered bytes, so no sender (allowed,
 * unknown or not yet vetted) can pin the whole buffer: past it, only that
 * sender's further messages get the transient CRDT_EBUFFULL.
 */
int
crdt__buffer_msg(crdt_doc *d, const msgview *mv, uint32_t sender,
    const dep *deps, void *caller, uint32_t head, bool variant)
{
	const crdt_allocator *a = &d->cfg.alloc;
	size_t sb = d->rs[sender].buf_bytes;
	const uint8_t *bytes = mv->bytes;
	size_t len = (size_t)(mv->end - mv->bytes), ndeps = mv->ndeps;
	uint64_t counter = mv->counter;

	if (d->nbuffered + 1 > d->cfg.max_buffered_msgs ||
	    len > d->cfg.max_buffered_bytes - d->buffered_bytes ||
	    len > d->cfg.max_sender_buffered -
		    CRDT_MIN(sb, d->cfg.max_sender_buffered) ||
	    len >= UINT32_MAX)
		return CRDT_EBUFFULL;
	uint32_t m;
	if (d->free_bm == UINT32_MAX) {
		if (d->nbm >= UINT32_MAX - 1)
			return CRDT_EBUFFULL;
		void *v = d->bm;
		CRDT_TRY(crdt__grow(a, &v, &d->capbm, d->nbm + 1,
		    sizeof *d->bm));
		d->bm = v;
	}
	/* A ring cell (4 bytes) per 8 bytes the sender has buffered
	 * (causal.h). */
	uint64_t allow = (sb + len) / 8;
	CRDT_TRY(crdt__dots_reserve(&d->dots, sender, counter, allow));
	bmsg nb;
	memset(&nb, 0, sizeof nb);
	nb.sender = sender;
	nb.counter = counter;
	nb.caller = caller;
	nb.len = (uint32_t)len;
	nb.ndeps = (uint32_t)ndeps; /* fewer than len */
	nb.live = true;
	nb.next_var = UINT32_MAX;
	nb.variant = variant;
	/* No overflow: len is bounded by max_buffered_bytes, and every dep
	 * took at least CRDT__MIN_ID_UINT of the message's bytes. */
	size_t dl = ndeps * sizeof *deps;
	nb.deps = crdt__malloc(a, dl + len);
	if (nb.deps == NULL)
		return CRDT_ENOMEM;
	if (dl != 0) /* deps is NULL without any */
		memcpy(nb.deps, deps, dl);
	memcpy(crdt__bm_bytes(&nb), bytes, len);
	/* The ops of a plaintext message are where the envelope put them
	 * (inside its len < UINT32_MAX bytes); a sealed one's are not in
	 * its bytes (the release opens it). */
	if (!mv->sealed) {
		nb.view = true;
		nb.hlc = mv->hlc;
		nb.poff = mv->payload == NULL ? UINT32_MAX :
		    (uint32_t)(mv->payload - bytes);
		nb.plen = (uint32_t)mv->plen;
	}
	uint32_t wr = 0;
	uint64_t wc = 0;
	bool waiting = next_missing(d, &nb, &wr, &wc);
	assert(waiting);
	(void)waiting;
	int rc = heap_reserve(d, wr);
	/* Write-ahead: a buffered message is accepted, so it must survive a
	 * restart like an applied one; when released it is not appended
	 * again (apply_buffered). */
	if (rc == 0)
		rc = crdt__store_put(d, bytes, len);
	if (rc < 0) {
		crdt__free(a, nb.deps, dl + len);
		return rc;
	}
	if (d->free_bm != UINT32_MAX) {
		m = d->free_bm;
		d->free_bm = d->bm[m].next_var;
	} else {
		m = (uint32_t)d->nbm++;
	}
	d->bm[m] = nb;
	d->nbuffered++;
	d->buffered_bytes += len;
	d->rs[sender].buf_bytes += len;
	if (head != UINT32_MAX) {
		d->bm[m].next_var = d->bm[head].next_var;
		d->bm[head].next_var = m;
	} else {
		crdt__dots_insert(&d->dots, sender, counter, allow, m);
	}
	crdt__wheap_push(&d->rs[wr].heap, (crdt__wait){ wc, m });
	return 0;
}

/* Is `b` byte-identical to buffered message m or a variant chained to it? */
bool
crdt__buffered_copy(const crdt_doc *d, uint32_t m, const uint8_t *b,
    size_t len, size_t *nvar)
{
	*nvar = 0;
	for (; m != UINT32_MAX; m = d->bm[m].next_var) {
		const bmsg *x = &d->bm[m];
		if (x->len == len && memcmp(crdt__bm_bytes(x), b, len) == 0)
			return true;
		++*nvar;
	}
	return false;
}
