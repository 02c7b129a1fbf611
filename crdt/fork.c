/*
 * Forks of one's own history (doc.h, crdt_doc_fork_status; document.md,
 * "Forks of one's own history").
 *
 * Our counter only moves by our own commits, so a peer's clock, a
 * message under our ID or a dependency naming our ID at a counter above
 * the one we hold means our history goes on somewhere we do not hold: we
 * were restored from an old backup, or another device uses our ID. The
 * next commit would reuse a dot that already names other ops, which no
 * later sync can repair (the clocks look equal). So the document records
 * the highest own counter it heard of and refuses every commit until its
 * own messages came back up to it (sync, receive: they are applied like
 * any peer's, in causal order, and move our clock entry) or the
 * application dismisses the claim.
 *
 * A claim is only a claim: in unsigned mode anyone may send any clock or
 * message under our ID, and in signed mode the sync clocks are not signed
 * either. So in signed mode only a message signed by our own key blocks
 * commits; a peer's word is reported (on_fork, proven = false) and the
 * application decides, since otherwise any peer could stop an honest
 * replica's writes. What a claim can do is bounded to refusing commits: it never
 * moves the clock or the state (only applied messages do, and in signed
 * mode only messages signed by our own key are ours), and
 * crdt_doc_fork_resolve() lets the application dismiss it, after which
 * no claim up to that counter blocks again. Checks are O(1) per message
 * (only on the buffering path) and O(log replicas) per sync frame.
 *
 * Dots already issued twice (commits made before the fork was heard of)
 * are not visible in any clock: the sync reply that follows a new claim
 * offers the peer our own logged messages (sync.c, reply_data), so a
 * reused dot meets its other variant there and becomes an equivocation.
 */
#include "doc_impl.h"

void
crdt__fork_note_slow(crdt_doc *d, uint64_t own, uint64_t known, bool proof,
    void *caller)
{
	/* In signed mode a replica is owed a guarantee that no peer stops its
	 * writes (security.md): an unsigned clock or another signer's
	 * dependency is a peer's word, so it is reported (proven = false)
	 * and left to the application; only our own signature, which no
	 * peer can forge, blocks commits. */
	if (d->signed_mode && !proof) {
		if (known <= d->fork_claimed)
			return;
		d->fork_claimed = known;
	} else {
		d->fork_known = known;
	}
	if (d->l.on_fork != NULL)
		d->l.on_fork(d->l.ud, own, known, proof, caller);
}

void
crdt__fork_waiting(crdt_doc *d, uint32_t sender, uint64_t counter,
    const dep *deps, size_t ndeps, void *caller)
{
	uint64_t own = d->rs[d->self_idx].vc;

	/* Under our ID it verified: in signed mode it is signed by our key. */
	if (sender == d->self_idx)
		crdt__fork_note(d, own, counter, d->signed_mode, caller);
	for (size_t i = 0; i < ndeps; i++)
		if (deps[i].r == d->self_idx)
			crdt__fork_note(d, own, deps[i].c, false, caller);
}

uint64_t
crdt__fork_own_entry(const crdt_doc *d, const iddep *pairs, size_t n)
{
	return crdt__vc_pairs_get(pairs, n, &d->self);
}

bool
crdt_doc_fork_status(const crdt_doc *d, uint64_t *own, uint64_t *known)
{
	if (d == NULL)
		return false;
	bool forked = crdt__forked(d);
	if (own != NULL)
		*own = d->rs[d->self_idx].vc;
	if (known != NULL)
		*known = forked ? d->fork_known : d->rs[d->self_idx].vc;
	return forked;
}

int
crdt_doc_fork_resolve(crdt_doc *d)
{
	if (d == NULL)
		return CRDT_EINVAL;
	if (!crdt__forked(d))
		return 0;
	d->fork_dismissed = d->fork_known;
	d->fork_known = 0;
	return 0;
}
