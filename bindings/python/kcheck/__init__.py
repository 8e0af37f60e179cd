"""kcheck: a synchronous Kinesis consumer with DynamoDB leases and checkpoints,
and a producer.

Python bindings (ctypes) over ``libkcheck.so``, with the API of
async-kinesis's ``Consumer``, ``DynamoDBCheckPointer`` and
``MemoryCheckPointer``, synchronously::

    from kcheck import Consumer, DynamoDBCheckPointer

    with Consumer(
        stream_name="my-stream",
        checkpointer=DynamoDBCheckPointer(name="my-app"),
    ) as consumer:
        for record in consumer:
            print(record)

and ``Producer`` writes::

    from kcheck import Producer

    with Producer("my-stream", processor="json") as producer:
        producer.put({"id": 1}, partition_key="user-1")

and ``DynamoDBWriter`` writes items to DynamoDB tables, batched and paced::

    from kcheck import DynamoDBWriter

    with DynamoDBWriter("my-table", write_capacity=100) as writer:
        writer.put({"pk": "user-1", "visits": 3})

and ``Pipeline`` turns a consumer's records into a writer's items,
checkpointing only what is written::

    from kcheck import Pipeline

    Pipeline(consumer, writer).run(lambda record: [json.loads(record.data)], stop=event)

and ``ConsumerGroup`` shows, exports, imports, resets, snapshots and
restores a group's checkpoints::

    from kcheck import ConsumerGroup

    group = ConsumerGroup(DynamoDBCheckPointer(name="my-app"))
    group.snapshot("before-deploy")
    group.restore("before-deploy", force=True)

Log records of the library go to the ``kcheck`` logger hierarchy.
"""

from __future__ import annotations

from . import _native
from ._logging import TRACE, refresh_log_level
from .checkpointers import CheckPointer, DynamoDBCheckPointer, MemoryCheckPointer, RedisCheckPointer
from .consumer import Consumer, ConsumerEvent
from .group import ConsumerGroup
from .errors import (
    CallbackFailedError,
    ConsumerClosedError,
    CredentialsError,
    ForkError,
    InternalError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidUtf8Error,
    KcheckError,
    KcheckTimeoutError,
    LeaseLostError,
    MalformedResponseError,
    PanicError,
    PoisonedError,
    ProducerClosedError,
    ServiceError,
    TransportError,
    WriterClosedError,
)
from .pipeline import Delete, Pipeline, Put
from .producer import Producer
from .record import Record
from .writer import DynamoDBWriter

__all__ = [
    "Consumer",
    "ConsumerEvent",
    "Producer",
    "DynamoDBWriter",
    "Pipeline",
    "ConsumerGroup",
    "Put",
    "Delete",
    "DynamoDBCheckPointer",
    "MemoryCheckPointer",
    "RedisCheckPointer",
    "CheckPointer",
    "Record",
    "KcheckError",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "InvalidConfigError",
    "LeaseLostError",
    "ServiceError",
    "TransportError",
    "CredentialsError",
    "MalformedResponseError",
    "KcheckTimeoutError",
    "InternalError",
    "PanicError",
    "PoisonedError",
    "ConsumerClosedError",
    "ProducerClosedError",
    "WriterClosedError",
    "ForkError",
    "CallbackFailedError",
    "TRACE",
    "refresh_log_level",
    "library_version",
    "library_path",
    "__version__",
]

#: Path of the loaded libkcheck.so.
library_path: str = str(_native.library_path)


def library_version() -> str:
    """The loaded library's version (``kcheck_version()``)."""
    return _native.version()


__version__: str = library_version()
