/* Replica IDs, dots and the hybrid logical clock. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "internal.h"

int
crdt_replica_id_random(crdt_replica_id *out)
{
	crdt_replica_id id;

	if (out == NULL)
		return CRDT_EINVAL;
	/* The all-zero ID is reserved; 2^-128 odds, but loop rather than
	 * hand out an ID every decoder refuses. */
	do {
		CRDT_TRY(crdt__random(id.bytes, sizeof id.bytes));
	} while (crdt_replica_id_from_bytes(out, id.bytes, sizeof id.bytes) !=
	    0);
	return 0;
}

int
crdt_replica_id_from_bytes(crdt_replica_id *out, const void *bytes,
    size_t len)
{
	static const crdt_replica_id zero;

	if (out == NULL || bytes == NULL || len != CRDT_REPLICA_ID_BYTES ||
	    memcmp(bytes, zero.bytes, len) == 0)
		return CRDT_EINVAL;
	memcpy(out->bytes, bytes, len);
	return 0;
}

int
crdt_replica_id_cmp(const crdt_replica_id *a, const crdt_replica_id *b)
{
	return memcmp(a->bytes, b->bytes, CRDT_REPLICA_ID_BYTES);
}

void
crdt_replica_id_hex(const crdt_replica_id *id, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < CRDT_REPLICA_ID_BYTES; i++) {
		out[2 * i] = hex[id->bytes[i] >> 4];
		out[2 * i + 1] = hex[id->bytes[i] & 15];
	}
	out[32] = '\0';
}

int
crdt_dot_cmp(crdt_dot a, crdt_dot b)
{
	int c = crdt_replica_id_cmp(&a.replica, &b.replica);
	if (c != 0)
		return c;
	return (a.counter > b.counter) - (a.counter < b.counter);
}

int
crdt_stamp_cmp(uint64_t hlc_a, const crdt_replica_id *a, uint64_t hlc_b,
    const crdt_replica_id *b)
{
	if (hlc_a != hlc_b)
		return hlc_a < hlc_b ? -1 : 1;
	return crdt_replica_id_cmp(a, b);
}

static uint64_t
realtime_ms(void *ud)
{
	struct timespec ts;
	(void)ud;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
crdt_hlc_init(crdt_hlc *h, const crdt_config *cfg)
{
	crdt_config c;

	if (h == NULL)
		return;
	if (crdt__config_resolve(cfg, &c) != 0)
		crdt_config_default(&c);
	h->last = 0;
	h->clock = c.clock ? c.clock : realtime_ms;
	h->clock_ud = c.clock ? c.clock_ud : NULL;
	h->max_drift_ms = c.max_drift_ms;
}

uint64_t
crdt_hlc_last(const crdt_hlc *h)
{
	return h ? h->last : 0;
}

uint64_t
crdt_hlc_physical(const crdt_hlc *h)
{
	return h && h->clock ? h->clock(h->clock_ud) : 0;
}

/*
 * Kulkarni's rules collapse to one comparison on packed stamps: the next
 * stamp is physical time (logical 0) when that is ahead of every stamp seen,
 * otherwise the greatest stamp seen plus one. "+1" on a full 16-bit logical
 * part carries into the milliseconds, which is how overflow is handled
 * without wrapping: stamps remain strictly increasing.
 */
static int
advance(const crdt_hlc *h, uint64_t seen, uint64_t *out)
{
	uint64_t pt = crdt_hlc_physical(h);
	if (pt > CRDT_HLC_MAX_MS)
		return CRDT_EOVERFLOW;
	if (CRDT_HLC_MS(seen) < pt) {
		*out = CRDT_HLC_PACK(pt, 0);
		return 0;
	}
	if (seen == UINT64_MAX)
		return CRDT_EOVERFLOW;
	*out = seen + 1;
	return 0;
}

int
crdt_hlc_now(crdt_hlc *h, uint64_t *out)
{
	uint64_t ts;

	if (h == NULL || out == NULL || h->clock == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(advance(h, h->last, &ts));
	h->last = ts;
	*out = ts;
	return 0;
}

int
crdt_hlc_update(crdt_hlc *h, uint64_t remote, uint64_t *out)
{
	uint64_t ts;

	if (h == NULL || h->clock == NULL)
		return CRDT_EINVAL;
	uint64_t pt = crdt_hlc_physical(h);
	if (CRDT_HLC_MS(remote) > pt &&
	    CRDT_HLC_MS(remote) - pt > h->max_drift_ms)
		return CRDT_EDRIFT;
	CRDT_TRY(advance(h, CRDT_MAX(h->last, remote), &ts));
	h->last = ts;
	if (out != NULL)
		*out = ts;
	return 0;
}
