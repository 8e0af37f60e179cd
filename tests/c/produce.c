/*
 * produce: a complete kcheck producer in C.
 *
 *   produce KINESIS_URL STREAM COUNT
 *
 * Puts COUNT records "produced-<n>" with partition keys "key-<n % 4>" from
 * two threads (even and odd n), flushes, checks every ticket is accepted,
 * and closes. Prints the statistics to stderr. Credentials come from the
 * environment, as for the AWS SDKs.
 *
 * Exits 0 after a clean close; 1, naming the failed call, its status and
 * kcheck's message, on any unexpected status; 2 on bad arguments.
 *
 * Build: cc -std=c11 -pthread -Iinclude produce.c -Ltarget/debug -lkcheck
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcheck.h"

static int failed(const char *call, kcheck_status status) {
    fprintf(stderr, "produce: %s failed: %s: %s\n", call, kcheck_status_name(status),
            kcheck_last_error_message());
    return 1;
}

struct writer {
    kcheck_producer *producer;
    unsigned long count;
    unsigned long first; /* 0 or 1: even or odd records */
    int result;
};

static void *write_records(void *argument) {
    struct writer *writer = argument;
    char data[64];
    char key[16];
    for (unsigned long n = writer->first; n < writer->count; n += 2) {
        int len = snprintf(data, sizeof data, "produced-%lu", n);
        snprintf(key, sizeof key, "key-%lu", n % 4);
        uint64_t ticket = UINT64_MAX;
        kcheck_status status = kcheck_producer_put(writer->producer, (const uint8_t *)data,
                                                   (size_t)len, key, NULL, 10000, &ticket);
        if (status != KCHECK_STATUS_OK) {
            writer->result = failed("kcheck_producer_put", status);
            return NULL;
        }
    }
    writer->result = 0;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: produce KINESIS_URL STREAM COUNT\n");
        return 2;
    }
    unsigned long count = strtoul(argv[3], NULL, 10);
    kcheck_producer_builder *builder = NULL;
    kcheck_producer *producer = NULL;
    kcheck_status status = kcheck_producer_builder_new(argv[2], &builder);
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_producer_builder_new", status);
    status = kcheck_producer_builder_set_endpoint_url(builder, argv[1]);
    if (status == KCHECK_STATUS_OK)
        status = kcheck_producer_builder_set_buffer_time_ms(builder, 50);
    if (status != KCHECK_STATUS_OK) {
        kcheck_producer_builder_free(builder);
        return failed("kcheck_producer_builder_set_*", status);
    }
    status = kcheck_producer_builder_build(builder, &producer); /* consumes builder */
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_producer_builder_build", status);

    struct writer writers[2] = {{producer, count, 0, 1}, {producer, count, 1, 1}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, write_records, &writers[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < 2; i++)
        if (writers[i].result != 0)
            return 1;

    status = kcheck_producer_flush(producer, 30000);
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_producer_flush", status);
    for (uint64_t ticket = 0; ticket < count; ticket++) {
        kcheck_record_status where = KCHECK_RECORD_STATUS_PENDING;
        status = kcheck_producer_record_status(producer, ticket, &where);
        if (status != KCHECK_STATUS_OK)
            return failed("kcheck_producer_record_status", status);
        if (where != KCHECK_RECORD_STATUS_ACCEPTED) {
            fprintf(stderr, "produce: ticket %" PRIu64 " is not accepted (%u)\n", ticket,
                    (unsigned)where);
            return 1;
        }
    }
    char *stats = NULL;
    status = kcheck_producer_stats_json(producer, &stats);
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_producer_stats_json", status);
    fprintf(stderr, "stats %s\n", stats);
    kcheck_string_free(stats);
    status = kcheck_producer_close(producer);
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_producer_close", status);
    uint64_t ticket = UINT64_MAX;
    status = kcheck_producer_put(producer, (const uint8_t *)"late", 4, "k", NULL, 0, &ticket);
    if (status != KCHECK_STATUS_CLOSED || ticket != UINT64_MAX) {
        fprintf(stderr, "produce: a put after close gave %s\n", kcheck_status_name(status));
        return 1;
    }
    kcheck_producer_free(producer);
    fprintf(stderr, "produced %lu records\n", count);
    return 0;
}
