#ifndef CRDT_RELAY_NET_H
#define CRDT_RELAY_NET_H

/*
 * What crdt-relay and crdt-chat share: the transport envelope
 * (docs/relay.md, "Wire protocol"), a bounded read buffer that cuts a
 * byte stream into frames, hex and address parsing, and a write request
 * that owns its bytes.
 */

#include "hex.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "crdt/crdt.h"

/* Envelope: [u32 BE length][u8 type][32-byte doc id][payload]. */
#define NET_LEN_BYTES 4
#define NET_ENV_BYTES (1 + CRDT_DOC_ID_BYTES)
#define NET_TYPE_SYNC 1 /* payload: one libcrdt sync frame */
#define NET_TYPE_PING 2 /* client -> relay: 8-byte token */
#define NET_TYPE_PONG 3 /* relay -> client: the token of a PING */
#define NET_TOKEN_BYTES 8

#define NET_DEFAULT_MAX_FRAME (1u << 20)

/* The stream reader's verdict on the bytes buffered so far. */
typedef enum net_cut {
	NET_CUT_NONE = 0,   /* no complete frame yet */
	NET_CUT_FRAME = 1,  /* a frame is at the front */
	NET_CUT_TOOBIG = -1, /* its length is over the limit */
	NET_CUT_SHORT = -2   /* its length cannot hold an envelope */
} net_cut;

/* Received bytes not yet cut into frames; never more than one frame
 * (the limit) plus its length prefix. */
typedef struct net_rbuf {
	uint8_t *data;
	size_t len, cap;
	size_t max_frame;
} net_rbuf;

void net_rbuf_init(net_rbuf *b, size_t max_frame);
void net_rbuf_fini(net_rbuf *b);
/* Take `n` bytes; -1 when they would pass the bound (a caller bug: it
 * cuts frames before taking more, so a frame within the limit fits). */
int net_rbuf_take(net_rbuf *b, const void *p, size_t n);
/* Look at the front: on NET_CUT_FRAME `*frame`/`*len` is the frame
 * after the length prefix (borrowed until net_rbuf_drop). `*claimed` is
 * the length the prefix claims when one is there (for log lines). */
net_cut net_rbuf_cut(const net_rbuf *b, const uint8_t **frame, size_t *len,
    uint32_t *claimed);
/* Drop the frame at the front. */
void net_rbuf_drop(net_rbuf *b);

/* One write: the uv request and the bytes it sends, freed in its
 * callback. */
typedef struct net_write {
	uv_write_t req;
	size_t len;
	uint8_t data[];
} net_write;

/* A write of an envelope with `len` payload bytes (borrowed, copied);
 * NULL on allocation failure. */
net_write *net_write_new(uint8_t type, const crdt_doc_id *doc,
    const void *payload, size_t len);

/* "HOST:PORT" (IPv4) into an address; -1 when malformed. */
int net_parse_addr(const char *s, struct sockaddr_in *out);
/* A decimal in [min, max]; -1 otherwise. */
int net_parse_size(const char *s, size_t min, size_t max, size_t *out);

#endif /* CRDT_RELAY_NET_H */
