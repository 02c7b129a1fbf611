/*
 * crdt_doc_receive_status(): crdt_doc_receive() that also says what the
 * message turned out to be. Judged from outside the ingest pipeline, by
 * what the call changed (is the dot applied now, is one more message
 * waiting, does the dot hold one more variant), so the hot path carries
 * no bookkeeping for callers that do not ask. The same judge reports
 * the messages of a sync frame (crdt_doc_sync_handle_status, sync.c).
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
crdt__recv_probe(const crdt_doc *d, const void *msg, size_t len,
    crdt__probe *p)
{
	uint32_t r;
	crdt__env e;

	/* What the envelope parse refuses (with the document's limits),
	 * receive refuses the same way. */
	CRDT_TRY(crdt__env_parse(&d->cfg.limits, msg, len, &e, NULL, NULL));
	p->dot.replica = e.sender;
	p->dot.counter = e.counter;
	bool known = crdt__rep_find(d, &p->dot.replica, &r) == 0;
	p->had = known && d->rs[r].vc >= p->dot.counter;
	uint32_t at;
	p->waited = known && crdt__dots_get(&d->dots, r, p->dot.counter,
	    &at);
	p->nb = d->nbuffered;
	p->nv = variants(d, p->dot);
	return 0;
}

crdt_recv_status
crdt__recv_judge(const crdt_doc *d, const crdt__probe *p)
{
	uint32_t r;
	bool known = crdt__rep_find(d, &p->dot.replica, &r) == 0;
	bool has = known && d->rs[r].vc >= p->dot.counter;
	if (!p->had && has)
		return CRDT_RECV_APPLIED;
	if (variants(d, p->dot) > p->nv)
		return CRDT_RECV_EQUIVOCATION;
	if (d->nbuffered > p->nb)
		return p->had || p->waited ? CRDT_RECV_EQUIVOCATION :
					     CRDT_RECV_BUFFERED;
	return CRDT_RECV_DUPLICATE;
}

int
crdt_doc_receive_status(crdt_doc *d, const void *msg, size_t len,
    void *caller, crdt_recv_status *status)
{
	crdt__probe p;

	if (d == NULL || msg == NULL || status == NULL)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	CRDT_TRY(crdt__recv_probe(d, msg, len, &p));
	CRDT_TRY(crdt_doc_receive(d, msg, len, caller));
	*status = crdt__recv_judge(d, &p);
	return 0;
}
