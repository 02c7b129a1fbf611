/*
 * The undo log behind atomic document transactions (internal.h): object
 * writers record every change with what it displaced and the function that
 * puts it back; rollback runs those, newest first, and commit frees what
 * was displaced. Below every object type: it knows records, not objects,
 * and calls no type by name.
 */
#include "internal.h"

int
crdt__undo_reserve(crdt__undo *u, size_t n)
{
	void *v = u->v;
	if (n > SIZE_MAX - u->n)
		return CRDT_ENOMEM;
	CRDT_TRY(crdt__grow(u->a, &v, &u->cap, u->n + n, sizeof *u->v));
	u->v = v;
	return 0;
}

void
crdt__undo_rollback(crdt__undo *u)
{
	while (u->n > 0) {
		crdt__undo_rec *rec = &u->v[--u->n];
		if (rec->restore != NULL)
			rec->restore(rec);
	}
}

void
crdt__undo_commit(crdt__undo *u)
{
	for (size_t i = 0; i < u->n; i++) {
		crdt__undo_rec *rec = &u->v[i];
		if (rec->kind == CRDT__UNDO_LWW ||
		    rec->kind == CRDT__UNDO_MAP_REG)
			crdt__free(u->a, rec->old.val, rec->old.len);
	}
	u->n = 0;
}

void
crdt__undo_fini(crdt__undo *u)
{
	crdt__undo_rollback(u);
	crdt__free(u->a, u->v, u->cap * sizeof *u->v);
	u->v = NULL;
	u->cap = 0;
}
