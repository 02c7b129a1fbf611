#ifndef CRDT_ACL_H
#define CRDT_ACL_H
/*
 * The allowlist index: per writer, the admin's grants and revokes by
 * admin counter, folded from the allowlist G-Set's records
 * [writer, admin counter, allowed] (security.md, "Write permissions").
 * Below the document: it sees no crdt_doc. The index is a crdt__table of
 * crdt__acl_ent keyed by replica ID; it follows the G-Set at every commit,
 * receive and load, so a check never rebuilds or allocates.
 */
#include "internal.h"
#include "crdt/gset.h"

typedef struct crdt__acl_change {
	uint64_t c; /* admin counter of the grant / revoke */
	bool allowed;
} crdt__acl_change;

typedef struct crdt__acl_ent {
	crdt__key k;
	crdt__acl_change *h; /* ascending c */
	size_t n, cap;
	size_t pend; /* records being made room for (crdt__acl_room) */
} crdt__acl_ent;

/* An empty index. CRDT_ENOMEM. */
int crdt__acl_init(crdt__table *t, const crdt_allocator *a);
void crdt__acl_fini(crdt__table *t);
/* The index of G-Set `g`'s records, built into `t` (all or nothing: `t`
 * is untouched on failure). */
int crdt__acl_build(crdt__table *t, const crdt_allocator *a,
    const crdt_gset *g);
/* Replace index `dst` by `src` (which it takes). */
void crdt__acl_swap(crdt__table *dst, crdt__table *src);
/* Fold one record in. After crdt__acl_room() for it, cannot fail. */
int crdt__acl_add(crdt__table *t, const uint8_t *rec, size_t len);
/* Make room for folding record `rec` in; rooms made for several records
 * of one message add up until crdt__acl_settle() of each. */
int crdt__acl_room(crdt__table *t, const uint8_t *rec, size_t len);
void crdt__acl_settle(crdt__table *t, const uint8_t *rec, size_t len);
/* Whether the history grants `w` as of admin counter `a` (at equal
 * counters a revoke wins). O(history of w). */
bool crdt__acl_allows(const crdt__table *t, const crdt_replica_id *w,
    uint64_t a);

#endif /* CRDT_ACL_H */
