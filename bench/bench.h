/*
 * What every bench program needs (bench_chat.c, bench_store.c): a check
 * that stops the run on any library error, and a monotonic clock.
 */
#ifndef CRDT_BENCH_H
#define CRDT_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <crdt/crdt.h>

#define CK(x)                                                           \
	do {                                                            \
		int rc_ = (x);                                          \
		if (rc_ != 0) {                                         \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__,    \
			    __LINE__, #x, crdt_err_name(rc_));          \
			exit(1);                                        \
		}                                                       \
	} while (0)

/* Seconds on the monotonic clock. */
static inline double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
