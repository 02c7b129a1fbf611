#ifndef CRDT_CHAT_IMPL_H
#define CRDT_CHAT_IMPL_H
/*
 * The chat thread's private state and what its files share (chat.c:
 * state, codec, merge, apply; chat_index.c: the derived index;
 * chat_tree.c: the structures the index is built of; chat_query.c: the
 * public read API). The layout of the replicated state and of the index
 * is described at the top of chat.c.
 */
#include <stdlib.h>

#include "internal.h"
#include "crdt/chat.h"

#define NIL UINT32_MAX
#define USER_MAX 255
/* (author, replica) entries remembered by the chat index (last[]). */
#define CHAT_LAST 4
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

/* 32 bytes: one per message, so every field counts (docs/performance.md).
 * The record shown is entry `gi` of the messages set, and the message's
 * dot is read from its first bytes when needed (crdt__chat_node_id): only
 * order-key ties, lookups by ID and queries that return IDs need it, and
 * they read the record anyway or rarely. */
typedef struct tnode {
	uint64_t ord;
	uint32_t gi;
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
 * of them get an entry (dot -> message goes through the messages set and
 * gnode), so nothing here is paid per message. Key: the dot (24 bytes). */
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

/*
 * The sorted counters of a replica's messages (reps; key: replica ID), or
 * of one author's messages from a replica (ureps; key: user || replica
 * ID). A replica (a device) nearly always posts as one user, and then its
 * only (user, replica) list would equal the replica's: it is not kept.
 * The replica's first message makes its author's entry `shared` (its own
 * ctr stays empty, its counters are the replica's) and the replica's
 * `sole` names it (ureps index + 1; 0 = none). A message from a second
 * user of the replica, or a rival record moving a message to another
 * author, first gives the shared entry a copy of the replica's counters
 * (crdt__chat_ctr_room, before any change; "materialised") and clears
 * both marks. So for every replica: its (user, replica) lists together
 * hold exactly its counters, and when `sole` is set every other entry of
 * that replica is empty. Queries read a shared entry through
 * crdt__chat_urep_ctr.
 */
typedef struct rep_ent {
	crdt__key k;
	u64v ctr;
	uint32_t sole; /* reps: the shared ureps entry + 1, 0 = none */
	bool shared;   /* ureps: counters are the replica entry's */
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
	/* The thread this indexes: nodes read their records from its
	 * messages set (which a load replaces: read through here). */
	const struct crdt_chat *owner;
	bool ok;
	tnode *nodes;
	size_t nn, capn;
	uint32_t root;
	uint64_t max_ord;
	/* msgs entry -> its message's node (NIL: not folded yet), capg
	 * entries. dot -> node goes through the messages set's own table
	 * (crdt__gset_ident_next finds the entries of the dot's identity),
	 * then here: 4 bytes a record and no table of its own to probe. */
	uint32_t *gnode;
	size_t capg;
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
	/* Messages usually come from a few (author, replica) pairs: remember
	 * the entries of the last CHAT_LAST pairs seen (by index; entries
	 * never move between indices) to skip three hash lookups per
	 * message, also when writers interleave. Replaced round robin. */
	struct {
		uint32_t rep, urep, user;
	} last[CHAT_LAST];
	unsigned nlast, next_last;
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
		/* No other msgs entry had this record's identity hash when
		 * it was written (crdt__gset_last_chain), so no node has its
		 * dot: the fold skips looking for one, a cache miss or two
		 * per post (docs/performance.md). */
		bool lone;
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


/* Order of side-array entries a and b (indices). */
typedef int (*ocmp_fn)(const void *ctx, size_t a, size_t b);

/* A reaction map key [id, counter, user, emoji]. */
typedef struct rkey {
	crdt_dot d;
	const uint8_t *user, *emoji;
	size_t user_len, emoji_len;
} rkey;

/* A marks record: [1, reader, id, counter], [2, user, joined, stamp,
 * writer], [3, id, counter], [4, id, counter, reason]. */
typedef struct markrec {
	uint64_t kind;
	const uint8_t *user, *why;
	size_t user_len, why_len;
	crdt_dot d;
	hist h;
} markrec;

enum { IX_SHOWN = 0, IX_HIDDEN = 1, IX_REPLACED = 2 };

enum { RF_INDEXED = 1, RF_ON = 2 };

/* ---- chat_tree.c: the structures of the index ---- */

/* The 24-byte key of a dot: replica ID, then the counter big-endian. */
static inline void
crdt__chat_dot_key(uint8_t k[24], crdt_dot d)
{
	memcpy(k, d.replica.bytes, 16);
	for (int i = 0; i < 8; i++)
		k[16 + i] = (uint8_t)(d.counter >> (56 - 8 * i));
}
int crdt__chat_u64v_add(const crdt_allocator *a, u64v *v, uint64_t x,
    bool bulk);
void crdt__chat_u64v_erase(u64v *v, uint64_t x);
void crdt__chat_u64v_sort(u64v *v);
size_t crdt__chat_u64v_upto(const u64v *v, uint64_t c);
uint64_t crdt__chat_rclock_get(const rclock *k, const crdt_replica_id *id);
bool crdt__chat_rclock_covers(const rclock *k, crdt_dot d);
int crdt__chat_rclock_reserve(const crdt_allocator *a, rclock *k,
    const crdt_replica_id *id);
int crdt__chat_rclock_raise(const crdt_allocator *a, rclock *k, crdt_dot d);
void *crdt__chat_tab_get(crdt__table *t, const void *key, size_t len,
    bool create, int *rc);
void crdt__chat_ot_insert(olink *v, uint32_t *root, size_t i, uint32_t prio,
    ocmp_fn cmp, const void *ctx);
uint32_t crdt__chat_ot_first(const olink *v, uint32_t x);
uint32_t crdt__chat_ot_next(const olink *v, uint32_t x);
int crdt__chat_ol_reserve(const crdt_allocator *a, olink **v, size_t *cap,
    size_t need);
void crdt__chat_treap_insert(chat_index *ix, uint32_t x);
void crdt__chat_treap_remove(chat_index *ix, uint32_t x);
/* Build the treap over nodes 0..nn-1 (none linked yet) in O(n) when they
 * are already in key order, else after sorting them (scratch from `a`). */
int crdt__chat_treap_build(chat_index *ix, const crdt_allocator *a);
/* Nodes in the treap under x (0 for NIL). */
static inline uint32_t
crdt__chat_sz(const chat_index *ix, uint32_t x)
{
	return x == NIL ? 0 : ix->nodes[x].size;
}
/* Position of node x in the order. O(depth). Inline: the index asks it
 * for every message it folds. */
static inline size_t
crdt__chat_rank(const chat_index *ix, uint32_t x)
{
	size_t r = crdt__chat_sz(ix, ix->nodes[x].l);
	while (ix->nodes[x].p != NIL) {
		uint32_t p = ix->nodes[x].p;
		if (ix->nodes[p].r == x)
			r += crdt__chat_sz(ix, ix->nodes[p].l) + 1;
		x = p;
	}
	return r;
}
uint32_t crdt__chat_kth(const chat_index *ix, size_t k);
uint32_t crdt__chat_step(const chat_index *ix, uint32_t x, bool fwd);

/* ---- chat.c: record parsing ---- */

bool crdt__chat_user_len_ok(size_t n);
int crdt__chat_parse_msgrec(const uint8_t *p, size_t n, msgrec *m);
bool crdt__chat_msgrec_same(const msgrec *x, const msgrec *y);
int crdt__chat_parse_rkey(const uint8_t *p, size_t n, rkey *k);
int crdt__chat_parse_mark(const uint8_t *p, size_t len, markrec *m);

/* ---- chat_cols.c: msgs in columns (version-2 state) ---- */

/* What the columns already say about each record, in G-Set entry order,
 * so the index is built without parsing a record again (ix_bulk). User
 * and replica IDs point into the decoded input. */
typedef struct bulk_user {
	const uint8_t *p;
	size_t n;
} bulk_user;

typedef struct bulk_rec {
	uint64_t ord, counter;
	uint32_t rep, user; /* table indices */
} bulk_rec;

typedef struct chat_bulk {
	const uint8_t *ids; /* replica table, 16 bytes each */
	size_t nids;
	bulk_user *users;
	size_t nusers;
	bulk_rec *v;
	size_t n;
} chat_bulk;

void crdt__chat_bulk_free(const crdt_allocator *a, chat_bulk *b);

/* Appends msgs as one bin; CRDT_ENOMEM leaves `out` as it was. */
int crdt__chat_cols_encode(const crdt_chat *c, crdt_buf *out);
/* A new G-Set of the records `p` holds (c: config and owner), its entries
 * in ascending order, and `bk` describing them (freed by the caller with
 * crdt__chat_bulk_free). Every record is rebuilt and checked like the post
 * op's; CRDT_EMALFORMED, CRDT_ETOOBIG (limits), CRDT_ENOMEM; nothing
 * allocated on error. */
int crdt__chat_cols_decode(const crdt_chat *c, const uint8_t *p, size_t n,
    crdt_gset **out, chat_bulk *bk);

/* ---- chat_index.c: the derived index ---- */

void crdt__chat_ix_clear(crdt_chat *c);
int crdt__chat_ix_init(crdt_chat *c);
dot_ent *crdt__chat_dot_get(chat_index *ix, crdt_dot d, bool create, int *rc);
uint32_t crdt__chat_dot_hash32(const chat_index *ix, crdt_dot d);
/* The node of message `d`, whose hash under the index's key is `h`
 * (crdt__chat_dot_hash32: the messages set's hash of its identity), or
 * NIL. */
uint32_t crdt__chat_node_find(const crdt_chat *c, crdt_dot d, uint32_t h);

/* The dot a message record starts with (array of 8, bin 16 replica ID,
 * uint counter), for bytes crdt__chat_rec_ident has accepted: every
 * indexed record, and the ones it checks itself. */
static inline crdt_dot
crdt__chat_rec_dot(const uint8_t *p)
{
	crdt_dot d;
	memcpy(d.replica.bytes, p + 3, 16);
	uint8_t t = p[19];
	unsigned n = t <= 0x7f ? 0 : t == 0xcc ? 1 : t == 0xcd ? 2 :
	    t == 0xce ? 4 : 8;
	d.counter = n == 0 ? t : 0;
	for (unsigned i = 0; i < n; i++)
		d.counter = d.counter << 8 | p[20 + i];
	return d;
}

static inline const crdt__key *
crdt__chat_node_rec(const crdt_chat *c, const tnode *n)
{
	return crdt__gset_entry_key(c->msgs, n->gi);
}

/* A node's dot, from its record (a memory read of the record's first
 * 28 bytes). */
static inline crdt_dot
crdt__chat_node_id(const chat_index *ix, const tnode *n)
{
	return crdt__chat_rec_dot(crdt__chat_node_rec(ix->owner, n)->ptr);
}

/* The index of a reps entry (rep_ent pointers do not outlive a grow). */
static inline uint32_t
crdt__chat_rep_index(const chat_index *ix, const rep_ent *re)
{
	return (uint32_t)(((const uint8_t *)re - ix->reps.ents) /
	    ix->reps.stride);
}
const dot_ent *crdt__chat_dot_of(const crdt_chat *c, crdt_dot id);
user_ent *crdt__chat_user_find(const chat_index *ix, const void *u, size_t n);
user_ent *crdt__chat_user_get(chat_index *ix, const crdt_allocator *a,
    const uint8_t *u, size_t n, int *rc);
int crdt__chat_msg_ents(chat_index *ix, const crdt_allocator *a,
    const crdt_replica_id *id, const uint8_t *user, size_t ul, rep_ent **rep,
    rep_ent **urep, user_ent **user_out);
/* The shared (user, replica) entry of replica entry `re`, if any, gets
 * its own copy of the replica's counters; CRDT_ENOMEM changes nothing. */
int crdt__chat_urep_unshare(chat_index *ix, const crdt_allocator *a,
    rep_ent *re);
/* Replica entry `re`'s first message is by `ue`: `ue` shares its list. */
void crdt__chat_urep_share(chat_index *ix, const crdt_allocator *a,
    rep_ent *re, rep_ent *ue);

/* The next message of `re` by `ue` goes into the replica's list only:
 * `ue` is the replica's shared entry, or the message is the replica's
 * first. No `sole` lookup: only the shared entry is marked shared. */
static inline bool
crdt__chat_ctr_shares(const rep_ent *re, const rep_ent *ue)
{
	return ue->shared || (re->sole == 0 && re->ctr.n == 0);
}

/* Room to add one counter to replica entry `re` and its (user, replica)
 * entry `ue` (crdt__chat_msg_ents): the replica's list, and the author's
 * unless it shares the replica's; materialises a shared entry of another
 * author (rep_ent). Before the commit point (prep_post) and again in the
 * fold; CRDT_ENOMEM leaves every list's contents as they were. Inline:
 * twice per message, and the room is nearly always there. */
static inline int
crdt__chat_ctr_room(chat_index *ix, const crdt_allocator *a, rep_ent *re,
    rep_ent *ue)
{
	void *v = re->ctr.v;
	CRDT_TRY(crdt__grow(a, &v, &re->ctr.cap, re->ctr.n + 1,
	    sizeof *re->ctr.v));
	re->ctr.v = v;
	if (crdt__chat_ctr_shares(re, ue))
		return 0;
	/* A second author on this replica (ue is not the shared entry):
	 * room in its list, then the shared one materialised. */
	v = ue->ctr.v;
	CRDT_TRY(crdt__grow(a, &v, &ue->ctr.cap, ue->ctr.n + 1,
	    sizeof *ue->ctr.v));
	ue->ctr.v = v;
	return re->sole != 0 ? crdt__chat_urep_unshare(ix, a, re) : 0;
}

/* Add counter `x` of a new message of `re` by `ue`, from the room
 * crdt__chat_ctr_room made (so it cannot fail). */
static inline void
crdt__chat_ctr_add(chat_index *ix, const crdt_allocator *a, rep_ent *re,
    rep_ent *ue, uint64_t x)
{
	if (re->sole == 0 && re->ctr.n == 0)
		crdt__chat_urep_share(ix, a, re, ue);
	(void)crdt__chat_u64v_add(a, &re->ctr, x, ix->bulk);
	if (!ue->shared)
		(void)crdt__chat_u64v_add(a, &ue->ctr, x, ix->bulk);
}

/* The counters of (user, replica) entry `ue`, `re` being its replica's
 * entry (NULL when the replica has none, so `ue` is not shared). */
static inline const u64v *
crdt__chat_urep_ctr(const rep_ent *re, const rep_ent *ue)
{
	return ue->shared && re != NULL ? &re->ctr : &ue->ctr;
}
/* `idx`: rec's msgs entry, whose stored hash is the dot's when the set
 * hashes by ID under the index key (crdt__chat_rec_ident). `pos` may be
 * NULL: the position is then not computed (nobody listens). */
/* `pre`: the record's fields, when the caller has them; `lone`: no node
 * can have its dot (see chat_index.pend). */
int crdt__chat_ix_add_msg(crdt_chat *c, const uint8_t *rec, size_t len,
    size_t *pos, crdt_dot *id, const msgrec *pre, bool lone, size_t idx);
int crdt__chat_ix_add_mark(crdt_chat *c, const uint8_t *rec, size_t len,
    crdt_dot *about);
int crdt__chat_ix_react(crdt_chat *c, size_t idx, crdt_dot *about);
int crdt__chat_ix_fold(crdt_chat *c, size_t m0, size_t k0);
int crdt__chat_ix_rebuild(crdt_chat *c);
/* Rebuild from a state the columnar decoder just built (`bk` describes
 * msgs entry by entry, ascending): no record parsed again, the tree built
 * from the sorted nodes in O(n). Same index as crdt__chat_ix_rebuild. */
int crdt__chat_ix_bulk(crdt_chat *c, const chat_bulk *bk);
int crdt__chat_ensure(const crdt_chat *c);
int crdt__chat_gnode_grow(chat_index *ix, const crdt_allocator *a,
    size_t need);

static inline const crdt_allocator *
crdt__chat_ix_alloc(const crdt_chat *c)
{
	return &c->cfg.alloc;
}

/* Room for msgs entries 0 .. need - 1 in gnode. Called twice per message
 * (reserve before commit, fold after): the usual answer, "there is
 * room", is one compare. */
static inline int
crdt__chat_gnode_reserve(chat_index *ix, const crdt_allocator *a,
    size_t need)
{
	if (need <= ix->capg)
		return 0;
	return crdt__chat_gnode_grow(ix, a, need);
}

/* Room for one more index node (its array entry, and gnode for msgs
 * entries 0 .. ngi - 1), before the commit point (prep_post) and again
 * in the fold (ix_add_msg), so the fold after commit cannot fail. */
static inline int
crdt__chat_node_room(chat_index *ix, const crdt_allocator *a, size_t ngi)
{
	if (ix->nn >= UINT32_MAX - 1)
		return CRDT_ETOOBIG;
	CRDT_TRY(crdt__chat_gnode_reserve(ix, a, ngi));
	void *v = ix->nodes;
	CRDT_TRY(crdt__grow(a, &v, &ix->capn, ix->nn + 1, sizeof *ix->nodes));
	ix->nodes = v;
	return 0;
}

/* A message record's ID as its 24-byte dot key in `out` (24), or 0 when
 * the bytes do not start like a record (chat.c): the messages G-Set
 * hashes only that, under the index's key (crdt__gset_key_prefix). */
size_t crdt__chat_rec_ident(const uint8_t *p, size_t len, uint8_t *out);

#endif /* CRDT_CHAT_IMPL_H */
