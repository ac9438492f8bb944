// main.c: the `mavref` program. Everything it does is in ref/cli.c (mavref_main), which the
// tests call in-process.
#include "cli.h"

int main(int argc, char **argv) { return mavref_main(argc, argv, stdout, stderr); }
