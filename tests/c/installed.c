/*
 * installed: built by tests/install.rs against an installed kcheck with
 * nothing but `pkg-config --cflags --libs kcheck` (or `--static`).
 *
 * Prints "kcheck <version> abi <n>" from the library, fails if that differs
 * from the header it was compiled with, and makes and frees a builder so the
 * program uses more of the library than two constants.
 */
#include <stdio.h>
#include <string.h>

#include "kcheck.h"

int main(void) {
    const char *version = kcheck_version();
    uint32_t abi = kcheck_abi_version();
    printf("kcheck %s abi %u\n", version, (unsigned)abi);
    if (strcmp(version, KCHECK_VERSION) != 0 || abi != KCHECK_ABI_VERSION) {
        fprintf(stderr, "installed: the library is %s (ABI %u), the header %s (ABI %u)\n",
                version, (unsigned)abi, KCHECK_VERSION, (unsigned)KCHECK_ABI_VERSION);
        return 1;
    }
    kcheck_consumer_builder *builder = NULL;
    kcheck_status status = kcheck_consumer_builder_new("installed", &builder);
    if (status != KCHECK_STATUS_OK) {
        fprintf(stderr, "installed: %s: %s\n", kcheck_status_name(status),
                kcheck_last_error_message());
        return 1;
    }
    kcheck_consumer_builder_free(builder);
    return 0;
}
