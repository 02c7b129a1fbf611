/*
 * crdt: inspect, verify, merge and diff libcrdt files, look after a
 * store, run the lossy-network simulation (docs/cli.md).
 */
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} cmds[] = {
	{ "inspect", cmd_inspect, "show a message, snapshot or sync frame as JSON" },
	{ "verify", cmd_verify, "strict checks: decoding, canonical form, signatures" },
	{ "merge", cmd_merge, "merge snapshots (and messages) into one snapshot" },
	{ "diff", cmd_diff, "what one snapshot holds that the other lacks (JSON)" },
	{ "store", cmd_store, "list, export, compact or check an SQLite store" },
	{ "sim", cmd_sim, "run the lossy chat simulation, JSON summary" },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: crdt [--version] [--help] COMMAND [ARGS]\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].what);
	fprintf(f, "\n'crdt COMMAND --help' describes a command.\n"
		   "Exit status: 0 ok, 1 a fault found or inputs differ, 2 usage "
		   "error,\n3 I/O error, 4 malformed input (docs/cli.md).\n");
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("crdt (libcrdt) %s\n", crdt_version_string());
		return EXIT_OK;
	}
	if (crdt_init() != 0) {
		cli_err(NULL, "libsodium failed to initialise");
		return EXIT_IO;
	}
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	cli_err(NULL, "unknown command '%s'", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
