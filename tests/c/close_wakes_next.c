/*
 * close_wakes_next: a thread blocked in kcheck_consumer_next (60 s timeout,
 * empty stream) is woken by kcheck_consumer_close from the main thread and
 * returns KCHECK_STATUS_CLOSED promptly.
 *
 *   close_wakes_next KINESIS_URL STREAM
 *
 * Exits 0 when the waiting thread returned CLOSED within 2 s of close being
 * called, 1 otherwise (with what happened on stderr), 2 on bad arguments.
 * Build with -pthread.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "kcheck.h"

#define NEXT_TIMEOUT_MS 60000
#define WAKE_LIMIT_S 2.0

struct waiter {
    const kcheck_consumer *consumer;
    atomic_int started;
    kcheck_status status;
    kcheck_record *record;
    char message[512];
    struct timespec returned_at;
};

static double seconds_between(const struct timespec *from, const struct timespec *to) {
    return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

static void *wait_for_record(void *argument) {
    struct waiter *waiter = argument;
    atomic_store(&waiter->started, 1);
    waiter->status = kcheck_consumer_next(waiter->consumer, NEXT_TIMEOUT_MS, &waiter->record);
    clock_gettime(CLOCK_MONOTONIC, &waiter->returned_at);
    /* The last error is per thread: copy it here, where it happened. */
    snprintf(waiter->message, sizeof waiter->message, "%s", kcheck_last_error_message());
    return NULL;
}

static int failed(const char *call, kcheck_status status) {
    fprintf(stderr, "close_wakes_next: %s failed: %s: %s\n", call, kcheck_status_name(status),
            kcheck_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    kcheck_consumer_builder *builder = NULL;
    kcheck_consumer *consumer = NULL;
    kcheck_record *record = NULL;
    struct waiter waiter = {0};
    struct timespec close_called, close_returned, now;
    const struct timespec settle = {0, 500 * 1000 * 1000};
    pthread_t thread;
    kcheck_status status;
    double woke_after;
    int exit_code = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: %s KINESIS_URL STREAM\n", argc > 0 ? argv[0] : "close_wakes_next");
        return 2;
    }
    status = kcheck_consumer_builder_new(argv[2], &builder);
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_consumer_builder_new", status);
    if ((status = kcheck_consumer_builder_set_endpoint_url(builder, argv[1])) != KCHECK_STATUS_OK ||
        (status = kcheck_consumer_builder_set_region_name(builder, "us-east-1")) !=
            KCHECK_STATUS_OK ||
        (status = kcheck_consumer_builder_set_initial_position(
             builder, KCHECK_INITIAL_POSITION_LATEST, 0)) != KCHECK_STATUS_OK) {
        kcheck_consumer_builder_free(builder);
        return failed("a kcheck_consumer_builder_set_ call", status);
    }
    status = kcheck_consumer_builder_build(builder, &consumer);
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_consumer_builder_build", status);

    waiter.consumer = consumer;
    waiter.status = UINT32_MAX;
    if (pthread_create(&thread, NULL, wait_for_record, &waiter) != 0) {
        fprintf(stderr, "close_wakes_next: pthread_create failed\n");
        kcheck_consumer_free(consumer);
        return 1;
    }
    /* Let the thread get into kcheck_consumer_next and block there. */
    while (!atomic_load(&waiter.started))
        nanosleep(&settle, NULL);
    nanosleep(&settle, NULL);

    clock_gettime(CLOCK_MONOTONIC, &close_called);
    status = kcheck_consumer_close(consumer);
    clock_gettime(CLOCK_MONOTONIC, &close_returned);
    if (status != KCHECK_STATUS_OK)
        exit_code = failed("kcheck_consumer_close", status);
    pthread_join(thread, NULL);
    clock_gettime(CLOCK_MONOTONIC, &now);

    woke_after = seconds_between(&close_called, &waiter.returned_at);
    fprintf(stderr, "close_wakes_next: next returned %s %.3f s after close was called; close took %.3f s\n",
            kcheck_status_name(waiter.status), woke_after,
            seconds_between(&close_called, &close_returned));
    if (waiter.status != KCHECK_STATUS_CLOSED) {
        fprintf(stderr, "close_wakes_next: expected KCHECK_STATUS_CLOSED from the waiting thread, got %s (%s)\n",
                kcheck_status_name(waiter.status), waiter.message);
        exit_code = 1;
    }
    if (waiter.record != NULL) {
        fprintf(stderr, "close_wakes_next: next wrote a record although it returned %s\n",
                kcheck_status_name(waiter.status));
        kcheck_record_free(waiter.record);
        exit_code = 1;
    }
    if (woke_after < 0.0) {
        fprintf(stderr, "close_wakes_next: next returned before close was called\n");
        exit_code = 1;
    }
    if (woke_after > WAKE_LIMIT_S || seconds_between(&close_called, &now) > WAKE_LIMIT_S) {
        fprintf(stderr, "close_wakes_next: the waiting thread was not woken within %.1f s\n",
                WAKE_LIMIT_S);
        exit_code = 1;
    }

    /* After close: next says CLOSED at once, and close again is OK. */
    status = kcheck_consumer_next(consumer, NEXT_TIMEOUT_MS, &record);
    if (status != KCHECK_STATUS_CLOSED || record != NULL) {
        fprintf(stderr, "close_wakes_next: next after close returned %s\n",
                kcheck_status_name(status));
        kcheck_record_free(record);
        exit_code = 1;
    }
    status = kcheck_consumer_close(consumer);
    if (status != KCHECK_STATUS_OK)
        exit_code = failed("a second kcheck_consumer_close", status);

    kcheck_consumer_free(consumer);
    return exit_code;
}
