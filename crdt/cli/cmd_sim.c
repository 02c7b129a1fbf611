/*
 * crdt sim: the lossy group-chat simulation (include/crdt/sim.h, as in
 * docs/examples/demo.c). Replica 0 is the chat's server; the others post.
 * The scheduler drops, duplicates, delays and reorders messages, takes
 * replicas offline and splits the network; at the end it heals and the
 * oracle checks that every replica saves the same bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char sim_help[] =
    "usage: crdt sim [--replicas N] [--messages M] [--drop P] [--seed S]\n"
    "                [--save DIR]\n\n"
    "Run the lossy chat simulation: N replicas (2..64, default 4; replica 0\n"
    "is the server), M chat messages posted (1..1000000, default 200), P %%\n"
    "of delivery attempts dropped (0..100, default 20), seeded with S\n"
    "(default 1: the same seed replays the same run). A progress bar goes\n"
    "to stderr when it is a terminal; the JSON summary (converged,\n"
    "messages, rounds, bytes, delivered, dropped, ...) goes to stdout.\n"
    "  --save DIR  write each replica's final snapshot to DIR/replica-<i>.snap\n"
    "Exit: 0 converged, 1 diverged, 2 usage, 3 I/O.\n";

static int
setup(void *ud, crdt_doc *d, size_t i)
{
	crdt_replica_id *server = ud;
	if (i == 0)
		*server = *crdt_doc_self(d);
	return crdt_doc_register_chat(d, "chat", server, NULL);
}

static void
progress(uint64_t done, uint64_t total)
{
	int w = 40, n = (int)(done * (uint64_t)w / total);
	fprintf(stderr, "\r[%.*s%*s] %llu/%llu", n,
	    "========================================", w - n, "",
	    (unsigned long long)done, (unsigned long long)total);
}

int
cmd_sim(int argc, char **argv)
{
	cli_opt opts[] = { { "replicas", true, NULL }, { "messages", true, NULL },
		{ "drop", true, NULL }, { "seed", true, NULL },
		{ "save", true, NULL } };
	uint64_t nrep = 4, nmsg = 200, drop = 20, seed = 1;
	cli_args a;
	int rc;

	if ((rc = cli_parse("sim", argc, argv, opts, 5, &a)) != 0)
		return rc;
	if (a.help) {
		fputs(sim_help, stdout);
		return EXIT_OK;
	}
	if (a.npos != 0) {
		cli_err("sim", "no arguments expected (try --help)");
		return EXIT_USAGE;
	}
	if ((opts[0].value && (rc = cli_uint_opt("sim", "replicas",
		 opts[0].value, 2, 64, &nrep)) != 0) ||
	    (opts[1].value && (rc = cli_uint_opt("sim", "messages",
		 opts[1].value, 1, 1000000, &nmsg)) != 0) ||
	    (opts[2].value && (rc = cli_uint_opt("sim", "drop",
		 opts[2].value, 0, 100, &drop)) != 0) ||
	    (opts[3].value && (rc = cli_uint_opt("sim", "seed",
		 opts[3].value, 0, UINT64_MAX, &seed)) != 0))
		return rc;

	crdt_sim_config sc;
	crdt_sim *sim;
	crdt_replica_id server;
	crdt_buf msg;
	crdt_sim_config_default(&sc);
	sc.replicas = (size_t)nrep;
	sc.seed = seed;
	sc.drop_pct = (unsigned)drop;
	if ((rc = crdt_sim_new(NULL, &sc, setup, &server, &sim)) != 0) {
		cli_err("sim", "%s", crdt_strerror(rc));
		return EXIT_IO;
	}
	crdt_buf_init(&msg, NULL);
	bool tty = isatty(STDERR_FILENO) == 1;
	uint64_t bytes = 0, step_every = nmsg / 100 + 1;
	for (uint64_t i = 0; i < nmsg && rc == 0; i++) {
		size_t who = 1 + (size_t)(crdt_sim_rand(sim) % (nrep - 1));
		char user[32], body[96];
		snprintf(user, sizeof user, "user%zu", who);
		snprintf(body, sizeof body, "message %llu from %s",
		    (unsigned long long)i, user);
		crdt_chat_post p = { user, strlen(user), body, strlen(body),
			NULL, NULL, 0 };
		crdt_buf_clear(&msg);
		rc = crdt_doc_chat_post(crdt_sim_doc(sim, who), 0, &p, NULL, &msg);
		bytes += msg.len;
		if (rc == 0)
			rc = crdt_sim_step(sim);
		if (tty && (i % step_every == 0 || i + 1 == nmsg))
			progress(i + 1, nmsg);
	}
	if (tty)
		fputc('\n', stderr);
	if (rc == 0)
		rc = crdt_sim_heal(sim);
	int check = rc == 0 ? crdt_sim_check(sim) : rc;
	crdt_sim_stats st;
	crdt_sim_stats_get(sim, &st);
	int io = 0;
	if (rc == 0 && opts[4].value != NULL) {
		for (size_t i = 0; i < nrep && io == 0; i++) {
			char path[4096];
			crdt_buf_clear(&msg);
			if (crdt_doc_save(crdt_sim_doc(sim, i), &msg) != 0) {
				io = EXIT_IO;
				break;
			}
			snprintf(path, sizeof path, "%s/replica-%zu.snap",
			    opts[4].value, i);
			io = cli_write_file("sim", path, msg.data, msg.len);
		}
	}
	json_t *j = json_object();
	json_object_set_new(j, "converged", json_boolean(check == 0));
	if (check != 0)
		json_object_set_new(j, "error", json_string(crdt_err_name(check)));
	json_object_set_new(j, "replicas", cli_json_u64(nrep));
	json_object_set_new(j, "messages", cli_json_u64(nmsg));
	json_object_set_new(j, "drop_pct", cli_json_u64(drop));
	json_object_set_new(j, "seed", cli_json_u64(seed));
	json_object_set_new(j, "rounds", cli_json_u64(st.steps));
	json_object_set_new(j, "bytes", cli_json_u64(bytes));
	json_object_set_new(j, "delivered", cli_json_u64(st.delivered));
	json_object_set_new(j, "dropped", cli_json_u64(st.dropped));
	json_object_set_new(j, "duplicated", cli_json_u64(st.duplicated));
	json_object_set_new(j, "snapshots", cli_json_u64(st.snapshots));
	json_object_set_new(j, "syncs", cli_json_u64(st.syncs));
	crdt_buf_fini(&msg);
	crdt_sim_free(sim);
	int prc = cli_json_print(j);
	if (io != 0 || prc != 0)
		return EXIT_IO;
	if (rc != 0 && rc != CRDT_EDIVERGED)
		cli_err("sim", "%s", crdt_strerror(rc));
	return check == 0 ? EXIT_OK : EXIT_FAULT;
}
