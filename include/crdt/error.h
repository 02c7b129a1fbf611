#ifndef CRDT_ERROR_H
#define CRDT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every function that can fail returns an int: 0 (CRDT_OK) on success or
 * one of the negative codes below. The table is the single source of the
 * enum, crdt_strerror() and crdt_err_name(); docs/errors.md mirrors it and
 * tests/test_error.c checks that the two agree.
 */
#define CRDT_ERRNO_MAP(X)                                                     \
	X(ENOMEM, -1, "out of memory")                                        \
	X(EINVAL, -2, "invalid argument")                                     \
	X(EMALFORMED, -3, "malformed encoding")                               \
	X(ETOOBIG, -4, "input exceeds a configured limit")                    \
	X(EVERSION, -5, "unsupported format version")                         \
	X(EDRIFT, -6, "remote clock too far ahead of local time")             \
	X(EOVERFLOW, -7, "counter or clock exhausted")                        \
	X(ENOTFOUND, -8, "no such entry")                                     \
	X(ECRYPTO, -9, "crypto library initialisation failed")                \
	X(EBUFFULL, -10, "causal buffer full")                                \
	X(ESCHEMA, -11, "unknown object or wrong object type")                \
	X(ESTATE, -12, "call not valid in the current state")                 \
	X(EDIVERGED, -13, "replicas did not converge")                        \
	X(EPERM, -14, "operation not permitted for this replica")             \
	X(EBADSIG, -15, "signature missing or invalid")                       \
	X(EBADKEY, -16, "public key does not match the sender ID")            \
	X(ENOKEY, -17, "no document key for this epoch")                      \
	X(EDECRYPT, -18, "decryption failed: forged or corrupted")           \
	X(EWRONGDOC, -19, "belongs to another document")                   \
	X(EIO, -20, "storage I/O failed")                                     \
	X(EFULL, -21, "storage full")                                         \
	X(ECORRUPT, -22, "storage corrupt")                                   \
	X(EBUSY, -23, "storage locked by another connection")                 \
	X(EFORKED, -24, "own counter is ahead elsewhere: catch up first")

typedef enum crdt_err {
	CRDT_OK = 0,
#define CRDT_ERR_ENUM_(name, val, msg) CRDT_##name = (val),
	CRDT_ERRNO_MAP(CRDT_ERR_ENUM_)
#undef CRDT_ERR_ENUM_
} crdt_err;

#ifdef __cplusplus
}
#endif

#endif /* CRDT_ERROR_H */
