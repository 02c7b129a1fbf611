#ifndef CRDT_CLI_H
#define CRDT_CLI_H
/*
 * The `crdt` command (docs/cli.md): shared helpers of the subcommands.
 * Everything here is the public libcrdt API plus msgpack-c (to walk
 * frames, after a bounded pre-scan: mp.c) and jansson (all JSON output).
 */
#include "hex.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <msgpack.h>

#include "crdt/crdt.h"

/* Exit statuses (docs/cli.md, EXIT STATUS). */
enum {
	EXIT_OK = 0,
	EXIT_FAULT = 1,     /* a fault found, inputs differ, not converged */
	EXIT_USAGE = 2,     /* bad command line */
	EXIT_IO = 3,        /* a file cannot be read or written */
	EXIT_MALFORMED = 4  /* an input does not decode */
};

/* Largest input file read (the library's default limits.max_bytes). */
#define CLI_MAX_FILE (64u << 20)

/* ---- util.c ---- */

/* Report "crdt: <cmd>: <fmt>" on stderr. */
void cli_err(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Map a library error to an exit status. */
int cli_exit_of(int crdt_rc);

/* Read `path` ("-" = stdin) whole into `out` (initialised by the caller).
 * @return 0 or EXIT_IO (reported). */
int cli_read_file(const char *cmd, const char *path, crdt_buf *out);
/* Write `len` bytes to `path` ("-" = stdout) atomically for files (a
 * temporary file renamed over it). @return 0 or EXIT_IO (reported). */
int cli_write_file(const char *cmd, const char *path, const void *p,
    size_t len);

/* Zero a buffer's whole capacity (plaintext, keys) before it is freed;
 * an empty buffer (NULL data) is left alone. */
void cli_wipe(crdt_buf *b);
/* A 32-byte key from a file: 32 raw bytes, or 64 hex digits (an ending
 * newline allowed). @return 0 or an exit status (reported). */
int cli_read_key(const char *cmd, const char *path, uint8_t key[32]);

/* Command-line options: `--name value`, `--name=value`, or flags.
 * Positionals are collected in order. */
typedef struct cli_opt {
	const char *name;   /* without the dashes */
	bool has_arg;
	const char *value;  /* set when given (flags: "1") */
} cli_opt;
typedef struct cli_args {
	const char *pos[64];
	size_t npos;
	bool help;
} cli_args;
/* Parse argv[1..] (argv[0] is the subcommand). @return 0 or EXIT_USAGE
 * (reported). */
int cli_parse(const char *cmd, int argc, char **argv, cli_opt *opts,
    size_t nopts, cli_args *a);
/* An unsigned decimal option in [lo, hi]. @return 0 or EXIT_USAGE. */
int cli_uint_opt(const char *cmd, const char *name, const char *v,
    uint64_t lo, uint64_t hi, uint64_t *out);

/* ---- json.c ---- */

/* Take ownership of `v` and print it (indented) plus a newline on stdout;
 * frees it. @return 0 or EXIT_IO. */
int cli_json_print(json_t *v);
/* New JSON values (NULL only on out of memory, which jansson tolerates
 * in json_object_set_new: the key is then simply absent). */
json_t *cli_json_hex(const uint8_t *p, size_t n);
json_t *cli_json_u64(uint64_t v);
json_t *cli_json_replica(const crdt_replica_id *id);
json_t *cli_json_dot(crdt_dot d);
json_t *cli_json_hlc(uint64_t hlc);
/* A byte string: {"text": ...} when it is printable UTF-8, else
 * {"hex": ...}; "bytes" gives its length. */
json_t *cli_json_bytes(const uint8_t *p, size_t n);
json_t *cli_json_clock(const crdt_vclock *vc);

/* ---- mp.c: bounded msgpack walking ---- */

/* Parse one whole msgpack value of `len` bytes into `z`'s zone after a
 * structural pre-scan: every count no larger than the bytes left, depth
 * at most 16, only the libcrdt subset (uint, bin, array, nil), no
 * trailing bytes. Objects point into `b`.
 * @return 0 or CRDT_EMALFORMED / CRDT_ETOOBIG / CRDT_ENOMEM. */
int cli_mp_parse(const uint8_t *b, size_t len, msgpack_zone *z,
    msgpack_object *out);
/* Whether `o`, re-encoded with msgpack-c (smallest forms), gives back
 * exactly `len` bytes at `b`: the canonical-form check. */
bool cli_mp_canonical(const msgpack_object *o, const uint8_t *b, size_t len);
/* Convert any object to JSON (bins through cli_json_bytes). */
json_t *cli_mp_json(const msgpack_object *o);
/* Accessors: type-checked, NULL / false on mismatch. */
bool cli_mp_uint(const msgpack_object *o, uint64_t *v);
bool cli_mp_bin(const msgpack_object *o, const uint8_t **p, size_t *n);
bool cli_mp_id(const msgpack_object *o, crdt_replica_id *id);
const msgpack_object_array *cli_mp_array(const msgpack_object *o);

/* The kind of a libcrdt encoding ([version, kind, ...]): 0 if it is not
 * one. */
unsigned cli_kind(const uint8_t *b, size_t len, unsigned *version);
const char *cli_kind_name(unsigned kind);

/* ---- load.c: documents built from snapshots ---- */

/* What a subcommand needs to rebuild a document: the schema (from the
 * first snapshot, or --schema), keys and IDs. */
typedef struct cli_docopts {
	const char *schema;      /* "name:type,..." or NULL (from snapshot) */
	const uint8_t *key;      /* document key (32) or NULL */
	uint32_t epoch;
	bool have_doc_id;
	crdt_doc_id doc_id;
	bool have_admin;
	uint8_t admin[32];
	bool have_server;
	crdt_replica_id server;  /* chat objects' server */
} cli_docopts;
/* Parse the options shared by merge, diff, verify, store into `o`
 * (--schema, --key, --epoch, --doc-id, --admin-key, --chat-server).
 * `keybuf` holds the key. @return 0 or an exit status (reported). */
#define CLI_DOC_OPTS                                                     \
	{ "schema", true, NULL }, { "key", true, NULL },                 \
	    { "epoch", true, NULL }, { "doc-id", true, NULL },           \
	    { "admin-key", true, NULL }, { "chat-server", true, NULL }
#define CLI_DOC_NOPTS 6
int cli_docopts_parse(const char *cmd, const cli_opt *opts,
    cli_docopts *o, uint8_t keybuf[32]);
/* Plain snapshot bytes of `b` (a snapshot, or a sealed one opened with
 * o->key) appended to `out`. @return a libcrdt code. */
int cli_plain_snapshot(const cli_docopts *o, const uint8_t *b, size_t len,
    crdt_buf *out);
/* A new document with the schema of `snap` (plain snapshot; NULL with
 * o->schema) or o->schema, the doc ID of the snapshot (or o->doc_id)
 * and o's security settings. @return a libcrdt code; *why says what
 * failed (static). */
int cli_doc_for(const cli_docopts *o, const uint8_t *snap, size_t len,
    crdt_doc **out, const char **why);

/* The fields of a plain snapshot (kind 6) walked with msgpack-c; views
 * into the parsed objects. admin_seen and stamps may be NULL. */
typedef struct cli_snap {
	unsigned version;
	crdt_doc_id doc_id; /* zero for version 1 */
	const msgpack_object_array *clock, *stamps, *objects, *buffered,
	    *admin_seen, *evidence;
	uint64_t hlc_max;
} cli_snap;
/* Fill `f` from a parsed snapshot; checks the shape (arity, types of the
 * lists and object entries), not the order. @return 0 or EMALFORMED. */
int cli_snap_fields(const msgpack_object *root, cli_snap *f);

/* ---- subcommands ---- */
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_sim(int argc, char **argv);

#endif /* CRDT_CLI_H */
