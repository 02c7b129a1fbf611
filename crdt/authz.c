/*
 * Authorisation: the security settings (secure.h: signed mode, epoch
 * keys, the admin) and write permissions, judged by each message's causal
 * past (security.md, "Write permissions" and "Ingest").
 *
 * Every replica must give the same answer for the same message, so the
 * answer depends only on the message and its causal past: the allowlist
 * as of the admin counter the message lists, which must be at least what
 * its causal past holds of the admin's history. Per replica, `steps`
 * record that history by counter, so the causal past of any applied
 * message is found in O(log) without replaying anything.
 */
#include "doc_impl.h"

/*
 * Make room in the allowlist index for every allowlist record the
 * message's ops added (the undo log), before the commit point: the index
 * is then updated with the state, at every commit and receive, and
 * crdt_doc_allowed() never rebuilds or allocates.
 */
int
crdt__authz_prepare_slow(crdt_doc *d)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < d->undo.n; i++) {
		const crdt__undo_rec *u = &d->undo.v[i];
		if (!d->objs[u->obj].acl || u->kind != CRDT__UNDO_GSET_NEW)
			continue;
		const crdt__key *k = crdt__gset_entry_key(u->target, u->idx);
		rc = crdt__acl_room(&d->acl, k->ptr, k->len);
	}
	for (size_t i = 0; i < d->undo.n; i++) {
		const crdt__undo_rec *u = &d->undo.v[i];
		if (!d->objs[u->obj].acl || u->kind != CRDT__UNDO_GSET_NEW)
			continue;
		const crdt__key *k = crdt__gset_entry_key(u->target, u->idx);
		crdt__acl_settle(&d->acl, k->ptr, k->len);
	}
	return rc;
}

/*
 * Is `w` allowed to write, judged by the allowlist as of admin counter
 * `a` (what the message's causal past holds of the admin's history)?
 * The answer depends only on the message and its causal past, so every
 * replica gives the same one. The admin is always allowed.
 */
static int
acl_check(crdt_doc *d, const crdt_replica_id *w, uint64_t a)
{
	if (!d->has_admin || crdt_replica_id_cmp(w, &d->admin) == 0)
		return 0;
	return crdt__acl_allows(&d->acl, w, a) ? 0 : CRDT_EPERM;
}

/*
 * The admin counter in the causal past of message (r, c): the admin's own
 * message c holds c; another replica's holds what its message c (or the
 * last before it that raised the value) recorded when it was applied. A
 * replica known only from a snapshot has no steps below its clock: 0.
 */
uint64_t
crdt__adm_at(const crdt_doc *d, uint32_t r, uint64_t c)
{
	if (c == 0 || !d->has_admin)
		return 0;
	if (r == d->admin_idx)
		return c;
	const rstate *s = &d->rs[r];
	size_t lo = 0, hi = s->nsteps;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->steps[mid].c <= c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 ? s->steps[lo - 1].a : 0;
}

/* What a ready message's whole causal past holds of the admin's history:
 * its sender's previous message and every dependency, each of which
 * carries its own causal past (so the maximum is transitive). */
uint64_t
crdt__causal_admin(const crdt_doc *d, uint32_t sender, uint64_t counter,
    const dep *deps, size_t n)
{
	uint64_t a = crdt__adm_at(d, sender, counter - 1);
	for (size_t i = 0; i < n; i++)
		a = CRDT_MAX(a, crdt__adm_at(d, deps[i].r, deps[i].c));
	return a;
}

/*
 * Authorise writer `w` whose message lists admin counter `listed` and
 * whose causal past holds `causal` (0 when not known yet). An honest
 * writer always lists all it has applied of the admin's history, which
 * is at least its causal past's; listing less hides a revocation, so it
 * is refused like the revoked write it is. Then the allowlist as of
 * `listed` decides. The admin is always allowed; a keyless relay cannot
 * read the (sealed) allowlist and leaves this to keyed replicas.
 */
int
crdt__authorise_slow(crdt_doc *d, const crdt_replica_id *w, uint64_t listed,
    uint64_t causal)
{
	if (crdt__is_relay(d) || crdt_replica_id_cmp(w, &d->admin) == 0)
		return 0;
	if (listed < causal)
		return CRDT_EPERM;
	return acl_check(d, w, listed);
}

/* Room to record that replica r's messages from now on hold `a`. */
int
crdt__steps_reserve_slow(crdt_doc *d, uint32_t r, uint64_t a)
{
	rstate *s = &d->rs[r];
	if (r == d->admin_idx ||
	    a <= (s->nsteps ? s->steps[s->nsteps - 1].a : 0))
		return 0;
	void *v = s->steps;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &s->capsteps, s->nsteps + 1,
	    sizeof *s->steps));
	s->steps = v;
	return 0;
}

void
crdt__steps_push_slow(crdt_doc *d, uint32_t r, uint64_t c, uint64_t a)
{
	rstate *s = &d->rs[r];
	if (r == d->admin_idx ||
	    a <= (s->nsteps ? s->steps[s->nsteps - 1].a : 0))
		return;
	s->steps[s->nsteps++] = (admstep){ c, a };
}

/* What this replica has applied of the admin's messages. */
uint64_t
crdt__own_admin_slow(const crdt_doc *d)
{
	uint32_t ai;
	if (crdt__rep_find(d, &d->admin, &ai) != 0)
		return 0;
	return d->rs[ai].vc;
}

int
crdt_doc_set_security(crdt_doc *d, const crdt_doc_security *s)
{
	if (d == NULL || s == NULL || (s->key != NULL && !s->encrypted))
		return CRDT_EINVAL;
	if (d->has_data || d->in_txn)
		return CRDT_ESTATE;
	if (s->identity != NULL) {
		crdt_replica_id id;
		crdt_identity_replica_id(s->identity, &id);
		if (crdt_replica_id_cmp(&id, &d->self) != 0)
			return CRDT_EINVAL;
	}
	/* All or nothing: every step that can fail runs before anything
	 * is set, and a failure undoes the steps before it, so a retry
	 * starts from the same state (not CRDT_ESTATE, nothing leaked). */
	crdt_replica_id admin;
	if (s->admin_key != NULL) {
		if (!s->signed_mode)
			return CRDT_EINVAL;
		if (d->nobjs != 0 || d->has_admin)
			return CRDT_ESTATE;
		CRDT_TRY(crdt_replica_id_from_public_key(s->admin_key,
		    &admin));
	}
	if (s->key != NULL && crdt__keys_find(&d->keys, s->epoch) == NULL) {
		/* Room for the key first: it is put after the admin steps,
		 * where it cannot fail. */
		CRDT_TRY(crdt__keys_reserve(&d->keys));
	}
	if (s->admin_key != NULL) {
		uint32_t ai, on;
		size_t nrs0 = d->nrs;
		crdt__table acl;
		CRDT_TRY(crdt__rep_intern(d, &admin, &ai));
		int rc = crdt__acl_init(&acl, &d->cfg.alloc);
		if (rc == 0) {
			rc = crdt__register_obj(d, "__acl", CRDT_OBJ_GSET, NULL,
			    &on);
			if (rc < 0)
				crdt__acl_fini(&acl);
		}
		if (rc < 0) {
			crdt__unintern_to(d, nrs0);
			return rc;
		}
		d->admin = admin;
		d->admin_idx = ai;
		d->acl = acl;
		d->objs[on].acl = true;
		d->acl_obj = on;
		d->has_admin = true;
	}
	if (s->key != NULL) {
		int krc = crdt__keys_put(&d->keys, s->epoch, s->key);
		assert(krc == 0); /* room reserved above */
		(void)krc;
	}
	d->signed_mode = s->signed_mode;
	d->sync_snaps = s->sync_snapshots;
	d->ident = s->identity;
	d->encrypted = s->encrypted;
	d->keys.cur = s->epoch;
	return 0;
}

int
crdt_doc_add_key(crdt_doc *d, uint32_t epoch,
    const uint8_t key[CRDT_DOC_KEY_BYTES], bool current)
{
	if (d == NULL || key == NULL)
		return CRDT_EINVAL;
	if (!d->encrypted || crdt__is_relay(d))
		return CRDT_ESTATE;
	CRDT_TRY(crdt__keys_put(&d->keys, epoch, key));
	if (current)
		d->keys.cur = epoch;
	return 0;
}

bool
crdt_doc_allowed(crdt_doc *d, const crdt_replica_id *writer)
{
	if (d == NULL || writer == NULL)
		return false;
	return acl_check(d, writer, crdt__own_admin(d)) == 0;
}
