/*
 * crdt-relay: a reference relay for libcrdt documents over TCP
 * (docs/relay.md). Options, the listening socket, signals and the
 * per-turn check that sends acks and pushes.
 */

#include "relay.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void
relay_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* One write per line, so lines of a log piped elsewhere never
	 * interleave mid-line. */
	fprintf(stderr, "crdt-relay: %s\n", line);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: crdt-relay --data DIR [options]\n"
	    "Relay libcrdt chat documents over TCP (docs/relay.md).\n"
	    "\n"
	    "  --data DIR              one SQLite store per document (created)\n"
	    "  --host ADDR             IPv4 address to listen on [127.0.0.1]\n"
	    "  --port N                TCP port, 0 = ephemeral [0]\n"
	    "  --server-id HEX         act as the chat server with this 16-byte\n"
	    "                          replica ID (acks; plaintext, unsigned)\n"
	    "  --server-seed-file FILE act as the chat server of signed documents:\n"
	    "                          FILE holds its 32-byte identity seed (hex);\n"
	    "                          its replica ID is logged at start\n"
	    "  --signed                documents are in signed mode (verify)\n"
	    "  --encrypted             documents are encrypted: a keyless,\n"
	    "                          content-blind relay\n"
	    "  --max-conns N           open connections [256]\n"
	    "  --max-docs N            open documents [1024]\n"
	    "  --max-docs-per-conn N   documents one connection may name [16]\n"
	    "  --max-frame BYTES       largest frame, envelope included [1048576]\n"
	    "  --max-write-queue BYTES unsent bytes per connection before it is\n"
	    "                          dropped as a slow client [8388608]\n"
	    "  --checkpoint-every N    checkpoint a document every N updates [1000]\n"
	    "  --doc-log-bytes BYTES   in-memory message log per document; older\n"
	    "                          messages are served from its store [16777216]\n"
	    "  --doc-buffer-bytes BYTES causal buffer per document [16777216]\n"
	    "  --sync full|normal      SQLite durability (docs/storage.md) [full]\n"
	    "  --help, --version\n"
	    "\n"
	    "Prints \"listening ADDR:PORT\" on stdout once it accepts; logs\n"
	    "events to stderr; stops cleanly on SIGTERM or SIGINT.\n");
}

enum {
	OPT_DATA = 256, OPT_HOST, OPT_PORT, OPT_SERVER, OPT_SIGNED, OPT_ENC,
	OPT_CONNS, OPT_DOCS, OPT_DPC, OPT_FRAME, OPT_WQ, OPT_CKPT, OPT_SYNC,
	OPT_LOG, OPT_BUFFER, OPT_SEED,
	OPT_HELP, OPT_VERSION
};

static int
parse_opts(int argc, char **argv, relay_opts *o)
{
	static const struct option longs[] = {
		{ "data", required_argument, NULL, OPT_DATA },
		{ "host", required_argument, NULL, OPT_HOST },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "server-id", required_argument, NULL, OPT_SERVER },
		{ "signed", no_argument, NULL, OPT_SIGNED },
		{ "encrypted", no_argument, NULL, OPT_ENC },
		{ "max-conns", required_argument, NULL, OPT_CONNS },
		{ "max-docs", required_argument, NULL, OPT_DOCS },
		{ "max-docs-per-conn", required_argument, NULL, OPT_DPC },
		{ "max-frame", required_argument, NULL, OPT_FRAME },
		{ "max-write-queue", required_argument, NULL, OPT_WQ },
		{ "checkpoint-every", required_argument, NULL, OPT_CKPT },
		{ "sync", required_argument, NULL, OPT_SYNC },
		{ "doc-log-bytes", required_argument, NULL, OPT_LOG },
		{ "doc-buffer-bytes", required_argument, NULL, OPT_BUFFER },
		{ "server-seed-file", required_argument, NULL, OPT_SEED },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 }
	};
	memset(o, 0, sizeof *o);
	o->host = "127.0.0.1";
	o->max_conns = 256;
	o->max_docs = 1024;
	o->max_docs_per_conn = 16;
	o->max_frame = NET_DEFAULT_MAX_FRAME;
	o->max_write_queue = 8u << 20;
	o->checkpoint_every = 1000;
	o->doc_log_bytes = 16u << 20;
	o->doc_buffer_bytes = 16u << 20;
	o->sync = CRDT_STORE_SYNC_FULL;
	int ch, bad = 0;
	while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		const char *a = optarg;
		switch (ch) {
		case OPT_DATA: o->data_dir = a; break;
		case OPT_HOST: o->host = a; break;
		case OPT_PORT:
			bad |= net_parse_size(a, 0, 65535, &o->port);
			break;
		case OPT_SERVER:
			o->has_server = true;
			bad |= tool_unhex(a, o->server_id.bytes,
			    CRDT_REPLICA_ID_BYTES);
			break;
		case OPT_SIGNED: o->signed_mode = true; break;
		case OPT_ENC: o->encrypted = true; break;
		case OPT_CONNS:
			bad |= net_parse_size(a, 1, 1u << 20, &o->max_conns);
			break;
		case OPT_DOCS:
			bad |= net_parse_size(a, 1, 1u << 20, &o->max_docs);
			break;
		case OPT_DPC:
			bad |= net_parse_size(a, 1, 4096,
			    &o->max_docs_per_conn);
			break;
		case OPT_FRAME:
			/* Room for an envelope and a HELLO at least; at most
			 * what the u32 length and the library's limit take. */
			bad |= net_parse_size(a, 1024, 64u << 20,
			    &o->max_frame);
			break;
		case OPT_WQ:
			bad |= net_parse_size(a, 1024, (size_t)1 << 32,
			    &o->max_write_queue);
			break;
		case OPT_CKPT:
			bad |= net_parse_size(a, 1, SIZE_MAX,
			    &o->checkpoint_every);
			break;
		case OPT_LOG:
			bad |= net_parse_size(a, 4096, SIZE_MAX,
			    &o->doc_log_bytes);
			break;
		case OPT_BUFFER:
			bad |= net_parse_size(a, 4096, SIZE_MAX,
			    &o->doc_buffer_bytes);
			break;
		case OPT_SEED: o->server_seed_file = a; break;
		case OPT_SYNC:
			if (strcmp(a, "full") == 0)
				o->sync = CRDT_STORE_SYNC_FULL;
			else if (strcmp(a, "normal") == 0)
				o->sync = CRDT_STORE_SYNC_NORMAL;
			else
				bad = -1;
			break;
		case OPT_HELP: usage(stdout); exit(0);
		case OPT_VERSION:
			printf("crdt-relay %s\n", crdt_version_string());
			exit(0);
		default: bad = -1; break;
		}
		if (bad) {
			if (ch != '?')
				fprintf(stderr, "crdt-relay: bad value for "
				    "--%s: %s\n", longs[ch - OPT_DATA].name,
				    a ? a : "");
			return -1;
		}
	}
	if (optind < argc || o->data_dir == NULL) {
		fprintf(stderr, "crdt-relay: %s\n", optind < argc ?
		    "unexpected argument" : "--data DIR is required");
		return -1;
	}
	if (o->max_write_queue < o->max_frame + NET_LEN_BYTES) {
		fprintf(stderr, "crdt-relay: --max-write-queue must hold one "
		    "frame (--max-frame + 4)\n");
		return -1;
	}
	if (o->server_seed_file != NULL && (o->has_server ||
	    !o->signed_mode)) {
		fprintf(stderr, "crdt-relay: --server-seed-file is for signed "
		    "documents (--signed), instead of --server-id\n");
		return -1;
	}
	if ((o->has_server || o->server_seed_file != NULL) && o->encrypted) {
		/* An ack is a message the relay writes: sealing it would
		 * need the document key a blind relay does not hold. */
		fprintf(stderr, "crdt-relay: a keyless (--encrypted) relay "
		    "cannot be the chat server\n");
		return -1;
	}
	if (o->has_server && o->signed_mode) {
		fprintf(stderr, "crdt-relay: a signed chat server needs its "
		    "identity: --server-seed-file\n");
		return -1;
	}
	return 0;
}

/* The signed server's identity from a file of 64 hex digits. */
static int
load_server_identity(relay *r)
{
	char hex[2 * CRDT_SEED_BYTES + 2];
	uint8_t seed[CRDT_SEED_BYTES];
	FILE *f = fopen(r->o.server_seed_file, "r");
	size_t n = f != NULL ? fread(hex, 1, sizeof hex - 1, f) : 0;
	if (f != NULL)
		fclose(f);
	hex[n] = '\0';
	if (n > 0 && hex[n - 1] == '\n')
		hex[n - 1] = '\0';
	if (tool_unhex(hex, seed, sizeof seed) != 0) {
		fprintf(stderr, "crdt-relay: %s: not a file of 64 hex "
		    "digits\n", r->o.server_seed_file);
		return -1;
	}
	int rc = crdt_identity_from_seed(&r->cfg, seed, &r->o.server_ident);
	memset(seed, 0, sizeof seed);
	if (rc != 0) {
		fprintf(stderr, "crdt-relay: identity: %s\n",
		    crdt_strerror(rc));
		return -1;
	}
	crdt_identity_replica_id(r->o.server_ident, &r->o.server_id);
	r->o.has_server = true;
	return 0;
}

static void
on_close_quiet(uv_handle_t *h)
{
	(void)h;
}

static void
shutdown_relay(relay *r, const char *why)
{
	if (r->stopping)
		return;
	r->stopping = true;
	relay_log("shutdown (%s): %zu connections, %zu documents", why,
	    r->nconns, r->ndocs);
	uv_close((uv_handle_t *)&r->server, on_close_quiet);
	relay_conns_close_all(r);
	relay_docs_close_all(r);
	uv_close((uv_handle_t *)&r->sigterm, on_close_quiet);
	uv_close((uv_handle_t *)&r->sigint, on_close_quiet);
	uv_close((uv_handle_t *)&r->check, on_close_quiet);
}

static void
on_signal(uv_signal_t *s, int signum)
{
	shutdown_relay(s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void
on_check(uv_check_t *h)
{
	relay *r = h->data;
	if (!r->stopping)
		relay_docs_tick(r);
}

/* Listen, run the loop until a signal stops it, close the loop. */
static int
serve(relay *r)
{
	struct sockaddr_in addr;
	int rc = uv_loop_init(&r->loop);
	if (rc == 0)
		rc = uv_ip4_addr(r->o.host, (int)r->o.port, &addr);
	if (rc != 0) {
		fprintf(stderr, "crdt-relay: bad address %s: %s\n", r->o.host,
		    uv_strerror(rc));
		return 1;
	}
	(void)uv_tcp_init(&r->loop, &r->server);
	r->server.data = r;
	rc = uv_tcp_bind(&r->server, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&r->server, 128,
		    relay_on_connection);
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	if (rc == 0)
		rc = uv_tcp_getsockname(&r->server, (struct sockaddr *)&ss,
		    &sl);
	if (rc != 0) {
		fprintf(stderr, "crdt-relay: cannot listen on %s:%zu: %s\n",
		    r->o.host, r->o.port, uv_strerror(rc));
		uv_close((uv_handle_t *)&r->server, on_close_quiet);
		uv_run(&r->loop, UV_RUN_DEFAULT);
		(void)uv_loop_close(&r->loop);
		return 1;
	}
	(void)uv_signal_init(&r->loop, &r->sigterm);
	(void)uv_signal_init(&r->loop, &r->sigint);
	r->sigterm.data = r->sigint.data = r;
	(void)uv_signal_start(&r->sigterm, on_signal, SIGTERM);
	(void)uv_signal_start(&r->sigint, on_signal, SIGINT);
	(void)uv_check_init(&r->loop, &r->check);
	r->check.data = r;
	(void)uv_check_start(&r->check, on_check);

	char ip[INET_ADDRSTRLEN];
	const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
	uv_ip4_name(in, ip, sizeof ip);
	printf("listening %s:%u\n", ip, (unsigned)ntohs(in->sin_port));
	fflush(stdout);
	relay_log("listening %s:%u data=%s%s%s%s", ip,
	    (unsigned)ntohs(in->sin_port), r->o.data_dir,
	    r->o.has_server ? " server" : "", r->o.signed_mode ? " signed" : "",
	    r->o.encrypted ? " encrypted (keyless)" : "");

	if (r->o.has_server) {
		char hex[2 * CRDT_REPLICA_ID_BYTES + 1];
		tool_hex(r->o.server_id.bytes, CRDT_REPLICA_ID_BYTES, hex);
		relay_log("chat server replica id %s", hex);
	}

	uv_run(&r->loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&r->loop);
	if (rc != 0) {
		relay_log("loop close: %s", uv_strerror(rc));
		return 1;
	}
	relay_log("stopped");
	return 0;
}

int
main(int argc, char **argv)
{
	static relay r;
	if (parse_opts(argc, argv, &r.o) != 0) {
		usage(stderr);
		return 2;
	}
	if (crdt_init() != 0) {
		fprintf(stderr, "crdt-relay: libsodium failed to start\n");
		return 1;
	}
	if (mkdir(r.o.data_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "crdt-relay: cannot create %s: %s\n",
		    r.o.data_dir, strerror(errno));
		return 1;
	}
	crdt_config_default(&r.cfg);
	/* A sync frame and its envelope fit one transport frame. */
	r.cfg.limits.max_bytes = r.o.max_frame - NET_ENV_BYTES;
	r.cfg.sync_max_bytes = r.cfg.limits.max_bytes;
	/* The store serves what the log evicted, so a small log costs
	 * catch-up reads, never correctness. */
	r.cfg.log_max_bytes = r.o.doc_log_bytes;
	r.cfg.max_buffered_bytes = r.o.doc_buffer_bytes;
	if (r.cfg.max_sender_buffered > r.o.doc_buffer_bytes)
		r.cfg.max_sender_buffered = r.o.doc_buffer_bytes;

	if (r.o.server_seed_file != NULL && load_server_identity(&r) != 0)
		return 1;
	int rc = serve(&r);
	crdt_identity_free(r.o.server_ident);
	return rc;
}
