/*
 * consume: a complete kcheck consumer in C.
 *
 *   consume KINESIS_URL DYNAMODB_URL STREAM GROUP TABLE IDLE_TIMEOUT_MS
 *
 * Reads STREAM as a member of consumer group GROUP, whose leases and
 * checkpoints live in the DynamoDB table TABLE, until IDLE_TIMEOUT_MS pass
 * without a record. Prints one line per record to stdout:
 *
 *   shard_id sequence_number sub_sequence_number data
 *
 * (bytes of data outside printable ASCII are written as \xHH). Logs and the
 * final statistics go to stderr. Credentials come from the environment
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), as for the AWS SDKs.
 *
 * Exits 0 after a clean close; 1, naming the failed call, its status and
 * kcheck's message, on any unexpected status; 2 on bad arguments.
 *
 * Build: cc -std=c11 -Iinclude consume.c -Ltarget/debug -lkcheck
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kcheck.h"

/* Records asked for per kcheck_consumer_next_batch call. */
#define BATCH_SIZE 100
/* How long one next call waits before returning TIMED_OUT. */
#define WAIT_MS 1000
/* Every Nth read uses kcheck_consumer_next (one record) instead of a batch. */
#define SINGLE_READ_EVERY 4
/* A manual checkpoint after this many records (automatic checkpoints and
 * the final checkpoint at close happen anyway). */
#define CHECKPOINT_EVERY 250

/* Reports a failed kcheck call; returns the exit status for main. */
static int failed(const char *call, kcheck_status status) {
    fprintf(stderr, "consume: %s failed: %s: %s\n", call,
            kcheck_status_name(status), kcheck_last_error_message());
    return 1;
}

/* Receives kcheck's log records, on kcheck's threads and on ours. */
static void log_to_stderr(void *user_data, uint32_t level, const char *target,
                          const char *message) {
    static const char *const names[] = {"OFF", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    (void)user_data;
    fprintf(stderr, "kcheck %s %s: %s\n",
            level < sizeof names / sizeof names[0] ? names[level] : "?", target, message);
}

/* Writes one record's line; the strings of `fields` are not NUL-terminated. */
static void print_record(const kcheck_record_fields *fields) {
    size_t i;
    printf("%.*s %.*s %" PRIu64 " ", (int)fields->shard_id_len, fields->shard_id,
           (int)fields->sequence_number_len, fields->sequence_number,
           fields->sub_sequence_number);
    for (i = 0; i < fields->data_len; i++) {
        unsigned char byte = fields->data[i];
        if (isprint(byte) && byte != '\\')
            putchar(byte);
        else
            printf("\\x%02x", byte);
    }
    putchar('\n');
}

/* A checkpoint refused because the shard's lease moved to another consumer
 * is expected in a group: that consumer continues from the table's
 * checkpoint. Any other failure is not. */
static int checkpoint_result(const char *call, kcheck_status status) {
    if (status == KCHECK_STATUS_LEASE_LOST) {
        fprintf(stderr, "consume: %s: lease moved on: %s\n", call, kcheck_last_error_message());
        return 0;
    }
    return status == KCHECK_STATUS_OK ? 0 : failed(call, status);
}

static int parse_millis(const char *text, uint64_t *out) {
    char *end = NULL;
    unsigned long long value;
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return -1;
    *out = (uint64_t)value;
    return 0;
}

/* Builds the group's DynamoDB checkpointer (short leases, for tests). */
static kcheck_status make_checkpointer(const char *dynamodb_url, const char *group,
                                       const char *table, kcheck_checkpointer **out,
                                       const char **call) {
    kcheck_checkpointer_builder *builder = NULL;
    kcheck_status status;

    *call = "kcheck_checkpointer_builder_new_dynamodb";
    status = kcheck_checkpointer_builder_new_dynamodb(group, &builder);
    if (status != KCHECK_STATUS_OK)
        return status;
    *call = "kcheck_checkpointer_builder_set_endpoint_url";
    status = kcheck_checkpointer_builder_set_endpoint_url(builder, dynamodb_url);
    if (status == KCHECK_STATUS_OK) {
        *call = "kcheck_checkpointer_builder_set_table_name";
        status = kcheck_checkpointer_builder_set_table_name(builder, table);
    }
    if (status == KCHECK_STATUS_OK) {
        *call = "kcheck_checkpointer_builder_set_session_timeout_ms";
        status = kcheck_checkpointer_builder_set_session_timeout_ms(builder, 3000);
    }
    if (status == KCHECK_STATUS_OK) {
        *call = "kcheck_checkpointer_builder_set_heartbeat_frequency_ms";
        status = kcheck_checkpointer_builder_set_heartbeat_frequency_ms(builder, 500);
    }
    if (status != KCHECK_STATUS_OK) {
        kcheck_checkpointer_builder_free(builder);
        return status;
    }
    /* Consumes the builder, also when it fails. */
    *call = "kcheck_checkpointer_builder_build";
    return kcheck_checkpointer_builder_build(builder, out);
}

/* Builds and starts the consumer, which keeps its own reference to
 * `checkpointer`. */
static kcheck_status make_consumer(const char *kinesis_url, const char *stream,
                                   const kcheck_checkpointer *checkpointer,
                                   uint64_t idle_timeout_ms, kcheck_consumer **out,
                                   const char **call) {
    kcheck_consumer_builder *builder = NULL;
    kcheck_status status;

    *call = "kcheck_consumer_builder_new";
    status = kcheck_consumer_builder_new(stream, &builder);
    if (status != KCHECK_STATUS_OK)
        return status;
    *call = "kcheck_consumer_builder_set_endpoint_url";
    status = kcheck_consumer_builder_set_endpoint_url(builder, kinesis_url);
    if (status == KCHECK_STATUS_OK) {
        *call = "kcheck_consumer_builder_set_region_name";
        status = kcheck_consumer_builder_set_region_name(builder, "us-east-1");
    }
    if (status == KCHECK_STATUS_OK) {
        *call = "kcheck_consumer_builder_set_checkpointer";
        status = kcheck_consumer_builder_set_checkpointer(builder, checkpointer);
    }
    if (status == KCHECK_STATUS_OK) {
        *call = "kcheck_consumer_builder_set_discovery_interval_ms";
        status = kcheck_consumer_builder_set_discovery_interval_ms(builder, 300);
    }
    if (status == KCHECK_STATUS_OK) {
        *call = "kcheck_consumer_builder_set_idle_poll_interval_ms";
        status = kcheck_consumer_builder_set_idle_poll_interval_ms(builder, 100);
    }
    if (status == KCHECK_STATUS_OK) {
        *call = "kcheck_consumer_builder_set_idle_timeout_ms";
        status = kcheck_consumer_builder_set_idle_timeout_ms(builder, idle_timeout_ms);
    }
    if (status != KCHECK_STATUS_OK) {
        kcheck_consumer_builder_free(builder);
        return status;
    }
    *call = "kcheck_consumer_builder_build";
    return kcheck_consumer_builder_build(builder, out);
}

/* Reads until the idle timeout. Returns 0, or 1 after reporting a failure. */
static int consume(const kcheck_consumer *consumer) {
    unsigned long reads = 0, records = 0, since_checkpoint = 0;

    for (;;) {
        kcheck_status status;
        reads++;
        if (reads % SINGLE_READ_EVERY == 0) {
            /* One record, owned by us until kcheck_record_free. */
            kcheck_record *record = NULL;
            kcheck_record_fields fields;
            status = kcheck_consumer_next(consumer, WAIT_MS, &record);
            if (status == KCHECK_STATUS_OK) {
                kcheck_status got = kcheck_record_get_fields(record, &fields);
                if (got != KCHECK_STATUS_OK) {
                    kcheck_record_free(record);
                    return failed("kcheck_record_get_fields", got);
                }
                print_record(&fields);
                records++;
                if (++since_checkpoint >= CHECKPOINT_EVERY) {
                    /* Everything up to and including this record is done. */
                    since_checkpoint = 0;
                    got = kcheck_consumer_checkpoint_record(consumer, record);
                    if (checkpoint_result("kcheck_consumer_checkpoint_record", got) != 0) {
                        kcheck_record_free(record);
                        return 1;
                    }
                }
                kcheck_record_free(record);
                continue;
            }
        } else {
            /* Up to BATCH_SIZE records, read through one array of fields. */
            kcheck_batch *batch = NULL;
            const kcheck_record_fields *fields = NULL;
            size_t count = 0, i;
            status = kcheck_consumer_next_batch(consumer, BATCH_SIZE, WAIT_MS, &batch);
            if (status == KCHECK_STATUS_OK) {
                kcheck_status got = kcheck_batch_get_fields(batch, &fields, &count);
                if (got != KCHECK_STATUS_OK) {
                    kcheck_batch_free(batch);
                    return failed("kcheck_batch_get_fields", got);
                }
                for (i = 0; i < count; i++)
                    print_record(&fields[i]);
                kcheck_batch_free(batch);
                records += count;
                since_checkpoint += count;
                if (since_checkpoint >= CHECKPOINT_EVERY) {
                    /* Everything returned so far is done. */
                    since_checkpoint = 0;
                    got = kcheck_consumer_checkpoint(consumer);
                    if (checkpoint_result("kcheck_consumer_checkpoint", got) != 0)
                        return 1;
                }
                continue;
            }
        }
        switch (status) {
        case KCHECK_STATUS_TIMED_OUT:
            continue; /* nothing yet: wait again */
        case KCHECK_STATUS_IDLE_TIMEOUT:
            fprintf(stderr, "consume: idle, stopping after %lu records\n", records);
            return 0;
        case KCHECK_STATUS_CLOSED:
            fprintf(stderr, "consume: closed after %lu records\n", records);
            return 0;
        default:
            return failed(reads % SINGLE_READ_EVERY == 0 ? "kcheck_consumer_next"
                                                         : "kcheck_consumer_next_batch",
                          status);
        }
    }
}

int main(int argc, char **argv) {
    const char *kinesis_url, *dynamodb_url, *stream, *group, *table, *call = "";
    uint64_t idle_timeout_ms;
    kcheck_checkpointer *checkpointer = NULL;
    kcheck_consumer *consumer = NULL;
    kcheck_status status;
    char *stats = NULL;
    int exit_code;

    if (argc != 7 || parse_millis(argv[6], &idle_timeout_ms) != 0) {
        fprintf(stderr,
                "usage: %s KINESIS_URL DYNAMODB_URL STREAM GROUP TABLE IDLE_TIMEOUT_MS\n",
                argc > 0 ? argv[0] : "consume");
        return 2;
    }
    kinesis_url = argv[1];
    dynamodb_url = argv[2];
    stream = argv[3];
    group = argv[4];
    table = argv[5];

    status = kcheck_set_log_callback(log_to_stderr, NULL, KCHECK_LOG_LEVEL_INFO);
    if (status != KCHECK_STATUS_OK)
        return failed("kcheck_set_log_callback", status);

    status = make_checkpointer(dynamodb_url, group, table, &checkpointer, &call);
    if (status != KCHECK_STATUS_OK)
        return failed(call, status);
    status = make_consumer(kinesis_url, stream, checkpointer, idle_timeout_ms, &consumer, &call);
    /* The consumer holds its own reference: ours can go now. */
    kcheck_checkpointer_free(checkpointer);
    if (status != KCHECK_STATUS_OK)
        return failed(call, status);
    fprintf(stderr, "consume: started as %s\n", kcheck_consumer_owner_id(consumer));

    exit_code = consume(consumer);
    fflush(stdout);

    status = kcheck_consumer_stats_json(consumer, &stats);
    if (status == KCHECK_STATUS_OK) {
        fprintf(stderr, "consume: stats %s\n", stats);
        kcheck_string_free(stats);
    } else if (exit_code == 0) {
        exit_code = failed("kcheck_consumer_stats_json", status);
    }

    /* Writes the final checkpoints and releases the leases at once, so
     * other consumers of the group take the shards without waiting. */
    status = kcheck_consumer_close(consumer);
    if (status != KCHECK_STATUS_OK && exit_code == 0)
        exit_code = failed("kcheck_consumer_close", status);
    kcheck_consumer_free(consumer);
    /* No more log records after this: stop handing them to us. */
    kcheck_set_log_callback(NULL, NULL, KCHECK_LOG_LEVEL_OFF);
    return exit_code;
}
