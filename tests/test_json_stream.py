"""Walking JSON without building it whole (profviz/formats/json_stream.py), and OTLP/JSON through it."""

from __future__ import annotations

import json

import pytest

from profviz.formats import otlp
from profviz.formats.json_stream import Cursor, JsonStreamError, array_items, walk_object


def test_entered_keys_are_walked_and_the_rest_decoded_whatever_their_order():
    seen = []

    def items(cursor):
        for index in array_items(cursor):
            seen.append((index, cursor.value()))

    cursor = Cursor(' { "a" : [1, {"x": [2]}], "items": [ {"k": 1}, "two", [3] ], "z": null }  ')
    rest = walk_object(cursor, {"items": items})
    cursor.end()
    assert rest == {"a": [1, {"x": [2]}], "z": None}
    assert seen == [(0, {"k": 1}), (1, "two"), (2, [3])]
    empty = Cursor("{}")
    assert walk_object(empty, {"items": items}) == {}


@pytest.mark.parametrize("text", ['{"a": 1', '{"a" 1}', '{"items": [1 2]}', '{"a": 1} x', '{1: 2}', '{"items": [1,]}'])
def test_broken_json_is_an_error_with_its_position(text):
    with pytest.raises(JsonStreamError, match="at character"):
        cursor = Cursor(text)
        walk_object(cursor, {"items": lambda c: [c.value() for _ in array_items(c)]})
        cursor.end()


def test_a_resource_after_its_spans_still_names_them():
    span = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "x", "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000100000000"}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}],
                                          "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}},
                                                                      {"key": "process.pid", "value": {"intValue": "4242"}}]}}]})
    (record,) = otlp.decode_payload(body.encode(), "application/json")
    assert record.pid == 4242 and record.attributes["service.name"] == "shop"
