/*
 * Demo: three replicas edit one document while a simulated network drops,
 * duplicates and reorders their messages, takes them offline and splits
 * them apart; then the network heals and all three hold the same bytes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <crdt/crdt.h>

static int
setup(void *ud, crdt_doc *d, size_t i)
{
	(void)ud;
	(void)i;
	int rc = crdt_doc_register(d, "tags", CRDT_OBJ_GSET, NULL);
	if (rc == 0)
		rc = crdt_doc_register(d, "title", CRDT_OBJ_LWW, NULL);
	if (rc == 0)
		rc = crdt_doc_register(d, "settings", CRDT_OBJ_MAP, NULL);
	return rc;
}

static int
show(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	(void)ud;
	printf("    %.*s = %.*s\n", (int)kl, (const char *)k, (int)vl,
	    (const char *)v);
	return 0;
}

int
main(void)
{
	crdt_sim_config sc;
	crdt_sim *sim;
	crdt_buf msg;
	int rc;

	crdt_sim_config_default(&sc);
	sc.replicas = 3;
	sc.seed = 42;
	sc.drop_pct = 30;
	if ((rc = crdt_sim_new(NULL, &sc, setup, NULL, &sim)) != 0) {
		fprintf(stderr, "sim: %s\n", crdt_strerror(rc));
		return 1;
	}
	crdt_buf_init(&msg, NULL);
	static const char *words[] = { "red", "green", "blue", "amber" };
	for (int step = 0; step < 300 && rc == 0; step++) {
		size_t r = crdt_sim_rand(sim) % 3;
		crdt_doc *d = crdt_sim_doc(sim, r);
		const char *w = words[crdt_sim_rand(sim) % 4];
		char val[32];
		int n = snprintf(val, sizeof val, "%s-%zu-%d", w, r, step);
		crdt_buf_clear(&msg);
		switch (crdt_sim_rand(sim) % 3) {
		case 0:
			rc = crdt_doc_gset_add(d, 0, w, strlen(w), &msg);
			break;
		case 1:
			rc = crdt_doc_lww_set(d, 1, val, (size_t)n, &msg);
			break;
		default:
			rc = crdt_doc_map_set(d, 2, w, strlen(w), val,
			    (size_t)n, &msg);
		}
		if (rc == 0)
			rc = crdt_sim_step(sim);
	}
	crdt_sim_stats st;
	crdt_sim_stats_get(sim, &st);
	printf("libcrdt %s demo: 3 replicas, 300 edits, seed %" PRIu64 "\n",
	    crdt_version_string(), sc.seed);
	printf("  network: %" PRIu64 " delivered, %" PRIu64 " dropped, %" PRIu64
	       " duplicated, %" PRIu64 " snapshot exchanges, %" PRIu64
	       " lossy sync rounds\n",
	    st.delivered, st.dropped, st.duplicated, st.snapshots, st.syncs);
	printf("  before healing: %s\n",
	    crdt_sim_check(sim) == 0 ? "already converged" : "replicas differ");
	if (rc == 0)
		rc = crdt_sim_heal(sim);
	if (rc == 0)
		rc = crdt_sim_check(sim);
	printf("  after healing:  %s\n",
	    rc == 0 ? "all 3 snapshots byte-identical" : crdt_strerror(rc));
	const crdt_lww *title;
	const crdt_lww_map *settings;
	const uint8_t *v;
	size_t vl;
	crdt_doc *d0 = crdt_sim_doc(sim, 0);
	if (rc == 0 && crdt_doc_lww(d0, 1, &title) == 0 &&
	    crdt_lww_get(title, &v, &vl) == 0)
		printf("  title    = %.*s\n", (int)vl, (const char *)v);
	if (rc == 0 && crdt_doc_map(d0, 2, &settings) == 0) {
		printf("  settings (%zu keys):\n", crdt_lww_map_size(settings));
		rc = crdt_lww_map_foreach(settings, show, NULL);
	}
	crdt_buf_fini(&msg);
	crdt_sim_free(sim);
	return rc == 0 ? 0 : 1;
}
