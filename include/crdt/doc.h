#ifndef CRDT_DOC_H
#define CRDT_DOC_H

/*
 * Document runtime: one replica of a document made of named CRDT objects.
 *
 * Local changes are grouped in transactions; committing one applies it at
 * once and hands out exactly one message (bytes). Any replica can receive
 * any message, in any order, any number of times: messages are applied in
 * causal order, duplicates are ignored, and a message whose causal past is
 * missing waits in a bounded buffer. save() writes a canonical snapshot;
 * load() merges a snapshot into the document. A three-frame sync protocol
 * brings two replicas to the union of what they hold.
 *
 * Layouts are normative in docs/wire-format.md; costs in docs/document.md.
 *
 * Thread safety: a document is used by one thread at a time. Listener
 * callbacks run on that thread, inside the call that caused them, and must
 * not call back into the same document.
 */

#include "crdt/common.h"
#include "crdt/gset.h"
#include "crdt/lww.h"
#include "crdt/vclock.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct crdt_doc crdt_doc;

/** Object types a document can hold. */
typedef enum crdt_obj_type {
	CRDT_OBJ_GSET = 1,
	CRDT_OBJ_LWW = 2,
	CRDT_OBJ_MAP = 3,
	CRDT_OBJ_CHAT = 4 /* register with crdt_doc_register_chat() (chat.h) */
} crdt_obj_type;

/** Longest object name accepted by crdt_doc_register(). */
#define CRDT_OBJ_NAME_MAX 64

/**
 * Create an empty document for replica `self` (borrowed, copied). `cfg`
 * borrowed, NULL = defaults (allocator, limits, clock, drift bound, buffer
 * and log bounds). `*out` transferred: crdt_doc_free().
 * @return 0, CRDT_EINVAL, CRDT_ENOMEM or CRDT_ECRYPTO.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_new(const crdt_config *cfg,
    const crdt_replica_id *self, crdt_doc **out);
/** Free a document and everything it holds; NULL is a no-op. */
CRDT_API void crdt_doc_free(crdt_doc *d);
/** The document's own replica ID (borrowed, lives as long as `d`). */
CRDT_API const crdt_replica_id *crdt_doc_self(const crdt_doc *d);

/**
 * Register object `name` (NUL-terminated, 1..CRDT_OBJ_NAME_MAX bytes,
 * copied) of `type`. Objects are numbered 0, 1, ... in registration order;
 * that number is how messages name them, so every replica of a document
 * must register the same objects in the same order, before it commits,
 * receives or loads anything.
 * @param obj  the object's number (may be NULL).
 * @return 0, CRDT_EINVAL (bad name/type, duplicate name), CRDT_ESTATE
 *         (the document already holds data), CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_register(crdt_doc *d, const char *name,
    crdt_obj_type type, uint32_t *obj);
/** Number of object `name`. @return 0, CRDT_EINVAL or CRDT_ENOTFOUND. */
CRDT_API CRDT_NODISCARD int crdt_doc_lookup(const crdt_doc *d,
    const char *name, uint32_t *obj);

/**
 * Open a transaction. Following mutations are staged until commit.
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (one is already open).
 */
CRDT_API CRDT_NODISCARD int crdt_doc_begin(crdt_doc *d);
/**
 * Apply the staged operations locally and append the one message that
 * carries them to `msg_out` (transferred bytes inside the caller's buffer).
 * The transaction gets the next dot (self, counter) and one HLC stamp.
 * On error nothing is applied, the counter does not move and the
 * transaction stays open (retry commit, or abort).
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (none open), CRDT_EOVERFLOW,
 *         CRDT_ETOOBIG (message over limits.max_bytes), CRDT_EFORKED
 *         (more of this replica's own history exists than it holds:
 *         crdt_doc_fork_status(); abort, sync, then commit again),
 *         CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_commit(crdt_doc *d, crdt_buf *msg_out);
/** Discard the open transaction, if any. */
CRDT_API void crdt_doc_abort(crdt_doc *d);

/*
 * Mutations. With a transaction open, `msg_out` must be NULL and the op is
 * staged. With none open, `msg_out` is required and the call is a one-op
 * transaction committed at once (the message is appended to `msg_out`).
 * Arguments are borrowed and copied. Within one transaction a later write
 * to the same register or key wins over an earlier one.
 * @return 0, CRDT_EINVAL, CRDT_ESCHEMA (no such object, or wrong type),
 *         CRDT_ETOOBIG (over limits.max_value_bytes), CRDT_ESTATE
 *         (msg_out given inside / missing outside a transaction), or any
 *         crdt_doc_commit() error for one-op transactions.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_gset_add(crdt_doc *d, uint32_t obj,
    const void *elem, size_t len, crdt_buf *msg_out);
CRDT_API CRDT_NODISCARD int crdt_doc_lww_set(crdt_doc *d, uint32_t obj,
    const void *value, size_t len, crdt_buf *msg_out);
CRDT_API CRDT_NODISCARD int crdt_doc_lww_clear(crdt_doc *d, uint32_t obj,
    crdt_buf *msg_out);
CRDT_API CRDT_NODISCARD int crdt_doc_map_set(crdt_doc *d, uint32_t obj,
    const void *key, size_t klen, const void *value, size_t vlen,
    crdt_buf *msg_out);
CRDT_API CRDT_NODISCARD int crdt_doc_map_remove(crdt_doc *d, uint32_t obj,
    const void *key, size_t klen, crdt_buf *msg_out);

/*
 * Read access: the object inside the document, borrowed until the next
 * call that modifies the document. Use the read functions of gset.h and
 * lww.h on it (contains, get, foreach, encode, ...), never the mutating
 * ones (they would bypass the document and are refused by nothing).
 * @return 0, CRDT_EINVAL, CRDT_ESCHEMA.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_gset(const crdt_doc *d, uint32_t obj,
    const crdt_gset **out);
CRDT_API CRDT_NODISCARD int crdt_doc_lww(const crdt_doc *d, uint32_t obj,
    const crdt_lww **out);
CRDT_API CRDT_NODISCARD int crdt_doc_map(const crdt_doc *d, uint32_t obj,
    const crdt_lww_map **out);

/**
 * Receive a message (bytes borrowed) from anywhere. Idempotent: a message
 * already applied or already buffered returns 0 and changes nothing. A
 * message whose causal dependencies are missing is buffered and applied
 * together with everything it unblocks the moment they arrive, by message
 * or by snapshot. A message is all or nothing: any malformed op or unknown
 * object rejects it whole and leaves the document unchanged.
 * Acceptance depends only on the bytes and the causal past, never on the
 * local clock: a stamp beyond the drift bound is applied and reported to
 * the listener's on_skew (see docs/document.md), and it never moves this
 * replica's clock, even under this replica's own ID.
 * Every message passes the same stages (docs/security.md, "Ingest"); a
 * second variant of a dot, applied or still buffered, is an equivocation
 * and is judged (allowlist included) like a fresh message. What one
 * sender can make the document hold is bounded per sender
 * (docs/document.md, "Per-sender bounds").
 * Cost: O(ops + deps) for an in-order message; N messages in any order
 * cost O(N log N) in total.
 * @param caller  opaque, handed to the update listener for this message
 *                (also when it is applied later from the buffer).
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG,
 *         CRDT_ESCHEMA, CRDT_EBUFFULL (buffer bound, total or this
 *         sender's share, reached: the message is not kept, nothing else
 *         changes; resend later), CRDT_EPERM (not allowed, secure.h),
 *         CRDT_EBADSIG, CRDT_EBADKEY, CRDT_ENOKEY, CRDT_EDECRYPT,
 *         CRDT_EWRONGDOC (a format-1 message, which names no document, in
 *         a document with a doc_id), CRDT_ESTATE (a transaction is open),
 *         CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_receive(crdt_doc *d, const void *msg,
    size_t len, void *caller);

/** What crdt_doc_receive_status() found a message to be. */
typedef enum crdt_recv_status {
	CRDT_RECV_APPLIED = 1,   /* applied now (with what it unblocked) */
	CRDT_RECV_BUFFERED = 2,  /* kept; waits for its causal past */
	CRDT_RECV_DUPLICATE = 3, /* held already (applied, waiting, or covered
				  * by a snapshot): nothing changed */
	CRDT_RECV_EQUIVOCATION = 4 /* another message under a dot already
				    * held: kept as evidence and its ops
				    * joined, or waiting for its causal past
				    * beside the other variant */
} crdt_recv_status;

/**
 * crdt_doc_receive(), and on success `*status` (required) says what the
 * message was. Errors, arguments and costs as crdt_doc_receive() (plus a
 * header parse and three lookups); on error `*status` is untouched.
 * A DUPLICATE is safe to acknowledge: the document holds it.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_receive_status(crdt_doc *d,
    const void *msg, size_t len, void *caller, crdt_recv_status *status);

/**
 * Append a snapshot of the whole document to `out`: version, replica
 * clock, the greatest HLC applied, every object's state, and the buffered
 * messages. Canonical: two replicas that applied the same transactions
 * and buffer the same messages produce the same bytes.
 * @return 0, CRDT_EINVAL, CRDT_ENOMEM (out->len restored).
 */
CRDT_API CRDT_NODISCARD int crdt_doc_save(const crdt_doc *d, crdt_buf *out);
/**
 * Merge a snapshot (bytes borrowed) into the document: object states
 * merge, clocks take the pointwise max, buffered messages are re-offered,
 * and buffered messages that became ready are applied. Loading the same
 * snapshot twice changes nothing the second time. A document that loads
 * its own snapshot resumes its counter (never reuses a dot).
 *
 * Trusted state only: a snapshot is merged state, and nothing in it
 * proves who wrote its values, so load what the application trusts (its
 * own storage, a peer it chose to trust), never a stranger's bytes; sync
 * is the channel for untrusted peers (secure.h `sync_snapshots`). Still
 * every field is checked like a message's: its buffered messages and
 * equivocation evidence pass what crdt_doc_receive() checks (signature,
 * decryption, every op) or the load is refused.
 *
 * All or nothing: on any error the document is unchanged (and no replica
 * ID stays interned). After the commit point nothing fails: a buffered
 * message that the buffer cannot take or the allowlist refuses is dropped
 * as on receipt (a later sync brings it again), and 0 is returned.
 *
 * Attached to a store (crdt_doc_attach_store): a snapshot that changes
 * anything is written to the store first, as received (sealed bytes stay
 * sealed), as a loaded snapshot record (crdt_store_put_snapshot), the
 * last step before the commit point; with group commit the queue is
 * flushed before it. If the store cannot take it the load returns the
 * store's error (CRDT_EFULL, CRDT_EIO, CRDT_EBUSY, CRDT_ETOOBIG: over the
 * store's limits.max_bytes, CRDT_ENOMEM) and nothing changed, in memory
 * or in what a restart restores (a restart merges the records after the
 * checkpoint). On 0 the merged content survives a crash right after the
 * call (with the durability of the store's mode), so a commit made after
 * it may be acknowledged. A checkpoint, which drops the record, then
 * falls due and is taken at the end of the call in the background; its
 * failure fails nothing (crdt_doc_checkpoint_status()). A store whose
 * backend keeps no snapshot records (an application backend without
 * put_snapshot) refuses the load with CRDT_ESTATE: detach, load, attach
 * again (attaching takes a checkpoint). Cost while attached: + O(len)
 * and one store commit (one fsync in FULL mode), plus the checkpoint's
 * O(document) serialization.
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG,
 *         CRDT_ESCHEMA (objects differ from the registered schema),
 *         CRDT_EWRONGDOC (a snapshot of another document: its doc_id
 *         differs from crdt_config.doc_id), CRDT_ESTATE (transaction
 *         open), CRDT_EBUFFULL (its evidence would pass
 *         max_buffered_msgs dots), CRDT_EBADSIG, CRDT_EBADKEY,
 *         CRDT_ENOKEY, CRDT_EDECRYPT (a message inside fails
 *         verification), CRDT_ENOMEM; attached to a store, the store's
 *         errors (above).
 */
CRDT_API CRDT_NODISCARD int crdt_doc_load(crdt_doc *d, const void *snap,
    size_t len, void *caller);

/** New clock (transferred) of what is applied. @return 0, EINVAL, ENOMEM. */
CRDT_API CRDT_NODISCARD int crdt_doc_vclock(const crdt_doc *d,
    crdt_vclock **out);
/**
 * New clock (transferred) of what the buffered messages wait for: per
 * replica, the highest counter some buffered message needs that is not
 * applied yet. Empty when nothing is buffered. O(buffered).
 */
CRDT_API CRDT_NODISCARD int crdt_doc_missing(const crdt_doc *d,
    crdt_vclock **out);
/** Number of buffered (received, not yet applied) messages. */
CRDT_API size_t crdt_doc_buffered(const crdt_doc *d);
/** The document's hybrid logical clock (last stamp issued or observed). */
CRDT_API uint64_t crdt_doc_hlc(const crdt_doc *d);
/** Number of messages held in the message log. */
CRDT_API size_t crdt_doc_log_size(const crdt_doc *d);

/** Where an applied update came from. */
typedef enum crdt_update_source {
	CRDT_UPDATE_LOCAL = 1,   /* a commit on this replica */
	CRDT_UPDATE_REMOTE = 2,  /* a received message */
	CRDT_UPDATE_SNAPSHOT = 3 /* a loaded snapshot that changed something */
} crdt_update_source;

/** What a typed change event describes. */
typedef enum crdt_change_kind {
	CRDT_CHANGE_GSET_ADD = 1,  /* `key` = the new element */
	CRDT_CHANGE_LWW_SET = 2,   /* register: old -> new value */
	CRDT_CHANGE_MAP_SET = 3,   /* map `key`: old -> new value */
	CRDT_CHANGE_RELOADED = 4,  /* object merged from a snapshot: re-read it */
	CRDT_CHANGE_CHAT_INSERT = 5, /* chat message `msg` now at `position` */
	CRDT_CHANGE_CHAT_UPDATE = 6  /* chat reactions/receipts/members/status
				      * changed (`msg` set when about one) */
} crdt_change_kind;

/**
 * A typed change, borrowed for the duration of the callback. For values,
 * `has_old`/`has_new` false means "absent" (never set, or cleared/removed).
 */
typedef struct crdt_change {
	crdt_change_kind kind;
	uint32_t obj;
	crdt_dot dot; /* the transaction that caused it (zero for RELOADED) */
	const uint8_t *key;
	size_t key_len;
	const uint8_t *old_value;
	size_t old_len;
	const uint8_t *new_value;
	size_t new_len;
	bool has_old, has_new;
	crdt_dot msg;    /* chat: the message concerned (zero if none) */
	size_t position; /* CHAT_INSERT: its position, 0 = oldest */
} crdt_change;

/**
 * Event callbacks; any may be NULL. Copied by crdt_doc_set_listener().
 * on_update: every applied, non-redundant update with its bytes (a message
 *   or a snapshot, borrowed) and the `caller` given to receive/load (NULL
 *   for local commits), so a provider does not echo an update back to
 *   where it came from.
 * on_change: one call per visible change, after the update applied.
 * on_equivocation: two different messages with the same dot (the same
 *   replica and counter): a replica ID reused after restoring an old
 *   backup, two tabs sharing an ID, or a signer cheating. `first` is the
 *   one applied first here (NULL if no longer in the log), `second` the
 *   newcomer; both are borrowed. The document keeps both as evidence and
 *   applies the union of their ops, so replicas that saw the halves in
 *   different orders still converge (docs/security.md).
 * on_skew: a remote stamp more than max_drift_ms ahead of local time was
 *   applied (the local clock was not moved by it).
 * on_fork: this replica learnt that its own counter reached `known`
 *   elsewhere while it held `own` < `known` (a sync frame's clock, a
 *   message under its own ID, or a dependency naming it, that came with
 *   `caller`): it was restored from an old backup, or another device
 *   uses its ID. Commits now fail with CRDT_EFORKED until its own
 *   messages come back up to `known` (crdt_doc_fork_status()), except in
 *   signed mode when not `proven`. `proven`: the evidence is a message
 *   signed by this replica's own key (signed mode); otherwise it is a
 *   peer's word, which may be false. Called
 *   once per higher `known`, also when the same frame brought the
 *   messages back at once.
 */
typedef struct crdt_doc_listener {
	void (*on_update)(void *ud, crdt_update_source src,
	    const uint8_t *bytes, size_t len, void *caller);
	void (*on_change)(void *ud, const crdt_change *change);
	void (*on_skew)(void *ud, const crdt_replica_id *sender,
	    uint64_t remote_hlc, uint64_t local_ms);
	void *ud;
	void (*on_equivocation)(void *ud, crdt_dot dot, const uint8_t *first,
	    size_t first_len, const uint8_t *second, size_t second_len);
	void (*on_fork)(void *ud, uint64_t own, uint64_t known, bool proven,
	    void *caller);
} crdt_doc_listener;

/** Install (or with NULL remove) the listener. */
CRDT_API void crdt_doc_set_listener(crdt_doc *d, const crdt_doc_listener *l);

/*
 * Forks of this replica's own history (docs/document.md, "Forks of one's
 * own history"). Only this replica's commits move its counter, so a peer
 * that holds more of it means history this replica lost (an old backup
 * restored) or another device with the same ID; committing then would
 * reuse a dot that already names other ops. The document learns it from
 * a sync frame's clock, a received message under its own ID or a
 * dependency naming it (also inside a snapshot's buffered messages), and
 * refuses every commit (CRDT_EFORKED) until its own clock entry is back
 * up to the highest counter heard of: sync or receive bring its own
 * messages back and apply them like a peer's (in signed mode only those
 * signed by its own key), or a snapshot raises it. A claim never moves
 * the clock or the state. In unsigned mode the worst a lying peer can do
 * is hold commits until the application dismisses it; in signed mode
 * only a claim proven by the replica's own signature holds commits, and
 * a peer's word is only reported (on_fork, proven = false), so no peer
 * can stop a signed replica's writes. Not saved: after a restart the
 * next sync learns it again. A sync frame that shows a fork is answered
 * with every own message the log holds, so a dot issued twice (commits
 * made before hearing of the fork) reaches the peer as an equivocation.
 */

/**
 * Whether commits are refused for a fork: true while more of the own
 * history is known to exist than is held. `own` (may be NULL): the own
 * counter held; `known` (may be NULL): the highest own counter heard of
 * while forked, else `own`. O(1).
 */
CRDT_API bool crdt_doc_fork_status(const crdt_doc *d, uint64_t *own,
    uint64_t *known);
/**
 * Dismiss the fork claim: commits go on from the own counter held, and
 * claims up to the dismissed counter no longer block (a higher one does).
 * Use it when the claim is false (a hostile peer in unsigned mode, an
 * unsigned clock), or when the lost messages are gone for good: the next
 * commits then reuse those dots, and replicas holding the old messages
 * see them as equivocations (on_equivocation, the union applied). A
 * no-op when not forked. @return 0, CRDT_EINVAL.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_fork_resolve(crdt_doc *d);

/**
 * Read a message's relay-visible header without a document (bytes
 * borrowed; the payload is not decoded). Any output may be NULL.
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG.
 */
CRDT_API CRDT_NODISCARD int crdt_msg_peek(const void *msg, size_t len,
    crdt_dot *dot, uint64_t *hlc);

/*
 * Sync protocol (transport-agnostic, versioned msgpack frames):
 *   1. A: crdt_doc_sync_start() -> HELLO frame (A's clock) -> B
 *   2. B: crdt_doc_sync_handle(HELLO) -> DATA frame (B's clock and the
 *      messages A lacks, or a snapshot if B's log evicted some) -> A
 *   3. A: crdt_doc_sync_handle(DATA) applies it and replies a DATA frame
 *      with what B lacks -> B, which applies it and replies nothing.
 * Paging: a DATA frame carries at most cfg.sync_max_bytes (<=
 * limits.max_bytes) of messages and says when more follows; the receiver
 * that took something in asks again in its reply, and the next frame
 * goes on from its new clock. A peer any distance behind catches up in
 * one round of ceil(history / budget) frames, each within the budget.
 * A round always ends: past the third frame, a frame is answered only if
 * it brought something new. After a round both hold the union (less what
 * either refuses). Frames carry no session state: any frame may be
 * repeated, dropped or reordered; a lost round is just started again.
 * Equal clocks are not equal holdings when a writer equivocated (two
 * messages for one dot): every frame also carries, per writer, a digest
 * of the variants held of its logged counters, and a peer whose digest
 * differs at an equal clock entry is sent that range, so both end with
 * every variant (kept as evidence, the ops joined).
 * Every frame names its document (crdt_config.doc_id), so one connection
 * can carry the frames of several documents: route each with
 * crdt_sync_peek(); a document refuses another's frame (CRDT_EWRONGDOC).
 * Details and flags in docs/document.md (Sync protocol).
 */

/** What crdt_sync_peek() found a frame to be. */
enum { CRDT_SYNC_HELLO = 1, CRDT_SYNC_DATA = 2 };

/**
 * Read a sync frame's head without a document (bytes borrowed; only the
 * version, kind and document ID are read, O(1), whatever `len`): a relay
 * or a multiplexing transport routes the frame to its document by `*id`.
 * A frame of an older version (1, 2) names no document: `*id` is all
 * zero, and only an unbound document takes it. Any output may be NULL;
 * on error they are untouched. The rest of the frame is checked by
 * crdt_doc_sync_handle().
 * @param kind  CRDT_SYNC_HELLO or CRDT_SYNC_DATA.
 * @return 0, CRDT_EINVAL (frame NULL), CRDT_EMALFORMED (not a sync frame,
 *         a field count that is not its kind's, a doc_id not 32 bytes,
 *         truncated), CRDT_EVERSION.
 */
CRDT_API CRDT_NODISCARD int crdt_sync_peek(const void *frame, size_t len,
    crdt_doc_id *id, int *kind);

/** Append a HELLO frame. @return 0, CRDT_EINVAL, CRDT_ENOMEM. */
CRDT_API CRDT_NODISCARD int crdt_doc_sync_start(const crdt_doc *d,
    crdt_buf *frame_out);
/**
 * Handle a frame (borrowed) from a peer; append the reply, if one is due,
 * to `reply` (reply->len unchanged = nothing to send). `caller` is passed
 * to the update listener for what the frame applies.
 * A DATA frame's framing is checked whole before anything applies. Then
 * each message is verified and applied on its own; one refused for its
 * own content (CRDT_EPERM, CRDT_EDECRYPT, CRDT_EBADSIG, CRDT_ESCHEMA,
 * CRDT_EBUFFULL, ...) is skipped, the rest of the frame still applies,
 * and the refusal is not reported (0 is returned; its dot stays missing).
 * Cost: O(replicas + log entries) to build a DATA reply, plus one BLAKE2b
 * pass over the logged bytes for its digests; O(replicas + evidence) plus
 * each carried message's own cost to handle one, plus a pass over our log
 * in the range of each digest stated at our clock entry. A HELLO costs
 * the digests pass too.
 * @return 0, or:
 *   - CRDT_ENOTFOUND: the peer (a keyless relay whose log evicted part of
 *     what we lack, so it cannot send a snapshot) cannot serve us, and
 *     this frame brought nothing new; nothing changed, no reply. Sync
 *     with a keyed replica.
 *   - CRDT_ENOMEM, or CRDT_ETOOBIG for a reply no frame within
 *     limits.max_bytes can hold (a message too large for any frame), on a
 *     DATA frame whose framing was accepted: the messages applied before
 *     the failure stay applied (each whole), none after; no reply.
 *     Handling the frame again, or the next round, finishes it.
 *   - CRDT_EWRONGDOC: the frame names another document (or, of an
 *     older version, none, in a document with a doc_id); checked before
 *     anything else: nothing changed, no reply.
 *   - CRDT_EPERM for a snapshot where this document takes none from sync,
 *     CRDT_EDECRYPT for a plaintext one in encrypted mode (secure.h
 *     `sync_snapshots`), any other code (CRDT_EINVAL, CRDT_ESTATE,
 *     CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG for the frame itself,
 *     a crdt_doc_load() error for its snapshot), and any error on a HELLO:
 *     the frame was refused whole; nothing changed, no reply.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_sync_handle(crdt_doc *d,
    const void *frame, size_t len, void *caller, crdt_buf *reply);

/** What crdt_doc_sync_handle_status() found a frame's messages to be. */
typedef struct crdt_sync_report {
	/* Messages of the frame's list and of its evidence list, each
	 * counted once, as crdt_doc_receive_status() would have said */
	size_t applied, buffered, duplicate, equivocation;
	size_t refused;    /* skipped for their own content (not taken) */
	int first_refusal; /* the first one's code (0: none refused) */
	bool snapshot;     /* the frame carried a snapshot, which merged */
} crdt_sync_report;

/**
 * crdt_doc_sync_handle(), and on success `*rep` (required) counts what
 * each message of the frame was: APPLIED, BUFFERED, DUPLICATE,
 * EQUIVOCATION as crdt_doc_receive_status() says, or refused for its own
 * content (which crdt_doc_sync_handle() skips silently), with the first
 * refusal's code. A HELLO reports all zero. Arguments, errors and reply
 * as crdt_doc_sync_handle(); on error `*rep` is untouched. Cost: that of
 * crdt_doc_sync_handle() plus a header peek and three lookups per
 * message; crdt_doc_sync_handle() itself pays nothing for it.
 * @return as crdt_doc_sync_handle(), and CRDT_EINVAL for rep NULL.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_sync_handle_status(crdt_doc *d,
    const void *frame, size_t len, void *caller, crdt_buf *reply,
    crdt_sync_report *rep);

/* ---- durable storage (store.h; docs/storage.md) ---- */

typedef struct crdt_store crdt_store;

/**
 * crdt_doc_attach_store() flag: group commit. Accepted messages are
 * queued in memory (a copy each) instead of appended one by one, and
 * crdt_doc_store_flush() appends the queue in batches (one store
 * transaction, one fsync, per 16384 messages: acknowledging every few
 * thousand messages amortizes the fsync). Until the flush returned 0
 * nothing those calls accepted may be acknowledged or leave the process
 * (not even our own commits' messages: a crash before the flush would
 * let the restarted replica reuse their dots). A call's error in this
 * mode is only CRDT_ENOMEM for the queue, with the document unchanged.
 */
#define CRDT_DOC_STORE_GROUP 1u

/**
 * Attach the store `s` (borrowed: it must outlive the document or be
 * detached first with s = NULL; crdt_doc_free() does not close it).
 * `flags`: 0 (one append per accepted message, below) or
 * CRDT_DOC_STORE_GROUP (above). The store already attached may be
 * attached again to change the mode, and detached, once the queue is
 * empty (flushed).
 *
 * Write-ahead: from now on every message the document accepts (a local
 * commit, a received message applied or buffered, a buffered message
 * released, an equivocation variant, the messages a snapshot re-offers,
 * a sync frame's messages) is appended to the store, durably, after the
 * checks that can refuse it and before it becomes visible. So when a
 * call returns 0 its messages are stored: an ack may promise what the
 * store's mode promises for an append (docs/storage.md, durability). If
 * the append fails the call returns the store's error (CRDT_EFULL,
 * CRDT_EIO, CRDT_EBUSY, CRDT_ECORRUPT, CRDT_ENOMEM) and the document is
 * unchanged; the store may hold the message (an error means "not
 * acknowledged"), which a restart then applies. A snapshot merged while
 * attached (crdt_doc_load, a sync snapshot), which no stored message
 * carries, is written ahead the same way, as a loaded snapshot record
 * (crdt_doc_load() above): every error of a call means "unchanged",
 * and the next checkpoint drops the records it holds.
 * Sync: when the log no longer holds what a peer lacks, DATA frames are
 * served from the store (crdt_store_since(), the frame's budget) instead
 * of a snapshot, for every replica the store holds the history of.
 *
 * Attaching appends what the document holds already (its log, buffered
 * messages and evidence) and, when it has data, takes a checkpoint:
 * O(document) once. Cost per accepted message afterwards: one store
 * append (O(message) plus the store's commit: one fsync per message for
 * SQLite in FULL mode). Attaching the store already attached is a no-op.
 * @return 0, CRDT_EINVAL (flags), CRDT_ESTATE (a transaction is open,
 *         another store is attached, or a group-commit queue is not
 *         flushed), a store or crdt_doc_save() error (the document is
 *         then not attached; what was appended stays).
 */
CRDT_API CRDT_NODISCARD int crdt_doc_attach_store(crdt_doc *d, crdt_store *s,
    unsigned flags);

/**
 * Group commit: append the queued messages to the attached store, in
 * order, in batches; when it returns 0 every message accepted so far is
 * stored and may be acknowledged. On error (a store error: CRDT_EFULL,
 * CRDT_EIO, CRDT_EBUSY, ...) the batches already appended leave the queue
 * and the rest stay queued for the next call (retry after freeing space
 * or when the lock is free); the document itself is not changed by a
 * flush. Without group commit the queue is always empty: 0.
 * crdt_doc_checkpoint() flushes first; crdt_doc_free() drops an
 * unflushed queue (those messages were never acknowledged).
 * Cost: O(queued bytes) plus one store commit per 16384 messages (per 64
 * when there is no memory for the batch's array: a flush does not fail
 * for that).
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (a queue and no store), store errors.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_store_flush(crdt_doc *d);

/**
 * Restart: restore a new document (created and given the same schema and
 * security settings as the one that wrote the store, no data yet) from
 * `s` (borrowed, as for crdt_doc_attach_store()), then attach it with
 * `flags` (as crdt_doc_attach_store()'s).
 * Loads the last checkpoint (trusted: own storage), then merges the
 * loaded snapshot records in the order they were stored (trusted too;
 * crdt_doc_load() while attached), then re-offers every
 * stored message its clock lacks through crdt_doc_receive()'s pipeline,
 * so the state, the message log, the buffered messages, the evidence and
 * the replica's own counter and stamp come back: the next commit never
 * reuses a dot, nor stamps below an earlier write. Listeners set before
 * see the replay as remote updates. The log holds again what it held
 * when the checkpoint was taken (its clock is lowered to the log's floor
 * per replica) plus what came after, so crdt_doc_log_get() and resend
 * work as before; a message stored while buffered, ahead of its
 * predecessors, may not come back into the log (sync serves it from the
 * store).
 * Cost: the checkpoint plus a merge per loaded snapshot record (each
 * load makes a checkpoint due that drops them, so normally none or one)
 * plus the messages its log held (at most
 * log_max_msgs / log_max_bytes, copied into the log, not applied) plus
 * the messages after it; never all history: automatic checkpoints
 * (below) keep that tail bounded.
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (the document has data, a
 *         transaction or a store), a store error or a crdt_doc_load()
 *         error for the checkpoint or a record (CRDT_ESCHEMA: not the
 *         same schema; CRDT_ENOKEY: a sealed record's epoch key missing):
 *         then free the document and start again with a new one.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_open_store(crdt_doc *d, crdt_store *s,
    unsigned flags);

/**
 * Save a snapshot of the document into the attached store as its
 * checkpoint (crdt_store_put_checkpoint, with the document's clock
 * lowered, per replica, to below the run the log holds of it: a restart
 * replays from there to refill the log), dropping in the same
 * transaction the loaded snapshot records the document merged
 * (crdt_store_put_checkpoint_upto): the snapshot holds them.
 * Flushes a group-commit queue first (crdt_doc_store_flush).
 * Cost: O(document) (crdt_doc_save) plus one store commit, in the
 * caller's thread; it bounds what crdt_doc_open_store() replays, and
 * restarts the automatic policy (below). The store's log is kept whole.
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (no store attached, a transaction
 *         open, or a keyless relay: it has no state to save and
 *         restarts from its whole stored log), crdt_doc_save()'s
 *         errors, store errors.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_checkpoint(crdt_doc *d);

/*
 * Automatic checkpoints. While a store is attached, a checkpoint is taken
 * by the document itself at the end of a call that accepted messages (a
 * commit, a receive, a sync frame; in group commit, crdt_doc_store_flush)
 * once the bytes appended since the last checkpoint reach
 * cfg.ckpt_tail_pct percent of that checkpoint's snapshot and at least
 * cfg.ckpt_min_bytes (crdt_config; defaults 50 % and 256 KiB;
 * ckpt_tail_pct = UINT32_MAX turns them off), and at the end of a load
 * that stored a loaded snapshot record (crdt_doc_load). The snapshot is
 * serialized in that call (O(document), in memory) and its write is
 * handed to the store's writer thread (crdt_store_put_checkpoint_bg): the
 * commit pays no checkpoint fsync. Amortized per message: O(message) (a
 * checkpoint of S bytes comes after at least S * pct / 100 bytes of
 * messages).
 * Restart (crdt_doc_open_store) replays at most about one such tail (two
 * while the newest checkpoint is still being written) plus the log's
 * messages. An automatic checkpoint never makes its call fail: its
 * errors (serializing, queueing, or the background write) are reported
 * by crdt_doc_checkpoint_status(); one that failed is tried again one
 * tail later, and nothing is lost meanwhile (the store's log is whole,
 * the previous checkpoint stays). The snapshot handed over was allocated
 * from cfg.alloc and is freed by the store (a later call into it, or
 * crdt_store_close), so that allocator must outlive the store handle.
 */

/**
 * The first error of an automatic checkpoint since the last call (then
 * cleared), or 0. `wait`: first wait until the store has written every
 * checkpoint handed to its writer (then a crash loses none of them).
 * Cost: O(1) without `wait`.
 * @return 0, CRDT_EINVAL, or the failed checkpoint's error
 *         (crdt_doc_save()'s, the store's: CRDT_EIO, CRDT_EFULL, ...).
 */
CRDT_API int crdt_doc_checkpoint_status(crdt_doc *d, bool wait);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_DOC_H */
