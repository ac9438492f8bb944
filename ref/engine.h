// engine.h: the one door between the plain path and the engine.
//
// Every operator file opens with its plain forward and backward (the *_ref functions, the
// readable path). Where an operator also has a fast path (matrix products through ref/gemm.c,
// tiles, the thread pool of ref/threads.c), its public function starts with
//
//     if (engine_reference()) return X_ref(...);      // the readable path, when asked for
//
// and the fast path follows. Nothing else decides between the two: gemm() falls back to the
// plain product by itself when it cannot have its buffers (gemm.h). Both paths compute the
// same math and differ only in rounding; tests/test_fastpath.c holds them to each other.
#ifndef MAVREF_ENGINE_H
#define MAVREF_ENGINE_H

#include "mavref.h"

// Nonzero: run the plain loops. Off until engine_set_reference() turns it on. Call from the
// caller's thread, never from inside a parallel task.
int engine_reference(void);

// Set the switch: on > 0 the plain loops, 0 the fast path, on < 0 as the environment variable
// MAVREF_REFERENCE says (on when set to anything but "" or "0"; the command line does this).
void engine_set_reference(int on);

#endif
