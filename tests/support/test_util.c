#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>

#include <criterion/criterion.h>

#include "test_alloc.h"
#include "test_util.h"

crdt_replica_id
test_id(uint8_t n)
{
	crdt_replica_id id;
	memset(&id, 0, sizeof id);
	id.bytes[0] = n;
	id.bytes[15] = 1; /* the all-zero ID is reserved */
	return id;
}

uint64_t
test_clock_read(void *ud)
{
	test_clock *c = ud;
	c->reads++;
	return c->ms;
}

void
test_config(crdt_config *cfg, test_clock *clk)
{
	crdt_config_default(cfg);
	cfg->alloc = *test_alloc_hook();
	if (clk != NULL) {
		cfg->clock = test_clock_read;
		cfg->clock_ud = clk;
	}
}

void
tb_init(crdt_buf *b)
{
	crdt_buf_init(b, NULL);
}

void
mp_raw(crdt_buf *b, const void *p, size_t n)
{
	cr_assert_eq(crdt_buf_append(b, p, n), 0, "scaffolding append failed");
}

void
mp_byte(crdt_buf *b, uint8_t v)
{
	mp_raw(b, &v, 1);
}

static void
be(crdt_buf *b, uint64_t v, unsigned n)
{
	for (unsigned i = n; i-- > 0;)
		mp_byte(b, (uint8_t)(v >> (8 * i)));
}

void
mp_array(crdt_buf *b, uint32_t n)
{
	if (n < 16) {
		mp_byte(b, (uint8_t)(0x90 | n));
	} else if (n <= 0xFFFF) {
		mp_byte(b, 0xdc);
		be(b, n, 2);
	} else {
		mp_byte(b, 0xdd);
		be(b, n, 4);
	}
}

void
mp_uint(crdt_buf *b, uint64_t v)
{
	if (v < 0x80) {
		mp_byte(b, (uint8_t)v);
	} else if (v <= 0xFF) {
		mp_byte(b, 0xcc);
		be(b, v, 1);
	} else if (v <= 0xFFFF) {
		mp_byte(b, 0xcd);
		be(b, v, 2);
	} else if (v <= 0xFFFFFFFFu) {
		mp_byte(b, 0xce);
		be(b, v, 4);
	} else {
		mp_byte(b, 0xcf);
		be(b, v, 8);
	}
}

void
mp_bin(crdt_buf *b, const void *p, size_t n)
{
	if (n <= 0xFF) {
		mp_byte(b, 0xc4);
		be(b, n, 1);
	} else if (n <= 0xFFFF) {
		mp_byte(b, 0xc5);
		be(b, n, 2);
	} else {
		mp_byte(b, 0xc6);
		be(b, n, 4);
	}
	mp_raw(b, p, n);
}

void
mp_nil(crdt_buf *b)
{
	mp_byte(b, 0xc0);
}

void
mp_id(crdt_buf *b, crdt_replica_id id)
{
	mp_bin(b, id.bytes, sizeof id.bytes);
}

void
mk_gset_op(crdt_buf *b, crdt_replica_id id, uint64_t counter,
    const void *elem, size_t len)
{
	mp_array(b, 5);
	mp_uint(b, 1);
	mp_uint(b, 1);
	mp_id(b, id);
	mp_uint(b, counter);
	mp_bin(b, elem, len);
}

static void
write_reg(crdt_buf *b, uint64_t hlc, crdt_replica_id id, bool present,
    const void *val, size_t len)
{
	mp_uint(b, hlc);
	mp_id(b, id);
	if (present)
		mp_bin(b, val, len);
	else
		mp_nil(b);
}

void
mk_lww_op(crdt_buf *b, uint64_t hlc, crdt_replica_id id, bool present,
    const void *val, size_t len)
{
	mp_array(b, 5);
	mp_uint(b, 1);
	mp_uint(b, 2);
	write_reg(b, hlc, id, present, val, len);
}

void
mk_map_op(crdt_buf *b, uint64_t hlc, crdt_replica_id id, bool present,
    const void *val, size_t vlen, const void *key, size_t klen)
{
	mp_array(b, 6);
	mp_uint(b, 1);
	mp_uint(b, 3);
	write_reg(b, hlc, id, present, val, vlen);
	mp_bin(b, key, klen);
}

bool
bytes_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

const char *
hexs(const void *p, size_t n)
{
	/* Four rotating buffers: several hexs() in one message work. */
	static char bufs[4][64 * 2 + 4];
	static unsigned next;
	char *out = bufs[next++ % 4];
	static const char hex[] = "0123456789abcdef";
	const uint8_t *s = p;
	size_t k = 0;
	for (size_t i = 0; i < n && i < 64; i++) {
		out[k++] = hex[s[i] >> 4];
		out[k++] = hex[s[i] & 15];
	}
	if (n > 64) {
		out[k++] = '.';
		out[k++] = '.';
	}
	out[k] = '\0';
	return out;
}

void
test_rm_db(const char *path)
{
	static const char *const tails[] = { "-wal", "-shm", "-journal" };
	char x[512];
	unlink(path);
	for (size_t i = 0; i < 3; i++)
		if (snprintf(x, sizeof x, "%s%s", path, tails[i]) <
		    (int)sizeof x)
			unlink(x);
}

void
test_tmpdb(const char *tag, char *dir, char *db)
{
	snprintf(dir, TEST_DIR_MAX, "/tmp/crdt-%s-XXXXXX", tag);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", dir);
	snprintf(db, TEST_DB_MAX, "%s/s.db", dir);
}

void
test_tmpdb_remove(const char *dir, const char *db)
{
	test_rm_db(db);
	rmdir(dir);
}
