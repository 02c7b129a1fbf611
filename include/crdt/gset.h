#ifndef CRDT_GSET_H
#define CRDT_GSET_H

/*
 * Grow-only set of byte strings. Each element remembers the dot that added
 * it; when two replicas add the same element concurrently the smaller dot
 * (crdt_dot_cmp) is kept, so the choice does not depend on delivery order.
 *
 * Standalone use: a set belongs to one replica (`self`). add() stamps the op
 * with the next counter of `self`; ops and states from other replicas are
 * folded in with apply_op() and merge(). Lookups are O(1) expected (SipHash
 * table with a per-set random key).
 */

#include "crdt/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct crdt_gset crdt_gset;

/**
 * Create an empty set owned by replica `self` (borrowed, copied).
 * `cfg` borrowed, NULL = defaults. `*out` transferred: crdt_gset_free().
 * @return 0, CRDT_EINVAL, CRDT_ENOMEM or CRDT_ECRYPTO.
 */
CRDT_API CRDT_NODISCARD int crdt_gset_new(const crdt_config *cfg,
    const crdt_replica_id *self, crdt_gset **out);
/** Free a set; NULL is a no-op. */
CRDT_API void crdt_gset_free(crdt_gset *s);

/**
 * Add `elem` (borrowed, copied) as a local operation and append the op to
 * `op_out` (docs/wire-format.md, "G-Set op"). An element already present is
 * still a valid op; it is redundant wherever it is applied.
 * @return 0, CRDT_EINVAL, CRDT_ETOOBIG (len > limits.max_value_bytes, or
 *         the set holds 2^27 - 2 elements: its table's limit),
 *         CRDT_EOVERFLOW (counter exhausted) or CRDT_ENOMEM. On error the
 *         set and op_out are unchanged.
 */
CRDT_API CRDT_NODISCARD int crdt_gset_add(crdt_gset *s, const void *elem,
    size_t len, crdt_buf *op_out);
/**
 * Apply an op produced by crdt_gset_add() on any replica. Idempotent.
 * `op` borrowed.
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG or
 *         CRDT_ENOMEM; the set is unchanged on error.
 */
CRDT_API CRDT_NODISCARD int crdt_gset_apply_op(crdt_gset *s, const void *op,
    size_t len);
/**
 * Union `src` (borrowed) into `dst`. Commutative, associative, idempotent.
 * @return 0, CRDT_EINVAL or CRDT_ENOMEM (dst unchanged).
 */
CRDT_API CRDT_NODISCARD int crdt_gset_merge(crdt_gset *dst,
    const crdt_gset *src);

/** True when `elem` is in the set. */
CRDT_API bool crdt_gset_contains(const crdt_gset *s, const void *elem,
    size_t len);
/**
 * The dot that added `elem` into `*dot` (may be NULL).
 * @return 0, CRDT_EINVAL or CRDT_ENOTFOUND.
 */
CRDT_API CRDT_NODISCARD int crdt_gset_lookup(const crdt_gset *s,
    const void *elem, size_t len, crdt_dot *dot);
/** Number of elements. */
CRDT_API size_t crdt_gset_size(const crdt_gset *s);

/**
 * Visitor for crdt_gset_foreach(). `elem` is borrowed for the call only.
 * Return non-zero to stop; that value is returned by foreach.
 */
typedef int (*crdt_gset_visit_fn)(void *ud, const uint8_t *elem, size_t len,
    crdt_dot dot);
/**
 * Visit every element in canonical order (bytewise, shorter prefix first).
 * Do not modify the set from the visitor.
 * @return 0, the visitor's non-zero value, CRDT_EINVAL or CRDT_ENOMEM (the
 *         sorted view is built lazily after modifications).
 */
CRDT_API CRDT_NODISCARD int crdt_gset_foreach(const crdt_gset *s,
    crdt_gset_visit_fn fn, void *ud);

/**
 * Append the canonical state encoding to `out`: equal sets give equal bytes
 * whatever the order of the ops that built them.
 * @return 0, CRDT_EINVAL or CRDT_ENOMEM (out->len restored).
 */
CRDT_API CRDT_NODISCARD int crdt_gset_encode(const crdt_gset *s,
    crdt_buf *out);
/**
 * Decode a state (bytes borrowed) into a new set owned by `self`. The
 * local counter resumes past every dot of `self` in the state.
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG,
 *         CRDT_ECRYPTO or CRDT_ENOMEM; `*out` set only on success.
 */
CRDT_API CRDT_NODISCARD int crdt_gset_decode(const crdt_config *cfg,
    const crdt_replica_id *self, const void *bytes, size_t len,
    crdt_gset **out);
/** Same elements with the same dots. */
CRDT_API bool crdt_gset_equal(const crdt_gset *a, const crdt_gset *b);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_GSET_H */
