/*
 * sanitizer_canary: misuses kcheck on purpose, so the test can see that the
 * sanitizer build catches mistakes in memory that kcheck (Rust) allocated,
 * and a clean sanitized run therefore means something.
 *
 *   sanitizer_canary leak          leaks consumer builders: LeakSanitizer
 *                                  must report them and exit non-zero
 *   sanitizer_canary double-free   frees one builder twice: AddressSanitizer
 *                                  must report a double free
 *
 * Built only with -fsanitize=address,undefined; never run it plain.
 */
#include <stdio.h>
#include <string.h>

#include "kcheck.h"

#define LEAKED 8

/* Out of line, and followed by scrub(), so no stale copy of the pointers is
 * left on the stack for LeakSanitizer to mistake for a reference. */
__attribute__((noinline)) static int leak_builders(void) {
    int i;
    for (i = 0; i < LEAKED; i++) {
        kcheck_consumer_builder *builder = NULL;
        if (kcheck_consumer_builder_new("leaked-on-purpose", &builder) != KCHECK_STATUS_OK)
            return 1;
    }
    return 0;
}

__attribute__((noinline)) static void scrub(void) {
    volatile char stack[16384];
    size_t i;
    for (i = 0; i < sizeof stack; i++)
        stack[i] = 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "leak") == 0) {
        if (leak_builders() != 0)
            return 3;
        scrub();
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "double-free") == 0) {
        kcheck_consumer_builder *builder = NULL;
        if (kcheck_consumer_builder_new("freed-twice", &builder) != KCHECK_STATUS_OK)
            return 3;
        kcheck_consumer_builder_free(builder);
        kcheck_consumer_builder_free(builder);
        return 0;
    }
    fprintf(stderr, "usage: %s leak|double-free\n", argc > 0 ? argv[0] : "sanitizer_canary");
    return 2;
}
