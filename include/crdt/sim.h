#ifndef CRDT_SIM_H
#define CRDT_SIM_H

/*
 * Deterministic simulated network for convergence tests (yours and ours).
 *
 * K documents talk through a seeded scheduler that delays, reorders,
 * duplicates and drops messages, takes replicas offline and back, splits
 * the network into two partitions and heals it, and mixes message delivery
 * with snapshot exchange and sync rounds. Each replica has its own virtual
 * wall clock (with a seeded skew), so runs replay exactly from the seed.
 *
 * Use: crdt_sim_new() with a setup callback that registers the schema on
 * each document; make local changes on crdt_sim_doc(s, i) with one-op
 * mutations or begin/commit (the simulator picks up every committed
 * message through the document listener, which it owns); call
 * crdt_sim_step() between changes; finally crdt_sim_heal() and
 * crdt_sim_check().
 */

#include "crdt/common.h"
#include "crdt/doc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct crdt_sim crdt_sim;

/** Scheduler knobs. Percentages are per step, 0..100. */
typedef struct crdt_sim_config {
	size_t replicas;       /* 2..64 */
	uint64_t seed;
	unsigned drop_pct;     /* a delivery attempt is lost */
	unsigned dup_pct;      /* a delivered message is delivered again later */
	unsigned max_delay;    /* steps a message may be held back [0..] */
	unsigned offline_pct;  /* a random replica goes offline / online */
	unsigned partition_pct;/* the network splits in two / heals */
	unsigned snapshot_pct; /* a random reachable pair exchanges a snapshot */
	unsigned sync_pct;     /* a random reachable pair runs a lossy sync */
	uint64_t max_skew_ms;  /* each replica's clock is off by up to this */
	size_t hub;            /* 0 = everyone talks to everyone; k = replicas
				* talk only to replica k-1, which forwards
				* what it receives (a relay or server) */
} crdt_sim_config;

/** Fill `sc` with moderate defaults (3 replicas, seed 1, some of everything). */
CRDT_API void crdt_sim_config_default(crdt_sim_config *sc);

/** Called once per document to register its schema. Return 0 or an error. */
typedef int (*crdt_sim_setup_fn)(void *ud, crdt_doc *doc, size_t index);

/**
 * Create a simulation. `cfg` (borrowed, NULL = defaults) configures every
 * document; its clock is replaced by the simulator's. `*out` transferred:
 * crdt_sim_free().
 * @return 0, CRDT_EINVAL (replicas out of range, setup NULL), CRDT_ENOMEM,
 *         or the setup callback's error.
 */
CRDT_API CRDT_NODISCARD int crdt_sim_new(const crdt_config *cfg,
    const crdt_sim_config *sc, crdt_sim_setup_fn setup, void *ud,
    crdt_sim **out);
/** Free the simulation and its documents; NULL is a no-op. */
CRDT_API void crdt_sim_free(crdt_sim *s);
/** Document `i` (borrowed; NULL when out of range). Do not change its listener. */
CRDT_API crdt_doc *crdt_sim_doc(crdt_sim *s, size_t i);
/** Number of replicas. */
CRDT_API size_t crdt_sim_size(const crdt_sim *s);
/** Next value of the simulation's seeded generator (for choosing ops). */
CRDT_API uint64_t crdt_sim_rand(crdt_sim *s);
/** Whether replica `i` is online now. */
CRDT_API bool crdt_sim_online(const crdt_sim *s, size_t i);

/**
 * One scheduler step: advance virtual time, maybe flip a replica
 * online/offline or the partition, deliver the messages that are due
 * (dropping, duplicating and reordering them), maybe exchange a snapshot
 * or run a lossy sync round.
 * @return 0 or the first unexpected document error (a bug, or ENOMEM).
 */
CRDT_API CRDT_NODISCARD int crdt_sim_step(crdt_sim *s);
/**
 * Heal everything: all online, no partition, deliver all that is in
 * flight, then loss-free sync rounds between every pair (with a hub: each
 * replica with the hub) until nothing changes.
 * @return 0 or the first document error.
 */
CRDT_API CRDT_NODISCARD int crdt_sim_heal(crdt_sim *s);
/**
 * The oracle: every replica has byte-identical snapshots, an empty buffer
 * and the same vector clock. A hub that cannot save (a keyless relay) is
 * compared by its clock only.
 * @return 0, CRDT_EDIVERGED, or CRDT_ENOMEM.
 */
CRDT_API CRDT_NODISCARD int crdt_sim_check(const crdt_sim *s);

/** Counters for reporting: messages delivered, dropped, duplicated. */
typedef struct crdt_sim_stats {
	uint64_t delivered, dropped, duplicated, snapshots, syncs, steps;
} crdt_sim_stats;
/** Copy the counters. */
CRDT_API void crdt_sim_stats_get(const crdt_sim *s, crdt_sim_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* CRDT_SIM_H */
