#ifndef CRDT_DOC_IMPL_H
#define CRDT_DOC_IMPL_H
/*
 * The document's private state and the functions its files share
 * (docs/design.md, "Layers"). Only the document's own files include this:
 * the document layer (doc.c: schema, ingest, events; replicas.c; buffer.c;
 * authz.c) and the layers above it (txn.c, snapshot.c, sync.c,
 * chat_api.c). The modules below (msglog, evidence, keyring, acl, causal,
 * envelope) do not: they see no crdt_doc. Functions here use the crdt__
 * prefix and are hidden like every internal one.
 */
#include "internal.h"
#include "envelope.h"
#include "keyring.h"
#include "msglog.h"
#include "evidence.h"
#include "acl.h"
#include "causal.h"
#include "crdt/doc.h"
#include "crdt/chat.h"

/* Entries of the replica lookup cache (struct crdt_doc, rep_cache). */
#define CRDT__REP_CACHE 64
#include "crdt/secure.h"

typedef struct rep_entry {
	crdt__key k;
	uint32_t idx;
} rep_entry;

typedef crdt__lent logent; /* a logged entry: read it with crdt__lent_* */

/* From counter c on, a replica's messages hold admin counter a in their
 * causal past (a step of a non-decreasing function). */
typedef struct admstep {
	uint64_t c, a;
} admstep;

/* Per-replica state, indexed by interned replica number. */
typedef struct rstate {
	crdt_replica_id id;
	uint64_t vc;   /* highest contiguous counter applied */
	uint64_t sent; /* vc when our last message was built (deps) */
	uint64_t admin_seen; /* admin counter in this replica's causal past */
	uint64_t stamp; /* greatest op stamp applied from this replica: saved,
			 * so a restarted replica never stamps below its own
			 * earlier writes whatever its device clock says */
	admstep *steps; /* admin_seen by counter, ascending (allowlist only) */
	size_t nsteps, capsteps;
	size_t buf_bytes; /* causal buffer bytes this sender holds */
	bool dirty;
	crdt__wheap heap; /* buffered messages waiting on (this replica, c) */
} rstate;

typedef struct dep {
	uint32_t r;
	uint64_t c;
} dep;

/*
 * A buffered message: 64 bytes, one cache line (a shuffled delivery
 * reaches these at random, so every line counts; docs/performance.md).
 * Its dependencies and its bytes are one block (deps first, then bytes:
 * one malloc per buffered message, not two). A plaintext message keeps
 * where its envelope put the ops and the stamp, so applying it when it
 * is released reads no envelope again. Lengths are 32-bit: no input
 * reaches 4 GiB (crdt_limits; buffer.c refuses one anyway).
 */
typedef struct bmsg {
	dep *deps;         /* the block: ndeps deps, then the len bytes */
	uint64_t counter;
	uint64_t hlc;      /* the envelope's stamp, when `view` */
	void *caller;
	uint32_t len, ndeps, next_dep;
	uint32_t sender;
	uint32_t poff, plen; /* its ops at bytes[poff ..], when `view` */
	/* Live: another buffered variant of this dot (UINT32_MAX: none).
	 * Free: the next free entry. */
	uint32_t next_var;
	bool live;
	bool variant; /* buffered as a variant of an applied dot (it may have
		       * no log entry here to differ from: a snapshot's) */
	bool view;    /* not sealed: hlc, poff, plen hold */
} bmsg;

/* A buffered message's bytes (after its deps in its block). */
static inline uint8_t *
crdt__bm_bytes(const bmsg *b)
{
	return (uint8_t *)(b->deps + b->ndeps);
}

typedef struct obj {
	char name[CRDT_OBJ_NAME_MAX + 1];
	crdt_obj_type type;
	void *o;
	bool acl;           /* the hidden allowlist G-Set ("__acl") */
	uint64_t post_walk; /* chat: walk that last saw a post (one per msg) */
	uint64_t post_txn;  /* chat: transaction that staged a post */
} dobj;

/* A decoded message: views into the caller's bytes. */
typedef struct msgview {
	unsigned version;
	crdt_replica_id sender;
	uint64_t counter, hlc;
	size_t ndeps; /* deps in d->sdeps */
	const uint8_t *payload; /* plaintext ops; NULL when opaque (relay) */
	size_t plen, nops;
	/* security: sealed payload and signature slot */
	const uint8_t *bytes;
	size_t payload_off, auth_off;
	bool sealed, opened, has_auth;
	uint32_t epoch;
	const uint8_t *nonce, *ct, *pk, *sig;
	size_t ctlen;
	const uint8_t *end;
} msgview;

typedef crdt__iddep iddep;

#define CRDT__DG_BYTES 16 /* a sync variant digest: BLAKE2b-128 */

/* One cached block digest (sync_digest.c): valid while the writer's log
 * run and the evidence are at the generations it was computed under
 * (lgen is never 0 for a computed one). */
typedef struct crdt__dgblk {
	uint8_t dg[CRDT__DG_BYTES];
	uint64_t lgen, egen;
} crdt__dgblk;

/* A replica's cached blocks base .. base + n - 1. */
typedef struct crdt__dgrun {
	uint64_t base;
	crdt__dgblk *v;
	size_t n;
} crdt__dgrun;

struct crdt_doc {
	crdt_config cfg;
	crdt_replica_id self;
	uint32_t self_idx;
	crdt_hlc clock;
	uint64_t hlc_max; /* greatest op stamp applied */

	dobj *objs;
	size_t nobjs, capobjs;
	bool has_data;

	crdt__table reps;
	rstate *rs;
	size_t nrs, caprs;
	/* Direct-mapped cache in front of `reps`: slot (crdt__rep_slot) ->
	 * interned index. Filled when an ID is interned; an entry is used
	 * only when it is below nrs and rs[] holds the same ID there, so a
	 * stale entry (after crdt__unintern_to) is a miss, never a wrong
	 * answer. IDs are chosen by peers, but a collision only costs the
	 * keyed table lookup it skips, so the slot needs no secret key. */
	uint32_t rep_cache[CRDT__REP_CACHE];
	uint32_t *dirty;
	size_t ndirty, capdirty;

	bmsg *bm;
	size_t nbm, capbm;
	uint32_t free_bm;
	size_t nbuffered, buffered_bytes;
	crdt__dots dots; /* dot -> buffered message (chain of variants) */

	crdt__msglog log; /* indexed by interned replica number */

	bool in_txn;
	uint64_t txn_serial, walk_serial;
	/* The chat object whose post was the only op of the last applying
	 * walk (UINT32_MAX: none): its message may be logged spliced
	 * (msglog.h, apply_core). */
	uint32_t splice_obj;
	crdt__chat_tail ptail; /* that post's tail (src NULL: none) */
	/* crdt_doc_log_get()'s copy of a spliced entry: behind a pointer,
	 * since the document is const there and the copy is not part of its
	 * value. */
	crdt_buf *logview;
	crdt_buf scratch; /* chat records under construction */
	crdt_buf stage;
	size_t stage_ops;

	/* security (secure.h) */
	bool signed_mode, encrypted;
	bool sync_snaps; /* crdt_doc_security.sync_snapshots */
	const crdt_identity *ident;
	crdt__keyring keys;
	crdt_buf plain; /* opened payload of the message being handled */
	crdt__evstore ev; /* equivocation evidence */
	/* Sync digests of whole 256-counter blocks, per replica number,
	 * filled by crdt_doc_sync_handle and read by every frame built
	 * (sync_digest.c): an up-to-date round hashes what changed, not
	 * the whole log. The document only frees it. */
	crdt__dgrun *dgc;
	size_t ndgc;
	/* write permissions: allowlist history per writer, by admin counter */
	bool has_admin;
	crdt_replica_id admin;
	uint32_t admin_idx;
	uint32_t acl_obj;
	crdt__table acl; /* allowlist index (acl.h) */

	/* durable storage (doc_store.c): borrowed; NULL = none. While
	 * store_quiet > 0 the messages that reach the apply or the buffer are
	 * already stored (restore, buffered messages released) and are not
	 * appended again. */
	struct crdt_store *store;
	unsigned store_quiet;
	/* group commit (CRDT_DOC_STORE_GROUP): accepted messages waiting for
	 * crdt_doc_store_flush(), bytes back to back in store_q, message i
	 * ending at store_qend[i] */
	bool store_group;
	bool store_ckpt_due; /* a variant came in: checkpoint (see below) */
	/* automatic checkpoints (doc_store.c, ckpt_policy): bytes appended
	 * since the last checkpoint, the tail at which the next is due
	 * (SIZE_MAX = never), and the first unreported error of one */
	size_t ckpt_tail, ckpt_next;
	int ckpt_err;
	/* the newest loaded snapshot record of the store this document
	 * merged (0: none): a checkpoint holds it and every earlier one, and
	 * drops them with it (doc_store.c, crdt__store_snap_put) */
	uint64_t store_snap_upto;
	crdt_buf store_q;
	size_t *store_qend;
	size_t store_qn, store_qcap;

	/* forks of our own history (fork.c): the highest counter of our own
	 * replica some peer, message or dependency says exists (0: none);
	 * commits are refused while it is above rs[self_idx].vc. Claims at
	 * or below fork_dismissed (crdt_doc_fork_resolve) are ignored. In
	 * signed mode only a claim proven by our own signature goes there;
	 * fork_claimed is the highest unproven one, reported, not enforced. */
	uint64_t fork_known, fork_dismissed, fork_claimed;

	crdt__undo undo;
	iddep *sdeps;
	size_t capsdeps;
	crdt_doc_listener l;
};

/* ---- schema (doc.c) ---- */

/* Free an object of any type; o->o is NULL afterwards. */
void crdt__obj_free(dobj *o);
/* Fields of an op on an object of type t, the object number included:
 * [obj, elem] (G-Set), [obj, value] (LWW), [obj, key, value] (map). */
size_t crdt__op_arity(crdt_obj_type t);
/* Add object `name` of `type` to the schema (`server`: chat only).
 * CRDT_EINVAL, CRDT_ESTATE once there is data or a transaction. */
int crdt__register_obj(crdt_doc *d, const char *name, crdt_obj_type type,
    const crdt_replica_id *server, uint32_t *objn);

/* ---- transactions (txn.c) ----
 *
 * Staging: every mutation appends one op to the open transaction, or, with
 * none open (msg_out given), runs as a one-op transaction. open() starts
 * it and marks where the op begins; close() settles the op's status `rc`:
 * on failure the op is cut off (and a one-op transaction aborted), on
 * success it is counted and a one-op transaction committed to msg_out. */
int crdt__stage_open(crdt_doc *d, crdt_buf *msg_out, bool *one,
    size_t *mark);
int crdt__stage_close(crdt_doc *d, bool one, size_t mark, int rc,
    crdt_buf *msg_out);

/* ---- replica table and clock (replicas.c) ---- */

/* The interned index of `id`, or CRDT_ENOTFOUND. O(1); inline, as every
 * message looks up its sender and dependencies. */
static inline size_t
crdt__rep_slot(const crdt_replica_id *id)
{
	uint64_t a, b;
	memcpy(&a, id->bytes, 8);
	memcpy(&b, id->bytes + 8, 8);
	a ^= b;
	a ^= a >> 29;
	a *= UINT64_C(0xbf58476d1ce4e5b9);
	return (size_t)(a >> 58) & (CRDT__REP_CACHE - 1);
}

static inline int
crdt__rep_find(const crdt_doc *d, const crdt_replica_id *id, uint32_t *idx)
{
	/* Every message looks up its sender and each dependency, nearly
	 * always one of a few IDs: compare 16 bytes instead of SipHash. */
	uint32_t c = d->rep_cache[crdt__rep_slot(id)];
	if (c < d->nrs && memcmp(d->rs[c].id.bytes, id->bytes,
	    sizeof id->bytes) == 0) {
		*idx = c;
		return 0;
	}
	uint32_t h = crdt__table_hash(&d->reps, id->bytes, sizeof id->bytes);
	const rep_entry *e = crdt__table_find(&d->reps, id->bytes,
	    sizeof id->bytes, h);
	if (e == NULL)
		return CRDT_ENOTFOUND;
	*idx = e->idx;
	return 0;
}
/* The same, UINT32_MAX when `id` is not interned. */
uint32_t crdt__rep_index(const crdt_doc *d, const crdt_replica_id *id);
/* Intern `id` (found or added; CRDT_ETOOBIG past cfg.max_replicas). */
int crdt__rep_intern(crdt_doc *d, const crdt_replica_id *id, uint32_t *idx);
/* Forget replicas interned after the first `n` (LIFO): a refused message
 * or snapshot must not leave its IDs in the table. */
void crdt__unintern_to(crdt_doc *d, size_t n);
/* Note that replica r's clock grew since our last message (its entry
 * goes in our next message's dependencies). Inline, like the permission
 * checks below: once per message, almost always nothing to do, and the
 * ingest files are separate translation units (no LTO). */
int crdt__mark_dirty_slow(crdt_doc *d, uint32_t r);
static inline int
crdt__mark_dirty(crdt_doc *d, uint32_t r)
{
	if (r == d->self_idx || d->rs[r].dirty)
		return 0;
	return crdt__mark_dirty_slow(d, r);
}
/* [id, c, id, c, ...] of every non-zero clock entry, ascending by ID. */
int crdt__w_vc_pairs(const crdt_doc *d, crdt_buf *out);
/* [id, admin_seen, ...] of every non-zero entry, ascending by ID. This is
 * permission state (security.md, Write permissions): a replica that
 * catches up by snapshot must judge a writer's next message with what
 * the writer's earlier messages established, as one that applied them. */
int crdt__w_admin_seen(const crdt_doc *d, crdt_buf *out);
/* [stamp, ...]: each clock entry's greatest op stamp, in the clock's
 * order (ascending by ID). */
int crdt__w_stamps(const crdt_doc *d, crdt_buf *out);
/* Read [id, c, ...] pairs (ascending IDs, c >= 1) into a fresh array the
 * caller frees (n entries); checked against the bytes left before
 * allocating. */
int crdt__rd_vc_pairs(const crdt_doc *d, crdt__rd *r, iddep **out,
    size_t *nout);
/* The counter `id` has in such pairs, 0 if none. O(log n). */
uint64_t crdt__vc_pairs_get(const iddep *pairs, size_t n,
    const crdt_replica_id *id);

/* ---- ingest (doc.c) ---- */

/*
 * Decode a message's envelope into `mv` (views into `bytes`); with `ops`,
 * also authenticate it and validate every op. Changes nothing but the
 * dependency and plaintext scratch (d->sdeps, d->plain).
 */
int crdt__parse_msg(crdt_doc *d, const void *bytes, size_t len, msgview *mv,
    bool ops);
/* The ingest pipeline for one message (crdt_doc_receive): `evidence`
 * when it comes in an evidence list (sync, snapshots), which carries
 * every variant of its dot. An error return means nothing changed. */
int crdt__receive_msg(crdt_doc *d, const void *bytes, size_t len,
    void *caller, bool evidence);
int crdt__receive_one(crdt_doc *d, const void *bytes, size_t len,
    void *caller);
/* A keyless replica of an encrypted document: it forwards sealed
 * messages it cannot read, and holds no content. */
static inline bool
crdt__is_relay(const crdt_doc *d)
{
	return d->encrypted && d->keys.n == 0;
}
/* Check the signature (`verify`) and open a sealed payload into d->plain
 * (mv->payload; a relay keeps it opaque, NULL). */
int crdt__open_msg(crdt_doc *d, msgview *mv, bool verify);
/* Apply a fresh, causally ready message (all or nothing). */
int crdt__apply_msg(crdt_doc *d, uint32_t sender, uint64_t counter,
    uint64_t hlc, const uint8_t *bytes, size_t len, const uint8_t *payload,
    size_t plen, crdt_update_source src, void *caller, uint64_t admin_listed,
    uint64_t admin_causal);
/* A message whose dot is already applied: a duplicate (0, nothing
 * changes) or an equivocation variant, applied as the union. */
int crdt__equivocation(crdt_doc *d, msgview *mv, uint32_t s, void *caller,
    bool evidence);

/* ---- causal buffer (buffer.c) ---- */

/* Hold a message until its dependencies arrive; `head`: a buffered
 * variant of the same dot to chain to (UINT32_MAX: none). CRDT_EBUFFULL
 * past the buffer's or the sender's bound. */
/* Is buffered message b, whose dot is applied meanwhile, a variant of
 * the applied one (rather than a copy)? (buffer.c) */
bool crdt__covered_variant(const crdt_doc *d, const bmsg *b);
int crdt__buffer_msg(crdt_doc *d, const msgview *mv, uint32_t sender,
    const dep *deps, void *caller, uint32_t head, bool variant);
/* Deliver what waits on replica `first` and, transitively, on every
 * replica whose clock that moves. */
int crdt__release(crdt_doc *d, uint32_t first);
/* Free buffered message m (its dot is unlinked by the caller). */
void crdt__bmsg_release(crdt_doc *d, uint32_t m);
/* Whether `b` is byte-identical to buffered message m or a variant chained
 * to it; *nvar counts the chain's variants otherwise. */
bool crdt__buffered_copy(const crdt_doc *d, uint32_t m, const uint8_t *b,
    size_t len, size_t *nvar);

/* ---- write permissions (authz.c) ----
 *
 * Each check is once or twice per message and a no-op without an admin:
 * that test is inline, the rest in authz.c. */

/* Room in the allowlist index for every allowlist record the staged ops
 * added (the undo log), before the commit point. */
int crdt__authz_prepare_slow(crdt_doc *d);
static inline int
crdt__authz_prepare(crdt_doc *d)
{
	return d->has_admin ? crdt__authz_prepare_slow(d) : 0;
}
/* The admin counter a message lists among its dependencies (0 if none). */
static inline uint64_t
crdt__listed_admin(const crdt_doc *d, const dep *deps, size_t n)
{
	if (!d->has_admin)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (deps[i].r == d->admin_idx)
			return deps[i].c;
	return 0;
}
/* The admin counter in the causal past of message (r, c). O(log). */
uint64_t crdt__adm_at(const crdt_doc *d, uint32_t r, uint64_t c);
/* What a ready message's whole causal past holds of the admin's
 * history: its sender's previous message and every dependency. */
uint64_t crdt__causal_admin(const crdt_doc *d, uint32_t sender,
    uint64_t counter, const dep *deps, size_t n);
/* Authorise writer `w` whose message lists admin counter `listed` and
 * whose causal past holds `causal` (0 when not known yet): 0 or
 * CRDT_EPERM. */
int crdt__authorise_slow(crdt_doc *d, const crdt_replica_id *w,
    uint64_t listed, uint64_t causal);
static inline int
crdt__authorise(crdt_doc *d, const crdt_replica_id *w, uint64_t listed,
    uint64_t causal)
{
	return d->has_admin ? crdt__authorise_slow(d, w, listed, causal) : 0;
}
/* Room to record, then the record, that replica r's messages from
 * counter c on hold admin counter `a` (push cannot fail after reserve). */
int crdt__steps_reserve_slow(crdt_doc *d, uint32_t r, uint64_t a);
void crdt__steps_push_slow(crdt_doc *d, uint32_t r, uint64_t c, uint64_t a);
static inline int
crdt__steps_reserve(crdt_doc *d, uint32_t r, uint64_t a)
{
	return d->has_admin ? crdt__steps_reserve_slow(d, r, a) : 0;
}
static inline void
crdt__steps_push(crdt_doc *d, uint32_t r, uint64_t c, uint64_t a)
{
	if (d->has_admin)
		crdt__steps_push_slow(d, r, c, a);
}
/* What this replica has applied of the admin's messages. */
uint64_t crdt__own_admin_slow(const crdt_doc *d);
static inline uint64_t
crdt__own_admin(const crdt_doc *d)
{
	return d->has_admin ? crdt__own_admin_slow(d) : 0;
}

/* ---- evidence lists (doc.c; the store is evidence.h) ---- */

/* Check an evidence list of n messages (ascending by (dot, bytes), at
 * least two variants a dot) at `r`; with `ep`, record each message. */
int crdt__rd_evidence(crdt_doc *d, crdt__rd *r, size_t n,
    const uint8_t **ep, size_t *el);

/* ---- durable storage (doc_store.c) ---- */

/* Append one message the document is about to accept to the attached
 * store: called before the commit point of the apply or the buffer, so
 * a failure (CRDT_EFULL, CRDT_EIO, CRDT_EBUSY, ...) leaves the document
 * unchanged. A no-op without a store or while quiet. */
int crdt__store_put_slow(crdt_doc *d, const uint8_t *bytes, size_t len);
static inline int
crdt__store_put(crdt_doc *d, const uint8_t *bytes, size_t len)
{
	if (d->store == NULL || d->store_quiet > 0)
		return 0;
	return crdt__store_put_slow(d, bytes, len);
}
/* A variant of an applied dot was accepted (applied or buffered): it is
 * stored, but a restart replays only the dots the checkpoint's clock
 * lacks, and that clock may cover this dot, so a checkpoint is due, taken
 * once at the end of the public call (crdt__store_settle: a DATA frame
 * with many variants costs one). Variants are bounded by the evidence
 * bounds (max_variants, max_evidence_bytes), which bound this
 * O(document) cost. A failure is not returned (the variant is in and
 * stored); the checkpoint stays due for the next call, and until then a
 * restart lacks the variant like a replica that never saw it, which
 * sync heals (every DATA frame carries the evidence). */
static inline void
crdt__store_variant(crdt_doc *d)
{
	if (d->store != NULL && d->store_quiet == 0 && !crdt__is_relay(d))
		d->store_ckpt_due = true;
}
void crdt__store_settle_slow(crdt_doc *d);
/* End of a public call that may have accepted messages: a checkpoint a
 * variant made due, or the automatic one (doc_store.c). */
static inline void
crdt__store_settle(crdt_doc *d)
{
	if (d->store_ckpt_due ||
	    (d->store != NULL && d->ckpt_tail >= d->ckpt_next))
		crdt__store_settle_slow(d);
}
/* Free the group-commit queue (crdt_doc_free). */
void crdt__store_fini(crdt_doc *d);
/* A snapshot about to be merged into an attached document (snapshot.c,
 * before the load's commit point): no stored message carries what it
 * brings, so its bytes as received are written ahead as a loaded
 * snapshot record (crdt_store_put_snapshot), after a group-commit queue
 * is flushed. A failure leaves the document unchanged; on 0 `*id` is
 * the record's id (0 without a store or while quiet: nothing written). */
int crdt__store_snap_put(crdt_doc *d, const uint8_t *bytes, size_t len,
    uint64_t *id);
/* After the load's commit point: the record `id` (of `len` bytes) is
 * merged. The next checkpoint, which drops it, falls due at once and is
 * taken at the end of the call (crdt__store_settle), in the background;
 * its failure fails nothing (crdt_doc_checkpoint_status). */
void crdt__store_snap_done(crdt_doc *d, uint64_t id, size_t len);
/* Serve a peer lacking what the log evicted from the store: write the
 * DATA frame's message array (at most `budget` bytes of messages, at
 * least one), *more when more remain. ENOTFOUND without a store. */
int crdt__store_serve(const crdt_doc *d, const uint64_t *peer,
    size_t budget, size_t max_elems, crdt_buf *out, bool *more);

/* ---- receive status (recv.c) ----
 *
 * What a message turned out to be, judged from outside the pipeline by
 * what receiving it changed: probe before (a peek and three lookups),
 * judge after a successful receive. */
typedef struct crdt__probe {
	crdt_dot dot;
	bool had, waited;
	size_t nb, nv;
} crdt__probe;
int crdt__recv_probe(const crdt_doc *d, const void *msg, size_t len,
    crdt__probe *p);
crdt_recv_status crdt__recv_judge(const crdt_doc *d, const crdt__probe *p);

/* ---- forks of our own history (fork.c) ---- */

/* `known` of our own counter exists somewhere while we hold `own`: a
 * fork claim (evidence `proof`: a verified message under our own ID in
 * signed mode, so signed by our key). Raises d->fork_known (in signed
 * mode only when proven; else d->fork_claimed) and reports on_fork;
 * never touches the clock or the state. */
void crdt__fork_note_slow(crdt_doc *d, uint64_t own, uint64_t known,
    bool proof, void *caller);
static inline void
crdt__fork_note(crdt_doc *d, uint64_t own, uint64_t known, bool proof,
    void *caller)
{
	if (known > own && known > d->fork_known &&
	    known > d->fork_dismissed)
		crdt__fork_note_slow(d, own, known, proof, caller);
}
/* A message (sender, counter, deps) now waits in the buffer: a claim if
 * it is ours or names our ID above our clock. O(deps), buffering path
 * only. */
void crdt__fork_waiting(crdt_doc *d, uint32_t sender, uint64_t counter,
    const dep *deps, size_t ndeps, void *caller);
/* Our own entry in a peer's clock pairs (ascending by ID), 0 if none.
 * O(log n). */
uint64_t crdt__fork_own_entry(const crdt_doc *d, const iddep *pairs,
    size_t n);
/* A commit is refused while the document is forked (CRDT_EFORKED). */
static inline bool
crdt__forked(const crdt_doc *d)
{
	return d->fork_known > d->rs[d->self_idx].vc;
}

/* ---- snapshots (snapshot.c) ---- */

/* Whether `b` starts like a sealed snapshot (CRDT__KIND_SEALED_SNAP). */
bool crdt__is_sealed_snapshot(const uint8_t *b, size_t len);

#endif /* CRDT_DOC_IMPL_H */
