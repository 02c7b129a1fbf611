/*
 * Envelope framing and small parsers shared by crdt-relay and crdt-chat.
 * The reader never holds more than one frame: the caller cuts and drops
 * every complete frame before it takes the next read, and a length over
 * the limit is reported before any of that frame's payload is kept.
 */

#include "net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
net_rbuf_init(net_rbuf *b, size_t max_frame)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max_frame = max_frame;
}

void
net_rbuf_fini(net_rbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

int
net_rbuf_take(net_rbuf *b, const void *p, size_t n)
{
	size_t bound = b->max_frame + NET_LEN_BYTES;
	if (n > bound - b->len)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		if (cap > bound)
			cap = bound;
		uint8_t *d = realloc(b->data, cap);
		if (d == NULL)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

net_cut
net_rbuf_cut(const net_rbuf *b, const uint8_t **frame, size_t *len,
    uint32_t *claimed)
{
	if (b->len < NET_LEN_BYTES)
		return NET_CUT_NONE;
	uint32_t n = be32(b->data);
	*claimed = n;
	if (n > b->max_frame)
		return NET_CUT_TOOBIG;
	if (n < NET_ENV_BYTES)
		return NET_CUT_SHORT;
	if (b->len - NET_LEN_BYTES < n)
		return NET_CUT_NONE;
	*frame = b->data + NET_LEN_BYTES;
	*len = n;
	return NET_CUT_FRAME;
}

void
net_rbuf_drop(net_rbuf *b)
{
	size_t n = NET_LEN_BYTES + be32(b->data);
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	/* A burst may have grown the buffer to the frame limit; give that
	 * back once it is drained so idle connections stay small. */
	if (b->len == 0 && b->cap > 65536) {
		free(b->data);
		b->data = NULL;
		b->cap = 0;
	}
}

net_write *
net_write_new(uint8_t type, const crdt_doc_id *doc, const void *payload,
    size_t len)
{
	size_t body = NET_ENV_BYTES + len;
	if (body > UINT32_MAX)
		return NULL;
	net_write *w = malloc(sizeof *w + NET_LEN_BYTES + body);
	if (w == NULL)
		return NULL;
	w->len = NET_LEN_BYTES + body;
	w->data[0] = (uint8_t)(body >> 24);
	w->data[1] = (uint8_t)(body >> 16);
	w->data[2] = (uint8_t)(body >> 8);
	w->data[3] = (uint8_t)body;
	w->data[4] = type;
	memcpy(w->data + 5, doc->bytes, CRDT_DOC_ID_BYTES);
	if (len > 0)
		memcpy(w->data + NET_LEN_BYTES + NET_ENV_BYTES, payload, len);
	return w;
}




int
net_parse_size(const char *s, size_t min, size_t max, size_t *out)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (size_t)v;
	return 0;
}

int
net_parse_addr(const char *s, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	size_t port;
	if (colon == NULL || (size_t)(colon - s) >= sizeof host ||
	    colon == s)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if (net_parse_size(colon + 1, 1, 65535, &port) != 0)
		return -1;
	return uv_ip4_addr(host, (int)port, out) == 0 ? 0 : -1;
}
