"""pprof's ``profile.proto`` messages (``perftools.profiles``), as protobuf runtime classes.

The descriptor is built here from the field table below, a transcription of the upstream spec
vendored at ``vendor/pprof/profile.proto`` (Apache-2.0, with its LICENSE); the protobuf runtime
makes the classes from it, so no ``protoc`` is needed. ``tests/test_formats_pprof.py`` checks the
table against the vendored file, field by field.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "perftools.profiles"
_F = descriptor_pb2.FieldDescriptorProto
_SCALAR = {"int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING}

# message -> (field, number, type, repeated); a type not in _SCALAR is a message of this file
FIELDS: dict[str, list[tuple[str, int, str, bool]]] = {
    "Profile": [
        ("sample_type", 1, "ValueType", True), ("sample", 2, "Sample", True), ("mapping", 3, "Mapping", True),
        ("location", 4, "Location", True), ("function", 5, "Function", True), ("string_table", 6, "string", True),
        ("drop_frames", 7, "int64", False), ("keep_frames", 8, "int64", False), ("time_nanos", 9, "int64", False),
        ("duration_nanos", 10, "int64", False), ("period_type", 11, "ValueType", False), ("period", 12, "int64", False),
        ("comment", 13, "int64", True), ("default_sample_type", 14, "int64", False), ("doc_url", 15, "int64", False),
    ],
    "ValueType": [("type", 1, "int64", False), ("unit", 2, "int64", False)],
    "Sample": [("location_id", 1, "uint64", True), ("value", 2, "int64", True), ("label", 3, "Label", True)],
    "Label": [("key", 1, "int64", False), ("str", 2, "int64", False), ("num", 3, "int64", False), ("num_unit", 4, "int64", False)],
    "Mapping": [
        ("id", 1, "uint64", False), ("memory_start", 2, "uint64", False), ("memory_limit", 3, "uint64", False),
        ("file_offset", 4, "uint64", False), ("filename", 5, "int64", False), ("build_id", 6, "int64", False),
        ("has_functions", 7, "bool", False), ("has_filenames", 8, "bool", False), ("has_line_numbers", 9, "bool", False),
        ("has_inline_frames", 10, "bool", False),
    ],
    "Location": [
        ("id", 1, "uint64", False), ("mapping_id", 2, "uint64", False), ("address", 3, "uint64", False),
        ("line", 4, "Line", True), ("is_folded", 5, "bool", False),
    ],
    "Line": [("function_id", 1, "uint64", False), ("line", 2, "int64", False), ("column", 3, "int64", False)],
    "Function": [
        ("id", 1, "uint64", False), ("name", 2, "int64", False), ("system_name", 3, "int64", False),
        ("filename", 4, "int64", False), ("start_line", 5, "int64", False),
    ],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="profviz/pprof/profile.proto", package=PACKAGE, syntax="proto3")
    for message_name, fields in FIELDS.items():
        message = file.message_type.add(name=message_name)
        for name, number, kind, repeated in fields:
            field = message.field.add(name=name, number=number, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if kind in _SCALAR:
                field.type = _SCALAR[kind]
            else:
                field.type, field.type_name = _F.TYPE_MESSAGE, f".{PACKAGE}.{kind}"
    return file


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file_descriptor())
Profile = message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{PACKAGE}.Profile"))
Line = message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{PACKAGE}.Line"))
Label = message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{PACKAGE}.Label"))
ValueType = message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{PACKAGE}.ValueType"))
