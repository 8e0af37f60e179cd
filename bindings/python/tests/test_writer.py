"""kcheck.DynamoDBWriter: the conversion of plain Python values to DynamoDB
JSON and back (without emulators), and writes against the DynamoDB emulator,
read back with Scan over urllib."""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any, Dict, List

import pytest

from conftest import unique

from kcheck import (
    DynamoDBWriter,
    InvalidArgumentError,
    InvalidConfigError,
    KcheckTimeoutError,
    ServiceError,
    WriterClosedError,
)
from kcheck.writer import deserialize_item, serialize_item

# --------------------------------------------------------------------------- a tiny DynamoDB client


class DynamoDB:
    """A DynamoDB JSON-API client for the emulator (unsigned requests, as
    conftest's Kinesis client)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def call(self, operation: str, body: Dict[str, Any]) -> Dict[str, Any]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        request = urllib.request.Request(
            self.endpoint,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"DynamoDB_20120810.{operation}",
                "X-Amz-Date": amz_date,
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential=test/{amz_date[:8]}/us-east-1/dynamodb/aws4_request, "
                    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
                ),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{operation}: HTTP {error.code}: {error.read()[:500]!r}") from None
        return json.loads(raw) if raw else {}

    def create_table(self, sort_key: bool = False) -> str:
        name = unique("py-table")
        keys = [("pk", "S", "HASH")] + ([("sk", "N", "RANGE")] if sort_key else [])
        self.call(
            "CreateTable",
            {
                "TableName": name,
                "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
                "KeySchema": [{"AttributeName": n, "KeyType": k} for n, _, k in keys],
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
        deadline = time.monotonic() + 10
        while self.call("DescribeTable", {"TableName": name})["Table"]["TableStatus"] != "ACTIVE":
            assert time.monotonic() < deadline, f"table {name} is not active"
            time.sleep(0.05)
        return name

    def scan(self, table: str) -> List[Dict[str, Any]]:
        """Every item of ``table`` as plain Python."""
        items: List[Dict[str, Any]] = []
        body: Dict[str, Any] = {"TableName": table}
        while True:
            page = self.call("Scan", body)
            items.extend(deserialize_item(item) for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return items
            body["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture(scope="module")
def dynamodb(emulators: Any) -> DynamoDB:
    return DynamoDB(emulators.dynamodb)


def writer_for(emulators: Any, table: str, **options: Any) -> DynamoDBWriter:
    options = {"buffer_time": 0.02, "threads": 2, **options}
    return DynamoDBWriter(table, endpoint_url=emulators.dynamodb, **options)


# --------------------------------------------------------------------------- conversion (no emulators)


def test_values_convert_as_boto3_does_and_back() -> None:
    item = {
        "s": "héllo",
        "empty": "",
        "int": 42,
        "neg": -7,
        "big": 10**30,
        "dec": Decimal("3.14"),
        "float": 0.5,
        "tiny": 1e-7,
        "bool": True,
        "false": False,
        "none": None,
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"ab"),
        "view": memoryview(b"cd"),
        "list": [1, "two", [None]],
        "tuple": (1, 2),
        "map": {"nested": {"deep": Decimal("-0.001")}},
        "ss": {"b", "a"},
        "ns": frozenset({1, Decimal("2.5")}),
        "bs": {b"x", b"y"},
    }
    typed = serialize_item(item)
    assert typed["s"] == {"S": "héllo"}
    assert typed["int"] == {"N": "42"}
    assert typed["big"] == {"N": str(10**30)}
    assert typed["dec"] == {"N": "3.14"}
    assert typed["float"] == {"N": "0.5"}
    assert Decimal(typed["tiny"]["N"]) == Decimal("1e-7")
    assert typed["bool"] == {"BOOL": True}  # not N: bool is checked before int
    assert typed["none"] == {"NULL": True}
    assert typed["bytes"] == {"B": "AP8="}
    assert typed["view"] == {"B": "Y2Q="}
    assert typed["list"] == {"L": [{"N": "1"}, {"S": "two"}, {"L": [{"NULL": True}]}]}
    assert typed["tuple"] == {"L": [{"N": "1"}, {"N": "2"}]}
    assert typed["map"] == {"M": {"nested": {"M": {"deep": {"N": "-0.001"}}}}}
    assert typed["ss"] == {"SS": ["a", "b"]}
    assert sorted(typed["ns"]["NS"]) == ["1", "2.5"]
    assert sorted(typed["bs"]["BS"]) == ["eA==", "eQ=="]
    json.dumps(typed)  # plain JSON

    back = deserialize_item(json.loads(json.dumps(typed)))
    assert back == {
        **item,
        "float": Decimal("0.5"),
        "tiny": Decimal("1E-7"),
        "bytearray": b"ab",
        "view": b"cd",
        "tuple": [1, 2],
        "ns": {1, Decimal("2.5")},
    }
    assert type(back["int"]) is int and type(back["dec"]) is Decimal
    assert type(back["bool"]) is bool and type(back["ss"]) is set


def test_values_dynamodb_cannot_store_are_refused_naming_the_attribute() -> None:
    cases = [
        ({"f": math.nan}, ValueError, "attribute f: nan"),
        ({"f": math.inf}, ValueError, "attribute f: inf"),
        ({"m": {"l": [1, -math.inf]}}, ValueError, r"attribute m\.l\[1\]"),
        ({"d": Decimal("NaN")}, ValueError, "attribute d: Decimal NaN"),
        ({"d": Decimal("1e200")}, ValueError, "attribute d: .*range"),
        ({"d": Decimal("1." + "1" * 40)}, ValueError, "attribute d: .*significant digits"),
        ({"s": set()}, ValueError, "attribute s: DynamoDB cannot store an empty set"),
        ({"s": {"a", 1}}, TypeError, "attribute s: a set must hold only str, only numbers or only bytes"),
        ({"s": {True}}, TypeError, "attribute s: a set must hold"),
        ({"o": object()}, TypeError, "attribute o: a object cannot be written"),
        ({"m": {"x": [{"when": time}]}}, TypeError, r"attribute m\.x\[0\]\.when: a module"),
        ({"m": {1: "x"}}, TypeError, "attribute m: attribute names must be str, got int 1"),
        ({2: "x"}, TypeError, "the item: attribute names must be str"),
    ]
    for item, error, message in cases:
        with pytest.raises(error, match=message):
            serialize_item(item)
    with pytest.raises(InvalidArgumentError):  # a KcheckError and a ValueError
        serialize_item({"f": math.nan})
    with pytest.raises(TypeError, match="an item must be a dict"):
        serialize_item([("pk", "a")])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- against the emulator


def test_items_are_written_exactly_once_across_two_tables(emulators: Any, dynamodb: DynamoDB) -> None:
    main = dynamodb.create_table()
    sorted_table = dynamodb.create_table(sort_key=True)
    with writer_for(emulators, main, write_capacity=500, tables={sorted_table: 40}) as writer:
        tickets = []
        for n in range(60):
            tickets.append(writer.put({"pk": f"item-{n}", "n": n, "tags": {"a", f"t{n % 3}"}}))
            if n < 40:
                tickets.append(
                    writer.put({"pk": "p", "sk": n, "blob": bytes([n]), "price": Decimal("1.25")}, table=sorted_table)
                )
        assert tickets == list(range(100))
        assert writer.delete({"pk": "item-0"}) == 100
        assert writer.delete({"pk": "p", "sk": 39}, table=sorted_table) == 101
        started = time.monotonic()
        writer.flush(timeout=60)
        # 40 units at 40 a second, less the burst the bucket starts with.
        assert time.monotonic() - started > 0.5
        assert writer.first_unwritten() == 102
        assert writer.status(0) == "ACCEPTED" and writer.status(101) == "ACCEPTED"
        stats = writer.stats()
        assert stats["items_put"] == 102 and stats["items_written"] == 102
        assert stats["items_failed"] == 0 and stats["queue_depth"] == 0
        assert "tables" not in stats
        tables = writer.table_stats()
        assert [t["table"] for t in tables] == [main, sorted_table]
        assert tables[0]["write_capacity"] == 500 and tables[1]["write_capacity"] == 40
        assert tables[0]["items_written"] == 61 and tables[1]["items_written"] == 41
        assert writer.take_failures() == []

    items = {item["pk"]: item for item in dynamodb.scan(main)}
    assert len(items) == 59 and "item-0" not in items
    assert items["item-7"] == {"pk": "item-7", "n": 7, "tags": {"a", "t1"}}
    rows = sorted(dynamodb.scan(sorted_table), key=lambda item: item["sk"])
    assert [row["sk"] for row in rows] == list(range(39))
    assert rows[5] == {"pk": "p", "sk": 5, "blob": b"\x05", "price": Decimal("1.25")}


def test_a_bad_item_raises_with_the_item_named(emulators: Any, dynamodb: DynamoDB) -> None:
    table = dynamodb.create_table(sort_key=True)
    with writer_for(emulators, table) as writer:
        with pytest.raises(InvalidArgumentError, match="the key attribute sk is missing") as caught:
            writer.put({"pk": "a", "colour": "teal"})
        assert "teal" in str(caught.value) and table in str(caught.value)
        with pytest.raises(InvalidArgumentError, match="sk must be of type N"):
            writer.put({"pk": "a", "sk": "one"})
        with pytest.raises(InvalidArgumentError, match="names only the key"):
            writer.delete({"pk": "a", "sk": 1, "colour": "teal"})
        with pytest.raises(TypeError, match="attribute when: a module"):
            writer.put({"pk": "a", "sk": 1, "when": time})
        with pytest.raises(ValueError, match="attribute v: nan"):
            writer.put({"pk": "a", "sk": 1, "v": math.nan})
        with pytest.raises(ServiceError, match="ResourceNotFound"):
            writer.put({"pk": "a"}, table=unique("missing"))
        assert writer.put({"pk": "a", "sk": 1}) == 0  # nothing was queued before
    with pytest.raises(InvalidConfigError, match="threads"):
        writer_for(emulators, table, threads=0)
    with pytest.raises(InvalidConfigError, match="batch_size"):
        writer_for(emulators, table, batch_size=26)
    with pytest.raises(InvalidConfigError, match="write_capacity"):
        writer_for(emulators, table, write_capacity=0)
    with pytest.raises(InvalidConfigError, match="write capacity of table 'x'"):
        writer_for(emulators, table, tables={"x": math.nan})
    with pytest.raises(ServiceError, match="ResourceNotFound"):
        writer_for(emulators, unique("missing"))
    with pytest.raises(ServiceError, match="ResourceNotFound"):
        writer_for(emulators, table, tables={unique("missing"): None})


def test_context_manager_close_flushes_and_use_after_close_raises(emulators: Any, dynamodb: DynamoDB) -> None:
    table = dynamodb.create_table()
    # A buffer time far beyond the test: only close sends.
    with writer_for(emulators, table, buffer_time=600) as writer:
        writer.put({"pk": "written at close", "n": 1})
        assert writer.status(0) == "PENDING"
    assert writer.closed
    assert dynamodb.scan(table) == [{"pk": "written at close", "n": 1}]
    with pytest.raises(WriterClosedError, match="closed"):
        writer.put({"pk": "late"})
    with pytest.raises(WriterClosedError):
        writer.delete({"pk": "late"})
    with pytest.raises(WriterClosedError):
        writer.flush()
    with pytest.raises(WriterClosedError):
        writer.stats()
    with pytest.raises(WriterClosedError):
        with writer:
            pass
    writer.close()  # idempotent


def test_failures_are_taken_with_the_item_as_plain_python(emulators: Any, dynamodb: DynamoDB) -> None:
    table = dynamodb.create_table()
    item: Dict[str, Any] = {"pk": "after", "n": 1, "d": Decimal("0.5"), "b": b"\x01", "l": [None, True], "ss": {"x"}}
    with writer_for(emulators, table) as writer:
        writer.put({"pk": "before"})
        writer.flush()
        dynamodb.call("DeleteTable", {"TableName": table})
        assert writer.put(item) == 1
        assert writer.delete({"pk": "gone"}) == 2
        with pytest.raises(ServiceError, match="2 writes failed") as caught:
            writer.flush(timeout=30)
        assert "after" in str(caught.value)
        assert writer.status(0) == "ACCEPTED" and writer.status(1) == "FAILED"
        failures = writer.take_failures()
        assert [(f["ticket"], f["table"], f["operation"]) for f in failures] == [
            (1, table, "put"),
            (2, table, "delete"),
        ]
        assert failures[0]["item"] == item
        assert failures[1]["item"] == {"pk": "gone"}
        assert failures[0]["status"] == "KCHECK_STATUS_SERVICE_ERROR"
        assert "ResourceNotFound" in failures[0]["error"]
        assert writer.take_failures() == []
        assert writer.stats()["items_failed"] == 2


def test_put_times_out_while_the_queue_is_full(emulators: Any, dynamodb: DynamoDB) -> None:
    table = dynamodb.create_table()
    # One write queued at a time, paced to one unit a second: the second put
    # waits for the first, the third for the second.
    with writer_for(emulators, table, write_capacity=1, max_queue_size=1) as writer:
        writer.put({"pk": "a"})
        writer.put({"pk": "b"})
        started = time.monotonic()
        with pytest.raises(KcheckTimeoutError):
            writer.put({"pk": "c"}, timeout=0.2)
        assert time.monotonic() - started < 0.9
    assert sorted(item["pk"] for item in dynamodb.scan(table)) == ["a", "b"]


def test_options_are_checked_before_the_library(emulators: Any) -> None:
    with pytest.raises(TypeError, match="write_capacity must be a number"):
        DynamoDBWriter("t", write_capacity="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tables must be a dict"):
        DynamoDBWriter("t", tables=["a"])  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="max_queue_size"):
        DynamoDBWriter("t", max_queue_size=0)
    with pytest.raises(InvalidConfigError, match="buffer_time"):
        DynamoDBWriter("t", buffer_time=-1)
    with pytest.raises(InvalidArgumentError, match="NUL"):
        DynamoDBWriter("t\0")
    with pytest.raises(InvalidArgumentError, match="table_name is empty"):
        DynamoDBWriter("")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_cannot_use_the_parents_writer(emulators: Any, dynamodb: DynamoDB, tmp_path: Any) -> None:
    from test_fork_threads_signals import run_child

    table = dynamodb.create_table()
    child_findings = tmp_path / "child.json"
    findings = run_child(
        emulators,
        f"""
        from kcheck import DynamoDBWriter
        writer = DynamoDBWriter({table!r}, endpoint_url=DYNAMODB, buffer_time=0.02)
        writer.put({{"pk": "parent-0"}})
        pid = os.fork()
        if pid == 0:
            outcomes = {{
                "put": refused(lambda: writer.put({{"pk": "child"}})),
                "flush": refused(writer.flush),
                "stats": refused(writer.stats),
                "take_failures": refused(writer.take_failures),
            }}
            writer.close()  # drops the copy only
            outcomes["after_close"] = refused(lambda: writer.put({{"pk": "child"}}))
            with open({str(child_findings)!r}, "w") as out:
                json.dump(outcomes, out)
            sys.exit(0)
        child_exit = wait_for(pid)
        writer.put({{"pk": "parent-1"}})
        writer.close()
        with open({str(child_findings)!r}) as found:
            child = json.load(found)
        print(json.dumps({{"child_exit": child_exit, "child": child}}))
        """,
    )
    assert findings["child_exit"] == 0
    assert findings["child"] == {
        name: "ForkError" for name in ("put", "flush", "stats", "take_failures", "after_close")
    }
    assert sorted(item["pk"] for item in dynamodb.scan(table)) == ["parent-0", "parent-1"]
