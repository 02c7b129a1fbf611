#ifndef CRDT_STORE_H
#define CRDT_STORE_H

/*
 * Durable storage for a replica: an append-only log of messages, the
 * latest checkpoint (snapshot bytes plus the clock it covers), and the
 * loaded snapshot records: snapshots a document merged since that
 * checkpoint, written ahead of the merge (crdt_store_put_snapshot).
 *
 * A crdt_store is an opaque handle over a backend vtable (crdt_store_ops).
 * The library ships one backend, SQLite (crdt_store_open_sqlite()); an
 * application can put the same interface on LevelDB, LMDB or a server
 * database with crdt_store_new(). The front end (the crdt_store_* calls)
 * checks arguments and messages before any backend sees them, so every
 * backend gets the same rules:
 *
 *   - Messages are opaque bytes to the store, except for their dot: each
 *     one is read with crdt_msg_peek() (strict). A batch with any message
 *     peek refuses is refused whole, with peek's error, and nothing is
 *     written.
 *   - A message's identity is (dot, digest): digest = BLAKE2b-256 of its
 *     bytes (CRDT_STORE_DIGEST_BYTES). Appending bytes already stored is a
 *     no-op. A different message under a dot already stored is kept as
 *     well: two variants of one dot are equivocation evidence
 *     (docs/security.md), and evidence belongs in the log. The store does
 *     not judge messages (signatures, allowlists, bounds per sender): it
 *     keeps what the application appends; a document appends what it
 *     accepted.
 *   - Iteration hands out, in append order, the messages whose dot a clock
 *     V does not cover (crdt_vclock_covers() false): what a peer with
 *     clock V lacks. Append order is causal order when the application
 *     appends in delivery order (as a document does); a receiving
 *     document buffers anything early anyway.
 *
 * Guide: docs/storage.md (schema, pragmas, durability per mode, errors).
 *
 * Errors: every function returns 0 or a negative CRDT_E* code. A failed
 * call changes nothing in the store (the batch or checkpoint is all or
 * nothing) and leaves out-parameters untouched. Storage errors:
 * CRDT_EIO (the device or file failed; read-only file), CRDT_EFULL (disk
 * or configured quota full), CRDT_ECORRUPT (the stored bytes fail their
 * checks), CRDT_EBUSY (another connection holds the lock past the busy
 * timeout; retry).
 *
 * Memory: the front end and the SQLite backend allocate their own memory
 * through cfg->alloc. SQLite's internal memory (page cache, statements)
 * comes from SQLite's allocator, which is process-wide
 * (sqlite3_config(SQLITE_CONFIG_MALLOC)), not from cfg->alloc.
 *
 * Thread safety: one handle is used by one thread at a time, like every
 * libcrdt object (its own writer thread for background checkpoints,
 * crdt_store_put_checkpoint_bg, is serialised with that thread's calls). Several handles (in one or several processes) may open
 * the same SQLite file; SQLite serialises their writes. A handle must not
 * be carried across fork() (SQLite's rule): the child opens its own.
 */

#include "crdt/common.h"
#include "crdt/vclock.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct crdt_store crdt_store;

/** Bytes of a message digest (BLAKE2b-256 of the message bytes). */
#define CRDT_STORE_DIGEST_BYTES 32

/** One message to append: `len` bytes at `bytes` (borrowed). */
typedef struct crdt_store_msg {
	const void *bytes;
	size_t len;
} crdt_store_msg;

/**
 * Iteration callback: one stored message, borrowed for the duration of
 * the call. Return 0 to go on; a negative CRDT_E* code stops the
 * iteration and is returned by crdt_store_since(). Must not call into the
 * same store (that call gets CRDT_ESTATE).
 */
typedef int (*crdt_store_msg_fn)(void *ud, crdt_dot dot,
    const uint8_t *bytes, size_t len);

/**
 * Loaded-snapshot callback (crdt_store_snapshots()): one stored record,
 * its id and bytes, borrowed for the duration of the call. Return 0 to go
 * on; a negative CRDT_E* code stops and is returned. Must not call into
 * the same store (CRDT_ESTATE).
 */
typedef int (*crdt_store_snap_fn)(void *ud, uint64_t id,
    const uint8_t *bytes, size_t len);

/** One checked message, as the front end hands it to a backend. */
typedef struct crdt_store_rec {
	crdt_dot dot;        /* from crdt_msg_peek() */
	uint8_t digest[CRDT_STORE_DIGEST_BYTES];
	const uint8_t *bytes; /* borrowed for the call */
	size_t len;
} crdt_store_rec;

/**
 * Backend vtable, borrowed by crdt_store_new() (copied). `impl` is the
 * backend's own state. Every function returns 0 or a negative CRDT_E*
 * code and, on error, must leave the stored state exactly as before the
 * call. The front end has already checked every argument: pointers are
 * non-NULL, messages parse, n >= 1, budget >= 1.
 *
 * append: store the batch atomically (all or nothing) and durably before
 *   returning 0 (an ack; docs/storage.md says what it promises per mode).
 *   A record whose (dot, digest) is already stored is skipped; `*added`
 *   receives the number of records actually new (duplicates inside the
 *   batch count once).
 * put_checkpoint: replace the checkpoint, atomically: `snap` (opaque) and
 *   `clock` (the canonical crdt_vclock_encode() bytes of the clock it
 *   covers), both borrowed. The log is not pruned.
 * get_checkpoint: append the stored snapshot to `snap` and the stored
 *   clock bytes to `clock`; CRDT_ENOTFOUND when none was ever put. The
 *   front end decodes the clock strictly (bad bytes: CRDT_ECORRUPT).
 * since: call `fn` for each stored message whose dot `v` does not cover,
 *   in append order, starting after position `*cursor` (0 = from the
 *   start). Positions are backend-defined, increase with append order and
 *   are never reused. Budget: the first message found is always handed
 *   out (so paging progresses even past a message larger than the
 *   budget); each further one only if the bytes handed out stay within
 *   `budget`. On return 0, `*more` says whether a message `v` lacks
 *   remains past the new `*cursor`, and `*cursor` is the position up to
 *   which every message was either handed out or covered by `v`. On
 *   error (also a negative return from `fn`) `*cursor` and `*more` are
 *   untouched.
 * close: release everything; the store is not used again. May be NULL.
 *
 * Loaded snapshots (optional: all three or none; crdt_store_new() refuses
 * a vtable with only some). A document attached to the store writes a
 * snapshot it merges (crdt_doc_load(), a sync snapshot) ahead of the
 * merge, as it writes a message ahead of applying it: no stored message
 * carries what a snapshot brought, and a restart merges these after the
 * checkpoint (docs/storage.md, "Loaded snapshots"). Without them a
 * document attached to the store refuses such a load (CRDT_ESTATE).
 * put_snapshot: store `snap` (opaque, borrowed) as a new record,
 *   atomically and durably, and set `*id` to its id: ids increase with
 *   each record put and are never reused, also after records are dropped.
 * snapshots: call `fn` for every stored record, ascending by id; a
 *   negative return from `fn` stops and is returned.
 * put_checkpoint_upto: put_checkpoint, and drop every record with id <=
 *   `upto` (those the checkpoint's snapshot holds), in the same atomic
 *   step: either both happen or neither.
 */
typedef struct crdt_store_ops {
	int (*append)(void *impl, const crdt_store_rec *recs, size_t n,
	    size_t *added);
	int (*put_checkpoint)(void *impl, const uint8_t *snap, size_t snap_len,
	    const uint8_t *clock, size_t clock_len);
	int (*get_checkpoint)(void *impl, crdt_buf *snap, crdt_buf *clock);
	int (*since)(void *impl, const crdt_vclock *v, uint64_t *cursor,
	    size_t budget, crdt_store_msg_fn fn, void *ud, bool *more);
	void (*close)(void *impl);
	int (*put_snapshot)(void *impl, const uint8_t *snap, size_t len,
	    uint64_t *id);
	int (*snapshots)(void *impl, crdt_store_snap_fn fn, void *ud);
	int (*put_checkpoint_upto)(void *impl, const uint8_t *snap,
	    size_t snap_len, const uint8_t *clock, size_t clock_len,
	    uint64_t upto);
} crdt_store_ops;

/**
 * Wrap an application backend. `cfg` borrowed (allocator and limits
 * copied), NULL = defaults; `ops` borrowed and copied (append,
 * put_checkpoint, get_checkpoint and since required); `impl` transferred
 * to the handle: crdt_store_close() calls ops->close(impl). On error
 * nothing is taken (the caller still owns `impl`).
 * @return 0, CRDT_EINVAL, CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_store_new(const crdt_config *cfg,
    const crdt_store_ops *ops, void *impl, crdt_store **out);

/** SQLite `synchronous` setting (docs/storage.md, durability). */
typedef enum crdt_store_sync {
	CRDT_STORE_SYNC_FULL = 0,  /* default: an ack survives power loss */
	CRDT_STORE_SYNC_NORMAL = 1 /* an ack survives a process crash; power
				    * loss may undo the last acks, never
				    * corrupt the store */
} crdt_store_sync;

/** Options for crdt_store_open_sqlite(); all zero (or NULL) = defaults. */
typedef struct crdt_store_sqlite_opts {
	crdt_store_sync synchronous; /* [CRDT_STORE_SYNC_FULL] */
	/* Wait this long for another connection's lock before CRDT_EBUSY
	 * [0 = 5000 ms]. */
	uint32_t busy_timeout_ms;
	/* Quota: the database may grow to this many pages (PRAGMA
	 * max_page_count; page size 4096) before appends fail with
	 * CRDT_EFULL [0 = SQLite's limit]. */
	uint32_t max_pages;
	/* The store must exist already: a missing file is CRDT_ENOTFOUND
	 * and an empty one (no schema: a new or zero-length file, e.g. a
	 * store truncated to nothing) CRDT_ECORRUPT, instead of a new empty
	 * store. For restarting a replica, whose store is never new. */
	bool must_exist;
	/* Skip the checks on open that read the whole file (PRAGMA
	 * quick_check and every row against its digest and dot): the
	 * version and the schema are still checked, and every row and the
	 * checkpoint are still checked when read (since, checkpoint, load),
	 * so damage is never handed out as data, but it is reported
	 * (CRDT_ECORRUPT) by the read that meets it rather than by the
	 * open. Open is then O(schema) plus SQLite's WAL recovery, not
	 * O(database): a restart in time bounded by the checkpoint and
	 * tail, not by history. */
	bool quick_open;
	uint8_t reserved[14]; /* zero */
} crdt_store_sqlite_opts;

/**
 * Open (creating if absent) the SQLite store at `path` (NUL-terminated,
 * borrowed). WAL journal, the chosen synchronous mode, one transaction
 * per batch. An existing file is checked before the handle exists:
 * `PRAGMA quick_check`, the schema, and every stored message and the
 * checkpoint against their digests and dots (quick_open: the schema
 * only). A store of schema version 1 or 2 (an older libcrdt) is migrated
 * to version 3 first, in one transaction (docs/storage.md, "Versions"):
 * on any error, or a crash, the old file is left as it was; from version
 * 1 it needs free space of about the file's size (else CRDT_EFULL) and
 * about the time of a full open, once; from version 2, one page (the new
 * table) and O(schema).
 * Cost: O(database size) to open (the check reads everything once;
 * quick_open: O(schema));
 * append O(batch bytes + batch * log(stored)); since from cursor 0 finds
 * the first message v lacks on the dot index, O(stored replicas * log n
 * + messages v lacks), then, like a later page from its cursor, examines
 * the messages after it, O(log |v|) each, reading bytes only for what it
 * hands out: a peer that is up to date costs no scan of the log, and
 * paging through a long catch-up is one pass.
 * @return 0, CRDT_EINVAL (NULL, bad options), CRDT_ECORRUPT (not a
 *         database, not a libcrdt store, fails the check, or empty with
 *         must_exist; no handle), CRDT_ENOTFOUND (missing, must_exist),
 *         CRDT_EVERSION (a store of a newer schema version), CRDT_EIO
 *         (cannot open or read the file), CRDT_EFULL (no room to
 *         migrate a version-1 store), CRDT_EBUSY, CRDT_ECRYPTO
 *         (libsodium, for the digests, failed to initialise), CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_store_open_sqlite(const crdt_config *cfg,
    const char *path, const crdt_store_sqlite_opts *o, crdt_store **out);

/** Close the store and free the handle; NULL is a no-op. */
CRDT_API void crdt_store_close(crdt_store *s);

/**
 * Append `n` messages (bytes borrowed) as one atomic, durable batch
 * (n = 0 is a no-op). Every message is first read with crdt_msg_peek();
 * the batch is refused whole on the first it refuses.
 * @param added  receives how many messages were new (may be NULL).
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG (a
 *         message over limits.max_bytes, or n over limits.max_elems),
 *         CRDT_ESTATE (called from an iteration callback), CRDT_EIO,
 *         CRDT_EFULL, CRDT_EBUSY, CRDT_ECRYPTO, CRDT_ENOMEM; nothing is
 *         written.
 */
CRDT_API CRDT_NODISCARD int crdt_store_append(crdt_store *s,
    const crdt_store_msg *msgs, size_t n, size_t *added);

/**
 * Replace the checkpoint with `snap` (opaque bytes, borrowed, at most
 * limits.max_bytes; e.g. crdt_doc_save()) and the clock `covers`
 * (borrowed) of what it holds. Atomic and durable like an append. The log
 * is kept whole.
 * @return 0, CRDT_EINVAL, CRDT_ETOOBIG, CRDT_ESTATE, CRDT_EIO, CRDT_EFULL,
 *         CRDT_EBUSY, CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_store_put_checkpoint(crdt_store *s,
    const void *snap, size_t len, const crdt_vclock *covers);

/**
 * crdt_store_put_checkpoint(), and in the same atomic step drop the loaded
 * snapshot records with id <= `snaps_upto` (crdt_store_put_snapshot()):
 * the ones `snap` holds. A crash or an error leaves both the previous
 * checkpoint and every record. `snaps_upto` 0 drops none (that is
 * crdt_store_put_checkpoint()); a backend without snapshot records drops
 * none either way.
 * @return as crdt_store_put_checkpoint().
 */
CRDT_API CRDT_NODISCARD int crdt_store_put_checkpoint_upto(crdt_store *s,
    const void *snap, size_t len, const crdt_vclock *covers,
    uint64_t snaps_upto);

/**
 * Background checkpoint: like crdt_store_put_checkpoint(), but the write
 * (for SQLite: the transaction and the fsync of the snapshot) happens on
 * the store's writer thread, started at the first call, and this returns
 * once the job is queued. `snap`'s bytes change hands (at most
 * limits.max_bytes; on 0 `snap` is left empty, its memory now the
 * store's, freed with snap's allocator on the caller's thread); `covers`
 * is borrowed. A job still queued when a newer one (or a
 * crdt_store_put_checkpoint) comes is dropped: the newer one covers more.
 * Every other call on the handle waits while the writer holds the
 * backend (one call at a time, as before), so a checkpoint is as atomic
 * as a foreground one: a crash while it is written leaves the previous
 * checkpoint. crdt_store_bg_status() reports a failed write; close
 * writes what is queued first (call crdt_store_bg_status(s, true)
 * before it to learn that write's error: close cannot return one). The
 * snapshot's memory is freed by a later call on this handle or by close,
 * so its allocator must outlive the handle.
 * A backend of crdt_store_new() gets no writer: the checkpoint is written
 * before the call returns, with the errors of crdt_store_put_checkpoint
 * (the same as when the system refuses a thread).
 * Cost: O(clock) here, plus the clock's copy; the write is the writer's.
 * @return 0, CRDT_EINVAL, CRDT_ETOOBIG, CRDT_ESTATE, CRDT_ENOMEM (and
 *         without a writer the store errors); on error `snap` is
 *         untouched and nothing is queued.
 */
CRDT_API CRDT_NODISCARD int crdt_store_put_checkpoint_bg(crdt_store *s,
    crdt_buf *snap, const crdt_vclock *covers);

/**
 * The first error of a background checkpoint write since the last call
 * (then cleared), or 0. `wait`: first wait until nothing is queued or
 * being written (every checkpoint handed over so far is then stored or
 * failed). A failed background checkpoint changed nothing: the previous
 * checkpoint stays, and the log is whole.
 * @return 0, CRDT_EINVAL, or the write's error (CRDT_EIO, CRDT_EFULL,
 *         CRDT_EBUSY, CRDT_ENOMEM, CRDT_ETOOBIG, ...).
 */
CRDT_API int crdt_store_bg_status(crdt_store *s, bool wait);

/**
 * The latest checkpoint: its snapshot is appended to `snap_out`, and
 * `*covers_out` receives a new clock (transferred: crdt_vclock_free()).
 * @return 0, CRDT_ENOTFOUND (none yet), CRDT_EINVAL, CRDT_ESTATE,
 *         CRDT_ECORRUPT, CRDT_EIO, CRDT_EBUSY, CRDT_ENOMEM; on error
 *         snap_out->len is restored and *covers_out untouched.
 */
CRDT_API CRDT_NODISCARD int crdt_store_checkpoint(crdt_store *s,
    crdt_buf *snap_out, crdt_vclock **covers_out);

/**
 * Hand `fn` the stored messages a peer with clock `v` (borrowed) lacks,
 * in append order, one page at a time: resume from `*cursor` (start with
 * 0), at most `budget` bytes (>= 1; SIZE_MAX = all) except that a page
 * always holds at least one message when any remains. On 0, `*cursor` is
 * advanced past the page and `*more` says whether another page follows:
 * call again with the same cursor and the same or a larger clock until
 * `*more` is false. A message is handed out with the dot it was stored
 * under, checked: bytes that no longer match their digest or dot give
 * CRDT_ECORRUPT. Loading = crdt_store_checkpoint() then since() with the
 * checkpoint's clock.
 * On error (a negative return of `fn` included, returned as is) `*cursor`
 * and `*more` are untouched: calling again repeats the page, so a
 * consumer sees each message at least once.
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (called from a callback),
 *         CRDT_ECORRUPT, CRDT_EIO, CRDT_EBUSY, CRDT_ENOMEM, or fn's code.
 */
CRDT_API CRDT_NODISCARD int crdt_store_since(crdt_store *s,
    const crdt_vclock *v, uint64_t *cursor, size_t budget,
    crdt_store_msg_fn fn, void *ud, bool *more);

/**
 * What a restarting replica reads: the checkpoint's snapshot is appended
 * to `snap_out` (`*has_checkpoint` says whether there is one), then `fn`
 * gets every stored message the checkpoint's clock does not cover (all
 * of them without a checkpoint), in append order. Feed the snapshot to
 * crdt_doc_load(), then the loaded snapshot records (read them first,
 * crdt_store_snapshots(): `fn` cannot call the store), then the messages
 * to crdt_doc_receive(); crdt_doc_open_store() does all of it.
 * On error snap_out->len is restored and *has_checkpoint untouched;
 * messages already handed to `fn` were handed out (load again from the
 * start: receiving a message twice is a no-op for a document).
 * Cost: crdt_store_checkpoint() plus crdt_store_since() from cursor 0.
 * @return 0, CRDT_EINVAL, CRDT_ESTATE, CRDT_ECORRUPT (also a backend
 *         that says more follows without moving its cursor), CRDT_EIO,
 *         CRDT_EBUSY, CRDT_ENOMEM, or fn's code.
 */
CRDT_API CRDT_NODISCARD int crdt_store_load(crdt_store *s, crdt_buf *snap_out,
    bool *has_checkpoint, crdt_store_msg_fn fn, void *ud);

/**
 * Store a loaded snapshot record: `snap` (opaque bytes, borrowed, at most
 * limits.max_bytes), atomically and durably like an append; `*id`
 * receives its id (ids increase and are never reused). A document
 * attached to the store calls this before a snapshot it merges becomes
 * visible, so what a restart restores includes it (docs/storage.md,
 * "Loaded snapshots"); a checkpoint that holds it drops it
 * (crdt_store_put_checkpoint_upto()). One document per store: the
 * records and the checkpoint are that document's.
 * Cost: O(len) plus one commit (one fsync for SQLite in FULL mode).
 * @return 0, CRDT_EINVAL, CRDT_ETOOBIG, CRDT_ESTATE (called from a
 *         callback, or the backend keeps no snapshot records), CRDT_EIO,
 *         CRDT_EFULL, CRDT_EBUSY, CRDT_ENOMEM; on error nothing is
 *         stored and *id is untouched.
 */
CRDT_API CRDT_NODISCARD int crdt_store_put_snapshot(crdt_store *s,
    const void *snap, size_t len, uint64_t *id);

/**
 * Hand `fn` every stored loaded-snapshot record, ascending by id (a
 * restart merges them after the checkpoint and before the messages:
 * crdt_doc_open_store()). Records are checked on the way out (SQLite: a
 * BLAKE2b digest each): damage is CRDT_ECORRUPT. A backend without
 * snapshot records has none: 0, `fn` not called.
 * Cost: O(records' bytes).
 * @return 0, CRDT_EINVAL, CRDT_ESTATE (called from a callback),
 *         CRDT_ECORRUPT, CRDT_EIO, CRDT_EBUSY, CRDT_ENOMEM, or fn's code.
 */
CRDT_API CRDT_NODISCARD int crdt_store_snapshots(crdt_store *s,
    crdt_store_snap_fn fn, void *ud);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_STORE_H */
