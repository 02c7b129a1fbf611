#ifndef CRDT_COMMON_H
#define CRDT_COMMON_H

/*
 * Shared value types, allocator hooks, limits and byte buffers.
 *
 * Thread safety: no libcrdt object is thread-safe. Use one object from one
 * thread at a time; distinct objects are independent. The only process-wide
 * state is libsodium's one-time initialisation (crdt_init()).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/error.h"
#include "crdt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CRDT_BUILDING) && defined(__GNUC__)
#define CRDT_API __attribute__((visibility("default")))
#else
#define CRDT_API
#endif
#if defined(__GNUC__)
#define CRDT_NODISCARD __attribute__((warn_unused_result))
#else
#define CRDT_NODISCARD
#endif

/** Library version as CRDT_VERSION_NUMBER of the built library. */
CRDT_API unsigned crdt_version_number(void);
/** Library version string ("0.1.0"); static, never NULL. */
CRDT_API const char *crdt_version_string(void);

/** Static description of an error code; never NULL ("unknown error"). */
CRDT_API const char *crdt_strerror(int err);
/** Static name of an error code ("CRDT_EINVAL"); never NULL. */
CRDT_API const char *crdt_err_name(int err);

/**
 * One-time process initialisation (libsodium). Safe to call many times and
 * from several threads. Constructors call it themselves; call it early only
 * to surface CRDT_ECRYPTO before any work.
 * @return 0 or CRDT_ECRYPTO.
 */
CRDT_API CRDT_NODISCARD int crdt_init(void);

/**
 * Allocator hooks. All three function pointers NULL means libc. Sizes are
 * always passed back to realloc/free so a hook can account bytes exactly.
 * `alloc` and `realloc` return NULL on failure; `free` accepts NULL.
 */
typedef struct crdt_allocator {
	void *(*alloc)(void *ud, size_t size);
	void *(*realloc)(void *ud, void *p, size_t old_size, size_t new_size);
	void (*free)(void *ud, void *p, size_t size);
	void *ud;
} crdt_allocator;

/**
 * Bounds applied to every decoder. Exceeding one gives CRDT_ETOOBIG.
 * A zero field means "use the default" shown in brackets. max_bytes and
 * max_value_bytes must be below 4 GiB (UINT32_MAX): a configuration with
 * a larger one is refused with CRDT_EINVAL.
 */
typedef struct crdt_limits {
	size_t max_bytes;       /* input length            [64 MiB] */
	size_t max_elems;       /* elements in one input   [4 Mi]   */
	size_t max_value_bytes; /* one byte string         [1 MiB]  */
	unsigned max_depth;     /* array nesting           [16]     */
} crdt_limits;

/** Physical clock in milliseconds since the Unix epoch. */
typedef uint64_t (*crdt_clock_fn)(void *ud);

/** Bytes of a document ID. */
#define CRDT_DOC_ID_BYTES 32

/**
 * Names one document (not one replica): every replica of a document uses
 * the same ID, fixed when the document is created. Signatures and the
 * associated data of sealed payloads cover it, so a message of one
 * document fails verification in every other; snapshots carry it, so
 * crdt_doc_load() refuses another document's snapshot (CRDT_EWRONGDOC).
 * All zero = unbound (documents with the zero ID accept each other's
 * messages). Pick it at random (crdt_doc_key_generate() fills 32 random
 * bytes) or derive it from a name the application already has.
 */
typedef struct crdt_doc_id {
	uint8_t bytes[CRDT_DOC_ID_BYTES];
} crdt_doc_id;

/**
 * Construction settings, copied by every constructor that takes one.
 * Start from crdt_config_default() and override fields; NULL where a
 * constructor takes `const crdt_config *` means all defaults.
 */
typedef struct crdt_config {
	crdt_allocator alloc; /* zeroed = libc */
	crdt_limits limits;
	crdt_clock_fn clock;  /* NULL = CLOCK_REALTIME */
	void *clock_ud;
	uint64_t max_drift_ms; /* HLC drift bound [60000]; see clock.h */
	/* Document runtime (doc.h); SIZE_MAX = unbounded. */
	size_t max_buffered_msgs;  /* causal buffer, messages  [1 Mi]    */
	size_t max_buffered_bytes; /* causal buffer, bytes     [64 MiB]  */
	/* Message log. Beyond its messages (at most log_max_bytes) it
	 * holds, per replica, at most two partly used chunks of at most
	 * 64 KiB and under 1 KiB at the end of each other chunk
	 * (document.md, "Message log"). */
	size_t log_max_msgs;       /* message log, messages    [1 Mi]    */
	size_t log_max_bytes;      /* message log, bytes       [256 MiB] */
	size_t max_replicas;       /* replica IDs a document tracks [65536] */
	crdt_doc_id doc_id;        /* the document's ID [zero = unbound]   */
	/* Sync DATA frame budget in bytes [limits.max_bytes]; larger values
	 * are clamped to limits.max_bytes (doc.h, sync protocol). */
	size_t sync_max_bytes;
	/* Per-sender bounds on what peers' bytes can make a document hold
	 * (document.md, "Per-sender bounds"). */
	size_t max_variants;       /* equivocation variants kept per dot [4];
	                            * a chat thread keeps at most
	                            * max(16, 4 x this) rival records of one
	                            * message ID (CRDT_ETOOBIG past it) */
	size_t max_evidence_bytes; /* evidence bytes; a signer: 1/4 [16 MiB] */
	size_t max_sender_buffered; /* buffered bytes per sender [16 MiB] */
	/* Automatic checkpoints of a document attached to a store (doc.h,
	 * crdt_doc_attach_store): one is taken when the bytes appended since
	 * the last checkpoint reach ckpt_tail_pct percent of that
	 * checkpoint's size and at least ckpt_min_bytes. Amortized O(1)
	 * per appended byte; a restart replays at most about that tail.
	 * ckpt_tail_pct = UINT32_MAX: none (crdt_doc_checkpoint only). */
	size_t ckpt_min_bytes;     /* tail floor, bytes        [256 KiB] */
	uint32_t ckpt_tail_pct;    /* tail / checkpoint, %     [50]      */
	uint8_t reserved[20];      /* zero; room to grow without an ABI break */
} crdt_config;

/** Fill `cfg` with defaults (libc allocator, real clock, limits above). */
CRDT_API void crdt_config_default(crdt_config *cfg);

/**
 * Growable byte buffer for variable-size outputs. Encoders *append* to a
 * buffer; on failure they restore `len` to its value at entry. The caller
 * owns the buffer: crdt_buf_init() before use, crdt_buf_fini() after.
 */
typedef struct crdt_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	crdt_allocator alloc;
} crdt_buf;

/** Initialise an empty buffer. `alloc` NULL = libc; it is copied. */
CRDT_API void crdt_buf_init(crdt_buf *b, const crdt_allocator *alloc);
/** Release the buffer's memory; it is left empty and reusable. NULL ok. */
CRDT_API void crdt_buf_fini(crdt_buf *b);
/** Set len to 0, keeping the capacity. */
CRDT_API void crdt_buf_clear(crdt_buf *b);
/**
 * Append `len` bytes (borrowed, copied).
 * @return 0, CRDT_ENOMEM, or CRDT_EINVAL if b is NULL or data NULL with len>0.
 */
CRDT_API CRDT_NODISCARD int crdt_buf_append(crdt_buf *b, const void *data,
    size_t len);

/** A 16-byte replica identifier. Compared bytewise (memcmp order). */
#define CRDT_REPLICA_ID_BYTES 16
typedef struct crdt_replica_id {
	uint8_t bytes[CRDT_REPLICA_ID_BYTES];
} crdt_replica_id;

/** The identity of one transaction: (replica, counter), counter >= 1. */
typedef struct crdt_dot {
	crdt_replica_id replica;
	uint64_t counter;
} crdt_dot;

#ifdef __cplusplus
}
#endif

#endif /* CRDT_COMMON_H */
