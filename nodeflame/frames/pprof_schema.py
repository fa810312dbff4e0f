"""pprof's ``profile.proto`` (package ``perftools.profiles``) as protobuf message classes.

There is no generated ``profile_pb2`` module: the schema is written down here
as a ``FileDescriptorProto`` built in Python, field for field as in
google/pprof ``proto/profile.proto``, and the message classes are made from it
on first use, in a private descriptor pool (so another copy of profile.proto
registered by some other library cannot clash with ours).

protobuf is an optional dependency (the ``pprof`` extra).  It is imported only
when a pprof file is read or written, through :func:`messages`; without it that
raises a NodeflameError saying how to install it.  The import goes through
``importlib`` with the module name in a variable: ``frames`` must not need any
third-party package but numpy and pandas to import, and this keeps protobuf
out of ``import nodeflame`` entirely.
"""
from __future__ import annotations

import importlib

from .errors import NodeflameError

PACKAGE = "perftools.profiles"
INSTALL_HINT = "pip install 'nodeflame[pprof]'"

# (message, [(field name, number, type, repeated)]) exactly as in profile.proto
# (proto3, so repeated scalars are packed, as pprof writes them).
# type: a scalar name or a message name of this package.
SCHEMA = (
    ("Profile", (
        ("sample_type", 1, "ValueType", True),
        ("sample", 2, "Sample", True),
        ("mapping", 3, "Mapping", True),
        ("location", 4, "Location", True),
        ("function", 5, "Function", True),
        ("string_table", 6, "string", True),
        ("drop_frames", 7, "int64", False),
        ("keep_frames", 8, "int64", False),
        ("time_nanos", 9, "int64", False),
        ("duration_nanos", 10, "int64", False),
        ("period_type", 11, "ValueType", False),
        ("period", 12, "int64", False),
        ("comment", 13, "int64", True),
        ("default_sample_type", 14, "int64", False),
        ("doc_url", 15, "int64", False),
    )),
    ("ValueType", (
        ("type", 1, "int64", False),
        ("unit", 2, "int64", False),
    )),
    ("Sample", (
        ("location_id", 1, "uint64", True),
        ("value", 2, "int64", True),
        ("label", 3, "Label", True),
    )),
    ("Label", (
        ("key", 1, "int64", False),
        ("str", 2, "int64", False),
        ("num", 3, "int64", False),
        ("num_unit", 4, "int64", False),
    )),
    ("Mapping", (
        ("id", 1, "uint64", False),
        ("memory_start", 2, "uint64", False),
        ("memory_limit", 3, "uint64", False),
        ("file_offset", 4, "uint64", False),
        ("filename", 5, "int64", False),
        ("build_id", 6, "int64", False),
        ("has_functions", 7, "bool", False),
        ("has_filenames", 8, "bool", False),
        ("has_line_numbers", 9, "bool", False),
        ("has_inline_frames", 10, "bool", False),
    )),
    ("Location", (
        ("id", 1, "uint64", False),
        ("mapping_id", 2, "uint64", False),
        ("address", 3, "uint64", False),
        ("line", 4, "Line", True),
        ("is_folded", 5, "bool", False),
    )),
    ("Line", (
        ("function_id", 1, "uint64", False),
        ("line", 2, "int64", False),
        ("column", 3, "int64", False),
    )),
    ("Function", (
        ("id", 1, "uint64", False),
        ("name", 2, "int64", False),
        ("system_name", 3, "int64", False),
        ("filename", 4, "int64", False),
        ("start_line", 5, "int64", False),
    )),
)

_MESSAGES = None


class Messages:
    """The message classes (``Profile``, ``Sample``, ...) and protobuf's DecodeError."""

    def __init__(self, classes: dict, decode_error: type):
        self.__dict__.update(classes)
        self.DecodeError = decode_error


def _protobuf(sub: str):
    try:
        return importlib.import_module("google.protobuf." + sub)
    except ImportError as e:
        raise NodeflameError(f"reading or writing pprof needs the protobuf package ({e}): "
                             f"{INSTALL_HINT}") from e


def file_descriptor_proto(descriptor_pb2):
    """profile.proto as a ``FileDescriptorProto``."""
    F = descriptor_pb2.FieldDescriptorProto
    scalar = {"int64": F.TYPE_INT64, "uint64": F.TYPE_UINT64, "string": F.TYPE_STRING, "bool": F.TYPE_BOOL}
    fdp = descriptor_pb2.FileDescriptorProto(name="nodeflame/perftools/profiles/profile.proto",
                                             package=PACKAGE, syntax="proto3")
    for msg_name, fields in SCHEMA:
        m = fdp.message_type.add(name=msg_name)
        for name, number, typ, repeated in fields:
            f = m.field.add(name=name, number=number,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if typ in scalar:
                f.type = scalar[typ]
            else:
                f.type = F.TYPE_MESSAGE
                f.type_name = f".{PACKAGE}.{typ}"
    return fdp


def messages() -> Messages:
    """The profile.proto message classes, built on first call (needs protobuf)."""
    global _MESSAGES
    if _MESSAGES is None:
        descriptor_pb2 = _protobuf("descriptor_pb2")
        descriptor_pool = _protobuf("descriptor_pool")
        message_factory = _protobuf("message_factory")
        message = _protobuf("message")
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file_descriptor_proto(descriptor_pb2))
        get_class = getattr(message_factory, "GetMessageClass", None)
        if get_class is None:  # protobuf < 4.22
            get_class = message_factory.MessageFactory(pool).GetPrototype
        classes = {name: get_class(pool.FindMessageTypeByName(f"{PACKAGE}.{name}")) for name, _ in SCHEMA}
        _MESSAGES = Messages(classes, message.DecodeError)
    return _MESSAGES
