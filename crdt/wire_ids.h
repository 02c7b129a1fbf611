#ifndef CRDT_WIRE_IDS_H
#define CRDT_WIRE_IDS_H
/*
 * Every number that travels on the wire or is stored in a state, in one
 * place (docs/wire-format.md). Changing one of these is a format change:
 * old peers and stored snapshots hold the old number. No includes: the
 * registry is below every module.
 */

/* Kinds, the second field of every encoding. 1..4 and 9 are object
 * states, the others the document's own frames. */
enum {
	CRDT__KIND_GSET = 1,
	CRDT__KIND_LWW = 2,
	CRDT__KIND_MAP = 3,
	CRDT__KIND_VCLOCK = 4,
	CRDT__KIND_MSG = 5,    /* message (envelope.h) */
	CRDT__KIND_SNAP = 6,   /* snapshot */
	CRDT__KIND_HELLO = 7,  /* sync: HELLO frame */
	CRDT__KIND_DATA = 8,   /* sync: DATA frame */
	CRDT__KIND_CHAT = 9,
	CRDT__KIND_SEALED_SNAP = 10 /* snapshot sealed under an epoch key */
};

/* Whether a kind is one of the document's frames (versioned with
 * CRDT__DOC_FORMAT_VERSION, internal.h). */
#define CRDT__KIND_IS_DOC(k)                                            \
	(((k) >= CRDT__KIND_MSG && (k) <= CRDT__KIND_DATA) ||           \
	    (k) == CRDT__KIND_SEALED_SNAP)

/* LWW register states (crdt__reg.state), also the presence a state
 * encodes. */
enum {
	CRDT__REG_UNSET = 0,   /* never written */
	CRDT__REG_CLEARED = 1, /* written with no value */
	CRDT__REG_VALUE = 2    /* has a value */
};

/* Chat op codes, the field after the object number in a chat op. */
enum {
	CRDT__CHAT_OP_POST = 0,
	CRDT__CHAT_OP_REACT,
	CRDT__CHAT_OP_READ,
	CRDT__CHAT_OP_MEMBER,
	CRDT__CHAT_OP_ACK,
	CRDT__CHAT_OP_REJECT
};

/* Kinds of the records a chat thread keeps in its marks set (stored in
 * its state). */
enum {
	CRDT__CHAT_REC_READ = 1,
	CRDT__CHAT_REC_MEMBER,
	CRDT__CHAT_REC_ACK,
	CRDT__CHAT_REC_REJECT
};

/* DATA frame flags (the last field; version 2). */
#define CRDT__DATA_MORE 1u    /* the sender holds more that the receiver
			       * lacks */
#define CRDT__DATA_REPLY 2u   /* answer with what the sender lacks, even if
			       * this frame brought nothing new */
#define CRDT__DATA_PARTIAL 4u /* the sender cannot serve part of what the
			       * receiver lacks (log evicted, no snapshot) */
#define CRDT__DATA_FLAGS                                                \
	(CRDT__DATA_MORE | CRDT__DATA_REPLY | CRDT__DATA_PARTIAL)

#endif /* CRDT_WIRE_IDS_H */
