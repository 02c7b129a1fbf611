#ifndef CRDT_RELAY_CHAT_H
#define CRDT_RELAY_CHAT_H

/*
 * crdt-chat internals: the client's state (chat_main.c: options, the
 * document, commands, printing) and its connection to a relay
 * (chat_net.c). One thread, one libuv loop.
 */

#include "net.h"

typedef struct chat chat;

/* One connection attempt; freed when its handle is closed. */
typedef struct chat_conn {
	uv_tcp_t tcp;
	uv_connect_t req;
	chat *c;
	net_rbuf rbuf;
	bool up;       /* connected */
	bool closing;
	uint64_t last_ping, last_pong; /* tokens on this connection */
} chat_conn;

struct chat {
	uv_loop_t loop;
	/* options */
	struct sockaddr_in addr;
	crdt_doc_id doc_id;
	const char *user;
	const char *data;
	const char *dump;
	bool has_server;
	crdt_replica_id server_id;
	bool signed_mode, has_key;
	uint8_t key[CRDT_DOC_KEY_BYTES];
	size_t timeout_ms;
	size_t max_frame;
	/* document */
	crdt_config cfg;
	crdt_identity *ident;
	crdt_doc *doc;
	crdt_store *store;
	uint32_t thread;
	/* network */
	chat_conn *cur;
	bool online;
	uint64_t next_token;
	uv_timer_t retry;
	/* commands */
	char **lines;
	size_t nlines, head, cap;
	bool eof;
	bool interactive;
	bool waiting;    /* a sync (or quit) waits for the relay */
	bool exit_after; /* quit once the wait ends */
	bool done;
	uv_timer_t deadline, step;
	uv_stream_t *in;
	union {
		uv_tty_t tty;
		uv_pipe_t pipe;
	} inh;
	char line[65536];
	size_t linelen;
	bool line_too_long;
	int exit_code;
};

/* chat_net.c */
void chat_net_online(chat *c);
void chat_net_offline(chat *c);
/* Start a sync round (after a local change), when connected. */
void chat_net_kick(chat *c);
/* Connected, and the relay answered every frame sent so far. */
bool chat_net_quiet(const chat *c);
void chat_net_close(chat *c);

/* chat_main.c */
/* The network moved: a waiting sync may be complete. */
void chat_progress(chat *c);
void chat_log(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif /* CRDT_RELAY_CHAT_H */
