/*
 * The structures the chat index is built of (chat_impl.h): small sorted
 * vectors, clocks over replica IDs, intrusive ordered side trees and the
 * order-statistic treap over messages. They know index entries, not
 * records.
 */
#include "chat_impl.h"

/* ---------------------------------------------------------------- */
/* small helpers                                                    */

/* Insert x keeping the vector sorted; `bulk` appends and leaves sorting to
 * u64v_sort_all() (an index rebuild), so a rebuild is O(n log n) whatever
 * the order of the records. Messages of one replica normally arrive in
 * counter order (causal delivery): the usual case is an append. */
int
crdt__chat_u64v_add(const crdt_allocator *a, u64v *v, uint64_t x, bool bulk)
{
	void *p = v->v;
	CRDT_TRY(crdt__grow(a, &p, &v->cap, v->n + 1, sizeof *v->v));
	v->v = p;
	if (v->n == 0)
		v->sorted = true;
	size_t i = v->n;
	if (bulk) {
		if (i > 0 && v->v[i - 1] > x)
			v->sorted = false;
	} else if (i > 0 && v->v[i - 1] > x) {
		size_t lo = 0, hi = v->n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (v->v[mid] <= x)
				lo = mid + 1;
			else
				hi = mid;
		}
		i = lo;
		memmove(&v->v[i + 1], &v->v[i], (v->n - i) * sizeof *v->v);
	}
	v->v[i] = x;
	v->n++;
	return 0;
}

/* Remove one occurrence of x (present); keeps the order. */
void
crdt__chat_u64v_erase(u64v *v, uint64_t x)
{
	for (size_t i = v->n; i-- > 0;) {
		if (v->v[i] == x) {
			memmove(&v->v[i], &v->v[i + 1],
			    (v->n - i - 1) * sizeof *v->v);
			v->n--;
			return;
		}
	}
}

static int
u64_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

/* Sort a vector filled in bulk (an index rebuild: nothing is shown yet). */
void
crdt__chat_u64v_sort(u64v *v)
{
	if (!v->sorted && v->n > 1)
		qsort(v->v, v->n, sizeof *v->v, u64_cmp);
	v->sorted = true;
}

/* Number of entries <= c: a binary search over a sorted vector (kept
 * sorted by every writer, so a const query never reorders it). */
size_t
crdt__chat_u64v_upto(const u64v *v, uint64_t c)
{
	size_t lo = 0, hi = v->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->v[mid] <= c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t
rclock_find(const rclock *k, const crdt_replica_id *id, bool *found)
{
	size_t lo = 0, hi = k->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (crdt_replica_id_cmp(&k->v[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < k->n && crdt_replica_id_cmp(&k->v[lo].id, id) == 0;
	return lo;
}

uint64_t
crdt__chat_rclock_get(const rclock *k, const crdt_replica_id *id)
{
	bool found;
	size_t i = rclock_find(k, id, &found);
	return found ? k->v[i].c : 0;
}

bool
crdt__chat_rclock_covers(const rclock *k, crdt_dot d)
{
	return crdt__chat_rclock_get(k, &d.replica) >= d.counter;
}

/* An entry for `id` (counter 0 if new): the only allocation. */
int
crdt__chat_rclock_reserve(const crdt_allocator *a, rclock *k,
    const crdt_replica_id *id)
{
	bool found;
	size_t i = rclock_find(k, id, &found);
	if (found)
		return 0;
	void *v = k->v;
	CRDT_TRY(crdt__grow(a, &v, &k->cap, k->n + 1, sizeof *k->v));
	k->v = v;
	memmove(&k->v[i + 1], &k->v[i], (k->n - i) * sizeof *k->v);
	k->v[i].id = *id;
	k->v[i].c = 0;
	k->n++;
	return 0;
}

/* Raise `id` to at least `c`; after rclock_reserve it cannot fail. */
int
crdt__chat_rclock_raise(const crdt_allocator *a, rclock *k, crdt_dot d)
{
	bool found;
	CRDT_TRY(crdt__chat_rclock_reserve(a, k, &d.replica));
	size_t i = rclock_find(k, &d.replica, &found);
	if (k->v[i].c < d.counter)
		k->v[i].c = d.counter;
	return 0;
}

void *
crdt__chat_tab_get(crdt__table *t, const void *key, size_t len, bool create,
    int *rc)
{
	uint32_t h = crdt__table_hash(t, key, len);
	void *e = crdt__table_find(t, key, len, h);
	*rc = 0;
	if (e != NULL || !create)
		return e;
	if ((*rc = crdt__table_reserve(t, 1)) < 0)
		return NULL;
	uint8_t *copy = crdt__memdup(t->a, key, len);
	if (copy == NULL) {
		*rc = CRDT_ENOMEM;
		return NULL;
	}
	return crdt__table_insert(t, copy, len, h);
}

/* ---------------------------------------------------------------- */
/* ordered side trees (olink)                                       */

#define OL(v, x) (&(v)[(x) - 1])

static void
ot_rotate_up(olink *v, uint32_t *root, uint32_t x)
{
	olink *n = OL(v, x);
	uint32_t p = n->p;
	olink *pn = OL(v, p);
	uint32_t g = pn->p;
	if (pn->l == x) {
		pn->l = n->r;
		if (n->r != 0)
			OL(v, n->r)->p = p;
		n->r = p;
	} else {
		pn->r = n->l;
		if (n->l != 0)
			OL(v, n->l)->p = p;
		n->l = p;
	}
	pn->p = x;
	n->p = g;
	if (g == 0)
		*root = x;
	else if (OL(v, g)->l == p)
		OL(v, g)->l = x;
	else
		OL(v, g)->r = x;
}

/* Insert entry i (not in any tree) under *root. Expected O(log n). */
void
crdt__chat_ot_insert(olink *v, uint32_t *root, size_t i, uint32_t prio,
    ocmp_fn cmp,
    const void *ctx)
{
	uint32_t x = (uint32_t)i + 1;
	olink *n = OL(v, x);
	n->l = n->r = n->p = 0;
	n->prio = prio;
	if (*root == 0) {
		*root = x;
		return;
	}
	for (uint32_t t = *root;;) {
		olink *tn = OL(v, t);
		uint32_t *next = cmp(ctx, i, t - 1) < 0 ? &tn->l : &tn->r;
		if (*next == 0) {
			*next = x;
			n->p = t;
			break;
		}
		t = *next;
	}
	while (n->p != 0 && OL(v, n->p)->prio < n->prio)
		ot_rotate_up(v, root, x);
}

/* In-order walk: the first node of a tree, then successors; 0 = end.
 * A whole walk is O(n): each link is followed at most twice. */
uint32_t
crdt__chat_ot_first(const olink *v, uint32_t x)
{
	while (x != 0 && OL(v, x)->l != 0)
		x = OL(v, x)->l;
	return x;
}

uint32_t
crdt__chat_ot_next(const olink *v, uint32_t x)
{
	if (OL(v, x)->r != 0)
		return crdt__chat_ot_first(v, OL(v, x)->r);
	for (;;) {
		uint32_t p = OL(v, x)->p;
		if (p == 0 || OL(v, p)->l == x)
			return p;
		x = p;
	}
}

/* Make v (capacity *cap, `have` entries zeroed) hold `need` zeroed links. */
int
crdt__chat_ol_reserve(const crdt_allocator *a, olink **v, size_t *cap,
    size_t need)
{
	if (need <= *cap)
		return 0;
	if (need > UINT32_MAX - 1)
		return CRDT_ETOOBIG;
	void *p = *v;
	size_t old = *cap;
	CRDT_TRY(crdt__grow(a, &p, cap, need, sizeof **v));
	*v = p;
	memset(*v + old, 0, (*cap - old) * sizeof **v);
	return 0;
}

/* ---------------------------------------------------------------- */
/* order-statistic treap                                            */

/* By order key, then by dot (crdt_dot_cmp: replica ID, then counter). */
static int
node_cmp(const chat_index *ix, const tnode *a, const tnode *b)
{
	if (a->ord != b->ord)
		return a->ord < b->ord ? -1 : 1;
	/* A tie of order keys (rare: equal stamps) reads both records. */
	return crdt_dot_cmp(crdt__chat_node_id(ix, a),
	    crdt__chat_node_id(ix, b));
}

/*
 * Insert node x: walk down by key, growing subtree sizes on the way, hang
 * x as a leaf, then rotate it up while its priority beats its parent's
 * (priorities are keyed hashes of the dot, so the expected depth is
 * O(log n) whatever the arrival order). Cheaper than split + merge for the
 * common case of appending at the end.
 */
static void
rotate_up(chat_index *ix, uint32_t x)
{
	tnode *n = &ix->nodes[x];
	uint32_t p = n->p;
	tnode *pn = &ix->nodes[p];
	uint32_t g = pn->p;
	if (pn->l == x) {
		pn->l = n->r;
		if (n->r != NIL)
			ix->nodes[n->r].p = p;
		n->r = p;
	} else {
		pn->r = n->l;
		if (n->l != NIL)
			ix->nodes[n->l].p = p;
		n->l = p;
	}
	pn->p = x;
	n->p = g;
	if (g == NIL)
		ix->root = x;
	else if (ix->nodes[g].l == p)
		ix->nodes[g].l = x;
	else
		ix->nodes[g].r = x;
	pn->size = 1 + crdt__chat_sz(ix, pn->l) + crdt__chat_sz(ix, pn->r);
	n->size = 1 + crdt__chat_sz(ix, n->l) + crdt__chat_sz(ix, n->r);
}

void
crdt__chat_treap_insert(chat_index *ix, uint32_t x)
{
	tnode *n = &ix->nodes[x];
	if (ix->root == NIL) {
		ix->root = x;
		return;
	}
	uint32_t t = ix->root;
	for (;;) {
		tnode *tn = &ix->nodes[t];
		tn->size++;
		uint32_t *next = node_cmp(ix, n, tn) < 0 ? &tn->l : &tn->r;
		if (*next == NIL) {
			*next = x;
			n->p = t;
			break;
		}
		t = *next;
	}
	while (n->p != NIL && ix->nodes[n->p].prio < n->prio)
		rotate_up(ix, x);
}

/* One node in key order for treap_build's sort. */
typedef struct okey {
	uint64_t ord;
	crdt_dot id;
	uint32_t x;
} okey;

static int
okey_cmp(const void *p, const void *q)
{
	const okey *a = p, *b = q;
	if (a->ord != b->ord)
		return a->ord < b->ord ? -1 : 1;
	return crdt_dot_cmp(a->id, b->id);
}

/* Subtree size of x from its (final) children. */
static void
fix_size(chat_index *ix, uint32_t x)
{
	tnode *n = &ix->nodes[x];
	n->size = 1 + crdt__chat_sz(ix, n->l) + crdt__chat_sz(ix, n->r);
}

/*
 * The Cartesian tree of the nodes in key order by priority (max-heap, as
 * treap_insert keeps it): one pass with the right spine on a stack. A
 * node popped off the spine is complete (everything after it in key order
 * hangs elsewhere), so its size is final then. O(n) plus the sort when
 * the nodes are not in key order already.
 */
int
crdt__chat_treap_build(chat_index *ix, const crdt_allocator *a)
{
	size_t n = ix->nn;
	ix->root = NIL;
	if (n == 0)
		return 0;
	bool sorted = true;
	for (size_t i = 1; sorted && i < n; i++)
		sorted = node_cmp(ix, &ix->nodes[i - 1], &ix->nodes[i]) < 0;
	okey *ord = NULL;
	if (!sorted) {
		if (n > SIZE_MAX / sizeof *ord)
			return CRDT_ENOMEM;
		ord = crdt__malloc(a, n * sizeof *ord);
		if (ord == NULL)
			return CRDT_ENOMEM;
		for (size_t i = 0; i < n; i++)
			ord[i] = (okey){ ix->nodes[i].ord,
				crdt__chat_node_id(ix, &ix->nodes[i]),
				(uint32_t)i };
		qsort(ord, n, sizeof *ord, okey_cmp);
	}
	uint32_t *stk = crdt__malloc(a, n * sizeof *stk);
	if (stk == NULL) {
		crdt__free(a, ord, ord ? n * sizeof *ord : 0);
		return CRDT_ENOMEM;
	}
	size_t top = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t x = ord != NULL ? ord[i].x : (uint32_t)i;
		tnode *t = &ix->nodes[x];
		uint32_t last = NIL;
		while (top > 0 && ix->nodes[stk[top - 1]].prio < t->prio) {
			last = stk[--top];
			fix_size(ix, last);
		}
		t->l = last;
		if (last != NIL)
			ix->nodes[last].p = x;
		t->r = NIL;
		if (top > 0) {
			ix->nodes[stk[top - 1]].r = x;
			t->p = stk[top - 1];
		} else {
			t->p = NIL;
		}
		stk[top++] = x;
	}
	while (top > 0)
		fix_size(ix, stk[--top]);
	ix->root = stk[0];
	crdt__free(a, stk, n * sizeof *stk);
	crdt__free(a, ord, ord ? n * sizeof *ord : 0);
	return 0;
}

/* Detach node x: rotate it down below its higher-priority child until it
 * has at most one, splice it out, shrink the sizes above. */
void
crdt__chat_treap_remove(chat_index *ix, uint32_t x)
{
	tnode *n = &ix->nodes[x];
	while (n->l != NIL && n->r != NIL) {
		uint32_t l = n->l, r = n->r;
		rotate_up(ix, ix->nodes[l].prio > ix->nodes[r].prio ? l : r);
	}
	uint32_t child = n->l != NIL ? n->l : n->r;
	uint32_t p = n->p;
	if (child != NIL)
		ix->nodes[child].p = p;
	if (p == NIL)
		ix->root = child;
	else if (ix->nodes[p].l == x)
		ix->nodes[p].l = child;
	else
		ix->nodes[p].r = child;
	for (uint32_t q = p; q != NIL; q = ix->nodes[q].p)
		ix->nodes[q].size--;
	n->l = n->r = n->p = NIL;
	n->size = 1;
}

uint32_t
crdt__chat_kth(const chat_index *ix, size_t k)
{
	uint32_t x = ix->root;
	while (x != NIL) {
		size_t ls = crdt__chat_sz(ix, ix->nodes[x].l);
		if (k < ls) {
			x = ix->nodes[x].l;
		} else if (k == ls) {
			return x;
		} else {
			k -= ls + 1;
			x = ix->nodes[x].r;
		}
	}
	return NIL;
}

uint32_t
crdt__chat_step(const chat_index *ix, uint32_t x, bool fwd)
{
	uint32_t c = fwd ? ix->nodes[x].r : ix->nodes[x].l;
	if (c != NIL) {
		while ((fwd ? ix->nodes[c].l : ix->nodes[c].r) != NIL)
			c = fwd ? ix->nodes[c].l : ix->nodes[c].r;
		return c;
	}
	for (;;) {
		uint32_t p = ix->nodes[x].p;
		if (p == NIL)
			return NIL;
		if ((fwd ? ix->nodes[p].l : ix->nodes[p].r) == x)
			return p;
		x = p;
	}
}
