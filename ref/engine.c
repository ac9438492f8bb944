// engine.c: the switch between the plain path and the engine (engine.h).
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static int g_reference = -1; // -1: not read from the environment yet

static int from_environment(void) {
    const char *e = getenv("MAVREF_REFERENCE");
    return e && *e && strcmp(e, "0") != 0;
}

int engine_reference(void) {
    if (g_reference < 0) g_reference = from_environment();
    return g_reference;
}

void engine_set_reference(int on) { g_reference = on < 0 ? from_environment() : on != 0; }
