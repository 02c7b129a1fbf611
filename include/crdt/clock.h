#ifndef CRDT_CLOCK_H
#define CRDT_CLOCK_H

/*
 * Replica IDs, dots and the hybrid logical clock (Kulkarni et al. 2014).
 *
 * An HLC timestamp is one uint64_t: the high 48 bits are milliseconds since
 * the Unix epoch, the low 16 bits a logical counter. Comparing two stamps as
 * integers is comparing (ms, logical). The total order used for last-writer-
 * wins is (stamp, replica ID), see crdt_stamp_cmp().
 */

#include "crdt/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CRDT_HLC_MAX_MS ((UINT64_C(1) << 48) - 1)
#define CRDT_HLC_MS(ts) ((uint64_t)(ts) >> 16)
#define CRDT_HLC_LOGICAL(ts) ((uint16_t)((ts)&0xFFFFu))
#define CRDT_HLC_PACK(ms, logical)                                      \
	(((uint64_t)(ms) << 16) | (uint64_t)(uint16_t)(logical))

/**
 * Fill `out` with 16 random bytes (libsodium randombytes_buf).
 * @return 0, CRDT_EINVAL (out NULL) or CRDT_ECRYPTO.
 */
CRDT_API CRDT_NODISCARD int crdt_replica_id_random(crdt_replica_id *out);

/**
 * Make an ID from caller bytes (borrowed, copied). The all-zero ID is
 * reserved ("no replica") and refused.
 * @return 0 or CRDT_EINVAL (NULL, len != 16, or all zero).
 */
CRDT_API CRDT_NODISCARD int crdt_replica_id_from_bytes(crdt_replica_id *out,
    const void *bytes, size_t len);

/** memcmp order: <0, 0, >0. */
CRDT_API int crdt_replica_id_cmp(const crdt_replica_id *a,
    const crdt_replica_id *b);

/** Write 32 lowercase hex digits and a NUL into `out`. */
CRDT_API void crdt_replica_id_hex(const crdt_replica_id *id, char out[33]);

/** Total order on dots: replica ID (memcmp), then counter. */
CRDT_API int crdt_dot_cmp(crdt_dot a, crdt_dot b);

/**
 * Total order on (HLC stamp, replica ID): the last-writer-wins order.
 * @return <0, 0, >0.
 */
CRDT_API int crdt_stamp_cmp(uint64_t hlc_a, const crdt_replica_id *a,
    uint64_t hlc_b, const crdt_replica_id *b);

/**
 * Hybrid logical clock. Caller-embedded: no allocation, no _fini needed.
 * Fields are private; read them through the functions below.
 */
typedef struct crdt_hlc {
	uint64_t last;
	crdt_clock_fn clock;
	void *clock_ud;
	uint64_t max_drift_ms;
} crdt_hlc;

/** Start a clock at 0 with the clock and drift bound of `cfg` (NULL = defaults). */
CRDT_API void crdt_hlc_init(crdt_hlc *h, const crdt_config *cfg);

/** The last stamp issued or observed (0 before any). */
CRDT_API uint64_t crdt_hlc_last(const crdt_hlc *h);

/**
 * Stamp a local event: max(physical time, last + 1). When the 16-bit
 * logical counter is full the stamp moves into the next millisecond instead
 * of wrapping, so stamps stay strictly increasing.
 * @return 0, CRDT_EINVAL, or CRDT_EOVERFLOW if the physical clock is past
 *         2^48-1 ms or the 64-bit stamp space is exhausted (clock unchanged).
 */
CRDT_API CRDT_NODISCARD int crdt_hlc_now(crdt_hlc *h, uint64_t *out);

/**
 * Observe a remote stamp (on receive): the clock moves past both its own
 * last stamp and `remote`, and `*out` (may be NULL) gets the new stamp.
 * Drift check: when remote's milliseconds exceed local physical time by
 * more than max_drift_ms, the clock is NOT moved (one far-future stamp must
 * not drag every later local stamp with it) and CRDT_EDRIFT is returned.
 * The caller decides what that means; it is not a reason to drop data.
 * @return 0, CRDT_EINVAL, CRDT_EDRIFT or CRDT_EOVERFLOW; the clock is
 *         unchanged on any non-zero return.
 */
CRDT_API CRDT_NODISCARD int crdt_hlc_update(crdt_hlc *h, uint64_t remote,
    uint64_t *out);

/** Physical time in ms as the clock reads it (injectable via crdt_config). */
CRDT_API uint64_t crdt_hlc_physical(const crdt_hlc *h);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_CLOCK_H */
