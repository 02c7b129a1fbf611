#ifndef CRDT_VCLOCK_H
#define CRDT_VCLOCK_H

/*
 * Vector clock: replica ID -> highest contiguous counter seen. Entries with
 * counter 0 do not exist (get() returns 0 for them), so two clocks with the
 * same non-zero entries are equal and encode to the same bytes.
 * Kept sorted by replica ID: get/covers are O(log n), merge and compare are
 * O(n + m).
 */

#include "crdt/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct crdt_vclock crdt_vclock;

/** Result of crdt_vclock_compare(). */
typedef enum crdt_order {
	CRDT_ORDER_EQUAL = 0,
	CRDT_ORDER_BEFORE = 1,    /* a < b: every entry <=, one < */
	CRDT_ORDER_AFTER = 2,     /* a > b */
	CRDT_ORDER_CONCURRENT = 3 /* neither */
} crdt_order;

/**
 * Create an empty clock. `cfg` borrowed (allocator and limits copied);
 * NULL = defaults. `*out` transferred: free with crdt_vclock_free().
 * @return 0, CRDT_EINVAL or CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_vclock_new(const crdt_config *cfg,
    crdt_vclock **out);
/** Free a clock; NULL is a no-op. */
CRDT_API void crdt_vclock_free(crdt_vclock *vc);
/** Deep copy with the same allocator. @return 0, CRDT_EINVAL, CRDT_ENOMEM. */
CRDT_API CRDT_NODISCARD int crdt_vclock_clone(const crdt_vclock *vc,
    crdt_vclock **out);

/** Counter for `id`; 0 when absent. */
CRDT_API uint64_t crdt_vclock_get(const crdt_vclock *vc,
    const crdt_replica_id *id);
/**
 * Set the entry for `id` to `counter` (0 removes it).
 * @return 0, CRDT_EINVAL or CRDT_ENOMEM (clock unchanged).
 */
CRDT_API CRDT_NODISCARD int crdt_vclock_set(crdt_vclock *vc,
    const crdt_replica_id *id, uint64_t counter);
/**
 * Pointwise max into `dst`. `src` borrowed.
 * @return 0, CRDT_EINVAL or CRDT_ENOMEM (dst unchanged).
 */
CRDT_API CRDT_NODISCARD int crdt_vclock_merge(crdt_vclock *dst,
    const crdt_vclock *src);
/** Causal comparison of two clocks. */
CRDT_API crdt_order crdt_vclock_compare(const crdt_vclock *a,
    const crdt_vclock *b);
/** True when the clock has seen `dot` (get(dot.replica) >= dot.counter). */
CRDT_API bool crdt_vclock_covers(const crdt_vclock *vc, crdt_dot dot);
/** Number of non-zero entries. */
CRDT_API size_t crdt_vclock_size(const crdt_vclock *vc);
/**
 * The i-th entry in replica-ID order (0 <= i < size).
 * @return 0 or CRDT_EINVAL (out of range; outputs untouched).
 */
CRDT_API CRDT_NODISCARD int crdt_vclock_entry(const crdt_vclock *vc, size_t i,
    crdt_replica_id *id, uint64_t *counter);

/**
 * Append the canonical encoding to `out`:
 * msgpack [1, [id0, c0, id1, c1, ...]] with ids ascending (docs/wire-format.md).
 * @return 0, CRDT_EINVAL or CRDT_ENOMEM (out->len restored).
 */
CRDT_API CRDT_NODISCARD int crdt_vclock_encode(const crdt_vclock *vc,
    crdt_buf *out);
/**
 * Decode a canonical encoding (bytes borrowed) into a new clock. Anything
 * the encoder would not produce is refused: unsorted or duplicate IDs, zero
 * counters, non-minimal integers, trailing bytes.
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG or
 *         CRDT_ENOMEM; `*out` is set only on success.
 */
CRDT_API CRDT_NODISCARD int crdt_vclock_decode(const crdt_config *cfg,
    const void *bytes, size_t len, crdt_vclock **out);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_VCLOCK_H */
