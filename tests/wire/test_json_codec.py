"""Records as JSON text (``record_format = "json"``): what kcat prints is the record, every
reader takes both framings, and nothing is lost on the way."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given
from hypothesis import strategies as st

from streams.core.model import DeadLetterReason
from streams.errors import DecodeError
from streams.wire import (
    Codec,
    DeadLetter,
    OutcomeStatus,
    ResultBatch,
    TaskEvent,
    TaskOutcome,
    WireRecord,
)
from streams.wire.json_codec import READABLE_RECORDS, JsonRecordCodec
from tests.wire.strategies import (
    ANY_RECORD,
    dead_letters,
    task_events,
    task_outcomes,
    task_results,
)

AVRO = Codec()
JSON = JsonRecordCodec(Codec(), READABLE_RECORDS)
READERS = JsonRecordCodec(Codec())
"""A reader whose own setting is Avro."""

READABLE = st.one_of(
    st.lists(task_results(), max_size=3).map(lambda rs: ResultBatch(results=tuple(rs))),
    task_events(),
    dead_letters(),
    task_outcomes(),
)


@given(READABLE)
def test_readable_records_are_one_json_object_read_back_the_same_by_any_reader(
    record: WireRecord,
) -> None:
    data = JSON.encode(record)
    assert isinstance(json.loads(data.decode("utf-8")), dict)
    assert JSON.decode(data, type(record)) == record
    assert READERS.decode(data, type(record)) == record
    assert JSON.decode(AVRO.encode(record), type(record)) == record


@given(ANY_RECORD.filter(lambda record: type(record) not in READABLE_RECORDS))
def test_the_other_records_keep_their_avro_framing(record: WireRecord) -> None:
    data = JSON.encode(record)
    assert data == AVRO.encode(record) and JSON.frames(data)


def test_text_stays_text_and_other_bytes_are_base64() -> None:
    record = TaskOutcome(
        task_id="t",
        type="x",
        status=OutcomeStatus.SUCCEEDED,
        output=b'{"w":1}',
        attempts=1,
        submitted_at=1,
        ended_at=2,
    )
    assert json.loads(JSON.encode(record))["output"] == '{"w":1}'
    malformed = DeadLetterReason.MALFORMED
    binary = DeadLetter(raw=b"\xff\x00", reason=malformed, error="e", attempts=0, dead_at=1)
    assert json.loads(JSON.encode(binary))["raw"] == {"base64": "/wA="}


@given(st.binary(max_size=40).map(lambda tail: b"{" + tail))
def test_broken_json_raises_nothing_but_decode_error(data: bytes) -> None:
    for record_type in (ResultBatch, TaskEvent, DeadLetter, TaskOutcome):
        with contextlib.suppress(DecodeError):
            JSON.decode(data, record_type)


def test_a_json_record_lacking_a_field_with_a_default_takes_the_default() -> None:
    data = b'{"task_id":"t","type":"x","status":"SUCCEEDED","attempts":1,'
    data += b'"submitted_at":1,"ended_at":2}'
    outcome = JSON.decode(data, TaskOutcome)
    assert outcome.output is None and outcome.source_key is None
