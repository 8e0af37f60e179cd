/*
 * api_misuse: the C-level contract of kcheck, checked without a service.
 *
 * NULL arguments give KCHECK_STATUS_INVALID_ARGUMENT and leave out-params
 * untouched; bad UTF-8 gives KCHECK_STATUS_INVALID_UTF8; every status has a
 * name; the last error is per thread; every _free(NULL) does nothing;
 * builders are consumed by _build even when it fails (run under ASan/LSan
 * to see that nothing leaks); flags other than 0 and 1 are refused; the
 * version functions agree with the header; and a consumer aimed at a closed
 * port fails with KCHECK_STATUS_TRANSPORT_ERROR in bounded time.
 *
 * Prints every failed check and exits 1 if there was one, else 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kcheck.h"

static int failures = 0;

#define CHECK(condition)                                                                 \
    do {                                                                                 \
        if (!(condition)) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition);  \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* Checks the status of a call, naming both statuses and kcheck's message. */
#define CHECK_STATUS(call, expected)                                                     \
    do {                                                                                 \
        kcheck_status got_ = (call);                                                     \
        if (got_ != (expected)) {                                                        \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n",      \
                    __FILE__, __LINE__, #call, kcheck_status_name(got_),                 \
                    kcheck_status_name(expected), kcheck_last_error_message());          \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* Checks that the last error message on this thread mentions `needle`. */
#define CHECK_MESSAGE(needle)                                                            \
    do {                                                                                 \
        const char *message_ = kcheck_last_error_message();                              \
        if (message_ == NULL || strstr(message_, (needle)) == NULL) {                    \
            fprintf(stderr, "%s:%d: last error \"%s\" does not mention \"%s\"\n",         \
                    __FILE__, __LINE__, message_ ? message_ : "(NULL)", (needle));       \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* Out-params are preset to this address: a call that fails must not
 * overwrite it (it is never dereferenced). */
static max_align_t sentinel_storage;
#define SENTINEL ((void *)&sentinel_storage)

/* A stream name that is not UTF-8 (a lone continuation byte). */
static const char bad_utf8[] = {'s', 't', (char)0x80, 'r', '\0'};

static double seconds_since(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void versions(void) {
    CHECK(strcmp(kcheck_version(), KCHECK_VERSION) == 0);
    CHECK(kcheck_abi_version() == KCHECK_ABI_VERSION);
}

static void status_names(void) {
    static const char *const names[] = {
        "KCHECK_STATUS_OK",
        "KCHECK_STATUS_INVALID_ARGUMENT",
        "KCHECK_STATUS_INVALID_UTF8",
        "KCHECK_STATUS_TIMED_OUT",
        "KCHECK_STATUS_CLOSED",
        "KCHECK_STATUS_IDLE_TIMEOUT",
        "KCHECK_STATUS_INVALID_CONFIG",
        "KCHECK_STATUS_LEASE_LOST",
        "KCHECK_STATUS_SERVICE_ERROR",
        "KCHECK_STATUS_TRANSPORT_ERROR",
        "KCHECK_STATUS_CREDENTIALS_ERROR",
        "KCHECK_STATUS_MALFORMED_RESPONSE",
        "KCHECK_STATUS_INTERNAL_ERROR",
        "KCHECK_STATUS_PANIC",
        "KCHECK_STATUS_POISONED",
        "KCHECK_STATUS_FORKED",
        "KCHECK_STATUS_CALLBACK_FAILED",
    };
    /* The numbers are part of the ABI. */
    static const uint32_t values[] = {
        KCHECK_STATUS_OK,
        KCHECK_STATUS_INVALID_ARGUMENT,
        KCHECK_STATUS_INVALID_UTF8,
        KCHECK_STATUS_TIMED_OUT,
        KCHECK_STATUS_CLOSED,
        KCHECK_STATUS_IDLE_TIMEOUT,
        KCHECK_STATUS_INVALID_CONFIG,
        KCHECK_STATUS_LEASE_LOST,
        KCHECK_STATUS_SERVICE_ERROR,
        KCHECK_STATUS_TRANSPORT_ERROR,
        KCHECK_STATUS_CREDENTIALS_ERROR,
        KCHECK_STATUS_MALFORMED_RESPONSE,
        KCHECK_STATUS_INTERNAL_ERROR,
        KCHECK_STATUS_PANIC,
        KCHECK_STATUS_POISONED,
        KCHECK_STATUS_FORKED,
        KCHECK_STATUS_CALLBACK_FAILED,
    };
    uint32_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *name = kcheck_status_name(i);
        CHECK(values[i] == i);
        if (name == NULL || strcmp(name, names[i]) != 0) {
            fprintf(stderr, "kcheck_status_name(%u) = %s, expected %s\n", (unsigned)i,
                    name ? name : "(NULL)", names[i]);
            failures++;
        }
    }
    CHECK(strcmp(kcheck_status_name(17), "KCHECK_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(kcheck_status_name(1000), "KCHECK_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(kcheck_status_name(UINT32_MAX), "KCHECK_STATUS_UNKNOWN") == 0);
}

static void frees_of_null(void) {
    kcheck_string_free(NULL);
    kcheck_checkpointer_builder_free(NULL);
    kcheck_checkpointer_free(NULL);
    kcheck_consumer_builder_free(NULL);
    kcheck_consumer_free(NULL);
    kcheck_record_free(NULL);
    kcheck_batch_free(NULL);
}

static void checkpointer_builders(void) {
    kcheck_checkpointer_builder *builder = SENTINEL;
    kcheck_checkpointer_builder *memory = NULL;
    kcheck_checkpointer *checkpointer = SENTINEL;

    /* Constructors. */
    CHECK_STATUS(kcheck_checkpointer_builder_new_dynamodb(NULL, &builder),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(builder == SENTINEL);
    CHECK(kcheck_last_error_message()[0] != '\0');
    CHECK_MESSAGE("name");
    CHECK_STATUS(kcheck_checkpointer_builder_new_dynamodb(bad_utf8, &builder),
                 KCHECK_STATUS_INVALID_UTF8);
    CHECK(builder == SENTINEL);
    CHECK_MESSAGE("UTF-8");
    CHECK_STATUS(kcheck_checkpointer_builder_new_dynamodb("group", NULL),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_new_memory(NULL), KCHECK_STATUS_INVALID_ARGUMENT);

    /* Setters on a NULL builder. */
    CHECK_STATUS(kcheck_checkpointer_builder_set_session_timeout_ms(NULL, 3000),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE("builder");
    CHECK_STATUS(kcheck_checkpointer_builder_set_heartbeat_frequency_ms(NULL, 500),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_auto_checkpoint(NULL, 1),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_table_name(NULL, "table"),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_create_table(NULL, 1),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_endpoint_url(NULL, "http://127.0.0.1:1"),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_region_name(NULL, "us-east-1"),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_ttl_hours(NULL, 24),
                 KCHECK_STATUS_INVALID_ARGUMENT);

    /* Bad values on a live DynamoDB builder. */
    builder = NULL;
    CHECK_STATUS(kcheck_checkpointer_builder_new_dynamodb("group", &builder), KCHECK_STATUS_OK);
    CHECK(builder != NULL && builder != SENTINEL);
    CHECK_STATUS(kcheck_checkpointer_builder_set_table_name(builder, NULL),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_table_name(builder, bad_utf8),
                 KCHECK_STATUS_INVALID_UTF8);
    CHECK_STATUS(kcheck_checkpointer_builder_set_endpoint_url(builder, NULL),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_region_name(builder, bad_utf8),
                 KCHECK_STATUS_INVALID_UTF8);
    CHECK_STATUS(kcheck_checkpointer_builder_set_auto_checkpoint(builder, 2),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE("auto_checkpoint");
    CHECK_STATUS(kcheck_checkpointer_builder_set_auto_checkpoint(builder, UINT32_MAX),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_checkpointer_builder_set_create_table(builder, 2),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE("create_table");
    CHECK_STATUS(kcheck_checkpointer_builder_set_auto_checkpoint(builder, 0), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_checkpointer_builder_set_create_table(builder, 1), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_checkpointer_builder_set_table_name(builder, "table"), KCHECK_STATUS_OK);
    /* A heartbeat not shorter than the session timeout: build refuses it,
     * and still consumes (frees) the builder. */
    CHECK_STATUS(kcheck_checkpointer_builder_set_session_timeout_ms(builder, 1000),
                 KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_checkpointer_builder_set_heartbeat_frequency_ms(builder, 1000),
                 KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_checkpointer_builder_build(builder, &checkpointer),
                 KCHECK_STATUS_INVALID_CONFIG);
    CHECK(checkpointer == SENTINEL);
    CHECK_MESSAGE("heartbeat_frequency");

    /* DynamoDB-only settings are refused on a memory builder. */
    CHECK_STATUS(kcheck_checkpointer_builder_new_memory(&memory), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_checkpointer_builder_set_table_name(memory, "table"),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE("DynamoDB");
    CHECK_STATUS(kcheck_checkpointer_builder_set_session_timeout_ms(memory, 3000),
                 KCHECK_STATUS_OK);
    /* build(NULL) and build(builder, NULL) fail; the latter consumes it. */
    CHECK_STATUS(kcheck_checkpointer_builder_build(NULL, &checkpointer),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(checkpointer == SENTINEL);
    CHECK_STATUS(kcheck_checkpointer_builder_build(memory, NULL), KCHECK_STATUS_INVALID_ARGUMENT);

    /* A builder that is never built is freed. */
    builder = NULL;
    CHECK_STATUS(kcheck_checkpointer_builder_new_dynamodb("group", &builder), KCHECK_STATUS_OK);
    kcheck_checkpointer_builder_free(builder);

    /* A working build, for contrast. */
    memory = NULL;
    checkpointer = NULL;
    CHECK_STATUS(kcheck_checkpointer_builder_new_memory(&memory), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_checkpointer_builder_build(memory, &checkpointer), KCHECK_STATUS_OK);
    CHECK(checkpointer != NULL);
    kcheck_checkpointer_free(checkpointer);
}

static void consumer_builders(void) {
    kcheck_consumer_builder *builder = SENTINEL;
    kcheck_consumer *consumer = SENTINEL;
    kcheck_checkpointer_builder *memory = NULL;
    kcheck_checkpointer *checkpointer = NULL;

    CHECK_STATUS(kcheck_consumer_builder_new(NULL, &builder), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(builder == SENTINEL);
    CHECK_MESSAGE("stream_name");
    CHECK_STATUS(kcheck_consumer_builder_new(bad_utf8, &builder), KCHECK_STATUS_INVALID_UTF8);
    CHECK(builder == SENTINEL);
    CHECK_MESSAGE("stream_name");
    CHECK_STATUS(kcheck_consumer_builder_new("stream", NULL), KCHECK_STATUS_INVALID_ARGUMENT);

    /* Setters on a NULL builder. */
    CHECK_STATUS(kcheck_consumer_builder_set_checkpointer(NULL, NULL),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(
        kcheck_consumer_builder_set_initial_position(NULL, KCHECK_INITIAL_POSITION_LATEST, 0),
        KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_record_limit(NULL, 100),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_max_queue_size(NULL, 100),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_max_shard_consumers(NULL, 1),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_idle_timeout_ms(NULL, 1000),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_checkpoint_interval_ms(NULL, 1000),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_discovery_interval_ms(NULL, 1000),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_idle_poll_interval_ms(NULL, 1000),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_endpoint_url(NULL, "http://127.0.0.1:1"),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_region_name(NULL, "us-east-1"),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_build(NULL, &consumer), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(consumer == SENTINEL);

    /* Bad values on a live builder; each refused value leaves the others. */
    builder = NULL;
    CHECK_STATUS(kcheck_consumer_builder_new("stream", &builder), KCHECK_STATUS_OK);
    CHECK(builder != NULL && builder != SENTINEL);
    CHECK_STATUS(kcheck_consumer_builder_set_checkpointer(builder, NULL),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE("checkpointer");
    CHECK_STATUS(kcheck_consumer_builder_set_initial_position(builder, 3, 0),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE("position");
    CHECK_STATUS(kcheck_consumer_builder_set_initial_position(
                     builder, KCHECK_INITIAL_POSITION_AT_TIMESTAMP, -1),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE("timestamp_ms");
    CHECK_STATUS(kcheck_consumer_builder_set_initial_position(
                     builder, KCHECK_INITIAL_POSITION_AT_TIMESTAMP, 1700000000000),
                 KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_set_endpoint_url(builder, NULL),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_endpoint_url(builder, bad_utf8),
                 KCHECK_STATUS_INVALID_UTF8);
    CHECK_STATUS(kcheck_consumer_builder_set_region_name(builder, NULL),
                 KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_builder_set_region_name(builder, bad_utf8),
                 KCHECK_STATUS_INVALID_UTF8);
    /* A checkpointer may be freed as soon as a builder has it. */
    CHECK_STATUS(kcheck_checkpointer_builder_new_memory(&memory), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_checkpointer_builder_build(memory, &checkpointer), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_set_checkpointer(builder, checkpointer),
                 KCHECK_STATUS_OK);
    kcheck_checkpointer_free(checkpointer);
    /* record_limit 0 is refused by build (INVALID_CONFIG), which still frees
     * the builder and the checkpointer reference it held: LSan checks. */
    CHECK_STATUS(kcheck_consumer_builder_set_record_limit(builder, 0), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_build(builder, &consumer), KCHECK_STATUS_INVALID_CONFIG);
    CHECK(consumer == SENTINEL);
    CHECK_MESSAGE("record_limit");

    /* Other options that only build checks. */
    builder = NULL;
    CHECK_STATUS(kcheck_consumer_builder_new("stream", &builder), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_set_max_queue_size(builder, 0), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_build(builder, &consumer), KCHECK_STATUS_INVALID_CONFIG);
    CHECK(consumer == SENTINEL);
    CHECK_MESSAGE("max_queue_size");
    builder = NULL;
    CHECK_STATUS(kcheck_consumer_builder_new("", &builder), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_build(builder, &consumer), KCHECK_STATUS_INVALID_CONFIG);
    CHECK(consumer == SENTINEL);
    CHECK_MESSAGE("stream_name");

    /* build(builder, NULL) consumes the builder too. */
    builder = NULL;
    CHECK_STATUS(kcheck_consumer_builder_new("stream", &builder), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_build(builder, NULL), KCHECK_STATUS_INVALID_ARGUMENT);

    /* A builder that is never built is freed. */
    builder = NULL;
    CHECK_STATUS(kcheck_consumer_builder_new("stream", &builder), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_set_idle_timeout_ms(builder, 10), KCHECK_STATUS_OK);
    kcheck_consumer_builder_free(builder);
}

static void null_consumers_records_and_batches(void) {
    kcheck_record *record = SENTINEL;
    kcheck_batch *batch = SENTINEL;
    char *stats = SENTINEL;
    kcheck_record_fields fields, untouched;
    const kcheck_record_fields *array = SENTINEL;
    size_t len = 12345;

    CHECK_STATUS(kcheck_consumer_next(NULL, 0, &record), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(record == SENTINEL);
    CHECK_MESSAGE("consumer");
    CHECK_STATUS(kcheck_consumer_next_batch(NULL, 10, 0, &batch), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(batch == SENTINEL);
    CHECK_STATUS(kcheck_consumer_checkpoint(NULL), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_checkpoint_record(NULL, NULL), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(kcheck_consumer_stats_json(NULL, &stats), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(stats == SENTINEL);
    CHECK_STATUS(kcheck_consumer_close(NULL), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(kcheck_consumer_owner_id(NULL) == NULL);

    memset(&fields, 0xA5, sizeof fields);
    memcpy(&untouched, &fields, sizeof fields);
    CHECK_STATUS(kcheck_record_get_fields(NULL, &fields), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(memcmp(&fields, &untouched, sizeof fields) == 0);
    CHECK_MESSAGE("record");

    CHECK(kcheck_batch_len(NULL) == 0);
    CHECK(kcheck_batch_get(NULL, 0) == NULL);
    CHECK_STATUS(kcheck_batch_get_fields(NULL, &array, &len), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(array == SENTINEL);
    CHECK(len == 12345);
    CHECK_STATUS(kcheck_batch_get_fields(NULL, NULL, &len), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(len == 12345);
    CHECK_STATUS(kcheck_batch_get_fields(NULL, &array, NULL), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK(array == SENTINEL);
}

static void ignore_log(void *user_data, uint32_t level, const char *target, const char *message) {
    (void)user_data;
    (void)level;
    (void)target;
    (void)message;
}

static void log_callbacks(void) {
    CHECK_STATUS(kcheck_set_log_callback(ignore_log, NULL, 6), KCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE("max_level");
    CHECK_STATUS(kcheck_set_log_callback(ignore_log, NULL, KCHECK_LOG_LEVEL_TRACE),
                 KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_set_log_callback(NULL, NULL, KCHECK_LOG_LEVEL_INFO), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_set_log_callback(ignore_log, NULL, KCHECK_LOG_LEVEL_OFF),
                 KCHECK_STATUS_OK);
}

/* The last error belongs to the thread that failed. */
static void *fresh_thread(void *unused) {
    const char *before;
    int *ok = malloc(sizeof *ok);
    (void)unused;
    if (ok == NULL)
        return NULL;
    before = kcheck_last_error_message();
    *ok = before != NULL && before[0] == '\0';
    CHECK_STATUS(kcheck_consumer_close(NULL), KCHECK_STATUS_INVALID_ARGUMENT);
    *ok = *ok && kcheck_last_error_message()[0] != '\0';
    return ok;
}

static void last_error_is_per_thread(void) {
    pthread_t thread;
    void *result = NULL;
    char mine[256];
    CHECK_STATUS(kcheck_consumer_builder_new(NULL, NULL), KCHECK_STATUS_INVALID_ARGUMENT);
    snprintf(mine, sizeof mine, "%s", kcheck_last_error_message());
    CHECK(mine[0] != '\0');
    if (pthread_create(&thread, NULL, fresh_thread, NULL) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        failures++;
        return;
    }
    pthread_join(thread, &result);
    CHECK(result != NULL && *(int *)result);
    free(result);
    /* The other thread's failure did not replace ours. */
    CHECK(strcmp(kcheck_last_error_message(), mine) == 0);
    /* A success does not clear it either: it is the last *failure*. */
    CHECK(kcheck_abi_version() == KCHECK_ABI_VERSION);
    CHECK(strcmp(kcheck_last_error_message(), mine) == 0);
}

/* A consumer aimed at a port where nothing listens fails with a transport
 * error after kcheck's retries, within bounded time. */
static void closed_port(void) {
    kcheck_consumer_builder *builder = NULL;
    kcheck_consumer *consumer = SENTINEL;
    struct timespec start;
    double took;

    CHECK_STATUS(kcheck_consumer_builder_new("stream", &builder), KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_set_endpoint_url(builder, "http://127.0.0.1:1"),
                 KCHECK_STATUS_OK);
    CHECK_STATUS(kcheck_consumer_builder_set_region_name(builder, "us-east-1"),
                 KCHECK_STATUS_OK);
    clock_gettime(CLOCK_MONOTONIC, &start);
    CHECK_STATUS(kcheck_consumer_builder_build(builder, &consumer),
                 KCHECK_STATUS_TRANSPORT_ERROR);
    took = seconds_since(&start);
    CHECK(consumer == SENTINEL);
    CHECK(kcheck_last_error_message()[0] != '\0');
    fprintf(stderr, "api_misuse: closed port: %.2f s: %s\n", took, kcheck_last_error_message());
    /* Eight tries with capped exponential backoff: ~3 s on average, 6.4 s
     * at most; connection refused itself is immediate. */
    CHECK(took < 20.0);

    /* The same for the DynamoDB checkpointer, which build prepares first. */
    {
        kcheck_checkpointer_builder *dynamodb = NULL;
        kcheck_checkpointer *checkpointer = NULL;
        builder = NULL;
        consumer = SENTINEL;
        CHECK_STATUS(kcheck_checkpointer_builder_new_dynamodb("group", &dynamodb),
                     KCHECK_STATUS_OK);
        CHECK_STATUS(kcheck_checkpointer_builder_set_endpoint_url(dynamodb, "http://127.0.0.1:1"),
                     KCHECK_STATUS_OK);
        CHECK_STATUS(kcheck_checkpointer_builder_set_region_name(dynamodb, "us-east-1"),
                     KCHECK_STATUS_OK);
        CHECK_STATUS(kcheck_checkpointer_builder_build(dynamodb, &checkpointer), KCHECK_STATUS_OK);
        CHECK_STATUS(kcheck_consumer_builder_new("stream", &builder), KCHECK_STATUS_OK);
        CHECK_STATUS(kcheck_consumer_builder_set_checkpointer(builder, checkpointer),
                     KCHECK_STATUS_OK);
        kcheck_checkpointer_free(checkpointer);
        clock_gettime(CLOCK_MONOTONIC, &start);
        CHECK_STATUS(kcheck_consumer_builder_build(builder, &consumer),
                     KCHECK_STATUS_TRANSPORT_ERROR);
        took = seconds_since(&start);
        CHECK(consumer == SENTINEL);
        fprintf(stderr, "api_misuse: closed DynamoDB port: %.2f s: %s\n", took,
                kcheck_last_error_message());
        CHECK(took < 20.0);
    }
}

int main(void) {
    /* A failure needs no credentials until it reaches the network; the
     * closed-port check does, so make sure some are set. */
    setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 0);
    setenv("AWS_SECRET_ACCESS_KEY", "test-secret", 0);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 0);

    /* Nothing failed yet on this thread. */
    CHECK(kcheck_last_error_message() != NULL);
    CHECK(kcheck_last_error_message()[0] == '\0');

    versions();
    status_names();
    frees_of_null();
    checkpointer_builders();
    consumer_builders();
    null_consumers_records_and_batches();
    log_callbacks();
    last_error_is_per_thread();
    closed_port();

    if (failures != 0) {
        fprintf(stderr, "api_misuse: %d check(s) failed\n", failures);
        return 1;
    }
    fprintf(stderr, "api_misuse: all checks passed\n");
    return 0;
}
