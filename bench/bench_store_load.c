/*
 * A snapshot loaded while attached to an SQLite store (docs/storage.md,
 * "Loaded snapshots"), on a real file in a temporary directory (removed
 * at the end): a document of --keys map keys (100-byte values) loads, --reps
 * times, a peer's snapshot that brings one new key each time. Printed,
 * medians: the time crdt_doc_load takes (the merge, the loaded snapshot
 * record written ahead: O(snapshot) plus one commit, and the serialization
 * of the checkpoint it makes due), and the time until that checkpoint is
 * written by the store's writer thread (crdt_doc_checkpoint_status with
 * wait), i.e. what the call would cost if it wrote the checkpoint itself;
 * and the loaded snapshot records left after it (0: the checkpoint dropped
 * them).
 *
 *   bench_store_load [--keys K[,K...]] [--reps R] [--sync full|normal]
 *
 * Inputs are deterministic; wall time is for reporting only.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <crdt/crdt.h>
#include <crdt/store.h>

#include "bench.h"

#define MAX_REPS 256

static uint64_t clock_ms = 1700000000000ull;

static uint64_t
fixed_clock(void *ud)
{
	(void)ud;
	return clock_ms;
}

static crdt_doc *
mkdoc(uint8_t id)
{
	crdt_config cfg;
	crdt_replica_id rid;
	uint8_t raw[16] = { id, 0x5a };
	crdt_doc *d;
	uint32_t on;

	crdt_config_default(&cfg);
	cfg.clock = fixed_clock;
	CK(crdt_replica_id_from_bytes(&rid, raw, sizeof raw));
	CK(crdt_doc_new(&cfg, &rid, &d));
	CK(crdt_doc_register(d, "m", CRDT_OBJ_MAP, &on));
	return d;
}

static int
count_rec(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	(void)id;
	(void)b;
	(void)len;
	(*(size_t *)ud)++;
	return 0;
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void
run(size_t keys, int reps, crdt_store_sync sync, const char *path)
{
	crdt_store_sqlite_opts o;
	crdt_store *s;
	crdt_buf m, snap, doc;
	char k[32], v[100];
	static double t_call[MAX_REPS], t_ck[MAX_REPS];

	memset(&o, 0, sizeof o);
	o.synchronous = sync;
	unlink(path);
	CK(crdt_store_open_sqlite(NULL, path, &o, &s));
	crdt_doc *a = mkdoc(1), *b = mkdoc(2);
	crdt_buf_init(&m, NULL);
	crdt_buf_init(&snap, NULL);
	crdt_buf_init(&doc, NULL);
	memset(v, 'x', sizeof v);
	for (size_t i = 0; i < keys; i++) {
		clock_ms++;
		snprintf(k, sizeof k, "a%zu", i);
		crdt_buf_clear(&m);
		CK(crdt_doc_map_set(a, 0, k, strlen(k), v, sizeof v, &m));
	}
	CK(crdt_doc_attach_store(a, s, 0));
	for (int i = 0; i < reps; i++) {
		clock_ms++;
		snprintf(k, sizeof k, "b%d", i);
		crdt_buf_clear(&m);
		CK(crdt_doc_map_set(b, 0, k, strlen(k), v, sizeof v, &m));
		crdt_buf_clear(&snap);
		CK(crdt_doc_save(b, &snap));
		double t0 = now_s();
		CK(crdt_doc_load(a, snap.data, snap.len, NULL));
		double t1 = now_s();
		CK(crdt_doc_checkpoint_status(a, true));
		double t2 = now_s();
		t_call[i] = t1 - t0;
		t_ck[i] = t2 - t0;
	}
	qsort(t_call, (size_t)reps, sizeof t_call[0], cmp_d);
	qsort(t_ck, (size_t)reps, sizeof t_ck[0], cmp_d);
	size_t left = 0;
	CK(crdt_store_snapshots(s, count_rec, &left));
	CK(crdt_doc_save(a, &doc));
	printf("keys %zu: document %zu B, peer snapshot %zu B: crdt_doc_load "
	       "%.2f ms, checkpoint written %.2f ms after the call began "
	       "(medians of %d); records left %zu\n",
	    keys, doc.len, snap.len, t_call[reps / 2] * 1e3,
	    t_ck[reps / 2] * 1e3, reps, left);
	/* The checkpoint written (status 0) holds every record: none left. */
	if (left != 0) {
		fprintf(stderr, "%zu loaded snapshot records left after the "
				"checkpoint\n", left);
		exit(1);
	}
	crdt_buf_fini(&m);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&doc);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_store_close(s);
}

int
main(int argc, char **argv)
{
	size_t sizes[16] = { 2000, 20000 }, nsizes = 2;
	int reps = 20;
	crdt_store_sync sync = CRDT_STORE_SYNC_FULL;
	char dir[] = "/tmp/crdt-bench-load-XXXXXX", path[64];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc) {
			char *q = argv[++i];
			nsizes = 0;
			while (*q != '\0' && nsizes < 16) {
				sizes[nsizes++] = (size_t)strtoull(q, &q, 10);
				if (*q == ',')
					q++;
			}
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--sync") == 0 && i + 1 < argc) {
			sync = strcmp(argv[++i], "normal") == 0 ?
			    CRDT_STORE_SYNC_NORMAL : CRDT_STORE_SYNC_FULL;
		} else {
			fprintf(stderr, "usage: bench_store_load [--keys K,...] "
					"[--reps R] [--sync full|normal]\n");
			return 2;
		}
	}
	if (reps < 1 || reps > MAX_REPS) {
		fprintf(stderr, "--reps: 1..%d\n", MAX_REPS);
		return 2;
	}
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof path, "%s/s.db", dir);
	for (size_t i = 0; i < nsizes; i++)
		run(sizes[i], reps, sync, path);
	static const char *const tails[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		char p[80];
		snprintf(p, sizeof p, "%s%s", path, tails[i]);
		unlink(p);
	}
	rmdir(dir);
	return 0;
}
