/*
 * Store layer faults against real SQLite files: a full disk, damaged
 * files refused on open, damage after open caught when handed out, a held
 * write lock, I/O errors injected by a VFS (each gives its code and
 * changes nothing), and the cost of an up-to-date peer counted in reads.
 */
#include "test_store_common.h"

/* ---- a full disk ---- */

Test(store, a_full_disk_gives_efull_and_the_store_stays_consistent)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 120, 3000, 0); /* ~3 KB each, < 1 page */
	crdt_store_sqlite_opts o = { .max_pages = 40 };
	crdt_store *st = open_store(&o);
	size_t acked = 0;
	int rc = 0;
	for (size_t i = 0; i < s.n; i++) {
		rc = test_stream_put(st, &s, i, 1, NULL);
		if (rc != 0)
			break;
		acked++;
	}
	cr_assert_eq(rc, CRDT_EFULL, "got %s after %zu", crdt_err_name(rc),
	    acked);
	cr_assert_gt(acked, 5);
	cr_assert_lt(acked, s.n);
	/* A batch that does not fit is refused whole */
	cr_assert_eq(test_stream_put(st, &s, acked, 5, NULL), CRDT_EFULL);
	crdt_vclock *cv = clock_of(1, 1, 2, 0);
	static uint8_t big[64 * 1024];
	cr_assert_eq(crdt_store_put_checkpoint(st, big, sizeof big, cv),
	    CRDT_EFULL);
	/* The same handle still reads, and holds exactly what was acked */
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	size_t w[MAXM];
	for (size_t i = 0; i < acked; i++)
		w[i] = i;
	expect_msgs(&g, &s, w, acked);
	test_got_free(&g);
	crdt_buf snap;
	crdt_vclock *out = NULL;
	tb_init(&snap);
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &out), CRDT_ENOTFOUND);
	/* and duplicates of what it holds are still no-ops, not errors */
	size_t added = 9;
	cr_assert_eq(test_stream_put(st, &s, 0, 3, &added), 0);
	cr_assert_eq(added, 0);
	crdt_store_close(st);

	/* After space is freed (no quota) the store opens, passes its checks
	 * and takes the rest */
	st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, &s, acked, s.n - acked, &added), 0);
	cr_assert_eq(added, s.n - acked);
	cr_assert_eq(crdt_store_put_checkpoint(st, big, sizeof big, cv), 0);
	all_since(st, v, &g);
	for (size_t i = 0; i < s.n; i++)
		w[i] = i;
	expect_msgs(&g, &s, w, s.n);
	test_got_free(&g);
	crdt_vclock_free(v);
	crdt_vclock_free(cv);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, an_unopenable_path_gives_eio)
{
	char p[400];
	crdt_store *st = NULL;
	snprintf(p, sizeof p, "%s/no/such/dir/s.db", tmpdir);
	cr_assert_eq(try_open(p, &st), CRDT_EIO);
	cr_assert_null(st);
	/* a directory is not a file SQLite can open */
	cr_assert_eq(try_open(tmpdir, &st), CRDT_EIO);
	cr_assert_null(st);
	ASSERT_NO_LEAKS();
}

/* ---- damaged files are refused on open ---- */



static long
file_size(const char *p)
{
	struct stat sb;
	cr_assert_eq(stat(p, &sb), 0);
	return (long)sb.st_size;
}

static void
expect_refused(int want, const char *what)
{
	crdt_store *st = (crdt_store *)&st; /* untouched on error */
	crdt_store *keep = st;
	int rc = try_open(dbpath, &st);
	cr_assert_eq(rc, want, "%s: got %s", what, crdt_err_name(rc));
	cr_assert_eq(st, keep, "%s: no handle", what);
}

static void
sql(const char *path, const char *q)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	char *err = NULL;
	int rc = sqlite3_exec(db, q, NULL, NULL, &err);
	cr_assert_eq(rc, SQLITE_OK, "%s: %s", q, err ? err : "");
	sqlite3_close(db);
}

Test(store, a_text_file_is_refused_as_corrupt)
{
	FILE *f = fopen(dbpath, "w");
	cr_assert_not_null(f);
	for (int i = 0; i < 200; i++)
		fprintf(f, "this is not a database, line %d\n", i);
	fclose(f);
	expect_refused(CRDT_ECORRUPT, "text");
	ASSERT_NO_LEAKS();
}

Test(store, bytes_overwritten_in_the_middle_are_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 30, 2000, 0);
	make_store(&s);
	long sz = file_size(dbpath);
	cr_assert_gt(sz, 8 * 4096);
	int fd = open(dbpath, O_WRONLY);
	cr_assert_geq(fd, 0);
	uint8_t junk[4096];
	memset(junk, 0x5a, sizeof junk);
	/* A whole page in the middle: its b-tree header is gone */
	cr_assert_eq(pwrite(fd, junk, sizeof junk, (sz / 2) & ~4095L),
	    (ssize_t)sizeof junk);
	close(fd);
	expect_refused(CRDT_ECORRUPT, "overwritten page");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, a_few_bytes_flipped_inside_a_message_are_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 30, 2000, 0);
	make_store(&s);
	/* Flip bytes inside a stored message's payload: the b-tree is fine
	 * (quick_check passes), only the digest can tell. Find the value
	 * pattern of message 10 in the file. */
	FILE *f = fopen(dbpath, "r+b");
	cr_assert_not_null(f);
	static uint8_t file[1 << 20];
	size_t n = fread(file, 1, sizeof file, f);
	cr_assert_lt(n, sizeof file);
	const crdt_buf *m = &s.m[10];
	size_t off = SIZE_MAX;
	for (size_t i = 0; i + 64 <= n; i++)
		if (memcmp(file + i, m->data + m->len - 300, 64) == 0) {
			off = i;
			break;
		}
	cr_assert_neq(off, SIZE_MAX, "message bytes found in the file");
	file[off + 10] ^= 0x01;
	cr_assert_eq(fseek(f, (long)(off + 10), SEEK_SET), 0);
	cr_assert_eq(fwrite(&file[off + 10], 1, 1, f), 1);
	fclose(f);
	expect_refused(CRDT_ECORRUPT, "flipped message byte");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, a_truncated_file_is_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 30, 2000, 0);
	make_store(&s);
	long sz = file_size(dbpath);
	cr_assert_eq(truncate(dbpath, sz / 2), 0);
	expect_refused(CRDT_ECORRUPT, "half");
	cr_assert_eq(truncate(dbpath, 3000), 0);
	expect_refused(CRDT_ECORRUPT, "part of the first page");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, rows_and_schema_altered_through_sql_are_refused)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 50, 0);
	test_stream_add(&s, 2, 1, 50, 0);

	/* A message's bytes replaced by another real message: digest */
	make_store(&s);
	sql(dbpath, "UPDATE msgs SET bytes = (SELECT bytes FROM msgs "
		    "WHERE seq = 4) WHERE seq = 1");
	expect_refused(CRDT_ECORRUPT, "bytes swapped");
	test_rm_db(dbpath);
	/* bytes and digest of another message, under the wrong dot */
	make_store(&s);
	sql(dbpath, "UPDATE msgs SET (bytes, digest) = (SELECT bytes, digest "
		    "FROM msgs WHERE seq = 4) WHERE seq = 1");
	expect_refused(CRDT_ECORRUPT, "message under another dot");
	test_rm_db(dbpath);
	/* checkpoint snapshot altered */
	make_store(&s);
	sql(dbpath, "UPDATE checkpoint SET snap = x'00'");
	expect_refused(CRDT_ECORRUPT, "checkpoint");
	test_rm_db(dbpath);
	/* the unique index dropped */
	make_store(&s);
	sql(dbpath, "DROP INDEX msgs_dot");
	expect_refused(CRDT_ECORRUPT, "index dropped");
	test_rm_db(dbpath);
	/* a newer schema version */
	make_store(&s);
	sql(dbpath, "PRAGMA user_version = 4");
	expect_refused(CRDT_EVERSION, "newer version");
	test_rm_db(dbpath);
	/* another application's database */
	sql(dbpath, "CREATE TABLE t(x)");
	expect_refused(CRDT_ECORRUPT, "foreign database");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}


/* Damage done while a handle is open (another process, the disk) is
 * still caught: since() and checkpoint() check what they hand out. */
Test(store, damage_after_open_is_caught_when_handed_out)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 4, 50, 0);
	make_store(&s);
	crdt_store *st = open_store(NULL);
	sql(dbpath, "UPDATE msgs SET bytes = (SELECT bytes FROM msgs "
		    "WHERE seq = 1) WHERE seq = 3");
	sql(dbpath, "UPDATE checkpoint SET clock = x'9101'");
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	memset(&g, 0, sizeof g);
	uint64_t cur = 0;
	bool more = true;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    CRDT_ECORRUPT);
	cr_assert_eq(cur, 0);
	cr_assert(more);
	cr_assert_eq(g.n, 2, "the intact messages before it were handed out");
	test_got_free(&g);
	/* A page that ends before the damaged row is fine */
	memset(&g, 0, sizeof g);
	cr_assert_eq(crdt_store_since(st, v, &cur, 1, test_collect, &g, &more), 0);
	cr_assert_eq(g.n, 1);
	cr_assert(more);
	test_got_free(&g);
	crdt_buf snap;
	tb_init(&snap);
	cr_assert_eq(crdt_buf_append(&snap, "keep", 4), 0);
	crdt_vclock *cv = (crdt_vclock *)&cv;
	crdt_vclock *keep = cv;
	cr_assert_eq(crdt_store_checkpoint(st, &snap, &cv), CRDT_ECORRUPT);
	cr_assert_eq(cv, keep);
	cr_assert_eq(snap.len, 4, "snap_out restored");
	crdt_buf_fini(&snap);
	crdt_vclock_free(v);
	crdt_store_close(st);
	expect_refused(CRDT_ECORRUPT, "reopen");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}


/* Another connection holding the write lock: the open still succeeds (a
 * WAL reader does not wait for a writer), writes give CRDT_EBUSY after
 * the busy timeout and change nothing, reads go on, and once the lock is
 * released the same handle writes again. */
Test(store, a_held_write_lock_gives_ebusy_and_changes_nothing)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	crdt_store_sqlite_opts o = { .busy_timeout_ms = 1 };
	crdt_store *st = open_store(&o);
	cr_assert_eq(test_stream_put(st, &s, 0, 1, NULL), 0);
	crdt_store_close(st);

	sqlite3 *other;
	cr_assert_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
	    SQLITE_OK);
	st = open_store(&o);
	size_t added = 42;
	cr_assert_eq(test_stream_put(st, &s, 1, 2, &added), CRDT_EBUSY);
	cr_assert_eq(added, 42);
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	cr_assert_eq(crdt_store_put_checkpoint(st, "x", 1, v), CRDT_EBUSY);
	test_got g;
	all_since(st, v, &g);
	static const size_t w1[] = { 0 };
	expect_msgs(&g, &s, w1, 1);
	test_got_free(&g);
	cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(other);
	cr_assert_eq(test_stream_put(st, &s, 1, 2, &added), 0);
	cr_assert_eq(added, 2);
	cr_assert_eq(crdt_store_put_checkpoint(st, "x", 1, v), 0);
	all_since(st, v, &g);
	static const size_t w3[] = { 0, 1, 2 };
	expect_msgs(&g, &s, w3, 3);
	test_got_free(&g);
	crdt_vclock_free(v);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

/* ---- I/O errors, injected by a VFS ---- */

/*
 * A VFS over the default one whose writes and syncs can be made to fail:
 * the n-th one from when it is armed returns `fault_rc` (SQLITE_IOERR_*,
 * or SQLITE_FULL for a disk that fills), and so does every later one
 * until disarmed. Registered as the default VFS in this test's process
 * only (Criterion runs each test in its own), so the library's own
 * sqlite3_open_v2() goes through it.
 */
typedef struct ffile {
	sqlite3_file base;
	sqlite3_file *real; /* follows this struct in the same block */
} ffile;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;
static sqlite3_io_methods fault_io;
static long fault_left = -1; /* < 0: disarmed */
static int fault_rc;
static unsigned long fault_fired;

static int
fault_hit(int rc)
{
	if (fault_left < 0)
		return SQLITE_OK;
	if (fault_left > 0) {
		fault_left--;
		return SQLITE_OK;
	}
	fault_fired++;
	return rc;
}

#define REAL(f) (((ffile *)(f))->real)
static int
f_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}
static unsigned long fault_reads; /* xRead calls, for cost tests */
static int
f_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	fault_reads++;
	return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int
f_read_fail(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	(void)f;
	(void)b;
	(void)n;
	(void)o;
	return SQLITE_IOERR_READ;
}
static int
f_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	int rc = fault_hit(fault_rc == SQLITE_FULL ? SQLITE_FULL :
						     SQLITE_IOERR_WRITE);
	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xWrite(REAL(f), b, n,
					      o);
}
static int
f_truncate(sqlite3_file *f, sqlite3_int64 n)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), n);
}
static int
f_sync(sqlite3_file *f, int flags)
{
	int rc = fault_hit(fault_rc == SQLITE_FULL ? SQLITE_FULL :
						     SQLITE_IOERR_FSYNC);
	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int
f_size(sqlite3_file *f, sqlite3_int64 *n)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), n);
}
static int
f_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int
f_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int
f_reserved(sqlite3_file *f, int *r)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r);
}
static int
f_fcntl(sqlite3_file *f, int op, void *a)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, a);
}
static int
f_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int
f_dev(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int
f_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int
f_shmlock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void
f_shmbarrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int
f_shmunmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int
f_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
    int *out)
{
	ffile *ff = (ffile *)f;
	(void)vfs;
	ff->real = (sqlite3_file *)(ff + 1);
	int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out);
	if (rc != SQLITE_OK || ff->real->pMethods == NULL) {
		f->pMethods = NULL;
		return rc;
	}
	f->pMethods = &fault_io;
	return SQLITE_OK;
}

static void
fault_vfs_install(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	cr_assert_not_null(real_vfs);
	fault_vfs = *real_vfs;
	fault_vfs.zName = "crdt-test-fault";
	fault_vfs.szOsFile = (int)sizeof(ffile) + real_vfs->szOsFile;
	fault_vfs.xOpen = f_open;
	fault_vfs.pNext = NULL;
	fault_io = (sqlite3_io_methods){ 2, f_close, f_read, f_write,
		f_truncate, f_sync, f_size, f_lock, f_unlock, f_reserved,
		f_fcntl, f_sector, f_dev, f_shmmap, f_shmlock, f_shmbarrier,
		f_shmunmap, NULL, NULL };
	cr_assert_eq(sqlite3_vfs_register(&fault_vfs, 1), SQLITE_OK);
}



/* Fail the k-th write or sync of a batch, for every k the batch makes:
 * each gives the mapped code, the handle then holds exactly what it held
 * before, takes the batch again once the fault is gone, and the file
 * passes every check on reopen. */
static void
fault_sweep(int rc_inject, int want, crdt_store_sync mode)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3 + 3 * 40, 600, 0);
	fault_vfs_install();
	crdt_store_sqlite_opts o = { .synchronous = mode };
	crdt_store *st = open_store(&o);
	cr_assert_eq(test_stream_put(st, &s, 0, 3, NULL), 0);
	size_t have = 3, faults = 0;
	for (long k = 0; k < 40 && have + 3 <= s.n; k++) {
		fault_rc = rc_inject;
		fault_fired = 0;
		fault_left = k;
		size_t added = 0;
		int rc = test_stream_put(st, &s, have, 3, &added);
		fault_left = -1;
		if (fault_fired == 0) {
			/* the batch made fewer than k writes and syncs */
			cr_assert_eq(rc, 0);
			have += 3;
			break;
		}
		faults++;
		cr_assert_eq(rc, want, "k=%ld: %s", k, crdt_err_name(rc));
		cr_assert_eq(count_all(st, &s), have,
		    "k=%ld: the failed batch is not visible", k);
		rc = test_stream_put(st, &s, have, 3, &added);
		cr_assert_eq(rc, 0, "k=%ld: usable after: %s", k,
		    crdt_err_name(rc));
		cr_assert_eq(added, 3);
		have += 3;
		crdt_store_close(st);
		st = open_store(&o);
		cr_assert_eq(count_all(st, &s), have, "k=%ld: after reopen", k);
	}
	cr_assert_gt(faults, 1, "the sweep injected faults");
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}

Test(store, io_errors_give_eio_and_change_nothing)
{
	fault_sweep(SQLITE_IOERR, CRDT_EIO, CRDT_STORE_SYNC_FULL);
}

Test(store, io_errors_give_eio_and_change_nothing_in_normal_mode)
{
	fault_sweep(SQLITE_IOERR, CRDT_EIO, CRDT_STORE_SYNC_NORMAL);
}

Test(store, a_device_out_of_space_gives_efull_and_changes_nothing)
{
	fault_sweep(SQLITE_FULL, CRDT_EFULL, CRDT_STORE_SYNC_FULL);
}

/* A read failing on open is an I/O error, not corruption. */
Test(store, a_read_error_on_open_gives_eio)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 3, 8, 0);
	make_store(&s);
	fault_vfs_install();
	fault_io = (sqlite3_io_methods){ 2, f_close, f_read_fail, f_write,
		f_truncate, f_sync, f_size, f_lock, f_unlock, f_reserved,
		f_fcntl, f_sector, f_dev, f_shmmap, f_shmlock, f_shmbarrier,
		f_shmunmap, NULL, NULL };
	expect_refused(CRDT_EIO, "read error");
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}


/* Cost, counted in reads through the VFS (no clocks): a peer that lacks
 * only the newest message is served from the dot index, without reading
 * the log before it; a peer lacking the oldest one makes the scan read
 * the log, which shows the count measures something. The log is larger
 * than SQLite's page cache, so the pages the scan needs are not cached
 * from the checks on open. */
Test(store, an_up_to_date_peer_costs_no_scan_of_the_log)
{
	test_stream s = { 0 };
	test_stream_add(&s, 1, 200, 12000, 0);
	test_stream_add(&s, 2, 200, 12000, 0);
	fault_vfs_install();
	crdt_store *st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, &s, 0, s.n, NULL), 0);
	crdt_store_close(st);
	st = open_store(NULL);

	test_got g;
	uint64_t cur = 0;
	bool more;
	crdt_vclock *v = clock_of(1, 200, 2, 199); /* lacks only B200 */
	memset(&g, 0, sizeof g);
	fault_reads = 0;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    0);
	unsigned long near = fault_reads;
	static const size_t last[] = { 399 };
	expect_msgs(&g, &s, last, 1);
	test_got_free(&g);
	crdt_vclock_free(v);

	v = clock_of(1, 200, 2, 200); /* lacks nothing */
	cur = 0;
	memset(&g, 0, sizeof g);
	fault_reads = 0;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    0);
	unsigned long none = fault_reads;
	cr_assert_eq(g.n, 0);
	cr_assert(!more);
	crdt_vclock_free(v);

	v = clock_of(1, 0, 2, 200); /* lacks A1..A200: the scan runs */
	cur = 0;
	memset(&g, 0, sizeof g);
	fault_reads = 0;
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, &g,
			 &more),
	    0);
	unsigned long far = fault_reads;
	cr_assert_eq(g.n, 200);
	test_got_free(&g);
	crdt_vclock_free(v);
	cr_log_info("reads: near %lu, none %lu, far %lu", near, none, far);
	cr_assert_leq(near, 16, "near: %lu reads", near);
	cr_assert_leq(none, 16, "none: %lu reads", none);
	cr_assert_gt(far, 4 * 16, "far: %lu reads (the count measures)",
	    far);
	crdt_store_close(st);
	test_stream_free(&s);
	ASSERT_NO_LEAKS();
}
