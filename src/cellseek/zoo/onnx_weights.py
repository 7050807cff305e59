"""Read the weights (initializers) and node wiring of an ONNX file without the ``onnx`` package.

An ONNX file is one protocol-buffer message (``ModelProto``). cellseek only needs the float
tensors stored in it and, for each weight that is not named after its module, the name of the
node that uses it (PyTorch exports a ``Linear`` weight as an anonymous ``onnx::MatMul_123``
initializer consumed by the node ``/backbone/encoder/layer.1/mlp/fc1/MatMul``). Both are read
here with a small protobuf wire-format decoder: the fields used are listed below, everything
else is skipped. The file is memory-mapped; tensors are copied out once.

Fields read (from onnx.proto3): ``ModelProto.graph`` = 7; ``GraphProto.node`` = 1,
``GraphProto.initializer`` = 5; ``NodeProto.input`` = 1, ``.name`` = 3, ``.op_type`` = 4;
``TensorProto.dims`` = 1, ``.data_type`` = 2, ``.float_data`` = 4, ``.name`` = 8,
``.raw_data`` = 9, ``.data_location`` = 14.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: ONNX TensorProto data types cellseek reads, as NumPy little-endian dtypes.
_DTYPES = {1: np.dtype("<f4"), 10: np.dtype("<f2"), 11: np.dtype("<f8"), 6: np.dtype("<i4"),
           7: np.dtype("<i8")}


class OnnxFormatError(ValueError):
    """The bytes are not an ONNX model cellseek can read (damaged, truncated or foreign)."""


@dataclass(frozen=True)
class OnnxNode:
    """One graph node: its name, operator and input names."""

    name: str
    op_type: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class OnnxGraph:
    """The initializers (name -> array) and the nodes of an ONNX model."""

    initializers: dict[str, np.ndarray]
    nodes: tuple[OnnxNode, ...]

    def consumers(self, name: str) -> list[OnnxNode]:
        """The nodes that take ``name`` as an input."""
        return [n for n in self.nodes if name in n.inputs]


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise OnnxFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint too long")


def _fields(buf, start: int, end: int):
    """Yield ``(field number, wire type, value)``; value is an int or a ``(start, end)`` span."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise OnnxFormatError("a field runs past the end of its message")
            value = (pos, pos + length)
            pos += length
        elif wire == 1:
            value, pos = (pos, pos + 8), pos + 8
        elif wire == 5:
            value, pos = (pos, pos + 4), pos + 4
        else:
            raise OnnxFormatError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise OnnxFormatError("truncated field")
        yield number, wire, value


def _text(buf, span) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", errors="replace")


def _packed_ints(buf, span) -> list[int]:
    out, pos = [], span[0]
    while pos < span[1]:
        value, pos = _varint(buf, pos, span[1])
        out.append(value)
    return out


def _tensor(buf, start: int, end: int) -> tuple[str, np.ndarray]:
    name, dims, dtype_code, raw, floats, external = "", [], 0, None, None, False
    for number, wire, value in _fields(buf, start, end):
        if number == 1:
            dims += _packed_ints(buf, value) if wire == 2 else [value]
        elif number == 2:
            dtype_code = value
        elif number == 4 and wire == 2:
            floats = value
        elif number == 8:
            name = _text(buf, value)
        elif number == 9:
            raw = value
        elif number == 14:
            external = value == 1
    if external:
        raise OnnxFormatError(f"tensor {name!r} is stored outside the file (external data)")
    dtype = _DTYPES.get(dtype_code)
    if dtype is None:
        raise OnnxFormatError(f"tensor {name!r} has an unsupported data type {dtype_code}")
    span = raw if raw is not None else floats
    count = int(np.prod(dims)) if dims else 1
    if span is None:
        data = np.zeros(count, dtype)
    else:
        if raw is None and dtype != np.dtype("<f4"):
            raise OnnxFormatError(f"tensor {name!r}: typed data of type {dtype_code} not read")
        nbytes = span[1] - span[0]
        if nbytes != count * dtype.itemsize:
            raise OnnxFormatError(f"tensor {name!r}: {nbytes} bytes for shape {tuple(dims)}")
        data = np.frombuffer(buf, dtype=dtype, count=count, offset=span[0]).copy()
    return name, data.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _node(buf, start: int, end: int) -> OnnxNode:
    name, op, inputs = "", "", []
    for number, _, value in _fields(buf, start, end):
        if number == 1:
            inputs.append(_text(buf, value))
        elif number == 3:
            name = _text(buf, value)
        elif number == 4:
            op = _text(buf, value)
    return OnnxNode(name, op, tuple(inputs))


def read_onnx(path: str | Path) -> OnnxGraph:
    """The initializers and nodes of the ONNX model in ``path``.

    Raises
    ------
    OnnxFormatError
        The file is not a complete ONNX model of the kind read here.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise OnnxFormatError("the file is empty")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        graph = None
        for number, wire, value in _fields(buf, 0, len(buf)):
            if number == 7 and wire == 2:
                graph = value
        if graph is None:
            raise OnnxFormatError("no graph in the file")
        initializers: dict[str, np.ndarray] = {}
        nodes: list[OnnxNode] = []
        for number, wire, value in _fields(buf, *graph):
            if wire != 2:
                continue
            if number == 1:
                nodes.append(_node(buf, *value))
            elif number == 5:
                name, array = _tensor(buf, *value)
                initializers[name] = array
    if not initializers:
        raise OnnxFormatError("the graph holds no weights")
    return OnnxGraph(initializers, tuple(nodes))
