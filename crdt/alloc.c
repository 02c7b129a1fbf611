/* Configuration defaults, allocator plumbing, byte buffers, errors. */
#include <stdlib.h>

#include "internal.h"

static void *
libc_alloc(void *ud, size_t n)
{
	(void)ud;
	return malloc(n);
}

static void *
libc_realloc(void *ud, void *p, size_t old_size, size_t new_size)
{
	(void)ud;
	(void)old_size;
	return realloc(p, new_size);
}

static void
libc_free(void *ud, void *p, size_t size)
{
	(void)ud;
	(void)size;
	free(p);
}

static const crdt_allocator libc_allocator = {
	libc_alloc, libc_realloc, libc_free, NULL
};

#define DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define DEFAULT_MAX_ELEMS ((size_t)4 << 20)
#define DEFAULT_MAX_VALUE ((size_t)1 << 20)
#define DEFAULT_MAX_DEPTH 16u
#define DEFAULT_MAX_DRIFT_MS UINT64_C(60000)

void
crdt_config_default(crdt_config *cfg)
{
	if (cfg == NULL)
		return;
	memset(cfg, 0, sizeof *cfg);
	cfg->alloc = libc_allocator;
	cfg->limits.max_bytes = DEFAULT_MAX_BYTES;
	cfg->limits.max_elems = DEFAULT_MAX_ELEMS;
	cfg->limits.max_value_bytes = DEFAULT_MAX_VALUE;
	cfg->limits.max_depth = DEFAULT_MAX_DEPTH;
	cfg->max_drift_ms = DEFAULT_MAX_DRIFT_MS;
	cfg->max_buffered_msgs = (size_t)1 << 20;
	cfg->max_buffered_bytes = (size_t)64 << 20;
	cfg->log_max_msgs = (size_t)1 << 20;
	cfg->log_max_bytes = (size_t)256 << 20;
	cfg->max_replicas = 65536;
	cfg->sync_max_bytes = DEFAULT_MAX_BYTES;
	cfg->max_variants = 4;
	cfg->max_evidence_bytes = (size_t)16 << 20;
	cfg->max_sender_buffered = (size_t)16 << 20;
	cfg->ckpt_min_bytes = (size_t)256 << 10;
	cfg->ckpt_tail_pct = 50;
}

int
crdt__config_resolve(const crdt_config *in, crdt_config *out)
{
	crdt_config c;

	crdt_config_default(&c);
	if (in == NULL) {
		*out = c;
		return 0;
	}
	const crdt_allocator *a = &in->alloc;
	int hooks = (a->alloc != NULL) + (a->realloc != NULL) +
	    (a->free != NULL);
	if (hooks != 0 && hooks != 3)
		return CRDT_EINVAL;
	if (hooks == 3)
		c.alloc = *a;
	if (in->limits.max_bytes)
		c.limits.max_bytes = in->limits.max_bytes;
	if (in->limits.max_elems)
		c.limits.max_elems = in->limits.max_elems;
	if (in->limits.max_value_bytes)
		c.limits.max_value_bytes = in->limits.max_value_bytes;
	if (in->limits.max_depth)
		c.limits.max_depth = in->limits.max_depth;
	if (in->max_drift_ms)
		c.max_drift_ms = in->max_drift_ms;
	if (in->max_buffered_msgs)
		c.max_buffered_msgs = in->max_buffered_msgs;
	if (in->max_buffered_bytes)
		c.max_buffered_bytes = in->max_buffered_bytes;
	if (in->log_max_msgs)
		c.log_max_msgs = in->log_max_msgs;
	if (in->log_max_bytes)
		c.log_max_bytes = in->log_max_bytes;
	if (in->max_replicas)
		c.max_replicas = in->max_replicas;
	if (in->sync_max_bytes)
		c.sync_max_bytes = in->sync_max_bytes;
	/* Lengths are 32-bit inside (table keys, buffered messages): no
	 * input or value may reach 4 GiB. */
	if (c.limits.max_bytes >= UINT32_MAX ||
	    c.limits.max_value_bytes >= UINT32_MAX)
		return CRDT_EINVAL;
	/* A frame over limits.max_bytes is refused by every peer with the
	 * same limits, so the budget never exceeds it. */
	if (c.sync_max_bytes > c.limits.max_bytes)
		c.sync_max_bytes = c.limits.max_bytes;
	if (in->max_variants)
		c.max_variants = in->max_variants;
	if (in->max_evidence_bytes)
		c.max_evidence_bytes = in->max_evidence_bytes;
	if (in->max_sender_buffered)
		c.max_sender_buffered = in->max_sender_buffered;
	if (in->ckpt_min_bytes)
		c.ckpt_min_bytes = in->ckpt_min_bytes;
	if (in->ckpt_tail_pct)
		c.ckpt_tail_pct = in->ckpt_tail_pct;
	c.clock = in->clock;
	c.clock_ud = in->clock_ud;
	c.doc_id = in->doc_id;
	*out = c;
	return 0;
}

int
crdt__grow_slow(const crdt_allocator *a, void **p, size_t *cap, size_t need,
    size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 8;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return CRDT_ENOMEM;
		ncap *= 2;
	}
	if (elem != 0 && ncap > SIZE_MAX / elem)
		return CRDT_ENOMEM;
	void *np;
	if (*p == NULL)
		np = a->alloc(a->ud, ncap * elem);
	else
		np = a->realloc(a->ud, *p, *cap * elem, ncap * elem);
	if (np == NULL)
		return CRDT_ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

uint8_t *
crdt__memdup(const crdt_allocator *a, const void *src, size_t n)
{
	uint8_t *p = crdt__malloc(a, n);
	if (p != NULL && n != 0)
		memcpy(p, src, n);
	return p;
}

enum { ARENA_FIRST = 1024, ARENA_MAX = 64 * 1024 };

void
crdt__arena_init(crdt__arena *ar, const crdt_allocator *a)
{
	ar->a = a;
	ar->top = NULL;
	ar->next = ARENA_FIRST;
}

static void
chunk_free(const crdt_allocator *a, crdt__chunk *c)
{
	crdt__free(a, c, sizeof *c + c->cap);
}

void
crdt__arena_fini(crdt__arena *ar)
{
	while (ar->top != NULL) {
		crdt__chunk *c = ar->top;
		ar->top = c->prev;
		chunk_free(ar->a, c);
	}
	ar->next = ARENA_FIRST;
}

uint8_t *
crdt__arena_copy_slow(crdt__arena *ar, const void *src, size_t n)
{
	crdt__chunk *c = ar->top;
	if (c == NULL || n > c->cap - c->used) {
		size_t cap = CRDT_MAX(ar->next, n);
		if (cap > SIZE_MAX - sizeof *c)
			return NULL;
		c = crdt__malloc(ar->a, sizeof *c + cap);
		if (c == NULL)
			return NULL;
		c->prev = ar->top;
		c->cap = cap;
		c->used = 0;
		ar->top = c;
		if (ar->next < ARENA_MAX)
			ar->next *= 2;
	}
	uint8_t *p = c->data + c->used;
	if (src != NULL && n != 0)
		memcpy(p, src, n);
	c->used += n;
	return p;
}

void
crdt__arena_reset(crdt__arena *ar, crdt__arena_mark m)
{
	while (ar->top != NULL && ar->top != m.top) {
		crdt__chunk *c = ar->top;
		ar->top = c->prev;
		chunk_free(ar->a, c);
	}
	if (ar->top != NULL)
		ar->top->used = m.used;
}

void
crdt__arena_unbump(crdt__arena *ar, const uint8_t *p, size_t n)
{
	crdt__chunk *c = ar->top;
	if (c != NULL && n <= c->used && p == c->data + (c->used - n))
		c->used -= n;
}

void
crdt_buf_init(crdt_buf *b, const crdt_allocator *alloc)
{
	if (b == NULL)
		return;
	memset(b, 0, sizeof *b);
	if (alloc != NULL && alloc->alloc != NULL && alloc->realloc != NULL &&
	    alloc->free != NULL)
		b->alloc = *alloc;
	else
		b->alloc = libc_allocator;
}

void
crdt_buf_fini(crdt_buf *b)
{
	if (b == NULL)
		return;
	if (b->data != NULL)
		b->alloc.free(b->alloc.ud, b->data, b->cap);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
crdt_buf_clear(crdt_buf *b)
{
	if (b != NULL)
		b->len = 0;
}

int
crdt__buf_reserve(crdt_buf *b, size_t len)
{
	if (len > SIZE_MAX - b->len)
		return CRDT_ENOMEM;
	if (b->len + len > b->cap) {
		size_t ncap = b->cap ? b->cap : 64;
		while (ncap < b->len + len) {
			if (ncap > SIZE_MAX / 2) {
				ncap = b->len + len;
				break;
			}
			ncap *= 2;
		}
		uint8_t *np = b->data == NULL ?
		    b->alloc.alloc(b->alloc.ud, ncap) :
		    b->alloc.realloc(b->alloc.ud, b->data, b->cap, ncap);
		if (np == NULL)
			return CRDT_ENOMEM;
		b->data = np;
		b->cap = ncap;
	}
	return 0;
}

int
crdt_buf_append(crdt_buf *b, const void *data, size_t len)
{
	if (b == NULL || (data == NULL && len != 0) || b->alloc.alloc == NULL)
		return CRDT_EINVAL;
	if (len == 0)
		return 0;
	CRDT_TRY(crdt__buf_reserve(b, len));
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

/* ---- errors and version ---- */

const char *
crdt_strerror(int err)
{
	switch (err) {
	case CRDT_OK:
		return "success";
#define CRDT_ERR_MSG_(name, val, msg)                                   \
	case CRDT_##name:                                               \
		return msg;
		CRDT_ERRNO_MAP(CRDT_ERR_MSG_)
#undef CRDT_ERR_MSG_
	}
	return "unknown error";
}

const char *
crdt_err_name(int err)
{
	switch (err) {
	case CRDT_OK:
		return "CRDT_OK";
#define CRDT_ERR_NAME_(name, val, msg)                                  \
	case CRDT_##name:                                               \
		return "CRDT_" #name;
		CRDT_ERRNO_MAP(CRDT_ERR_NAME_)
#undef CRDT_ERR_NAME_
	}
	return "CRDT_E_UNKNOWN";
}

unsigned
crdt_version_number(void)
{
	return CRDT_VERSION_NUMBER;
}

const char *
crdt_version_string(void)
{
	return CRDT_VERSION_STRING;
}

int
crdt_init(void)
{
	return crdt__crypto_init();
}
