// main.c: the `mavref` program. Everything it does is in ref/cli.c (mavref_main), which the
// tests call in-process; only the program reads MAVREF_REFERENCE (the tests set the switch
// themselves).
#include "cli.h"
#include "engine.h"

int main(int argc, char **argv) {
    engine_set_reference(-1); // MAVREF_REFERENCE=1: the plain loops instead of the fast path
    return mavref_main(argc, argv, stdout, stderr);
}
