#ifndef CRDT_CRDT_H
#define CRDT_CRDT_H

/* Umbrella header: everything public in libcrdt. */
#include "crdt/common.h"
#include "crdt/error.h"
#include "crdt/version.h"
#include "crdt/clock.h"
#include "crdt/vclock.h"
#include "crdt/gset.h"
#include "crdt/lww.h"
#include "crdt/doc.h"
#include "crdt/sim.h"
#include "crdt/chat.h"
#include "crdt/secure.h"
#include "crdt/store.h"
#include "crdt/inspect.h"

#endif /* CRDT_CRDT_H */
