/*
 * close_then_free: the README's reading loop in a worker thread frees the
 * consumer as soon as next says KCHECK_STATUS_CLOSED, while the main thread
 * is still inside kcheck_consumer_close. CLOSED comes as soon as closing
 * starts, so the free races the close in flight: the close must keep the
 * consumer alive until it returns. Run under AddressSanitizer, a consumer
 * freed too early is a use-after-free inside close.
 *
 *   close_then_free KINESIS_URL STREAM ROUNDS
 *
 * Exits 0 when every round's worker got CLOSED and every close returned
 * OK, 1 otherwise (with what happened on stderr), 2 on bad arguments.
 * Build with -pthread.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kcheck.h"

#define BATCH_SIZE 100
#define WAIT_MS 50

struct reader {
    kcheck_consumer *consumer;
    atomic_int started;
    kcheck_status status;
    char message[512];
};

/* The README's loop; on anything but OK or TIMED_OUT it frees the consumer. */
static void *read_until_closed(void *argument) {
    struct reader *reader = argument;
    kcheck_status status;
    atomic_store(&reader->started, 1);
    for (;;) {
        kcheck_batch *batch = NULL;
        status = kcheck_consumer_next_batch(reader->consumer, BATCH_SIZE, WAIT_MS, &batch);
        if (status == KCHECK_STATUS_TIMED_OUT)
            continue;
        if (status != KCHECK_STATUS_OK)
            break;
        kcheck_batch_free(batch);
    }
    reader->status = status;
    snprintf(reader->message, sizeof reader->message, "%s", kcheck_last_error_message());
    kcheck_consumer_free(reader->consumer);
    return NULL;
}

static int failed(const char *call, kcheck_status status) {
    fprintf(stderr, "close_then_free: %s failed: %s: %s\n", call, kcheck_status_name(status),
            kcheck_last_error_message());
    return 1;
}

static int build(const char *url, const char *stream, kcheck_consumer **out) {
    kcheck_consumer_builder *builder = NULL;
    kcheck_status status = kcheck_consumer_builder_new(stream, &builder);
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_consumer_builder_new", status);
    if ((status = kcheck_consumer_builder_set_endpoint_url(builder, url)) != KCHECK_STATUS_OK ||
        (status = kcheck_consumer_builder_set_region_name(builder, "us-east-1")) !=
            KCHECK_STATUS_OK ||
        (status = kcheck_consumer_builder_set_initial_position(
             builder, KCHECK_INITIAL_POSITION_LATEST, 0)) != KCHECK_STATUS_OK) {
        kcheck_consumer_builder_free(builder);
        return failed("a kcheck_consumer_builder_set_ call", status);
    }
    status = kcheck_consumer_builder_build(builder, out);
    return status == KCHECK_STATUS_OK ? 0 : failed("kcheck_consumer_builder_build", status);
}

int main(int argc, char **argv) {
    int rounds, round;

    if (argc != 4 || (rounds = atoi(argv[3])) <= 0) {
        fprintf(stderr, "usage: %s KINESIS_URL STREAM ROUNDS\n",
                argc > 0 ? argv[0] : "close_then_free");
        return 2;
    }
    for (round = 0; round < rounds; round++) {
        struct reader reader = {0};
        /* Vary how long the reader waits before close: 0 to 9 ms. */
        const struct timespec pause = {0, (round % 10) * 1000 * 1000};
        const struct timespec poll = {0, 1000 * 1000};
        pthread_t thread;
        kcheck_status status;

        if (build(argv[1], argv[2], &reader.consumer) != 0)
            return 1;
        reader.status = UINT32_MAX;
        if (pthread_create(&thread, NULL, read_until_closed, &reader) != 0) {
            fprintf(stderr, "close_then_free: pthread_create failed\n");
            return 1;
        }
        while (!atomic_load(&reader.started))
            nanosleep(&poll, NULL);
        nanosleep(&pause, NULL);
        /* The reader frees the consumer once this close has begun: the
         * consumer is not touched here after close returns. */
        status = kcheck_consumer_close(reader.consumer);
        pthread_join(thread, NULL);
        if (status != KCHECK_STATUS_OK)
            return failed("kcheck_consumer_close", status);
        if (reader.status != KCHECK_STATUS_CLOSED) {
            fprintf(stderr, "close_then_free: round %d: the reader got %s (%s), expected CLOSED\n",
                    round, kcheck_status_name(reader.status), reader.message);
            return 1;
        }
    }
    fprintf(stderr, "close_then_free: %d rounds of close and free in two threads\n", rounds);
    return 0;
}
