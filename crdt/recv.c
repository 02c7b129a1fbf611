/*
 * crdt_doc_receive_status(): crdt_doc_receive() that also says what the
 * message turned out to be. Judged from outside the ingest pipeline, by
 * what the call changed (is the dot applied now, is one more message
 * waiting, does the dot hold one more variant), so the hot path carries
 * no bookkeeping for callers that do not ask.
 */
#include "doc_impl.h"

/* Variants of `dot` held as evidence (0: not equivocated). */
static size_t
variants(const crdt_doc *d, crdt_dot dot)
{
	size_t at;
	const crdt__evid *e = crdt__ev_find(&d->ev, dot, &at);
	return e != NULL ? e->n : 0;
}

int
crdt_doc_receive_status(crdt_doc *d, const void *msg, size_t len,
    void *caller, crdt_recv_status *status)
{
	crdt_dot dot;
	uint32_t r;

	if (d == NULL || msg == NULL || status == NULL)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	/* A message peek refuses, receive refuses the same way. */
	CRDT_TRY(crdt_msg_peek(msg, len, &dot, NULL));
	bool known = crdt__rep_find(d, &dot.replica, &r) == 0;
	bool had = known && d->rs[r].vc >= dot.counter;
	bool waited = known && d->dots.n > 0 &&
	    crdt__dots_find(&d->dots, r, dot.counter) != NULL;
	size_t nb = d->nbuffered, nv = variants(d, dot);

	CRDT_TRY(crdt_doc_receive(d, msg, len, caller));
	known = crdt__rep_find(d, &dot.replica, &r) == 0;
	bool has = known && d->rs[r].vc >= dot.counter;
	if (!had && has)
		*status = CRDT_RECV_APPLIED;
	else if (variants(d, dot) > nv)
		*status = CRDT_RECV_EQUIVOCATION;
	else if (d->nbuffered > nb)
		*status = had || waited ? CRDT_RECV_EQUIVOCATION :
					  CRDT_RECV_BUFFERED;
	else
		*status = CRDT_RECV_DUPLICATE;
	return 0;
}
