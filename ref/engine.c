// engine.c: the switch between the plain path and the engine (engine.h).
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static int g_reference = 0;

int engine_reference(void) { return g_reference; }

void engine_set_reference(int on) {
    const char *e = getenv("MAVREF_REFERENCE");
    g_reference = on < 0 ? e && *e && strcmp(e, "0") != 0 : on != 0;
}
