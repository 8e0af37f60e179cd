// cpp_smoke: kcheck.h used from C++11, with handles owned by unique_ptr.
// Offline: builds a memory checkpointer and a consumer builder, checks the
// statuses, names and versions, and frees everything. Exits 0 on success.
#include <cstdio>
#include <cstring>
#include <memory>

#include "kcheck.h"

namespace {

struct CheckpointerBuilderFree {
    void operator()(kcheck_checkpointer_builder *b) const { kcheck_checkpointer_builder_free(b); }
};
struct CheckpointerFree {
    void operator()(kcheck_checkpointer *c) const { kcheck_checkpointer_free(c); }
};
struct ConsumerBuilderFree {
    void operator()(kcheck_consumer_builder *b) const { kcheck_consumer_builder_free(b); }
};

using CheckpointerBuilder = std::unique_ptr<kcheck_checkpointer_builder, CheckpointerBuilderFree>;
using Checkpointer = std::unique_ptr<kcheck_checkpointer, CheckpointerFree>;
using ConsumerBuilder = std::unique_ptr<kcheck_consumer_builder, ConsumerBuilderFree>;

int failures = 0;

void expect(bool condition, const char *what) {
    if (!condition) {
        std::fprintf(stderr, "cpp_smoke: failed: %s (last error: %s)\n", what,
                     kcheck_last_error_message());
        ++failures;
    }
}

}  // namespace

int main() {
    expect(std::strcmp(kcheck_version(), KCHECK_VERSION) == 0, "kcheck_version() == KCHECK_VERSION");
    expect(kcheck_abi_version() == KCHECK_ABI_VERSION, "kcheck_abi_version() == KCHECK_ABI_VERSION");
    // In C++ the statuses are a scoped-size enum with uint32_t underneath.
    kcheck_status status = KCHECK_STATUS_LEASE_LOST;
    expect(std::strcmp(kcheck_status_name(status), "KCHECK_STATUS_LEASE_LOST") == 0,
           "status name");

    kcheck_checkpointer_builder *raw_builder = nullptr;
    expect(kcheck_checkpointer_builder_new_memory(&raw_builder) == KCHECK_STATUS_OK, "new_memory");
    CheckpointerBuilder builder(raw_builder);
    expect(kcheck_checkpointer_builder_set_session_timeout_ms(builder.get(), 3000) ==
               KCHECK_STATUS_OK,
           "set_session_timeout_ms");
    // The heartbeat must stay shorter than the session timeout (15 s default).
    expect(kcheck_checkpointer_builder_set_heartbeat_frequency_ms(builder.get(), 500) ==
               KCHECK_STATUS_OK,
           "set_heartbeat_frequency_ms");
    kcheck_checkpointer *raw_checkpointer = nullptr;
    // build consumes the builder whatever it returns: release it first.
    status = kcheck_checkpointer_builder_build(builder.release(), &raw_checkpointer);
    expect(status == KCHECK_STATUS_OK, "checkpointer build");
    Checkpointer checkpointer(raw_checkpointer);

    kcheck_consumer_builder *raw_consumer_builder = nullptr;
    expect(kcheck_consumer_builder_new("stream", &raw_consumer_builder) == KCHECK_STATUS_OK,
           "consumer_builder_new");
    ConsumerBuilder consumer_builder(raw_consumer_builder);
    expect(kcheck_consumer_builder_set_checkpointer(consumer_builder.get(), checkpointer.get()) ==
               KCHECK_STATUS_OK,
           "set_checkpointer");
    expect(kcheck_consumer_builder_set_initial_position(consumer_builder.get(),
                                                        KCHECK_INITIAL_POSITION_LATEST, 0) ==
               KCHECK_STATUS_OK,
           "set_initial_position");
    expect(kcheck_consumer_builder_set_record_limit(consumer_builder.get(), 0) == KCHECK_STATUS_OK,
           "set_record_limit");
    kcheck_consumer *consumer = nullptr;
    status = kcheck_consumer_builder_build(consumer_builder.release(), &consumer);
    expect(status == KCHECK_STATUS_INVALID_CONFIG, "build refuses record_limit 0");
    expect(consumer == nullptr, "no consumer written on failure");
    expect(std::strstr(kcheck_last_error_message(), "record_limit") != nullptr,
           "the message names record_limit");

    if (failures != 0) {
        std::fprintf(stderr, "cpp_smoke: %d check(s) failed\n", failures);
        return 1;
    }
    return 0;
}
