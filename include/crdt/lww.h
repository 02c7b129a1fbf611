#ifndef CRDT_LWW_H
#define CRDT_LWW_H

/*
 * Last-writer-wins register of a byte string, and a map of byte-string
 * keys to such registers.
 *
 * Every write carries a stamp (HLC, replica ID); the greatest stamp wins
 * (crdt_stamp_cmp). Two writes with the same stamp can only come from a
 * faulty or malicious replica; they are still resolved deterministically
 * (an absent value loses to a present one, then bytewise order), so merge
 * stays commutative even then.
 *
 * A register can be cleared: the clear is a write of "no value" and wins
 * or loses like any other write (a tombstone kept with its stamp).
 *
 * Standalone use: an object belongs to replica `self`, stamps local writes
 * with its own HLC, and advances that HLC past every stamp it applies, so a
 * local write always wins over what this replica has already seen. A remote
 * stamp beyond the drift bound (clock.h) is applied but does not move the
 * local clock.
 */

#include "crdt/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct crdt_lww crdt_lww;
typedef struct crdt_lww_map crdt_lww_map;

/**
 * Create an unset register owned by `self` (borrowed, copied).
 * `cfg` borrowed, NULL = defaults. `*out` transferred: crdt_lww_free().
 * @return 0, CRDT_EINVAL, CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_lww_new(const crdt_config *cfg,
    const crdt_replica_id *self, crdt_lww **out);
/** Free a register; NULL is a no-op. */
CRDT_API void crdt_lww_free(crdt_lww *r);
/**
 * Write `value` (borrowed, copied; len 0 allowed) locally and append the
 * op to `op_out`.
 * @return 0, CRDT_EINVAL, CRDT_ETOOBIG, CRDT_EOVERFLOW, CRDT_ENOMEM; the
 *         register and op_out are unchanged on error.
 */
CRDT_API CRDT_NODISCARD int crdt_lww_set(crdt_lww *r, const void *value,
    size_t len, crdt_buf *op_out);
/** Clear locally (write "no value"); errors as crdt_lww_set(). */
CRDT_API CRDT_NODISCARD int crdt_lww_clear(crdt_lww *r, crdt_buf *op_out);
/**
 * Apply an op from any replica (borrowed). Idempotent.
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG,
 *         CRDT_ENOMEM; unchanged on error.
 */
CRDT_API CRDT_NODISCARD int crdt_lww_apply_op(crdt_lww *r, const void *op,
    size_t len);
/** Keep the winner of dst and src. @return 0, CRDT_EINVAL, CRDT_ENOMEM. */
CRDT_API CRDT_NODISCARD int crdt_lww_merge(crdt_lww *dst,
    const crdt_lww *src);
/**
 * Current value: `*value` borrowed until the next modification.
 * @return 0, CRDT_EINVAL, or CRDT_ENOTFOUND (never set, or cleared).
 */
CRDT_API CRDT_NODISCARD int crdt_lww_get(const crdt_lww *r,
    const uint8_t **value, size_t *len);
/**
 * Stamp of the winning write (may be NULL each).
 * @return 0, CRDT_EINVAL or CRDT_ENOTFOUND (never written).
 */
CRDT_API CRDT_NODISCARD int crdt_lww_stamp(const crdt_lww *r, uint64_t *hlc,
    crdt_replica_id *writer);
/** The register's own HLC (drives local stamps). */
CRDT_API uint64_t crdt_lww_clock(const crdt_lww *r);
/** Append the canonical state. @return 0, CRDT_EINVAL, CRDT_ENOMEM. */
CRDT_API CRDT_NODISCARD int crdt_lww_encode(const crdt_lww *r,
    crdt_buf *out);
/**
 * Decode a state (borrowed) into a new register owned by `self`.
 * @return 0, CRDT_EINVAL, CRDT_EMALFORMED, CRDT_EVERSION, CRDT_ETOOBIG,
 *         CRDT_ENOMEM; `*out` set only on success.
 */
CRDT_API CRDT_NODISCARD int crdt_lww_decode(const crdt_config *cfg,
    const crdt_replica_id *self, const void *bytes, size_t len,
    crdt_lww **out);
/** Same winning write (stamp and value). */
CRDT_API bool crdt_lww_equal(const crdt_lww *a, const crdt_lww *b);

/**
 * Create an empty map owned by `self`. As crdt_lww_new().
 * `*out` transferred: crdt_lww_map_free().
 */
CRDT_API CRDT_NODISCARD int crdt_lww_map_new(const crdt_config *cfg,
    const crdt_replica_id *self, crdt_lww_map **out);
/** Free a map; NULL is a no-op. */
CRDT_API void crdt_lww_map_free(crdt_lww_map *m);
/**
 * Write `key` -> `value` locally (both borrowed, copied) and append the op.
 * @return 0, CRDT_EINVAL, CRDT_ETOOBIG, CRDT_EOVERFLOW, CRDT_ENOMEM;
 *         unchanged on error.
 */
CRDT_API CRDT_NODISCARD int crdt_lww_map_set(crdt_lww_map *m, const void *key,
    size_t klen, const void *value, size_t vlen, crdt_buf *op_out);
/** Remove `key` locally (a tombstone write); errors as crdt_lww_map_set(). */
CRDT_API CRDT_NODISCARD int crdt_lww_map_remove(crdt_lww_map *m,
    const void *key, size_t klen, crdt_buf *op_out);
/** Apply an op from any replica (borrowed). Errors as crdt_lww_apply_op(). */
CRDT_API CRDT_NODISCARD int crdt_lww_map_apply_op(crdt_lww_map *m,
    const void *op, size_t len);
/** Per-key LWW merge of src into dst. @return 0, CRDT_EINVAL, CRDT_ENOMEM. */
CRDT_API CRDT_NODISCARD int crdt_lww_map_merge(crdt_lww_map *dst,
    const crdt_lww_map *src);
/**
 * Value of `key`; `*value` borrowed until the next modification.
 * @return 0, CRDT_EINVAL or CRDT_ENOTFOUND (absent or removed).
 */
CRDT_API CRDT_NODISCARD int crdt_lww_map_get(const crdt_lww_map *m,
    const void *key, size_t klen, const uint8_t **value, size_t *vlen);
/** Number of keys with a value (tombstones not counted). */
CRDT_API size_t crdt_lww_map_size(const crdt_lww_map *m);

/**
 * Visitor for crdt_lww_map_foreach(); key/value borrowed for the call.
 * Return non-zero to stop.
 */
typedef int (*crdt_lww_map_visit_fn)(void *ud, const uint8_t *key,
    size_t klen, const uint8_t *value, size_t vlen);
/**
 * Visit live keys in key order (bytewise, shorter prefix first). Do not
 * modify the map from the visitor.
 * @return 0, the visitor's value, CRDT_EINVAL or CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_lww_map_foreach(const crdt_lww_map *m,
    crdt_lww_map_visit_fn fn, void *ud);
/** Append the canonical state (tombstones included). */
CRDT_API CRDT_NODISCARD int crdt_lww_map_encode(const crdt_lww_map *m,
    crdt_buf *out);
/** Decode a state into a new map owned by `self`. As crdt_lww_decode(). */
CRDT_API CRDT_NODISCARD int crdt_lww_map_decode(const crdt_config *cfg,
    const crdt_replica_id *self, const void *bytes, size_t len,
    crdt_lww_map **out);
/** Same keys with the same winning writes (tombstones included). */
CRDT_API bool crdt_lww_map_equal(const crdt_lww_map *a,
    const crdt_lww_map *b);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_LWW_H */
