#ifndef CRDT_RELAY_RELAY_H
#define CRDT_RELAY_RELAY_H

/*
 * crdt-relay internals: options, the documents it holds (relay_doc.c),
 * the connections it serves (relay_conn.c) and the loop that ties them
 * (relay_main.c). One thread, one libuv loop; every bound below is an
 * option (docs/relay.md, "Options and limits").
 */

#include "net.h"

typedef struct relay_opts {
	const char *host;
	size_t port;
	const char *data_dir;
	bool has_server;
	crdt_replica_id server_id;
	const char *server_seed_file; /* signed server: its identity */
	crdt_identity *server_ident;
	bool signed_mode, encrypted;
	size_t max_conns;
	size_t max_docs;
	size_t max_docs_per_conn;
	size_t max_frame;
	size_t max_write_queue;
	size_t checkpoint_every;
	size_t doc_log_bytes;
	size_t doc_buffer_bytes;
	crdt_store_sync sync;
} relay_opts;

typedef struct relay relay;
typedef struct rconn rconn;

/* One document the relay holds: an open crdt_doc on its SQLite file. */
typedef struct rdoc {
	relay *r;
	struct rdoc *next;
	crdt_doc_id id;
	char hex[2 * CRDT_DOC_ID_BYTES + 1];
	char *path;
	crdt_doc *doc;
	crdt_store *store;
	uint32_t chat;
	bool fresh;       /* its file was created by this open, empty so far */
	bool push_due;    /* it took something in since the last push */
	uint64_t push_skip; /* the one connection it all came from, or 0 */
	bool ack_due;     /* a remote message arrived since the last ack */
	size_t since_checkpoint;
} rdoc;

/* One client connection. */
struct rconn {
	uv_tcp_t tcp;
	relay *r;
	rconn *next;
	uint64_t id;
	char peer[64];
	net_rbuf rbuf;
	size_t queued;     /* bytes handed to uv_write, not yet written */
	rdoc **docs;       /* documents it named (bounded) */
	size_t ndocs;
	bool closing;
};

struct relay {
	uv_loop_t loop;
	uv_tcp_t server;
	uv_signal_t sigterm, sigint;
	uv_check_t check;
	relay_opts o;
	crdt_config cfg;
	rdoc *docs;
	size_t ndocs;
	rconn *conns;
	size_t nconns;
	uint64_t next_conn_id;
	bool stopping;
};

/* One line on stderr: "crdt-relay: " + the formatted event. */
void relay_log(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* relay_doc.c */
/* The document named `id`, opened (created on first use) when absent.
 * NULL with a reason logged when the relay cannot or will not hold it. */
rdoc *relay_doc_get(relay *r, const crdt_doc_id *id, const char *who);
/* Close a fresh document that still holds nothing and remove its files:
 * a frame that brought nothing leaves nothing on disk. */
void relay_doc_release_if_empty(relay *r, rdoc *rd);
/* Store what the document accepted (group commit); false, logged, when
 * the store refused: then nothing may be sent that depends on it. */
bool relay_doc_flush(rdoc *rd);
/* After each loop turn: acks (server role), pushes, checkpoints. */
void relay_docs_tick(relay *r);
/* Shutdown: checkpoint and close every document. */
void relay_docs_close_all(relay *r);

/* relay_conn.c */
void relay_on_connection(uv_stream_t *server, int status);
/* Send an envelope; false when the connection is closing or was just
 * closed for its write queue (logged). */
bool relay_conn_send(rconn *c, uint8_t type, const crdt_doc_id *doc,
    const void *payload, size_t len);
void relay_conn_close(rconn *c, const char *reason);
void relay_conns_close_all(relay *r);
/* Forget `rd` in every connection's list (the document is closing). */
void relay_conns_forget_doc(relay *r, const rdoc *rd);

#endif /* CRDT_RELAY_RELAY_H */
