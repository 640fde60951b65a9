"""Read an ONNX file's metadata and graph inputs/outputs without loading it.

sherpa-onnx ends the whole process when a metadata key it needs is missing, so a model
directory is checked before it is loaded. Parsing a 900 MB model with the `onnx`
package would hold it all in memory; this walks the protobuf's top-level fields and
seeks past the node and weight blobs, reading only what validation needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

# onnx.proto field numbers
MODEL_GRAPH, MODEL_METADATA = 7, 14
GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_INITIALIZER = 11, 12, 5
ELEM_TYPES = {1: "float", 6: "int32", 7: "int64", 10: "float16", 11: "double", 9: "bool"}


class OnnxReadError(ValueError):
    pass


@dataclass
class OnnxInfo:
    metadata: dict[str, str] = field(default_factory=dict)
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (name, element type)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    initializers: set[str] = field(default_factory=set)

    @property
    def graph_inputs(self) -> list[tuple[str, str]]:
        """Inputs a caller feeds (older exports also list weights as inputs)."""
        return [x for x in self.inputs if x[0] not in self.initializers]


def _varint(f: BinaryIO) -> int | None:
    shift = result = 0
    while True:
        b = f.read(1)
        if not b:
            if shift == 0:
                return None
            raise OnnxReadError("truncated varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise OnnxReadError("bad varint")


def _fields(f: BinaryIO, end: int):
    """(field number, wire type, length or value, payload offset) up to `end`."""
    while f.tell() < end:
        key = _varint(f)
        if key is None:
            return
        num, wt = key >> 3, key & 7
        if wt == 0:
            yield num, wt, _varint(f), None
        elif wt == 1:
            f.seek(8, 1)
        elif wt == 5:
            f.seek(4, 1)
        elif wt == 2:
            n = _varint(f)
            if n is None:
                raise OnnxReadError("truncated field")
            start = f.tell()
            yield num, wt, n, start
            f.seek(start + n)
        else:
            raise OnnxReadError(f"unsupported wire type {wt}")


def _message(data: bytes) -> dict[int, list]:
    """Decode a small message into {field: [values]} (bytes for length-delimited)."""
    import io

    out: dict[int, list] = {}
    f = io.BytesIO(data)
    for num, wt, n, start in _fields(f, len(data)):
        if wt == 2:
            f.seek(start)
            out.setdefault(num, []).append(f.read(n))
        else:
            out.setdefault(num, []).append(n)
    return out


def _value_info(data: bytes) -> tuple[str, str]:
    vi = _message(data)
    name = vi.get(1, [b""])[0].decode("utf-8", "replace")
    elem = "?"
    if 2 in vi:  # TypeProto → tensor_type (1) → elem_type (1)
        tp = _message(vi[2][0])
        if 1 in tp:
            tt = _message(tp[1][0])
            elem = ELEM_TYPES.get(tt.get(1, [0])[0], str(tt.get(1, [0])[0]))
    return name, elem


def read(path: Path) -> OnnxInfo:
    info = OnnxInfo()
    size = path.stat().st_size
    with open(path, "rb") as f:
        for num, wt, n, start in _fields(f, size):
            if wt != 2:
                continue
            if num == MODEL_METADATA:
                f.seek(start)
                kv = _message(f.read(n))
                key = kv.get(1, [b""])[0].decode("utf-8", "replace")
                info.metadata[key] = kv.get(2, [b""])[0].decode("utf-8", "replace")
            elif num == MODEL_GRAPH:
                f.seek(start)
                for gnum, gwt, gn, gstart in _fields(f, start + n):
                    if gwt != 2 or gnum not in (GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_INITIALIZER):
                        continue
                    f.seek(gstart)
                    if gnum == GRAPH_INITIALIZER:
                        # TensorProto.name is field 8; read the head only (weights follow)
                        head = _initializer_name(f, gstart + gn)
                        if head:
                            info.initializers.add(head)
                    else:
                        vi = _value_info(f.read(gn))
                        (info.inputs if gnum == GRAPH_INPUT else info.outputs).append(vi)
            f.seek(start + n)
    if not info.inputs and not info.metadata:
        raise OnnxReadError("no graph inputs or metadata found")
    return info


def _initializer_name(f: BinaryIO, end: int) -> str:
    for num, wt, n, start in _fields(f, end):
        if num == 8 and wt == 2:
            f.seek(start)
            return f.read(n).decode("utf-8", "replace")
    return ""
