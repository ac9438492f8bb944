#!/bin/sh
# make install-test: install mavref into a temporary prefix, build tools/example_install/
# example.c against the installed copy with pkg-config, and run it on a corpus case.
#   tools/example_install/test.sh [PRECISION]
set -e
PRECISION=${1:-32}
prefix=$(mktemp -d "${TMPDIR:-/tmp}/mavref-install-XXXXXX")
trap 'rm -rf "$prefix"' EXIT
make --no-print-directory install PREFIX="$prefix" PRECISION="$PRECISION" >/dev/null
test -x "$prefix/bin/mavref" && test -f "$prefix/lib/libmavref.a" && test -f "$prefix/include/mavref/mavref.h"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
echo "pkg-config --cflags --libs mavref: $(pkg-config --cflags --libs mavref)"
${CC:-cc} -std=c99 -pedantic -Wall -Wextra -Werror tools/example_install/example.c \
  $(pkg-config --cflags --libs mavref) -o "$prefix/example"
# every installed header compiles on its own
for h in "$prefix"/include/mavref/*.h; do
  printf '#include <mavref/%s>\nint main(void) { return 0; }\n' "$(basename "$h")" > "$prefix/h.c"
  ${CC:-cc} -std=c99 -pedantic -Wall -Wextra -Werror $(pkg-config --cflags mavref) -c "$prefix/h.c" -o "$prefix/h.o"
done
"$prefix/example" "vectors/f$PRECISION/dense_3x7_7to5.safetensors" "$(awk '$1 == "dense_3x7_7to5" && $3 == "f'"$PRECISION"'" {print $7}' vectors/manifest.txt)"
"$prefix/bin/mavref" --help | head -1
echo "install-test: ok ($prefix)"
