/*
 * Chat thread. The replicated state is three generic objects, so merge,
 * canonical encoding, atomic apply and snapshots are theirs:
 *
 *   msgs   G-Set of message records   [id, counter, order, sent_at, user,
 *                                      body, reply_to|nil, meta|nil]
 *   reacts LWW map: [id, counter, user, emoji] -> "" (on) | nil (off)
 *   marks  G-Set of typed records     [1, reader, id, counter]     read
 *                                     [2, user, joined, stamp, writer]
 *                                     [3, id, counter]             ack
 *                                     [4, id, counter, reason]     reject
 *
 * Everything else is a derived index, built when a state is decoded or
 * merged (where the load can still fail) and folded after each committed
 * transaction from room the apply walk reserved before the commit point
 * (so the fold cannot fail and queries never build anything):
 *   - an order-statistic treap over (order, replica ID, counter): insert,
 *     position, k-th and neighbours in O(log n), pages in O(log n + k);
 *   - dot -> message, reactions per message, read clocks per reader,
 *     membership history per user, the server's acknowledged clock,
 *     rejections, and per (replica) / (user, replica) sorted counters for
 *     O(replicas log n) unread counts.
 */
#include <stdlib.h>

#include "internal.h"
#include "crdt/chat.h"

#define NIL UINT32_MAX
#define USER_MAX 255
/*
 * The greatest `seen` a post may carry. The order key is
 * max(stamp, seen + 1), and every later post carries at least the greatest
 * key so far: a peer that could push the keys to UINT64_MAX would make
 * every later post overflow. So `seen` is refused above SEEN_MAX at
 * receive (the hostile message, not the next honest one), and a post's own
 * `seen` is clamped to it: once some key reaches ORD_CAP (only a stamp
 * 2^47 ms, ~4400 years, past the epoch or a hostile post does that), later
 * posts still get a key, ORD_CAP or their stamp, and sort by dot among
 * themselves. Real stamps are below 2^57 (docs/chat.md).
 */
#define SEEN_MAX ((UINT64_C(1) << 63) - 1)
#define ORD_CAP (SEEN_MAX + 1)

enum { OP_POST = 0, OP_REACT, OP_READ, OP_MEMBER, OP_ACK, OP_REJECT };
enum { MK_READ = 1, MK_MEMBER, MK_ACK, MK_REJECT };

/* 64 bytes: one per message, so every field counts (docs/performance.md). */
typedef struct tnode {
	uint64_t ord;
	crdt_dot id;
	const uint8_t *rec; /* the G-Set element (owned by msgs) */
	uint32_t rec_len;   /* records are < 4 GiB: limits.max_bytes */
	uint32_t prio;
	uint32_t l, r, p, size;
} tnode;

/*
 * Intrusive treap links over the entries of a side array (reaction map
 * entries, users), so visitors walk them in canonical byte order with no
 * sorting and no allocation at query time. Links are index + 1 (0 = none),
 * so zeroed memory is a detached node. Priorities are keyed hashes: a peer
 * cannot choose keys that unbalance a tree.
 */
typedef struct olink {
	uint32_t l, r, p, prio;
} olink;

/* Small growable vectors. */
typedef struct u64v {
	uint64_t *v;
	size_t n, cap;
	bool sorted;
} u64v;

/* What few messages have: reactions and a rejection. Only dots with one
 * of them get an entry (dot -> message goes through the node slots), so
 * nothing here is paid per message. Key: the dot (24 bytes). */
typedef struct dot_ent {
	crdt__key k;
	uint32_t reactions;    /* reactions currently on */
	/* Root (index + 1, 0 = none) of the treap over this message's
	 * reaction map entries (by entry index: entries move when the map
	 * grows, indices do not), ordered by key bytes so every replica
	 * visits them in the same order. O(log n) per new key whatever the
	 * arrival order. */
	uint32_t rroot;
	const uint8_t *reason; /* rejection, NULL = none */
	size_t reason_len;
} dot_ent;

typedef struct rep_ent { /* key: replica id, or user || replica id */
	crdt__key k;
	u64v ctr;
} rep_ent;

typedef struct hist {
	uint64_t stamp;
	crdt_replica_id writer;
	bool joined;
} hist;

/* A clock over replica IDs, sorted by ID. An entry with counter 0 means
 * nothing and may be inserted ahead of time: that is how the apply path
 * reserves room before commit, so folding a mark after commit never
 * allocates. */
typedef struct rclk_e {
	crdt_replica_id id;
	uint64_t c;
} rclk_e;

typedef struct rclock {
	rclk_e *v;
	size_t n, cap;
} rclock;

typedef struct user_ent { /* key: user */
	crdt__key k;
	rclock read;   /* what the user has read; empty until a mark */
	hist *h;       /* membership history, ascending (stamp, writer) */
	size_t nh, caph;
	/* Room reserved in h by the apply walk `hwalk` (one per member op
	 * of that walk), so the fold after commit cannot fail. */
	uint64_t hwalk;
	size_t hpend;
	size_t posted; /* messages authored */
} user_ent;

/* A message record's fields (pointers into the record's bytes). */
typedef struct msgrec {
	crdt_dot id;
	uint64_t ord, sent_at;
	const uint8_t *user, *body, *meta;
	size_t user_len, body_len, meta_len;
	bool has_reply;
	crdt_dot reply;
} msgrec;

typedef struct chat_index {
	bool ok;
	tnode *nodes;
	size_t nn, capn;
	uint32_t root;
	uint64_t max_ord;
	/* dot -> node: open addressing over node indices + 1, probed from
	 * the node's keyed hash (its treap priority), compared by dot. No key
	 * copy and no entry per message: 4-8 bytes each. */
	uint32_t *slots;
	size_t nslots;
	crdt__table dots;  /* dot_ent: reactions, rejections */
	crdt__table reps;  /* rep_ent: messages per replica */
	crdt__table ureps; /* rep_ent: messages per (user, replica) */
	crdt__table users; /* user_ent */
	rclock acked;
	uint8_t prio_key[16];
	/* Per reaction map entry (by index): treap links within its
	 * message's tree, and whether it is indexed / counted as on. The
	 * flags make folding an entry idempotent, so a key written twice in
	 * one transaction (off, then on) is counted once. */
	olink *rl;
	uint8_t *rf;
	size_t nr, caprl, caprf;
	/* Users in byte order of their IDs (links by users-table index). */
	olink *ul;
	size_t capul;
	uint32_t uroot;
	/* Consecutive messages usually share author and replica: remember
	 * the last entries (by index; entries never move between indices)
	 * to skip three hash lookups per message. */
	size_t last_rep, last_urep, last_user;
	bool have_last;
	bool bulk; /* rebuilding: counters appended, sorted at the end */
	/* The post the apply walk just inserted as msgs entry `idx`, with
	 * the fields it wrote, so the fold after commit need not parse the
	 * bytes this module has just built (a quarter of a post's fold).
	 * Taken only for that entry with that record pointer and length, at
	 * most once; cleared by the next post, the fold, and every rebuild
	 * (ix_clear) or merge (ix_fold), which insert entries the walk did
	 * not describe. */
	struct {
		bool ok;
		size_t idx, len;
		const uint8_t *rec;
		msgrec m;
	} pend;
} chat_index;

struct crdt_chat {
	crdt_config cfg;
	crdt_replica_id self;
	bool has_server;
	crdt_replica_id server;
	crdt_gset *msgs;
	crdt_lww_map *reacts;
	crdt_gset *marks;
	chat_index *ix; /* derived from the three sets, kept current */
};

/* ---------------------------------------------------------------- */
/* small helpers                                                    */

static void
dot_key(uint8_t k[24], crdt_dot d)
{
	memcpy(k, d.replica.bytes, 16);
	for (int i = 0; i < 8; i++)
		k[16 + i] = (uint8_t)(d.counter >> (56 - 8 * i));
}

/* Insert x keeping the vector sorted; `bulk` appends and leaves sorting to
 * u64v_sort_all() (an index rebuild), so a rebuild is O(n log n) whatever
 * the order of the records. Messages of one replica normally arrive in
 * counter order (causal delivery): the usual case is an append. */
static int
u64v_add(const crdt_allocator *a, u64v *v, uint64_t x, bool bulk)
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
static void
u64v_erase(u64v *v, uint64_t x)
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
static void
u64v_sort(u64v *v)
{
	if (!v->sorted && v->n > 1)
		qsort(v->v, v->n, sizeof *v->v, u64_cmp);
	v->sorted = true;
}

/* Number of entries <= c: a binary search over a sorted vector (kept
 * sorted by every writer, so a const query never reorders it). */
static size_t
u64v_upto(const u64v *v, uint64_t c)
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

static uint64_t
rclock_get(const rclock *k, const crdt_replica_id *id)
{
	bool found;
	size_t i = rclock_find(k, id, &found);
	return found ? k->v[i].c : 0;
}

static bool
rclock_covers(const rclock *k, crdt_dot d)
{
	return rclock_get(k, &d.replica) >= d.counter;
}

/* An entry for `id` (counter 0 if new): the only allocation. */
static int
rclock_reserve(const crdt_allocator *a, rclock *k, const crdt_replica_id *id)
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
static int
rclock_raise(const crdt_allocator *a, rclock *k, crdt_dot d)
{
	bool found;
	CRDT_TRY(rclock_reserve(a, k, &d.replica));
	size_t i = rclock_find(k, &d.replica, &found);
	if (k->v[i].c < d.counter)
		k->v[i].c = d.counter;
	return 0;
}

static void *
tab_get(crdt__table *t, const void *key, size_t len, bool create, int *rc)
{
	uint64_t h = crdt__table_hash(t, key, len);
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

/* Order of side-array entries a and b (indices). */
typedef int (*ocmp_fn)(const void *ctx, size_t a, size_t b);

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
static void
ot_insert(olink *v, uint32_t *root, size_t i, uint32_t prio, ocmp_fn cmp,
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
static uint32_t
ot_first(const olink *v, uint32_t x)
{
	while (x != 0 && OL(v, x)->l != 0)
		x = OL(v, x)->l;
	return x;
}

static uint32_t
ot_next(const olink *v, uint32_t x)
{
	if (OL(v, x)->r != 0)
		return ot_first(v, OL(v, x)->r);
	for (;;) {
		uint32_t p = OL(v, x)->p;
		if (p == 0 || OL(v, p)->l == x)
			return p;
		x = p;
	}
}

/* Make v (capacity *cap, `have` entries zeroed) hold `need` zeroed links. */
static int
ol_reserve(const crdt_allocator *a, olink **v, size_t *cap, size_t need)
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

static int
node_cmp(const tnode *a, const tnode *b)
{
	if (a->ord != b->ord)
		return a->ord < b->ord ? -1 : 1;
	return crdt_dot_cmp(a->id, b->id);
}

static uint32_t
sz(const chat_index *ix, uint32_t x)
{
	return x == NIL ? 0 : ix->nodes[x].size;
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
	pn->size = 1 + sz(ix, pn->l) + sz(ix, pn->r);
	n->size = 1 + sz(ix, n->l) + sz(ix, n->r);
}

static void
treap_insert(chat_index *ix, uint32_t x)
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
		uint32_t *next = node_cmp(n, tn) < 0 ? &tn->l : &tn->r;
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

/* Detach node x: rotate it down below its higher-priority child until it
 * has at most one, splice it out, shrink the sizes above. */
static void
treap_remove(chat_index *ix, uint32_t x)
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

static size_t
rank(const chat_index *ix, uint32_t x)
{
	size_t r = sz(ix, ix->nodes[x].l);
	while (ix->nodes[x].p != NIL) {
		uint32_t p = ix->nodes[x].p;
		if (ix->nodes[p].r == x)
			r += sz(ix, ix->nodes[p].l) + 1;
		x = p;
	}
	return r;
}

static uint32_t
kth(const chat_index *ix, size_t k)
{
	uint32_t x = ix->root;
	while (x != NIL) {
		size_t ls = sz(ix, ix->nodes[x].l);
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

static uint32_t
step(const chat_index *ix, uint32_t x, bool fwd)
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

/* ---------------------------------------------------------------- */
/* record parsing                                                   */

static const crdt_limits big_limits = { SIZE_MAX, SIZE_MAX, SIZE_MAX, 8 };

static int
rd_dot(crdt__rd *r, crdt_dot *d)
{
	CRDT_TRY(crdt__rd_id(r, &d->replica));
	CRDT_TRY(crdt__rd_uint(r, &d->counter));
	return d->counter == 0 ? CRDT_EMALFORMED : 0;
}

static int
rd_opt_dot(crdt__rd *r, crdt_dot *d, bool *present)
{
	*present = false;
	if (r->p < r->end && *r->p == 0xc0) {
		r->p++;
		return 0;
	}
	CRDT_TRY(crdt__rd_array_n(r, 2));
	CRDT_TRY(rd_dot(r, d));
	r->depth--;
	*present = true;
	return 0;
}

static bool
user_len_ok(size_t n)
{
	return n > 0 && n <= USER_MAX;
}

/*
 * The record parsers are the validators too: a snapshot's records are
 * peer bytes, checked field by field like the op that would have written
 * them (crdt__chat_decode refuses the state whole on the first bad one),
 * and the index trusts only what they accept: user IDs of 1..USER_MAX
 * bytes, dots with counters >= 1, the exact array shapes, nothing after.
 */
static int
parse_msgrec(const uint8_t *p, size_t n, msgrec *m)
{
	crdt__rd r;
	bool has_meta;

	CRDT_TRY(crdt__rd_init(&r, &big_limits, p, n));
	CRDT_TRY(crdt__rd_array_n(&r, 8));
	CRDT_TRY(rd_dot(&r, &m->id));
	CRDT_TRY(crdt__rd_uint(&r, &m->ord));
	CRDT_TRY(crdt__rd_uint(&r, &m->sent_at));
	CRDT_TRY(crdt__rd_bin(&r, &m->user, &m->user_len));
	CRDT_TRY(crdt__rd_bin(&r, &m->body, &m->body_len));
	CRDT_TRY(rd_opt_dot(&r, &m->reply, &m->has_reply));
	CRDT_TRY(crdt__rd_opt_bin(&r, &m->meta, &m->meta_len, &has_meta));
	if (!has_meta)
		m->meta = NULL;
	if (!user_len_ok(m->user_len))
		return CRDT_EMALFORMED;
	/* order = max(sent_at, seen + 1) with seen <= SEEN_MAX. */
	if (m->ord < m->sent_at || (m->ord > m->sent_at && m->ord > ORD_CAP))
		return CRDT_EMALFORMED;
	return crdt__rd_done(&r);
}

#ifndef NDEBUG
/* The fields the apply walk remembered are the ones parse_msgrec reads
 * (debug builds check every remembered post). */
static bool
msgrec_same(const msgrec *x, const msgrec *y)
{
	return crdt_dot_cmp(x->id, y->id) == 0 && x->ord == y->ord &&
	    x->sent_at == y->sent_at && x->user == y->user &&
	    x->user_len == y->user_len && x->body == y->body &&
	    x->body_len == y->body_len && x->meta == y->meta &&
	    (x->meta == NULL || x->meta_len == y->meta_len) &&
	    x->has_reply == y->has_reply &&
	    (!x->has_reply || crdt_dot_cmp(x->reply, y->reply) == 0);
}
#endif

/* A reaction map key [id, counter, user, emoji]. */
typedef struct rkey {
	crdt_dot d;
	const uint8_t *user, *emoji;
	size_t user_len, emoji_len;
} rkey;

static int
parse_rkey(const uint8_t *p, size_t n, rkey *k)
{
	crdt__rd r;
	CRDT_TRY(crdt__rd_init(&r, &big_limits, p, n));
	CRDT_TRY(crdt__rd_array_n(&r, 4));
	CRDT_TRY(rd_dot(&r, &k->d));
	CRDT_TRY(crdt__rd_bin(&r, &k->user, &k->user_len));
	CRDT_TRY(crdt__rd_bin(&r, &k->emoji, &k->emoji_len));
	if (!user_len_ok(k->user_len))
		return CRDT_EMALFORMED;
	return crdt__rd_done(&r);
}

/* A marks record: [1, reader, id, counter], [2, user, joined, stamp,
 * writer], [3, id, counter], [4, id, counter, reason]. */
typedef struct markrec {
	uint64_t kind;
	const uint8_t *user, *why;
	size_t user_len, why_len;
	crdt_dot d;
	hist h;
} markrec;

static int
parse_mark(const uint8_t *p, size_t len, markrec *m)
{
	crdt__rd r;
	size_t n;
	uint64_t joined;

	memset(m, 0, sizeof *m);
	CRDT_TRY(crdt__rd_init(&r, &big_limits, p, len));
	CRDT_TRY(crdt__rd_array(&r, &n));
	if (n == 0)
		return CRDT_EMALFORMED;
	CRDT_TRY(crdt__rd_uint(&r, &m->kind));
	switch (m->kind) {
	case MK_READ:
		if (n != 4)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__rd_bin(&r, &m->user, &m->user_len));
		CRDT_TRY(rd_dot(&r, &m->d));
		break;
	case MK_MEMBER:
		if (n != 5)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__rd_bin(&r, &m->user, &m->user_len));
		CRDT_TRY(crdt__rd_uint(&r, &joined));
		CRDT_TRY(crdt__rd_uint(&r, &m->h.stamp));
		CRDT_TRY(crdt__rd_id(&r, &m->h.writer));
		if (joined > 1)
			return CRDT_EMALFORMED;
		m->h.joined = joined == 1;
		break;
	case MK_ACK:
		if (n != 3)
			return CRDT_EMALFORMED;
		CRDT_TRY(rd_dot(&r, &m->d));
		break;
	case MK_REJECT:
		if (n != 4)
			return CRDT_EMALFORMED;
		CRDT_TRY(rd_dot(&r, &m->d));
		CRDT_TRY(crdt__rd_bin(&r, &m->why, &m->why_len));
		break;
	default:
		return CRDT_EMALFORMED;
	}
	if ((m->kind == MK_READ || m->kind == MK_MEMBER) &&
	    !user_len_ok(m->user_len))
		return CRDT_EMALFORMED;
	return crdt__rd_done(&r);
}

/* ---------------------------------------------------------------- */
/* index maintenance                                                */

static const crdt_allocator *
ix_alloc(const crdt_chat *c)
{
	return &c->cfg.alloc;
}

static void
user_fini(void *e, const crdt_allocator *a)
{
	user_ent *u = e;
	crdt__free(a, u->read.v, u->read.cap * sizeof *u->read.v);
	crdt__free(a, u->h, u->caph * sizeof *u->h);
}

static void
rep_fini(void *e, const crdt_allocator *a)
{
	rep_ent *r = e;
	crdt__free(a, r->ctr.v, r->ctr.cap * sizeof *r->ctr.v);
}



static void
ix_clear(crdt_chat *c)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = ix_alloc(c);
	crdt__free(a, ix->nodes, ix->capn * sizeof *ix->nodes);
	crdt__free(a, ix->slots, ix->nslots * sizeof *ix->slots);
	crdt__free(a, ix->rl, ix->caprl * sizeof *ix->rl);
	crdt__free(a, ix->rf, ix->caprf * sizeof *ix->rf);
	crdt__free(a, ix->ul, ix->capul * sizeof *ix->ul);
	crdt__table_fini(&ix->dots, NULL);
	crdt__table_fini(&ix->reps, rep_fini);
	crdt__table_fini(&ix->ureps, rep_fini);
	crdt__table_fini(&ix->users, user_fini);
	crdt__free(a, ix->acked.v, ix->acked.cap * sizeof *ix->acked.v);
	uint8_t key[16];
	memcpy(key, ix->prio_key, sizeof key);
	memset(ix, 0, sizeof *ix);
	memcpy(ix->prio_key, key, sizeof key);
	ix->root = NIL;
}

static int
ix_init(crdt_chat *c)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = ix_alloc(c);
	ix->root = NIL;
	CRDT_TRY(crdt__table_init(&ix->dots, a, sizeof(dot_ent)));
	CRDT_TRY(crdt__table_init(&ix->reps, a, sizeof(rep_ent)));
	CRDT_TRY(crdt__table_init(&ix->ureps, a, sizeof(rep_ent)));
	CRDT_TRY(crdt__table_init(&ix->users, a, sizeof(user_ent)));
	ix->ok = true;
	return 0;
}

static dot_ent *
dot_get(chat_index *ix, crdt_dot d, bool create, int *rc)
{
	uint8_t k[24];
	dot_key(k, d);
	return tab_get(&ix->dots, k, sizeof k, create, rc);
}

/* The dot's hash under the chat's secret key: slot and treap priority.
 * Keyed, so a peer cannot choose dots that collide or unbalance the
 * treap. */
static uint32_t
dot_hash32(const chat_index *ix, crdt_dot d)
{
	uint8_t k[24];
	dot_key(k, d);
	return (uint32_t)(crdt__siphash(ix->prio_key, k, sizeof k) >> 32);
}

static uint32_t
node_find(const chat_index *ix, crdt_dot d, uint32_t h)
{
	if (ix->nslots == 0)
		return NIL;
	size_t mask = ix->nslots - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		uint32_t s = ix->slots[i];
		if (s == 0)
			return NIL;
		const tnode *n = &ix->nodes[s - 1];
		if (n->id.counter == d.counter &&
		    memcmp(n->id.replica.bytes, d.replica.bytes, 16) == 0)
			return s - 1;
	}
}

static void
node_place(uint32_t *slots, size_t nslots, uint32_t h, uint32_t v)
{
	size_t mask = nslots - 1;
	size_t i = h & mask;
	while (slots[i] != 0)
		i = (i + 1) & mask;
	slots[i] = v;
}

/* Room for `need` nodes in the slot array (load factor <= 3/4). */
static int
node_slots_grow(chat_index *ix, const crdt_allocator *a, size_t need)
{
	size_t ns = ix->nslots ? ix->nslots : 16;
	while (need > ns / 4 * 3) {
		if (ns > SIZE_MAX / 2 / sizeof *ix->slots)
			return CRDT_ENOMEM;
		ns *= 2;
	}
	if (ns == ix->nslots)
		return 0;
	uint32_t *slots = crdt__malloc(a, ns * sizeof *slots);
	if (slots == NULL)
		return CRDT_ENOMEM;
	memset(slots, 0, ns * sizeof *slots);
	for (size_t i = 0; i < ix->nn; i++)
		node_place(slots, ns, ix->nodes[i].prio, (uint32_t)(i + 1));
	crdt__free(a, ix->slots, ix->nslots * sizeof *ix->slots);
	ix->slots = slots;
	ix->nslots = ns;
	return 0;
}

/* Called twice per message (reserve before commit, fold after): the
 * usual answer, "there is room", is one compare. */
static inline int
node_slots_reserve(chat_index *ix, const crdt_allocator *a, size_t need)
{
	if (need <= ix->nslots / 4 * 3)
		return 0;
	return node_slots_grow(ix, a, need);
}

/* Read-only: the reactions and rejection of a dot, NULL when none. */
static const dot_ent *
dot_of(const crdt_chat *c, crdt_dot id)
{
	int rc;
	return dot_get(c->ix, id, false, &rc);
}

/* Lookup only (no allocation): used by const queries. */
static user_ent *
user_find(const chat_index *ix, const void *u, size_t n)
{
	uint64_t h = crdt__table_hash(&ix->users, u, n);
	return crdt__table_find(&ix->users, u, n, h);
}

static int
user_cmp(const void *ctx, size_t a, size_t b)
{
	const crdt__table *t = ctx;
	const user_ent *x = crdt__table_at(t, a), *y = crdt__table_at(t, b);
	return crdt__key_cmp(x->k.ptr, x->k.len, y->k.ptr, y->k.len);
}

/* The entry of user `u`, created (and put in the users' byte-order tree)
 * on first sight. */
static user_ent *
user_get(chat_index *ix, const crdt_allocator *a, const uint8_t *u,
    size_t n, int *rc)
{
	user_ent *e = user_find(ix, u, n);
	*rc = 0;
	if (e != NULL)
		return e;
	if (!user_len_ok(n)) {
		*rc = CRDT_EMALFORMED;
		return NULL;
	}
	/* Links first: once the entry exists it must be in the tree. */
	if ((*rc = ol_reserve(a, &ix->ul, &ix->capul, ix->users.n + 1)) < 0)
		return NULL;
	e = tab_get(&ix->users, u, n, true, rc);
	if (e == NULL) {
		if (*rc == 0)
			*rc = CRDT_ENOMEM;
		return NULL;
	}
	size_t i = ix->users.n - 1;
	uint32_t prio = (uint32_t)crdt__siphash(ix->prio_key, e->k.ptr,
	    e->k.len);
	ot_insert(ix->ul, &ix->uroot, i, prio, user_cmp, &ix->users);
	return e;
}

enum { IX_SHOWN = 0, IX_HIDDEN = 1, IX_REPLACED = 2 };

/* The (user, replica) entry of a record; created on demand. */
static rep_ent *
urep_get(chat_index *ix, const uint8_t *user, size_t ul,
    const crdt_replica_id *rep, bool create, int *rc)
{
	uint8_t key[16 + USER_MAX];
	/* parse_msgrec bounds user_len; never copy more than the key. */
	if (!user_len_ok(ul)) {
		*rc = CRDT_EMALFORMED;
		return NULL;
	}
	memcpy(key, user, ul);
	memcpy(key + ul, rep->bytes, 16);
	return tab_get(&ix->ureps, key, ul + 16, create, rc);
}

/*
 * The replica, (user, replica) and user entries of a message, created on
 * first sight. Consecutive messages usually share author and replica, and
 * prep_post() asks for the entries of exactly the message ix_add_msg()
 * folds after commit: the last entries found (by index; entries never move
 * between indices or leave these tables) answer both without hashing, so
 * each key is hashed at most once per message.
 */
static int
msg_ents(chat_index *ix, const crdt_allocator *a, const crdt_replica_id *id,
    const uint8_t *user, size_t ul, rep_ent **rep, rep_ent **urep,
    user_ent **user_out)
{
	int rc;

	if (ix->have_last) {
		rep_ent *re = crdt__table_at(&ix->reps, ix->last_rep);
		user_ent *u = crdt__table_at(&ix->users, ix->last_user);
		if (u->k.len == ul &&
		    memcmp(re->k.ptr, id->bytes, 16) == 0 &&
		    memcmp(u->k.ptr, user, ul) == 0) {
			*rep = re;
			*urep = crdt__table_at(&ix->ureps, ix->last_urep);
			*user_out = u;
			return 0;
		}
	}
	rep_ent *re = tab_get(&ix->reps, id->bytes, 16, true, &rc);
	if (re == NULL)
		return rc ? rc : CRDT_ENOMEM;
	rep_ent *ue = urep_get(ix, user, ul, id, true, &rc);
	if (ue == NULL)
		return rc ? rc : CRDT_ENOMEM;
	user_ent *u = user_get(ix, a, user, ul, &rc);
	if (u == NULL)
		return rc ? rc : CRDT_ENOMEM;
	ix->last_rep = (size_t)((uint8_t *)re - ix->reps.ents) /
	    ix->reps.stride;
	ix->last_urep = (size_t)((uint8_t *)ue - ix->ureps.ents) /
	    ix->ureps.stride;
	ix->last_user = (size_t)((uint8_t *)u - ix->users.ents) /
	    ix->users.stride;
	ix->have_last = true;
	*rep = re;
	*urep = ue;
	*user_out = u;
	return 0;
}

/*
 * A second record for a message ID already indexed: two writers used one
 * replica ID (an equivocating peer, or a device restored without its
 * state). Nothing can be refused here without making acceptance depend on
 * arrival order, so both records stay in the replicated set (a union, like
 * every G-Set) and the index shows the one with the smallest bytes: every
 * replica shows the same one, whichever arrived first. Returns IX_HIDDEN
 * when the shown record stays, IX_REPLACED when the new one takes over.
 */
static int
ix_rival(crdt_chat *c, uint32_t y, const uint8_t *rec, size_t len,
    const msgrec *m, size_t *pos)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = ix_alloc(c);
	tnode *n = &ix->nodes[y];
	msgrec old;
	int rc;

	if (crdt__key_cmp(rec, len, n->rec, n->rec_len) >= 0)
		return IX_HIDDEN;
	CRDT_TRY(parse_msgrec(n->rec, n->rec_len, &old));
	if (old.user_len != m->user_len ||
	    memcmp(old.user, m->user, m->user_len) != 0) {
		/* Move the message between authors: allocate first. */
		rep_ent *ue = urep_get(ix, m->user, m->user_len,
		    &m->id.replica, true, &rc);
		if (ue == NULL)
			return rc ? rc : CRDT_ENOMEM;
		user_ent *u = user_get(ix, a, m->user, m->user_len, &rc);
		if (u == NULL)
			return rc ? rc : CRDT_ENOMEM;
		CRDT_TRY(u64v_add(a, &ue->ctr, m->id.counter, ix->bulk));
		u->posted++;
		rep_ent *oe = urep_get(ix, old.user, old.user_len,
		    &old.id.replica, false, &rc);
		user_ent *ou = user_find(ix, old.user, old.user_len);
		if (oe != NULL)
			u64v_erase(&oe->ctr, m->id.counter);
		if (ou != NULL)
			ou->posted--;
	}
	treap_remove(ix, y);
	n = &ix->nodes[y];
	n->ord = m->ord;
	n->rec = rec;
	n->rec_len = (uint32_t)len;
	treap_insert(ix, y);
	*pos = rank(ix, y);
	return IX_REPLACED;
}

/* A record entered msgs: index it. Returns IX_SHOWN with its position, or
 * what ix_rival returns for a second record of one message ID. */
static int
ix_add_msg(crdt_chat *c, const uint8_t *rec, size_t len, size_t *pos,
    crdt_dot *id, const msgrec *pre)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = ix_alloc(c);
	msgrec m;

	if (len > UINT32_MAX)
		return CRDT_ETOOBIG;
	if (pre != NULL) {
		m = *pre;
#ifndef NDEBUG
		msgrec chk;
		assert(parse_msgrec(rec, len, &chk) == 0 &&
		    msgrec_same(&chk, &m));
#endif
	} else {
		CRDT_TRY(parse_msgrec(rec, len, &m));
	}
	*id = m.id;
	/* Every record counts, shown or not: the key is a function of the
	 * replicated set, whatever order the records came in. */
	if (m.ord > ix->max_ord)
		ix->max_ord = m.ord;
	uint32_t h = dot_hash32(ix, m.id);
	uint32_t y = node_find(ix, m.id, h);
	if (y != NIL)
		return ix_rival(c, y, rec, len, &m, pos);
	if (ix->nn >= UINT32_MAX - 1)
		return CRDT_ETOOBIG;
	CRDT_TRY(node_slots_reserve(ix, a, ix->nn + 1));
	void *v = ix->nodes;
	CRDT_TRY(crdt__grow(a, &v, &ix->capn, ix->nn + 1, sizeof *ix->nodes));
	ix->nodes = v;
	rep_ent *re, *ue;
	user_ent *u;
	CRDT_TRY(msg_ents(ix, a, &m.id.replica, m.user, m.user_len, &re, &ue,
	    &u));
	/* Room in both before either changes: no undo needed. */
	void *rv = re->ctr.v, *uv = ue->ctr.v;
	CRDT_TRY(crdt__grow(a, &rv, &re->ctr.cap, re->ctr.n + 1,
	    sizeof *re->ctr.v));
	re->ctr.v = rv;
	CRDT_TRY(crdt__grow(a, &uv, &ue->ctr.cap, ue->ctr.n + 1,
	    sizeof *ue->ctr.v));
	ue->ctr.v = uv;
	(void)u64v_add(a, &re->ctr, m.id.counter, ix->bulk);
	(void)u64v_add(a, &ue->ctr, m.id.counter, ix->bulk);
	u->posted++;
	uint32_t x = (uint32_t)ix->nn++;
	tnode *n = &ix->nodes[x];
	memset(n, 0, sizeof *n);
	n->ord = m.ord;
	n->id = m.id;
	n->rec = rec;
	n->rec_len = (uint32_t)len;
	n->l = n->r = n->p = NIL;
	n->size = 1;
	/* The dot's keyed hash doubles as the treap priority. */
	n->prio = h;
	node_place(ix->slots, ix->nslots, h, x + 1);
	treap_insert(ix, x);
	*pos = rank(ix, x);
	return IX_SHOWN;
}

static int
hist_cmp(const hist *a, const hist *b)
{
	if (a->stamp != b->stamp)
		return a->stamp < b->stamp ? -1 : 1;
	int c = crdt_replica_id_cmp(&a->writer, &b->writer);
	if (c != 0 || a->joined == b->joined)
		return c;
	/* One writer, one stamp, both a join and a leave: only an
	 * equivocating writer does that. A total order keeps the outcome
	 * independent of arrival; the leave sorts last, so it wins. */
	return a->joined ? -1 : 1;
}

/* A record entered marks: fold it into the index. */
static int
ix_add_mark(crdt_chat *c, const uint8_t *rec, size_t len, crdt_dot *about)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = ix_alloc(c);
	markrec mk;
	int rc;

	CRDT_TRY(parse_mark(rec, len, &mk));
	if (mk.kind == MK_READ) {
		user_ent *ue = user_get(ix, a, mk.user, mk.user_len, &rc);
		if (ue == NULL)
			return rc ? rc : CRDT_ENOMEM;
		return rclock_raise(a, &ue->read, mk.d);
	}
	if (mk.kind == MK_MEMBER) {
		user_ent *ue = user_get(ix, a, mk.user, mk.user_len, &rc);
		if (ue == NULL)
			return rc ? rc : CRDT_ENOMEM;
		void *v = ue->h;
		CRDT_TRY(crdt__grow(a, &v, &ue->caph, ue->nh + 1,
		    sizeof *ue->h));
		ue->h = v;
		/* Binary search, then one move: changes usually come in
		 * stamp order (an append). */
		size_t lo = 0, hi = ue->nh;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (hist_cmp(&ue->h[mid], &mk.h) <= 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		memmove(&ue->h[lo + 1], &ue->h[lo],
		    (ue->nh - lo) * sizeof *ue->h);
		ue->h[lo] = mk.h;
		ue->nh++;
		return 0;
	}
	if (mk.kind == MK_ACK) {
		return rclock_raise(a, &ix->acked, mk.d);
	}
	/* MK_REJECT (parse_mark accepts no other kind) */
	dot_ent *x = dot_get(ix, mk.d, true, &rc);
	if (x == NULL)
		return rc ? rc : CRDT_ENOMEM;
	/* Two rejections of one message: keep the smaller reason so the
	 * choice does not depend on arrival order. */
	if (x->reason == NULL ||
	    crdt__key_cmp(mk.why, mk.why_len, x->reason, x->reason_len) < 0) {
		x->reason = mk.why;
		x->reason_len = mk.why_len;
	}
	*about = mk.d;
	return 0;
}

enum { RF_INDEXED = 1, RF_ON = 2 };

static int
rkey_cmp(const void *ctx, size_t a, size_t b)
{
	const crdt__key *x = crdt__map_entry(ctx, a, NULL);
	const crdt__key *y = crdt__map_entry(ctx, b, NULL);
	return crdt__key_cmp(x->ptr, x->len, y->ptr, y->len);
}

/*
 * Reaction map entry `idx` is new or has a new winner: fold its current
 * state in. Idempotent: the entry's flags say whether it is already in its
 * message's tree and counted as on, so the count follows the state however
 * many undo records one transaction left for the key (off then on is two
 * records, both seen after commit with the final state).
 */
static int
ix_react(crdt_chat *c, size_t idx, crdt_dot *about)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = ix_alloc(c);
	const crdt__reg *reg;
	const crdt__key *k = crdt__map_entry(c->reacts, idx, &reg);
	rkey rk;
	int rc;

	if (idx >= UINT32_MAX - 1)
		return CRDT_ETOOBIG;
	CRDT_TRY(parse_rkey(k->ptr, k->len, &rk));
	CRDT_TRY(ol_reserve(a, &ix->rl, &ix->caprl, idx + 1));
	if (idx >= ix->caprf) {
		void *v = ix->rf;
		size_t old = ix->caprf;
		CRDT_TRY(crdt__grow(a, &v, &ix->caprf, idx + 1,
		    sizeof *ix->rf));
		ix->rf = v;
		memset(ix->rf + old, 0, ix->caprf - old);
	}
	dot_ent *x = dot_get(ix, rk.d, true, &rc);
	if (x == NULL)
		return rc ? rc : CRDT_ENOMEM;
	uint8_t *f = &ix->rf[idx];
	if (!(*f & RF_INDEXED)) {
		uint8_t b[4];
		for (int i = 0; i < 4; i++)
			b[i] = (uint8_t)(idx >> (8 * i));
		uint32_t prio = (uint32_t)crdt__siphash(ix->prio_key, b,
		    sizeof b);
		ot_insert(ix->rl, &x->rroot, idx, prio, rkey_cmp, c->reacts);
		*f |= RF_INDEXED;
	}
	bool on = reg->state == 2;
	if (on && !(*f & RF_ON)) {
		x->reactions++;
		*f |= RF_ON;
	} else if (!on && (*f & RF_ON)) {
		x->reactions--;
		*f &= (uint8_t)~RF_ON;
	}
	*about = rk.d;
	return 0;
}

static void
sort_counters(crdt__table *t)
{
	for (size_t i = 0; i < t->n; i++)
		u64v_sort(&((rep_ent *)crdt__table_at(t, i))->ctr);
}

/* Index the records from msgs entry `m0`, marks entry `k0` on, and every
 * reaction entry (idempotent), then sort what was appended in bulk. */
static int
ix_fold(crdt_chat *c, size_t m0, size_t k0)
{
	size_t pos;
	crdt_dot id;

	int rc = 0;

	c->ix->bulk = true;
	c->ix->pend.ok = false;
	for (size_t i = m0; rc >= 0 && i < crdt_gset_size(c->msgs); i++) {
		const crdt__key *k = crdt__gset_entry_key(c->msgs, i);
		rc = ix_add_msg(c, k->ptr, k->len, &pos, &id, NULL);
	}
	for (size_t i = k0; rc >= 0 && i < crdt_gset_size(c->marks); i++) {
		const crdt__key *k = crdt__gset_entry_key(c->marks, i);
		rc = ix_add_mark(c, k->ptr, k->len, &id);
	}
	for (size_t i = 0; rc >= 0 && i < crdt__map_nentries(c->reacts); i++)
		rc = ix_react(c, i, &id);
	sort_counters(&c->ix->reps);
	sort_counters(&c->ix->ureps);
	c->ix->bulk = false;
	return rc < 0 ? rc : 0;
}

/* Rebuild the whole index from the replicated state. On failure the index
 * is empty and marked stale (ok = false). */
static int
ix_rebuild(crdt_chat *c)
{
	ix_clear(c);
	CRDT_TRY(ix_init(c));
	c->ix->ok = false;
	CRDT_TRY(ix_fold(c, 0, 0));
	c->ix->ok = true;
	return 0;
}

/*
 * Queries read the index as it is: it is built at load and kept current
 * at every commit and receive (room reserved before the commit point), so
 * no query allocates or rebuilds behind `const`. A stale index (only an
 * allocation failure while loading a state that was then discarded, or a
 * fold failure the reservations rule out) is reported, never repaired
 * here: the next write rebuilds it and can fail with its own error.
 */
static int
ensure(const crdt_chat *c)
{
	return c->ix->ok ? 0 : CRDT_ENOMEM;
}

/* ---------------------------------------------------------------- */
/* lifecycle, encoding, merge                                       */

int
crdt__chat_new(const crdt_config *cfg, const crdt_replica_id *self,
    const crdt_replica_id *server, crdt_chat **out)
{
	crdt_config cc;
	CRDT_TRY(crdt__config_resolve(cfg, &cc));
	crdt_chat *c = crdt__malloc(&cc.alloc, sizeof *c);
	if (c == NULL)
		return CRDT_ENOMEM;
	memset(c, 0, sizeof *c);
	c->cfg = cc;
	c->self = *self;
	if (server != NULL) {
		c->has_server = true;
		c->server = *server;
	}
	int rc = 0;
	c->ix = crdt__malloc(&cc.alloc, sizeof *c->ix);
	if (c->ix == NULL)
		rc = CRDT_ENOMEM;
	else {
		memset(c->ix, 0, sizeof *c->ix);
		c->ix->root = NIL;
		rc = crdt__random(c->ix->prio_key, sizeof c->ix->prio_key);
	}
	if (rc == 0)
		rc = crdt_gset_new(&c->cfg, self, &c->msgs);
	if (rc == 0)
		rc = crdt_lww_map_new(&c->cfg, self, &c->reacts);
	if (rc == 0)
		rc = crdt_gset_new(&c->cfg, self, &c->marks);
	if (rc == 0)
		rc = ix_init(c);
	if (rc < 0) {
		crdt__chat_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
crdt__chat_free(crdt_chat *c)
{
	if (c == NULL)
		return;
	crdt_allocator a = c->cfg.alloc;
	if (c->ix != NULL) {
		ix_clear(c);
		crdt__free(&a, c->ix, sizeof *c->ix);
	}
	crdt_gset_free(c->msgs);
	crdt_lww_map_free(c->reacts);
	crdt_gset_free(c->marks);
	crdt__free(&a, c, sizeof *c);
}

static int
chat_encode_body(const crdt_chat *c, crdt_buf *out, crdt_buf *tmp)
{
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_CHAT, 3));
	CRDT_TRY(crdt_gset_encode(c->msgs, tmp));
	CRDT_TRY(crdt__w_bin(out, tmp->data, tmp->len));
	crdt_buf_clear(tmp);
	CRDT_TRY(crdt_lww_map_encode(c->reacts, tmp));
	CRDT_TRY(crdt__w_bin(out, tmp->data, tmp->len));
	crdt_buf_clear(tmp);
	CRDT_TRY(crdt_gset_encode(c->marks, tmp));
	return crdt__w_bin(out, tmp->data, tmp->len);
}

int
crdt__chat_encode(const crdt_chat *c, crdt_buf *out)
{
	crdt_buf tmp;
	crdt_buf_init(&tmp, &c->cfg.alloc);
	size_t mark = out->len;
	int rc = chat_encode_body(c, out, &tmp);
	crdt_buf_fini(&tmp);
	if (rc < 0)
		out->len = mark;
	return rc;
}

/*
 * Every record of a decoded state, checked like the op that would have
 * written it: a snapshot is peer bytes. One bad record refuses the whole
 * state (CRDT_EMALFORMED), so a load either keeps every record it holds or
 * changes nothing. O(state).
 */
static int
check_state(const crdt_gset *m, const crdt_lww_map *rx, const crdt_gset *mk)
{
	for (size_t i = 0; i < crdt_gset_size(m); i++) {
		const crdt__key *e = crdt__gset_entry_key(m, i);
		msgrec mr;
		CRDT_TRY(parse_msgrec(e->ptr, e->len, &mr));
	}
	for (size_t i = 0; i < crdt__map_nentries(rx); i++) {
		const crdt__reg *reg;
		const crdt__key *e = crdt__map_entry(rx, i, &reg);
		rkey k;
		CRDT_TRY(parse_rkey(e->ptr, e->len, &k));
		/* on = "" (the op writes nothing else), off = cleared */
		if (reg->state == 0 || (reg->state == 2 && reg->len != 0))
			return CRDT_EMALFORMED;
	}
	for (size_t i = 0; i < crdt_gset_size(mk); i++) {
		const crdt__key *e = crdt__gset_entry_key(mk, i);
		markrec r;
		CRDT_TRY(parse_mark(e->ptr, e->len, &r));
	}
	return 0;
}

int
crdt__chat_decode(const crdt_chat *like, const uint8_t *p, size_t n,
    crdt_chat **out)
{
	crdt__rd r;
	size_t k;
	const uint8_t *b[3];
	size_t bl[3];
	crdt_chat *c;

	CRDT_TRY(crdt__rd_init(&r, &like->cfg.limits, p, n));
	CRDT_TRY(crdt__rd_header(&r, CRDT__KIND_CHAT, &k));
	if (k != 5)
		return CRDT_EMALFORMED;
	for (int i = 0; i < 3; i++)
		CRDT_TRY(crdt__rd_blob(&r, &b[i], &bl[i]));
	CRDT_TRY(crdt__rd_done(&r));
	CRDT_TRY(crdt__chat_new(&like->cfg, &like->self,
	    like->has_server ? &like->server : NULL, &c));
	crdt_gset *m = NULL, *mk = NULL;
	crdt_lww_map *rx = NULL;
	int rc = crdt_gset_decode(&c->cfg, &c->self, b[0], bl[0], &m);
	if (rc == 0)
		rc = crdt_lww_map_decode(&c->cfg, &c->self, b[1], bl[1], &rx);
	if (rc == 0)
		rc = crdt_gset_decode(&c->cfg, &c->self, b[2], bl[2], &mk);
	if (rc == 0)
		rc = check_state(m, rx, mk);
	if (rc < 0) {
		crdt_gset_free(m);
		crdt_lww_map_free(rx);
		crdt_gset_free(mk);
		crdt__chat_free(c);
		return rc;
	}
	crdt_gset_free(c->msgs);
	crdt_lww_map_free(c->reacts);
	crdt_gset_free(c->marks);
	c->msgs = m;
	c->reacts = rx;
	c->marks = mk;
	/* Built now, where an error can still refuse the state, so queries
	 * never build anything. */
	rc = ix_rebuild(c);
	if (rc < 0) {
		crdt__chat_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int
crdt__chat_merge(crdt_chat *dst, const crdt_chat *src)
{
	/* Each sub-merge is atomic; a failure in the second or third leaves
	 * dst partly merged, which is why crdt_doc_load merges into a
	 * scratch copy and swaps it in only when all succeeded. */
	size_t m0 = crdt_gset_size(dst->msgs), k0 = crdt_gset_size(dst->marks);
	CRDT_TRY(crdt_gset_merge(dst->msgs, src->msgs));
	CRDT_TRY(crdt_lww_map_merge(dst->reacts, src->reacts));
	CRDT_TRY(crdt_gset_merge(dst->marks, src->marks));
	/* G-Set entries are appended: index the new ones; reaction entries
	 * may have changed winner, and folding one is idempotent. */
	if (!dst->ix->ok)
		return ix_rebuild(dst);
	int rc = ix_fold(dst, m0, k0);
	if (rc < 0)
		dst->ix->ok = false;
	return rc;
}

bool
crdt__chat_equal(const crdt_chat *a, const crdt_chat *b)
{
	return crdt_gset_equal(a->msgs, b->msgs) &&
	    crdt_lww_map_equal(a->reacts, b->reacts) &&
	    crdt_gset_equal(a->marks, b->marks);
}

uint64_t
crdt__chat_seen(const crdt_chat *c)
{
	/* Clamped: a post's own `seen` is never one receive refuses. */
	return ensure(c) == 0 ? CRDT_MIN(c->ix->max_ord, SEEN_MAX) : 0;
}

bool
crdt__chat_is_server(const crdt_chat *c, const crdt_replica_id *id)
{
	return c->has_server && crdt_replica_id_cmp(&c->server, id) == 0;
}

/* ---------------------------------------------------------------- */
/* room before commit                                               */

/*
 * The apply walk calls these after each chat write, before the commit
 * point: they create the (empty) index entries and the capacity that
 * crdt__chat_after() will fold the write into, so the fold after commit
 * never allocates and cannot fail. The index is therefore current after
 * every commit, receive and load, and no query ever builds or allocates.
 * If the transaction rolls back, what was made here describes nothing:
 * an empty entry, a counter-0 clock entry, spare capacity.
 */
static int
prep_user(crdt_chat *c, const uint8_t *u, size_t n, user_ent **out)
{
	int rc;
	user_ent *e = user_get(c->ix, ix_alloc(c), u, n, &rc);
	if (e == NULL)
		return rc ? rc : CRDT_ENOMEM;
	*out = e;
	return 0;
}

/* One post per thread per transaction: room for one more message. */
static int
prep_post(crdt_chat *c, crdt_dot dot, const uint8_t *user, size_t ul,
    size_t rec_len)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = ix_alloc(c);
	user_ent *u = NULL;

	if (rec_len > UINT32_MAX || ix->nn >= UINT32_MAX - 1)
		return CRDT_ETOOBIG;
	CRDT_TRY(node_slots_reserve(ix, a, ix->nn + 1));
	void *v = ix->nodes;
	CRDT_TRY(crdt__grow(a, &v, &ix->capn, ix->nn + 1, sizeof *ix->nodes));
	ix->nodes = v;
	rep_ent *re, *ue;
	CRDT_TRY(msg_ents(ix, a, &dot.replica, user, ul, &re, &ue, &u));
	v = re->ctr.v;
	CRDT_TRY(crdt__grow(a, &v, &re->ctr.cap, re->ctr.n + 1,
	    sizeof *re->ctr.v));
	re->ctr.v = v;
	v = ue->ctr.v;
	CRDT_TRY(crdt__grow(a, &v, &ue->ctr.cap, ue->ctr.n + 1,
	    sizeof *ue->ctr.v));
	ue->ctr.v = v;
	return 0;
}

/* Links and flags for every reaction entry, and the message's entry. */
static int
prep_react(crdt_chat *c, crdt_dot d)
{
	chat_index *ix = c->ix;
	const crdt_allocator *a = ix_alloc(c);
	size_t need = crdt__map_nentries(c->reacts);
	int rc;

	CRDT_TRY(ol_reserve(a, &ix->rl, &ix->caprl, need));
	if (need > ix->caprf) {
		void *v = ix->rf;
		size_t old = ix->caprf;
		CRDT_TRY(crdt__grow(a, &v, &ix->caprf, need, sizeof *ix->rf));
		ix->rf = v;
		memset(ix->rf + old, 0, ix->caprf - old);
	}
	if (dot_get(ix, d, true, &rc) == NULL)
		return rc ? rc : CRDT_ENOMEM;
	return 0;
}

/* A membership change: one more history slot per change this walk makes
 * for the user (`walk` tells this walk's reservations from a rolled-back
 * one's). */
static int
prep_member(crdt_chat *c, const uint8_t *user, size_t ul, uint64_t walk)
{
	user_ent *u = NULL;
	CRDT_TRY(prep_user(c, user, ul, &u));
	if (u->hwalk != walk) {
		u->hwalk = walk;
		u->hpend = 0;
	}
	if (u->hpend >= SIZE_MAX - u->nh - 1)
		return CRDT_ENOMEM;
	void *v = u->h;
	CRDT_TRY(crdt__grow(ix_alloc(c), &v, &u->caph, u->nh + u->hpend + 1,
	    sizeof *u->h));
	u->h = v;
	u->hpend++;
	return 0;
}

/* ---------------------------------------------------------------- */
/* ops                                                              */

static int
w_dot(crdt_buf *b, crdt_dot d)
{
	CRDT_TRY(crdt__w_id(b, &d.replica));
	return crdt__w_uint(b, d.counter);
}

/*
 * Validate (u == NULL) or apply one chat op. The reader is positioned
 * after [obj, kind; `n` is the op's array length. Writes go through the
 * undo log into the sub-objects; the index follows after commit.
 */
int
crdt__chat_op(crdt_chat *c, crdt__rd *r, size_t n, uint64_t kind,
    crdt_dot dot, uint64_t stamp, crdt__undo *u, uint32_t obj,
    crdt_buf *scratch, uint64_t walk)
{
	int rc;

	/* Only after an impossible fold failure (see crdt__chat_after):
	 * catch up before writing. Folding is idempotent, so records this
	 * transaction already wrote are folded once more harmlessly. */
	if (u != NULL && !c->ix->ok)
		CRDT_TRY(ix_rebuild(c));
	const uint8_t *a, *b;
	size_t al, bl;
	bool present;
	crdt_dot d;
	uint64_t x;

	switch (kind) {
	case OP_POST: {
		const uint8_t *meta;
		size_t ml;
		bool has_meta, has_reply;
		uint64_t seen;
		if (n != 7)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__rd_uint(r, &seen));
		CRDT_TRY(crdt__rd_bin(r, &a, &al));
		CRDT_TRY(crdt__rd_bin(r, &b, &bl));
		CRDT_TRY(rd_opt_dot(r, &d, &has_reply));
		CRDT_TRY(crdt__rd_opt_bin(r, &meta, &ml, &has_meta));
		if (!user_len_ok(al) || seen > SEEN_MAX)
			return CRDT_EMALFORMED;
		if (u == NULL)
			return 0;
		/* The order key: after everything the author had seen. */
		uint64_t ord = CRDT_MAX(stamp, seen + 1);
		/* Offsets of the byte fields (the buffer may move). */
		size_t uoff, boff, moff = 0;
		c->ix->pend.ok = false;
		crdt_buf_clear(scratch);
		CRDT_TRY(crdt__w_array(scratch, 8));
		CRDT_TRY(w_dot(scratch, dot));
		CRDT_TRY(crdt__w_uint(scratch, ord));
		CRDT_TRY(crdt__w_uint(scratch, stamp));
		CRDT_TRY(crdt__w_bin(scratch, a, al));
		uoff = scratch->len - al;
		CRDT_TRY(crdt__w_bin(scratch, b, bl));
		boff = scratch->len - bl;
		if (has_reply) {
			CRDT_TRY(crdt__w_array(scratch, 2));
			CRDT_TRY(w_dot(scratch, d));
		} else {
			CRDT_TRY(crdt__w_nil(scratch));
		}
		if (has_meta) {
			CRDT_TRY(crdt__w_bin(scratch, meta, ml));
			moff = scratch->len - ml;
		} else {
			CRDT_TRY(crdt__w_nil(scratch));
		}
		size_t n0 = crdt_gset_size(c->msgs);
		CRDT_TRY(crdt__gset_write(c->msgs, scratch->data, scratch->len,
		    dot, u, obj));
		CRDT_TRY(prep_post(c, dot, a, al, scratch->len));
		if (crdt_gset_size(c->msgs) == n0 + 1) {
			/* A new entry (not a known record): remember what
			 * the fold will need to know about it. */
			const crdt__key *k = crdt__gset_entry_key(c->msgs, n0);
			chat_index *ix = c->ix;
			msgrec *m = &ix->pend.m;
			m->id = dot;
			m->ord = ord;
			m->sent_at = stamp;
			m->user = k->ptr + uoff;
			m->user_len = al;
			m->body = k->ptr + boff;
			m->body_len = bl;
			m->meta = has_meta ? k->ptr + moff : NULL;
			m->meta_len = has_meta ? ml : 0;
			m->has_reply = has_reply;
			m->reply = has_reply ? d : (crdt_dot){ { { 0 } }, 0 };
			ix->pend.idx = n0;
			ix->pend.rec = k->ptr;
			ix->pend.len = k->len;
			ix->pend.ok = true;
		}
		return 0;
	}
	case OP_REACT:
		if (n != 7)
			return CRDT_EMALFORMED;
		CRDT_TRY(rd_dot(r, &d));
		CRDT_TRY(crdt__rd_bin(r, &a, &al));
		CRDT_TRY(crdt__rd_bin(r, &b, &bl));
		CRDT_TRY(crdt__rd_uint(r, &x));
		if (al == 0 || al > USER_MAX || x > 1)
			return CRDT_EMALFORMED;
		if (u == NULL)
			return 0;
		crdt_buf_clear(scratch);
		CRDT_TRY(crdt__w_array(scratch, 4));
		CRDT_TRY(w_dot(scratch, d));
		CRDT_TRY(crdt__w_bin(scratch, a, al));
		CRDT_TRY(crdt__w_bin(scratch, b, bl));
		CRDT_TRY(crdt__map_write(c->reacts, scratch->data,
		    scratch->len, stamp, &dot.replica, x == 1,
		    (const uint8_t *)"", 0, u, obj));
		return prep_react(c, d);
	case OP_READ:
	case OP_ACK: {
		size_t pairs;
		if (kind == OP_READ) {
			if (n != 4)
				return CRDT_EMALFORMED;
			CRDT_TRY(crdt__rd_bin(r, &a, &al));
			if (al == 0 || al > USER_MAX)
				return CRDT_EMALFORMED;
		} else {
			if (n != 3)
				return CRDT_EMALFORMED;
			if (!crdt__chat_is_server(c, &dot.replica))
				return CRDT_EPERM;
		}
		CRDT_TRY(crdt__rd_array(r, &pairs));
		if (pairs % 2 != 0)
			return CRDT_EMALFORMED;
		crdt_replica_id prev;
		for (size_t i = 0; i < pairs / 2; i++) {
			CRDT_TRY(rd_dot(r, &d));
			if (i > 0 && crdt_replica_id_cmp(&prev, &d.replica) >= 0)
				return CRDT_EMALFORMED;
			prev = d.replica;
			if (u == NULL)
				continue;
			crdt_buf_clear(scratch);
			CRDT_TRY(crdt__w_array(scratch, kind == OP_READ ? 4 : 3));
			CRDT_TRY(crdt__w_uint(scratch,
			    kind == OP_READ ? MK_READ : MK_ACK));
			if (kind == OP_READ)
				CRDT_TRY(crdt__w_bin(scratch, a, al));
			CRDT_TRY(w_dot(scratch, d));
			CRDT_TRY(crdt__gset_write(c->marks, scratch->data,
			    scratch->len, dot, u, obj));
			if (kind == OP_READ) {
				user_ent *ue = NULL;
				CRDT_TRY(prep_user(c, a, al, &ue));
				CRDT_TRY(rclock_reserve(ix_alloc(c), &ue->read,
				    &d.replica));
			} else {
				CRDT_TRY(rclock_reserve(ix_alloc(c),
				    &c->ix->acked, &d.replica));
			}
		}
		r->depth--;
		return 0;
	}
	case OP_MEMBER:
		if (n != 4)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__rd_bin(r, &a, &al));
		CRDT_TRY(crdt__rd_uint(r, &x));
		if (al == 0 || al > USER_MAX || x > 1)
			return CRDT_EMALFORMED;
		if (u == NULL)
			return 0;
		crdt_buf_clear(scratch);
		CRDT_TRY(crdt__w_array(scratch, 5));
		CRDT_TRY(crdt__w_uint(scratch, MK_MEMBER));
		CRDT_TRY(crdt__w_bin(scratch, a, al));
		CRDT_TRY(crdt__w_uint(scratch, x));
		CRDT_TRY(crdt__w_uint(scratch, stamp));
		CRDT_TRY(crdt__w_id(scratch, &dot.replica));
		CRDT_TRY(crdt__gset_write(c->marks, scratch->data,
		    scratch->len, dot, u, obj));
		return prep_member(c, a, al, walk);
	case OP_REJECT:
		if (n != 5)
			return CRDT_EMALFORMED;
		CRDT_TRY(rd_dot(r, &d));
		CRDT_TRY(crdt__rd_bin(r, &a, &al));
		if (!crdt__chat_is_server(c, &dot.replica))
			return CRDT_EPERM;
		if (u == NULL)
			return 0;
		crdt_buf_clear(scratch);
		CRDT_TRY(crdt__w_array(scratch, 4));
		CRDT_TRY(crdt__w_uint(scratch, MK_REJECT));
		CRDT_TRY(w_dot(scratch, d));
		CRDT_TRY(crdt__w_bin(scratch, a, al));
		CRDT_TRY(crdt__gset_write(c->marks, scratch->data,
		    scratch->len, dot, u, obj));
		if (dot_get(c->ix, d, true, &rc) == NULL)
			return rc ? rc : CRDT_ENOMEM;
		return 0;
	}
	(void)present;
	return CRDT_EMALFORMED;
}

/*
 * After commit: fold one undo record of this chat into the index and say
 * what a UI should hear. The apply walk reserved everything this needs
 * (prep_*), so it does not fail; should it ever, the index is marked
 * stale, queries report CRDT_ENOMEM and the next write rebuilds it.
 */
bool
crdt__chat_after(crdt_chat *c, const crdt__undo_rec *rec, crdt_change *ch)
{
	crdt_dot about;
	size_t pos;
	int rc = 0;

	memset(&about, 0, sizeof about);
	if (!c->ix->ok)
		return false; /* will be rebuilt; report nothing precise */
	if (rec->target == c->msgs && rec->kind == CRDT__UNDO_GSET_NEW) {
		const crdt__key *k = crdt__gset_entry_key(c->msgs, rec->idx);
		chat_index *ix = c->ix;
		bool mine = ix->pend.ok && ix->pend.idx == rec->idx &&
		    ix->pend.rec == k->ptr && ix->pend.len == k->len;
		rc = ix_add_msg(c, k->ptr, k->len, &pos, &about,
		    mine ? &ix->pend.m : NULL);
		ix->pend.ok = false;
		if (rc == IX_HIDDEN)
			return false;
		ch->kind = rc == IX_SHOWN ? CRDT_CHANGE_CHAT_INSERT :
					    CRDT_CHANGE_CHAT_UPDATE;
		ch->msg = about;
		ch->position = pos;
	} else if (rec->target == c->marks &&
	    rec->kind == CRDT__UNDO_GSET_NEW) {
		const crdt__key *k = crdt__gset_entry_key(c->marks, rec->idx);
		rc = ix_add_mark(c, k->ptr, k->len, &about);
		ch->kind = CRDT_CHANGE_CHAT_UPDATE;
		ch->msg = about;
	} else if (rec->target == c->reacts &&
	    (rec->kind == CRDT__UNDO_MAP_NEW ||
		rec->kind == CRDT__UNDO_MAP_REG)) {
		rc = ix_react(c, rec->idx, &about);
		ch->kind = CRDT_CHANGE_CHAT_UPDATE;
		ch->msg = about;
	} else {
		return false;
	}
	if (rc < 0) {
		c->ix->ok = false;
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------- */
/* queries                                                          */

static void
fill(const crdt_chat *c, uint32_t x, crdt_chat_msg *out)
{
	const tnode *n = &c->ix->nodes[x];
	msgrec m;
	memset(out, 0, sizeof *out);
	if (parse_msgrec(n->rec, n->rec_len, &m) != 0)
		return;
	out->id = m.id;
	out->sent_at = m.sent_at;
	out->order = m.ord;
	out->user = m.user;
	out->user_len = m.user_len;
	out->body = m.body;
	out->body_len = m.body_len;
	out->has_reply_to = m.has_reply;
	out->reply_to = m.reply;
	out->meta = m.meta;
	out->meta_len = m.meta_len;
	/* Member when sent: the last membership change of the author with a
	 * stamp below the message's is a join. */
	const user_ent *u = user_find(c->ix, m.user, m.user_len);
	if (u != NULL) {
		size_t lo = 0, hi = u->nh;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (u->h[mid].stamp < m.sent_at)
				lo = mid + 1;
			else
				hi = mid;
		}
		out->author_was_member = lo > 0 && u->h[lo - 1].joined;
	}
}

static uint32_t
find(const crdt_chat *c, crdt_dot id)
{
	return node_find(c->ix, id, dot_hash32(c->ix, id));
}

size_t
crdt_chat_count(const crdt_chat *c)
{
	/* Not the size of msgs: two records of one ID show as one. */
	return c != NULL && ensure(c) == 0 ? c->ix->nn : 0;
}

int
crdt_chat_get(const crdt_chat *c, crdt_dot id, crdt_chat_msg *out)
{
	if (c == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	uint32_t x = find(c, id);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	fill(c, x, out);
	return 0;
}

int
crdt_chat_at(const crdt_chat *c, size_t pos, crdt_chat_msg *out)
{
	if (c == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	uint32_t x = kth(c->ix, pos);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	fill(c, x, out);
	return 0;
}

int
crdt_chat_position(const crdt_chat *c, crdt_dot id, size_t *pos)
{
	if (c == NULL || pos == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	uint32_t x = find(c, id);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	*pos = rank(c->ix, x);
	return 0;
}

int
crdt_chat_page(const crdt_chat *c, const crdt_dot *anchor, bool after,
    size_t k, crdt_dot *out, size_t *n)
{
	if (c == NULL || n == NULL || (out == NULL && k != 0))
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	const chat_index *ix = c->ix;
	uint32_t x;
	*n = 0;
	if (anchor == NULL) {
		size_t total = ix->nn;
		size_t first = total > k ? total - k : 0;
		x = kth(ix, first);
		while (x != NIL && *n < k) {
			out[(*n)++] = ix->nodes[x].id;
			x = step(ix, x, true);
		}
		return 0;
	}
	x = find(c, *anchor);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	if (after) {
		for (x = step(ix, x, true); x != NIL && *n < k;
		     x = step(ix, x, true))
			out[(*n)++] = ix->nodes[x].id;
		return 0;
	}
	/* Walk back k, then emit forwards so the page is in thread order. */
	size_t got = 0;
	uint32_t y = x;
	while (got < k) {
		uint32_t p = step(ix, y, false);
		if (p == NIL)
			break;
		y = p;
		got++;
	}
	for (size_t i = 0; i < got; i++) {
		out[(*n)++] = ix->nodes[y].id;
		y = step(ix, y, true);
	}
	return 0;
}

static bool
covered_by_ack(const crdt_chat *c, crdt_dot id)
{
	return rclock_covers(&c->ix->acked, id);
}

bool
crdt_chat_has_read(const crdt_chat *c, const void *user, size_t user_len,
    crdt_dot id)
{
	if (c == NULL || user == NULL || ensure(c) != 0)
		return false;
	const user_ent *u = user_find(c->ix, user, user_len);
	return u != NULL && rclock_covers(&u->read, id);
}

/* Someone other than the author has read it. */
static bool
read_by_other(const crdt_chat *c, uint32_t x)
{
	msgrec m;
	const crdt__table *t = &c->ix->users;
	if (parse_msgrec(c->ix->nodes[x].rec, c->ix->nodes[x].rec_len, &m))
		return false;
	for (size_t i = 0; i < t->n; i++) {
		const user_ent *u = crdt__table_at(t, i);
		if (!rclock_covers(&u->read, m.id))
			continue;
		if (u->k.len != m.user_len || memcmp(u->k.ptr, m.user,
		    m.user_len) != 0)
			return true;
	}
	return false;
}

int
crdt_chat_status_of(const crdt_chat *c, crdt_dot id, crdt_chat_status *st)
{
	if (c == NULL || st == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	uint32_t x = find(c, id);
	if (x == NIL)
		return CRDT_ENOTFOUND;
	const dot_ent *e = dot_of(c, id);
	if (e != NULL && e->reason != NULL)
		*st = CRDT_CHAT_REJECTED;
	else if (c->has_server && !covered_by_ack(c, id))
		*st = CRDT_CHAT_PENDING;
	else if (read_by_other(c, x))
		*st = CRDT_CHAT_READ;
	else
		*st = CRDT_CHAT_DELIVERED;
	return 0;
}

int
crdt_chat_rejection(const crdt_chat *c, crdt_dot id, const uint8_t **reason,
    size_t *len)
{
	if (c == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	const dot_ent *e = dot_of(c, id);
	if (e == NULL || e->reason == NULL)
		return CRDT_ENOTFOUND;
	if (reason != NULL)
		*reason = e->reason;
	if (len != NULL)
		*len = e->reason_len;
	return 0;
}

size_t
crdt_chat_reaction_count(const crdt_chat *c, crdt_dot id)
{
	if (c == NULL || ensure(c) != 0)
		return 0;
	const dot_ent *e = dot_of(c, id);
	return e != NULL ? e->reactions : 0;
}

int
crdt_chat_reactions(const crdt_chat *c, crdt_dot id, crdt_chat_reaction_fn fn,
    void *ud)
{
	if (c == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	const dot_ent *e = dot_of(c, id);
	if (e == NULL)
		return 0;
	/* In-order walk of the message's key tree: canonical byte order. */
	const olink *rl = c->ix->rl;
	for (uint32_t x = ot_first(rl, e->rroot); x != 0; x = ot_next(rl, x)) {
		if (!(c->ix->rf[x - 1] & RF_ON))
			continue;
		const crdt__key *k = crdt__map_entry(c->reacts, x - 1, NULL);
		rkey rk;
		if (parse_rkey(k->ptr, k->len, &rk) != 0)
			continue; /* validated when it entered the map */
		int v = fn(ud, rk.user, rk.user_len, rk.emoji, rk.emoji_len);
		if (v != 0)
			return v;
	}
	return 0;
}

int
crdt_chat_read_by(const crdt_chat *c, crdt_dot id, crdt_chat_user_fn fn,
    void *ud)
{
	if (c == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	const crdt__table *t = &c->ix->users;
	const olink *ul = c->ix->ul;
	for (uint32_t x = ot_first(ul, c->ix->uroot); x != 0;
	     x = ot_next(ul, x)) {
		const user_ent *u = crdt__table_at(t, x - 1);
		if (!rclock_covers(&u->read, id))
			continue;
		int v = fn(ud, u->k.ptr, u->k.len);
		if (v != 0)
			return v;
	}
	return 0;
}

size_t
crdt_chat_unread(const crdt_chat *c, const void *user, size_t user_len)
{
	int rc;
	if (c == NULL || user == NULL || user_len > USER_MAX ||
	    ensure(c) != 0)
		return 0;
	chat_index *ix = c->ix;
	const user_ent *u = user_find(ix, user, user_len);
	size_t total = ix->nn, own = u ? u->posted : 0;
	size_t read_all = 0, read_own = 0;
	if (u != NULL) {
		uint8_t key[USER_MAX + 16];
		memcpy(key, user, user_len);
		for (size_t i = 0; i < u->read.n; i++) {
			crdt_replica_id id = u->read.v[i].id;
			uint64_t upto = u->read.v[i].c;
			if (upto == 0)
				continue; /* reserved, nothing read */
			rep_ent *re = tab_get(&ix->reps, id.bytes, 16, false,
			    &rc);
			if (re != NULL)
				read_all += u64v_upto(&re->ctr, upto);
			memcpy(key + user_len, id.bytes, 16);
			rep_ent *ue = tab_get(&ix->ureps, key, user_len + 16,
			    false, &rc);
			if (ue != NULL)
				read_own += u64v_upto(&ue->ctr, upto);
		}
	}
	/* unread = not covered, minus own messages not covered */
	return (total - read_all) - (own - read_own);
}

static bool
member_now(const user_ent *u)
{
	return u->nh > 0 && u->h[u->nh - 1].joined;
}

bool
crdt_chat_is_member(const crdt_chat *c, const void *user, size_t user_len)
{
	if (c == NULL || user == NULL || ensure(c) != 0)
		return false;
	const user_ent *u = user_find(c->ix, user, user_len);
	return u != NULL && member_now(u);
}

int
crdt_chat_members(const crdt_chat *c, crdt_chat_user_fn fn, void *ud)
{
	if (c == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	const crdt__table *t = &c->ix->users;
	const olink *ul = c->ix->ul;
	for (uint32_t x = ot_first(ul, c->ix->uroot); x != 0;
	     x = ot_next(ul, x)) {
		const user_ent *u = crdt__table_at(t, x - 1);
		if (!member_now(u))
			continue;
		int v = fn(ud, u->k.ptr, u->k.len);
		if (v != 0)
			return v;
	}
	return 0;
}

int
crdt_chat_outbox(const crdt_chat *c, const crdt_replica_id *self,
    int (*fn)(void *ud, crdt_dot id), void *ud)
{
	int rc;
	if (c == NULL || self == NULL || fn == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(ensure(c));
	/* Acks cover a prefix of each replica's counters, so the outbox is
	 * the suffix of our own counters past the acknowledged one; our own
	 * messages sort in counter order (each saw the previous). Cost
	 * O(log n + outbox). */
	rep_ent *re = tab_get(&c->ix->reps, self->bytes, 16, false, &rc);
	if (re == NULL || !c->has_server)
		return 0;
	uint64_t acked = rclock_get(&c->ix->acked, self);
	for (size_t i = u64v_upto(&re->ctr, acked); i < re->ctr.n; i++) {
		crdt_dot id = { *self, re->ctr.v[i] };
		const dot_ent *e = dot_of(c, id);
		if (e != NULL && e->reason != NULL)
			continue;
		int v = fn(ud, id);
		if (v != 0)
			return v;
	}
	return 0;
}
