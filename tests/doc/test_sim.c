/*
 * Convergence on the simulated network, and delivery of many messages in
 * adversarial orders. Every check compares canonical snapshot bytes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

static int
setup3(void *ud, crdt_doc *d, size_t i)
{
	(void)ud;
	(void)i;
	int rc = crdt_doc_register(d, "set", CRDT_OBJ_GSET, NULL);
	if (rc == 0)
		rc = crdt_doc_register(d, "reg", CRDT_OBJ_LWW, NULL);
	if (rc == 0)
		rc = crdt_doc_register(d, "map", CRDT_OBJ_MAP, NULL);
	return rc;
}

/* One random local change on replica r: a one-op transaction of each
 * kind, or a three-op transaction touching every object. */
static int
random_edit(crdt_sim *s, crdt_buf *m)
{
	crdt_doc *d = crdt_sim_doc(s, crdt_sim_rand(s) % crdt_sim_size(s));
	char k[8], v[8];
	int kn = snprintf(k, sizeof k, "k%u", (unsigned)(crdt_sim_rand(s) % 6));
	int vn = snprintf(v, sizeof v, "v%u", (unsigned)(crdt_sim_rand(s) % 90));
	int rc;

	crdt_buf_clear(m);
	switch (crdt_sim_rand(s) % 6) {
	case 0:
		return crdt_doc_gset_add(d, 0, v, (size_t)vn, m);
	case 1:
		return crdt_doc_lww_set(d, 1, v, (size_t)vn, m);
	case 2:
		return crdt_doc_lww_clear(d, 1, m);
	case 3:
		return crdt_doc_map_set(d, 2, k, (size_t)kn, v, (size_t)vn, m);
	case 4:
		return crdt_doc_map_remove(d, 2, k, (size_t)kn, m);
	default:
		rc = crdt_doc_begin(d);
		if (rc == 0)
			rc = crdt_doc_gset_add(d, 0, k, (size_t)kn, NULL);
		if (rc == 0)
			rc = crdt_doc_lww_set(d, 1, k, (size_t)kn, NULL);
		if (rc == 0)
			rc = crdt_doc_map_set(d, 2, k, (size_t)kn, v,
			    (size_t)vn, NULL);
		if (rc == 0)
			return crdt_doc_commit(d, m);
		crdt_doc_abort(d);
		return rc;
	}
}

/* Runs `runs` seeded simulations with 3-5 replicas and every kind of
 * fault, heals, and asserts byte-identical snapshots. */
static void
converge_runs(uint64_t base, int runs, int edits, crdt_sim_config tmpl)
{
	crdt_config cfg;
	test_clock clk = { 0, 0 };
	uint64_t faults = 0;

	for (int i = 0; i < runs; i++) {
		crdt_sim_config sc = tmpl;
		crdt_sim *s;
		crdt_buf m;
		sc.seed = test_seed_mix(base, (uint64_t)i);
		sc.replicas = 3 + (size_t)(sc.seed % 3);
		test_alloc_reset();
		test_config(&cfg, &clk);
		cr_assert_eq(crdt_sim_new(&cfg, &sc, setup3, NULL, &s), 0);
		crdt_buf_init(&m, test_alloc_hook());
		int rc = 0;
		for (int e = 0; e < edits && rc == 0; e++) {
			rc = random_edit(s, &m);
			if (rc == 0)
				rc = crdt_sim_step(s);
		}
		cr_assert_eq(rc, 0, "base seed %llu run %d: %s",
		    (unsigned long long)base, i, crdt_err_name(rc));
		crdt_sim_stats st;
		crdt_sim_stats_get(s, &st);
		faults += st.dropped + st.duplicated;
		cr_assert_eq(crdt_sim_heal(s), 0);
		rc = crdt_sim_check(s);
		cr_assert_eq(rc, 0,
		    "diverged: base seed %llu run %d (sim seed %llu): %s",
		    (unsigned long long)base, i, (unsigned long long)sc.seed,
		    crdt_err_name(rc));
		crdt_buf_fini(&m);
		crdt_sim_free(s);
		ASSERT_NO_LEAKS();
	}
	/* The faults must actually have happened, or the test proves little. */
	cr_assert_gt(faults, (uint64_t)runs, "too few faults injected");
}

Test(sim, five_hundred_seeded_runs_with_every_fault_converge)
{
	crdt_sim_config sc;
	crdt_sim_config_default(&sc);
	converge_runs(test_seed(0x5eed), 500, 120, sc);
}

Test(sim, heavy_loss_and_partitions_converge_through_sync_and_snapshots)
{
	crdt_sim_config sc;
	crdt_sim_config_default(&sc);
	sc.drop_pct = 60;
	sc.dup_pct = 30;
	sc.offline_pct = 20;
	sc.partition_pct = 15;
	sc.snapshot_pct = 10;
	sc.sync_pct = 10;
	converge_runs(test_seed(0xbad), 100, 120, sc);
}

Test(sim, no_faults_converge_before_healing)
{
	crdt_sim_config sc;
	crdt_sim *s;
	crdt_buf m;

	memset(&sc, 0, sizeof sc);
	sc.replicas = 4;
	sc.seed = 7;
	cr_assert_eq(crdt_sim_new(NULL, &sc, setup3, NULL, &s), 0);
	crdt_buf_init(&m, NULL);
	for (int e = 0; e < 100; e++) {
		cr_assert_eq(random_edit(s, &m), 0);
		cr_assert_eq(crdt_sim_step(s), 0);
	}
	/* max_delay 0 and no loss: every message arrives at the next step. */
	cr_assert_eq(crdt_sim_step(s), 0);
	cr_assert_eq(crdt_sim_check(s), 0);
	crdt_buf_fini(&m);
	crdt_sim_free(s);
}

Test(sim, check_detects_divergence)
{
	crdt_sim_config sc;
	crdt_sim *s;
	crdt_buf m;

	crdt_sim_config_default(&sc);
	cr_assert_eq(crdt_sim_new(NULL, &sc, setup3, NULL, &s), 0);
	crdt_buf_init(&m, NULL);
	/* A change nobody else has heard of yet. */
	cr_assert_eq(crdt_doc_gset_add(crdt_sim_doc(s, 0), 0, "x", 1, &m), 0);
	cr_assert_eq(crdt_sim_check(s), CRDT_EDIVERGED);
	cr_assert_eq(crdt_sim_heal(s), 0);
	cr_assert_eq(crdt_sim_check(s), 0);
	crdt_buf_fini(&m);
	crdt_sim_free(s);
}

Test(sim, bad_config_is_refused)
{
	crdt_sim_config sc;
	crdt_sim *s = NULL;

	crdt_sim_config_default(&sc);
	sc.replicas = 1;
	cr_assert_eq(crdt_sim_new(NULL, &sc, setup3, NULL, &s), CRDT_EINVAL);
	sc.replicas = 65;
	cr_assert_eq(crdt_sim_new(NULL, &sc, setup3, NULL, &s), CRDT_EINVAL);
	sc.replicas = 3;
	cr_assert_eq(crdt_sim_new(NULL, &sc, NULL, NULL, &s), CRDT_EINVAL);
	cr_assert_null(s);
	cr_assert_null(crdt_sim_doc(NULL, 0));
	crdt_sim_free(NULL);
}

/* ---- many messages in adversarial orders ---- */

#define BIG_N 100000

static crdt_doc *
fresh(uint8_t idn, const crdt_config *cfg)
{
	crdt_doc *d;
	crdt_replica_id id = test_id(idn);
	cr_assert_eq(crdt_doc_new(cfg, &id, &d), 0);
	cr_assert_eq(setup3(NULL, d, 0), 0);
	return d;
}

static void
save_eq(crdt_doc *a, crdt_doc *b, const char *what)
{
	crdt_buf x, y;
	tb_init(&x);
	tb_init(&y);
	cr_assert_eq(crdt_doc_save(a, &x), 0);
	cr_assert_eq(crdt_doc_save(b, &y), 0);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len),
	    "%s: snapshots differ (%zu vs %zu bytes)", what, x.len, y.len);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

/* 100,000 single-op messages from one writer, delivered fully reversed to
 * one replica and in a seeded random order to another. Both finish (the
 * buffer is indexed, never rescanned) and equal the writer. */
Test(sim, hundred_thousand_messages_reversed_and_shuffled_converge,
    .timeout = 600)
{
	crdt_config cfg;
	crdt_config_default(&cfg);
	crdt_doc *a = fresh(1, &cfg), *b = fresh(2, &cfg), *c = fresh(3, &cfg);
	crdt_buf all;
	size_t *off = malloc((BIG_N + 1) * sizeof *off);
	cr_assert_not_null(off);
	tb_init(&all);
	for (size_t i = 0; i < BIG_N; i++) {
		char e[24];
		int n = snprintf(e, sizeof e, "#%zu", i);
		off[i] = all.len;
		cr_assert_eq(i % 2 ? crdt_doc_gset_add(a, 0, e, (size_t)n, &all)
				   : crdt_doc_map_set(a, 2, e, 2, e, (size_t)n,
					 &all),
		    0);
	}
	off[BIG_N] = all.len;
	for (size_t i = BIG_N; i-- > 0;)
		cr_assert_eq(crdt_doc_receive(b, all.data + off[i],
				 off[i + 1] - off[i], NULL),
		    0);
	cr_assert_eq(crdt_doc_buffered(b), 0);
	save_eq(a, b, "reversed");

	test_rng r;
	uint64_t seed = test_seed(100000);
	test_rng_init(&r, seed);
	size_t *perm = malloc(BIG_N * sizeof *perm);
	cr_assert_not_null(perm);
	for (size_t i = 0; i < BIG_N; i++)
		perm[i] = i;
	for (size_t i = BIG_N - 1; i > 0; i--) {
		size_t j = (size_t)test_rng_below(&r, i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t k = 0; k < BIG_N; k++) {
		size_t i = perm[k];
		cr_assert_eq(crdt_doc_receive(c, all.data + off[i],
				 off[i + 1] - off[i], NULL),
		    0, "seed %llu", (unsigned long long)seed);
	}
	cr_assert_eq(crdt_doc_buffered(c), 0);
	save_eq(a, c, "shuffled");
	free(perm);
	free(off);
	crdt_buf_fini(&all);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_doc_free(c);
}

/* Three writers interleaved, each replica receiving the others' messages
 * in reverse: cross-replica dependencies resolve through the buffer. */
Test(sim, interleaved_writers_delivered_in_reverse_converge)
{
	crdt_config cfg;
	crdt_config_default(&cfg);
	crdt_doc *w[3] = { fresh(1, &cfg), fresh(2, &cfg), fresh(3, &cfg) };
	crdt_doc *sink = fresh(9, &cfg);
	crdt_buf all;
	enum { N = 3000 };
	size_t off[N + 1];
	tb_init(&all);
	for (size_t i = 0; i < N; i++) {
		crdt_doc *d = w[i % 3];
		char e[24];
		int n = snprintf(e, sizeof e, "w%zu", i);
		off[i] = all.len;
		cr_assert_eq(crdt_doc_lww_set(d, 1, e, (size_t)n, &all), 0);
		/* The next writer hears this one: a causal chain across all
		 * three replicas. */
		cr_assert_eq(crdt_doc_receive(w[(i + 1) % 3], all.data + off[i],
				 all.len - off[i], NULL),
		    0);
	}
	off[N] = all.len;
	for (size_t i = N; i-- > 0;)
		cr_assert_eq(crdt_doc_receive(sink, all.data + off[i],
				 off[i + 1] - off[i], NULL),
		    0);
	cr_assert_eq(crdt_doc_buffered(sink), 0);
	for (size_t k = 0; k < 3; k++)
		for (size_t i = 0; i < N; i++)
			cr_assert_eq(crdt_doc_receive(w[k], all.data + off[i],
					 off[i + 1] - off[i], NULL),
			    0);
	for (size_t k = 0; k < 3; k++)
		save_eq(w[k], sink, "interleaved");
	crdt_buf_fini(&all);
	for (size_t k = 0; k < 3; k++)
		crdt_doc_free(w[k]);
	crdt_doc_free(sink);
}
