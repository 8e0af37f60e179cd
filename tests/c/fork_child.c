/*
 * fork_child: a C host forks while its consumer holds leases. The child's
 * copies of the handles are inert: a child that only frees them and exits
 * leaves the parent's leases alone, and a child that uses them gets
 * KCHECK_STATUS_FORKED naming the parent's process. The parent keeps
 * reading, checkpoints and closes as if nothing happened.
 *
 *   fork_child KINESIS_URL DYNAMODB_URL STREAM GROUP TABLE
 *
 * The stream must hold records. Exits 0 when all of that holds, 1
 * otherwise (with what happened on stderr), 2 on bad arguments.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kcheck.h"

#define BATCH_SIZE 100
#define WAIT_MS 200
/* How long a child may take before it counts as hung. */
#define CHILD_LIMIT_S 20

static kcheck_checkpointer *checkpointer;
static kcheck_consumer *consumer;

static int failed(const char *call, kcheck_status status) {
    fprintf(stderr, "fork_child[%ld]: %s failed: %s: %s\n", (long)getpid(), call,
            kcheck_status_name(status), kcheck_last_error_message());
    return 1;
}

/* In the child: `status` must be FORKED with a message naming `parent`. */
static int refused(const char *call, kcheck_status status, pid_t parent) {
    char expected[64];
    snprintf(expected, sizeof expected, "created in process %ld", (long)parent);
    if (status != KCHECK_STATUS_FORKED || !strstr(kcheck_last_error_message(), expected)) {
        fprintf(stderr, "fork_child child: %s returned %s (%s), expected FORKED naming %s\n",
                call, kcheck_status_name(status), kcheck_last_error_message(), expected);
        return 1;
    }
    return 0;
}

/* A child that uses the inherited handles: every call is refused. */
static int use_inherited(pid_t parent) {
    kcheck_batch *batch = NULL;
    kcheck_consumer_builder *builder = NULL;
    char *stats = NULL;
    kcheck_status status;
    int errors = 0;

    errors += refused("kcheck_consumer_next_batch",
                      kcheck_consumer_next_batch(consumer, BATCH_SIZE, WAIT_MS, &batch), parent);
    errors += refused("kcheck_consumer_checkpoint", kcheck_consumer_checkpoint(consumer), parent);
    errors += refused("kcheck_consumer_stats_json", kcheck_consumer_stats_json(consumer, &stats),
                      parent);
    errors += refused("kcheck_consumer_close", kcheck_consumer_close(consumer), parent);
    if (batch != NULL || stats != NULL) {
        fprintf(stderr, "fork_child child: a refused call wrote its out-param\n");
        errors++;
    }
    /* New handles work in the child; the inherited checkpointer does not. */
    if ((status = kcheck_consumer_builder_new("child-stream", &builder)) != KCHECK_STATUS_OK)
        return failed("kcheck_consumer_builder_new in the child", status);
    errors += refused("kcheck_consumer_builder_set_checkpointer",
                      kcheck_consumer_builder_set_checkpointer(builder, checkpointer), parent);
    kcheck_consumer_builder_free(builder);
    kcheck_consumer_free(consumer);
    kcheck_checkpointer_free(checkpointer);
    return errors ? 1 : 0;
}

/* Forks a child that runs `body` (or only frees the handles, when NULL)
 * and waits for it; 0 when it exited 0 in time. */
static int run_child(const char *name, int (*body)(pid_t)) {
    pid_t parent = getpid(), child = fork();
    const struct timespec poll = {0, 20 * 1000 * 1000};
    int status = 0, polls;

    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        int code = 0;
        if (body)
            code = body(parent);
        else {
            /* Cleanup code a child inherits: it must not touch the parent's leases. */
            kcheck_consumer_free(consumer);
            kcheck_checkpointer_free(checkpointer);
        }
        fflush(stderr);
        /* _exit, as a forked child of a threaded program should: what the
         * parent's threads hold is unreachable here, and LeakSanitizer
         * would report it as leaked. */
        _exit(code);
    }
    for (polls = 0; polls < CHILD_LIMIT_S * 50; polls++) {
        if (waitpid(child, &status, WNOHANG) == child) {
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
            fprintf(stderr, "fork_child: the %s child failed (wait status %d)\n", name, status);
            return 1;
        }
        nanosleep(&poll, NULL);
    }
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    fprintf(stderr, "fork_child: the %s child hung: killed after %d s\n", name, CHILD_LIMIT_S);
    return 1;
}

/* Reads for `seconds`, counting records; fails on anything but OK/TIMED_OUT. */
static int read_for(double seconds, long *records) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        kcheck_batch *batch = NULL;
        kcheck_status status = kcheck_consumer_next_batch(consumer, BATCH_SIZE, WAIT_MS, &batch);
        if (status == KCHECK_STATUS_OK) {
            *records += (long)kcheck_batch_len(batch);
            kcheck_batch_free(batch);
        } else if (status != KCHECK_STATUS_TIMED_OUT) {
            return failed("kcheck_consumer_next_batch", status);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 <
             seconds);
    return 0;
}

int main(int argc, char **argv) {
    kcheck_checkpointer_builder *draft = NULL;
    kcheck_consumer_builder *options = NULL;
    kcheck_status status;
    char *stats = NULL;
    long records = 0;
    int exit_code = 0;

    if (argc != 6) {
        fprintf(stderr, "usage: %s KINESIS_URL DYNAMODB_URL STREAM GROUP TABLE\n",
                argc > 0 ? argv[0] : "fork_child");
        return 2;
    }
    if ((status = kcheck_checkpointer_builder_new_dynamodb(argv[4], &draft)) != KCHECK_STATUS_OK)
        return failed("kcheck_checkpointer_builder_new_dynamodb", status);
    if ((status = kcheck_checkpointer_builder_set_endpoint_url(draft, argv[2])) ||
        (status = kcheck_checkpointer_builder_set_region_name(draft, "us-east-1")) ||
        (status = kcheck_checkpointer_builder_set_table_name(draft, argv[5])) ||
        (status = kcheck_checkpointer_builder_set_session_timeout_ms(draft, 3000)) ||
        (status = kcheck_checkpointer_builder_set_heartbeat_frequency_ms(draft, 500))) {
        kcheck_checkpointer_builder_free(draft);
        return failed("a kcheck_checkpointer_builder_set_ call", status);
    }
    if ((status = kcheck_checkpointer_builder_build(draft, &checkpointer)) != KCHECK_STATUS_OK)
        return failed("kcheck_checkpointer_builder_build", status);
    if ((status = kcheck_consumer_builder_new(argv[3], &options)) != KCHECK_STATUS_OK)
        return failed("kcheck_consumer_builder_new", status);
    if ((status = kcheck_consumer_builder_set_endpoint_url(options, argv[1])) ||
        (status = kcheck_consumer_builder_set_region_name(options, "us-east-1")) ||
        (status = kcheck_consumer_builder_set_checkpointer(options, checkpointer)) ||
        (status = kcheck_consumer_builder_set_discovery_interval_ms(options, 300)) ||
        (status = kcheck_consumer_builder_set_checkpoint_interval_ms(options, 200)) ||
        (status = kcheck_consumer_builder_set_idle_poll_interval_ms(options, 100))) {
        kcheck_consumer_builder_free(options);
        return failed("a kcheck_consumer_builder_set_ call", status);
    }
    if ((status = kcheck_consumer_builder_build(options, &consumer)) != KCHECK_STATUS_OK)
        return failed("kcheck_consumer_builder_build", status);

    /* Hold the leases and have records in flight before forking. */
    if (read_for(1.5, &records) != 0)
        return 1;
    if (records == 0) {
        fprintf(stderr, "fork_child: no record before the fork\n");
        return 1;
    }
    exit_code |= run_child("exiting", NULL);
    exit_code |= run_child("using", use_inherited);
    /* Several heartbeats later the parent still holds every lease. */
    if (read_for(2.0, &records) != 0)
        return 1;
    if ((status = kcheck_consumer_checkpoint(consumer)) != KCHECK_STATUS_OK)
        exit_code |= failed("kcheck_consumer_checkpoint in the parent", status);
    if ((status = kcheck_consumer_stats_json(consumer, &stats)) != KCHECK_STATUS_OK)
        return failed("kcheck_consumer_stats_json", status);
    if (!strstr(stats, "\"lease_losses\":0,")) {
        fprintf(stderr, "fork_child: the parent lost a lease: %s\n", stats);
        exit_code = 1;
    }
    kcheck_string_free(stats);
    if ((status = kcheck_consumer_close(consumer)) != KCHECK_STATUS_OK)
        exit_code |= failed("kcheck_consumer_close", status);
    kcheck_consumer_free(consumer);
    kcheck_checkpointer_free(checkpointer);
    fprintf(stderr, "fork_child: parent read %ld records around two forks\n", records);
    return exit_code;
}
