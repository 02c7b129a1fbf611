/*
 * Counting, size-checking, failure-injecting allocator. See test_alloc.h.
 * The header in front of each block is 16 bytes so the user pointer keeps
 * the alignment malloc guarantees on the platforms we build on.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "test_alloc.h"

#define HDR 16u
#define MAGIC_LIVE UINT64_C(0x6c69766563726474) /* "livecrdt" */
#define MAGIC_DEAD UINT64_C(0x6465616463726474) /* "deadcrdt" */

typedef struct hdr {
	uint64_t magic;
	uint64_t size;
} hdr;

static struct {
	size_t live_bytes, live_blocks;
	unsigned long calls;
	long countdown; /* < 0: disarmed */
	bool sticky;
	bool fired;
} st = { 0, 0, 0, -1, false, false };

void
test_alloc_reset(void)
{
	st.live_bytes = st.live_blocks = 0;
	st.calls = 0;
	st.countdown = -1;
	st.sticky = st.fired = false;
}

size_t
test_alloc_live_bytes(void)
{
	return st.live_bytes;
}

size_t
test_alloc_live_blocks(void)
{
	return st.live_blocks;
}

unsigned long
test_alloc_calls(void)
{
	return st.calls;
}

void
test_alloc_fail_at(long n)
{
	st.countdown = n;
	st.sticky = false;
	st.fired = false;
}

void
test_alloc_fail_from(long n)
{
	st.countdown = n;
	st.sticky = true;
	st.fired = false;
}

bool
test_alloc_fired(void)
{
	return st.fired;
}

void
test_alloc_disarm(void)
{
	st.countdown = -1;
	st.sticky = false;
}

/* One allocation attempt: true when it must fail. */
static bool
should_fail(void)
{
	st.calls++;
	if (st.countdown < 0)
		return false;
	if (st.countdown > 0) {
		st.countdown--;
		return false;
	}
	st.fired = true;
	if (!st.sticky)
		st.countdown = -1;
	return true;
}

/* Check the header of a block handed back by the library. A wrong size or
 * a foreign/freed pointer is a library bug: fail the test right here, where
 * the backtrace still shows the caller. */
static hdr *
check(void *p, size_t size, const char *what)
{
	hdr *h = (hdr *)((uint8_t *)p - HDR);
	if (h->magic != MAGIC_LIVE)
		cr_assert_fail("%s(%p): not a live block (magic %016llx)",
		    what, p, (unsigned long long)h->magic);
	if (h->size != size)
		cr_assert_fail("%s(%p): size %zu passed, %llu allocated", what,
		    p, size, (unsigned long long)h->size);
	return h;
}

static void *
t_alloc(void *ud, size_t size)
{
	(void)ud;
	if (should_fail())
		return NULL;
	if (size > SIZE_MAX - HDR)
		return NULL;
	hdr *h = malloc(HDR + size);
	if (h == NULL)
		return NULL;
	h->magic = MAGIC_LIVE;
	h->size = size;
	/* Garbage, not zeros: code that forgets to initialise shows up. */
	memset((uint8_t *)h + HDR, 0xA5, size);
	st.live_bytes += size;
	st.live_blocks++;
	return (uint8_t *)h + HDR;
}

static void *
t_realloc(void *ud, void *p, size_t old_size, size_t new_size)
{
	if (p == NULL)
		return t_alloc(ud, new_size);
	check(p, old_size, "realloc");
	if (should_fail())
		return NULL; /* the old block stays valid, as with realloc(3) */
	if (new_size > SIZE_MAX - HDR)
		return NULL;
	hdr *h = realloc((uint8_t *)p - HDR, HDR + new_size);
	if (h == NULL)
		return NULL;
	if (new_size > old_size)
		memset((uint8_t *)h + HDR + old_size, 0xA5,
		    new_size - old_size);
	h->size = new_size;
	st.live_bytes = st.live_bytes - old_size + new_size;
	return (uint8_t *)h + HDR;
}

static void
t_free(void *ud, void *p, size_t size)
{
	(void)ud;
	if (p == NULL)
		return;
	hdr *h = check(p, size, "free");
	h->magic = MAGIC_DEAD;
	memset(p, 0x5A, size);
	st.live_bytes -= size;
	st.live_blocks--;
	free(h);
}

static const crdt_allocator hook = { t_alloc, t_realloc, t_free, NULL };

const crdt_allocator *
test_alloc_hook(void)
{
	return &hook;
}
