#ifndef CRDT_CHAT_H
#define CRDT_CHAT_H

/*
 * Chat thread: an object type of the document runtime (doc.h) for
 * offline-first chat. See docs/chat.md for the model and a worked example.
 *
 * - A message's ID is the dot of the transaction that posted it: known on
 *   the client before anything is sent (crdt_doc_chat_post returns it) and
 *   final; there is no temporary ID to swap.
 * - Order: by (order key, replica ID, counter), the same on every replica.
 *   The order key is max(the transaction's HLC stamp, 1 + the greatest
 *   order key the author had seen), so a message sorts after everything its
 *   author had seen (a reply after what it answers) even across skewed
 *   clocks, and otherwise in wall-clock order. "Seen" is at most 2^63 - 1
 *   (a post claiming more is refused at receive, CRDT_EMALFORMED); keys
 *   that saturate at 2^63 tie and sort by dot (docs/chat.md).
 * - Visitors have a canonical order, the same on every replica holding the
 *   same state: reactions by key bytes (user, then emoji), readers and
 *   members by user ID bytes, the outbox in thread order.
 * - Reactions: (message, reactor, emoji) on/off, last writer wins.
 * - Read receipts: per reader, the set of messages read is a vector clock
 *   over message dots, merged by max: exact (a late message sorting earlier
 *   is not read by accident), monotone, device-merging.
 * - Membership: join/leave per user, last writer wins; every change is kept
 *   so a message is flagged when its author was not a member at its time.
 * - Server: an optional designated replica whose acknowledgements (its
 *   clock) make messages "delivered" and who alone may reject (moderate)
 *   a message. Acks and rejections are replicated, attributable state.
 *
 * User IDs (author, reader, reactor, member) are application byte strings,
 * distinct from replica IDs: one user may have several devices (replicas).
 * Threads are read through `const crdt_chat *` from crdt_doc_chat(), valid
 * until the next call that modifies the document. Reads never allocate and
 * never modify anything: the thread's index is built when a snapshot is
 * loaded and kept current by every commit and receive, with the room it
 * needs reserved before the commit point (an allocation failure there is
 * that call's CRDT_ENOMEM, with nothing changed).
 */

#include "crdt/common.h"
#include "crdt/doc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct crdt_chat crdt_chat;

/**
 * Register a chat thread `name` (see crdt_doc_register for naming and
 * ordering rules). `server` (borrowed, copied; NULL = none) is the replica
 * whose acks mark messages delivered and who may reject messages; every
 * replica must register the same server.
 * @return as crdt_doc_register().
 */
CRDT_API CRDT_NODISCARD int crdt_doc_register_chat(crdt_doc *d,
    const char *name, const crdt_replica_id *server, uint32_t *obj);
/** Read view of thread `obj`. @return 0, CRDT_EINVAL, CRDT_ESCHEMA. */
CRDT_API CRDT_NODISCARD int crdt_doc_chat(const crdt_doc *d, uint32_t obj,
    const crdt_chat **out);

/** A new message. Byte fields borrowed (copied into the op). */
typedef struct crdt_chat_post {
	const void *user; /* author's user ID, 1..255 bytes */
	size_t user_len;
	const void *body; /* UTF-8 expected, not trusted: stored as bytes */
	size_t body_len;
	const crdt_dot *reply_to; /* NULL, or the message answered */
	const void *meta;         /* NULL, or app-encoded attachments/metadata */
	size_t meta_len;
} crdt_chat_post;

/*
 * Mutations follow the doc.h convention: inside a transaction `msg_out`
 * is NULL and the op is staged; outside, `msg_out` receives the message of
 * a one-op transaction.
 */

/**
 * Post a message. `*id` (may be NULL) receives its final ID: the dot of the
 * transaction that carries it. At most one post per thread per transaction.
 * @return 0, CRDT_EINVAL (bad lengths, a second post in the transaction),
 *         CRDT_ESCHEMA, CRDT_ETOOBIG, CRDT_ESTATE, commit errors.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_chat_post(crdt_doc *d, uint32_t obj,
    const crdt_chat_post *p, crdt_dot *id, crdt_buf *msg_out);
/** Set (on) or remove (off) reaction `emoji` by `user` on message `msg`. */
CRDT_API CRDT_NODISCARD int crdt_doc_chat_react(crdt_doc *d, uint32_t obj,
    crdt_dot msg, const void *user, size_t user_len, const void *emoji,
    size_t emoji_len, bool on, crdt_buf *msg_out);
/**
 * Mark every message this replica holds now as read by `user`. Read state
 * only grows: it is merged by max with what the user's other devices said.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_chat_mark_read(crdt_doc *d, uint32_t obj,
    const void *user, size_t user_len, crdt_buf *msg_out);
/** `user` joins (joined = true) or leaves the thread. */
CRDT_API CRDT_NODISCARD int crdt_doc_chat_member(crdt_doc *d, uint32_t obj,
    const void *user, size_t user_len, bool joined, crdt_buf *msg_out);
/**
 * Server only: acknowledge everything this replica holds (its clock).
 * @return ..., CRDT_EPERM when this replica is not the thread's server.
 */
CRDT_API CRDT_NODISCARD int crdt_doc_chat_ack(crdt_doc *d, uint32_t obj,
    crdt_buf *msg_out);
/** Server only: reject (moderate) message `msg` with a reason. */
CRDT_API CRDT_NODISCARD int crdt_doc_chat_reject(crdt_doc *d, uint32_t obj,
    crdt_dot msg, const void *reason, size_t reason_len, crdt_buf *msg_out);

/** One message, borrowed from the thread until the next modification. */
typedef struct crdt_chat_msg {
	crdt_dot id;
	uint64_t sent_at; /* HLC stamp of its transaction */
	uint64_t order;   /* order key (see above) */
	const uint8_t *user;
	size_t user_len;
	const uint8_t *body;
	size_t body_len;
	bool has_reply_to;
	crdt_dot reply_to;
	const uint8_t *meta; /* NULL when none */
	size_t meta_len;
	bool author_was_member; /* member when the message was sent */
} crdt_chat_msg;

/** Number of message IDs shown (two records of one ID, from an equivocating
 *  writer, show as the one with the smaller bytes). 0 when `c` is NULL. O(1). */
CRDT_API size_t crdt_chat_count(const crdt_chat *c);
/** Message by ID. @return 0, CRDT_EINVAL, CRDT_ENOTFOUND. O(1). */
CRDT_API CRDT_NODISCARD int crdt_chat_get(const crdt_chat *c, crdt_dot id,
    crdt_chat_msg *out);
/** Message at position `pos` (0 = oldest). @return 0, EINVAL, ENOTFOUND. O(log n). */
CRDT_API CRDT_NODISCARD int crdt_chat_at(const crdt_chat *c, size_t pos,
    crdt_chat_msg *out);
/** Position of message `id`. @return 0, EINVAL, ENOTFOUND. O(log n). */
CRDT_API CRDT_NODISCARD int crdt_chat_position(const crdt_chat *c,
    crdt_dot id, size_t *pos);
/**
 * A page of up to `k` message IDs in thread order into `out` (caller
 * array of k): with `anchor` NULL the newest k; otherwise the k before
 * (`after` false) or after (`after` true) the anchor, anchor excluded.
 * `*n` gets the count. O(log n + k).
 * @return 0, CRDT_EINVAL, CRDT_ENOTFOUND (anchor unknown).
 */
CRDT_API CRDT_NODISCARD int crdt_chat_page(const crdt_chat *c,
    const crdt_dot *anchor, bool after, size_t k, crdt_dot *out, size_t *n);

typedef enum crdt_chat_status {
	CRDT_CHAT_PENDING = 0,   /* the server has not acknowledged it */
	CRDT_CHAT_DELIVERED = 1, /* the server's acknowledged clock covers it */
	CRDT_CHAT_READ = 2,      /* delivered and read by someone else */
	CRDT_CHAT_REJECTED = 3   /* the server rejected it */
} crdt_chat_status;

/**
 * Status of message `id`. Without a server, DELIVERED means "held by this
 * replica". @return 0, CRDT_EINVAL, CRDT_ENOTFOUND.
 */
CRDT_API CRDT_NODISCARD int crdt_chat_status_of(const crdt_chat *c,
    crdt_dot id, crdt_chat_status *st);
/** Rejection reason (borrowed). @return 0, EINVAL, ENOTFOUND (not rejected). */
CRDT_API CRDT_NODISCARD int crdt_chat_rejection(const crdt_chat *c,
    crdt_dot id, const uint8_t **reason, size_t *len);

/** Visitor over user IDs (borrowed for the call); non-zero stops. */
typedef int (*crdt_chat_user_fn)(void *ud, const uint8_t *user, size_t len);
/** Visitor over reactions on one message. */
typedef int (*crdt_chat_reaction_fn)(void *ud, const uint8_t *user,
    size_t user_len, const uint8_t *emoji, size_t emoji_len);

/** Number of reactions currently on: always the number that
 *  crdt_chat_reactions() visits. O(1). */
CRDT_API size_t crdt_chat_reaction_count(const crdt_chat *c, crdt_dot id);
/** Visit the reactions currently on, in the canonical byte order of their
 *  keys (by user, then emoji): the same order on every replica. O(reactions
 *  ever made on the message). */
CRDT_API CRDT_NODISCARD int crdt_chat_reactions(const crdt_chat *c,
    crdt_dot id, crdt_chat_reaction_fn fn, void *ud);
/** Whether `user` has read message `id`. O(log replicas). */
CRDT_API bool crdt_chat_has_read(const crdt_chat *c, const void *user,
    size_t user_len, crdt_dot id);
/** Visit the users who have read message `id`, in byte order of their
 *  IDs (canonical). O(users of the thread). */
CRDT_API CRDT_NODISCARD int crdt_chat_read_by(const crdt_chat *c,
    crdt_dot id, crdt_chat_user_fn fn, void *ud);
/** Messages `user` has not read, excluding its own. O(replicas log n). */
CRDT_API size_t crdt_chat_unread(const crdt_chat *c, const void *user,
    size_t user_len);
/** Whether `user` is a member now. */
CRDT_API bool crdt_chat_is_member(const crdt_chat *c, const void *user,
    size_t user_len);
/** Visit current members in byte order of their IDs (canonical).
 *  O(users of the thread). */
CRDT_API CRDT_NODISCARD int crdt_chat_members(const crdt_chat *c,
    crdt_chat_user_fn fn, void *ud);
/**
 * Visit, in thread order, the messages of replica `self` that are not yet
 * delivered and not rejected: the outbox. Resend one by sending the bytes
 * of crdt_doc_log_get() again; receiving them twice is harmless.
 */
CRDT_API CRDT_NODISCARD int crdt_chat_outbox(const crdt_chat *c,
    const crdt_replica_id *self, int (*fn)(void *ud, crdt_dot id), void *ud);

/**
 * The message bytes of transaction `dot` from the message log (borrowed
 * until the next modification of the document or the next call of this
 * function on it: a chat post's message is logged without the part its
 * record holds, and put together in a buffer of the document's).
 * O(message) for such a post, O(1) otherwise.
 * @return 0, CRDT_EINVAL, CRDT_ENOTFOUND (never applied, or evicted),
 *         CRDT_ENOMEM (no memory to put the message together).
 */
CRDT_API CRDT_NODISCARD int crdt_doc_log_get(const crdt_doc *d, crdt_dot dot,
    const uint8_t **bytes, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_CHAT_H */
