"""A small writer of TFLite (LiteRT) flatbuffers: tensors, constant buffers, builtin operators.

Only what hwnas's networks need: float32 tensors, int32 constants, and the
builtin operators below with their options tables. The table layouts (field
slots, union indices, enum values) are those of TensorFlow Lite's public
``schema.fbs`` (schema version 3, file identifier ``TFL3``); the ``tflite``
package's generated reader classes read back what this writes (see
``tests/space/test_tflite_export.py``).

    >>> w = TfliteWriter()
    >>> x = w.tensor([1, 4, 4, 8], "input")
    >>> y = w.tensor([1, 4, 4, 8], "output")
    >>> w.operator(Op.HARD_SWISH, [x], [y])
    >>> data = w.serialize([x], [y], "hswish")
    >>> data[4:8]
    b'TFL3'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import flatbuffers
import numpy as np

FILE_ID = b"TFL3"  # schema.fbs: file_identifier "TFL3"
SCHEMA_VERSION = 3  # schema.fbs: Model.version, "version 3" of the format
FLOAT32 = 0  # TensorType.FLOAT32
INT32 = 2  # TensorType.INT32
_DTYPES = {np.dtype(np.float32): FLOAT32, np.dtype(np.int32): INT32}
BUFFER_ALIGN = 16  # schema.fbs: Buffer.data is (force_align: 16)
PLACEHOLDER_FOR_GREATER_OP_CODES = 127  # deprecated_builtin_code for codes above 126


class Op:
    """BuiltinOperator codes (schema.fbs)."""

    ADD = 0
    CONV_2D = 3
    DEPTHWISE_CONV_2D = 4
    FULLY_CONNECTED = 9
    LOGISTIC = 14
    MUL = 18
    RELU = 19
    RELU6 = 21
    RESHAPE = 22
    PAD = 34
    MEAN = 40
    SHAPE = 77
    HARD_SWISH = 117


class Act:
    """ActivationFunctionType: an activation fused into the op before it."""

    NONE = 0
    RELU = 1
    RELU6 = 3


class Padding:
    SAME = 0
    VALID = 1


# BuiltinOptions union members (schema.fbs ``union BuiltinOptions``).
CONV_2D_OPTIONS = 1
DEPTHWISE_CONV_2D_OPTIONS = 2
FULLY_CONNECTED_OPTIONS = 8
ADD_OPTIONS = 11
MUL_OPTIONS = 21
PAD_OPTIONS = 22
REDUCER_OPTIONS = 27
SHAPE_OPTIONS = 55

# Options tables: union member -> number of fields; fields are (slot, kind, value, default).
_OPTION_FIELDS = {
    CONV_2D_OPTIONS: 7,
    DEPTHWISE_CONV_2D_OPTIONS: 7,
    FULLY_CONNECTED_OPTIONS: 5,
    ADD_OPTIONS: 2,
    MUL_OPTIONS: 1,
    PAD_OPTIONS: 0,
    REDUCER_OPTIONS: 1,
    SHAPE_OPTIONS: 1,
}


def conv_options(stride: int, act: int, padding: int) -> tuple[int, list]:
    # Conv2DOptions: padding 0, stride_w 1, stride_h 2, fused_activation_function 3
    fields = [(0, "i8", padding, 0), (1, "i32", stride, 0), (2, "i32", stride, 0), (3, "i8", act, 0)]
    return CONV_2D_OPTIONS, fields


def depthwise_options(stride: int, act: int, padding: int) -> tuple[int, list]:
    # DepthwiseConv2DOptions: padding 0, stride_w 1, stride_h 2, depth_multiplier 3, activation 4
    fields = [
        (0, "i8", padding, 0),
        (1, "i32", stride, 0),
        (2, "i32", stride, 0),
        (3, "i32", 1, 0),
        (4, "i8", act, 0),
    ]
    return DEPTHWISE_CONV_2D_OPTIONS, fields


def fully_connected_options(act: int = Act.NONE) -> tuple[int, list]:
    # FullyConnectedOptions: fused_activation_function 0 (weights_format 1 DEFAULT, keep_num_dims 2 false)
    return FULLY_CONNECTED_OPTIONS, [(0, "i8", act, 0)]


def add_options(act: int = Act.NONE) -> tuple[int, list]:
    return ADD_OPTIONS, [(0, "i8", act, 0)]  # AddOptions: fused_activation_function 0


def mul_options(act: int = Act.NONE) -> tuple[int, list]:
    return MUL_OPTIONS, [(0, "i8", act, 0)]  # MulOptions: fused_activation_function 0


def pad_options() -> tuple[int, list]:
    return PAD_OPTIONS, []


def reducer_options(keep_dims: bool) -> tuple[int, list]:
    return REDUCER_OPTIONS, [(0, "bool", keep_dims, False)]  # ReducerOptions: keep_dims 0


def shape_options(out_type: int = INT32) -> tuple[int, list]:
    return SHAPE_OPTIONS, [(0, "i8", out_type, 0)]  # ShapeOptions: out_type 0


_PREPEND = {
    "i8": "PrependInt8Slot",
    "i32": "PrependInt32Slot",
    "u8": "PrependUint8Slot",
    "u32": "PrependUint32Slot",
    "bool": "PrependBoolSlot",
}


@dataclass(slots=True)
class _Tensor:
    shape: tuple[int, ...]
    name: str
    dtype: int
    buffer: int


@dataclass(slots=True)
class _Operator:
    opcode: int
    inputs: list[int]
    outputs: list[int]
    options: tuple[int, list] | None = None


@dataclass
class TfliteWriter:
    """Tensors, buffers and operators of one subgraph, serialized by :meth:`serialize`."""

    tensors: list[_Tensor] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])  # buffer 0: the empty sentinel
    opcodes: dict[int, int] = field(default_factory=dict)  # builtin code -> operator_codes index
    operators: list[_Operator] = field(default_factory=list)

    def tensor(self, shape: Sequence[int], name: str, dtype: int = FLOAT32) -> int:
        """A new activation tensor (no data); returns its index."""
        self.tensors.append(_Tensor(tuple(int(d) for d in shape), name, dtype, 0))
        return len(self.tensors) - 1

    def const(self, array: np.ndarray, name: str) -> int:
        """A constant tensor holding ``array`` (float32 or int32, little-endian); returns its index."""
        array = np.asarray(array)
        dtype = _DTYPES.get(array.dtype)
        if dtype is None:
            raise TypeError(f"constant {name!r}: dtype must be float32 or int32, got {array.dtype}")
        self.buffers.append(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
        self.tensors.append(_Tensor(tuple(array.shape), name, dtype, len(self.buffers) - 1))
        return len(self.tensors) - 1

    def shape(self, index: int) -> tuple[int, ...]:
        return self.tensors[index].shape

    def operator(
        self,
        code: int,
        inputs: Sequence[int],
        outputs: Sequence[int],
        options: tuple[int, list] | None = None,
    ) -> None:
        """Append builtin operator ``code`` (an :class:`Op`) with an options table from ``*_options``."""
        index = self.opcodes.setdefault(code, len(self.opcodes))
        self.operators.append(_Operator(index, list(inputs), list(outputs), options))

    def serialize(self, inputs: Sequence[int], outputs: Sequence[int], name: str,
                  description: str = "hwnas") -> bytes:
        """The model as bytes: one subgraph, ``inputs``/``outputs`` tensor indices."""
        size = sum(len(b) + BUFFER_ALIGN for b in self.buffers) + 256 * (len(self.tensors) + 8)
        b = flatbuffers.Builder(size)
        # Buffer.data first: large, 16-byte aligned vectors.
        data = [self._bytes(b, raw) if raw else None for raw in self.buffers]
        buffers = []
        for d in data:
            b.StartObject(3)  # Buffer: data 0, offset 1, size 2
            if d is not None:
                b.PrependUOffsetTRelativeSlot(0, d, 0)
            buffers.append(b.EndObject())
        tensors = []
        for t in self.tensors:
            shape = b.CreateNumpyVector(np.array(t.shape, dtype=np.int32))
            tname = b.CreateString(t.name)
            b.StartObject(10)  # Tensor: shape 0, type 1, buffer 2, name 3
            b.PrependUOffsetTRelativeSlot(0, shape, 0)
            b.PrependInt8Slot(1, t.dtype, 0)
            b.PrependUint32Slot(2, t.buffer, 0)
            b.PrependUOffsetTRelativeSlot(3, tname, 0)
            tensors.append(b.EndObject())
        ops = []
        for op in self.operators:
            ins = b.CreateNumpyVector(np.array(op.inputs, dtype=np.int32))
            outs = b.CreateNumpyVector(np.array(op.outputs, dtype=np.int32))
            opts = self._options(b, op.options) if op.options is not None else None
            b.StartObject(14)  # Operator: opcode_index 0, inputs 1, outputs 2, options type 3 / value 4
            b.PrependUint32Slot(0, op.opcode, 0)
            b.PrependUOffsetTRelativeSlot(1, ins, 0)
            b.PrependUOffsetTRelativeSlot(2, outs, 0)
            if opts is not None:
                b.PrependUint8Slot(3, op.options[0], 0)
                b.PrependUOffsetTRelativeSlot(4, opts, 0)
            ops.append(b.EndObject())
        sub_in = b.CreateNumpyVector(np.array(inputs, dtype=np.int32))
        sub_out = b.CreateNumpyVector(np.array(outputs, dtype=np.int32))
        tvec, ovec = self._table_vector(b, tensors), self._table_vector(b, ops)
        sname = b.CreateString(name)
        b.StartObject(6)  # SubGraph: tensors 0, inputs 1, outputs 2, operators 3, name 4
        b.PrependUOffsetTRelativeSlot(0, tvec, 0)
        b.PrependUOffsetTRelativeSlot(1, sub_in, 0)
        b.PrependUOffsetTRelativeSlot(2, sub_out, 0)
        b.PrependUOffsetTRelativeSlot(3, ovec, 0)
        b.PrependUOffsetTRelativeSlot(4, sname, 0)
        subgraph = b.EndObject()
        codes = []
        for code in sorted(self.opcodes, key=self.opcodes.get):
            b.StartObject(4)  # OperatorCode: deprecated_builtin_code 0, version 2, builtin_code 3
            b.PrependInt8Slot(0, min(code, PLACEHOLDER_FOR_GREATER_OP_CODES), 0)
            b.PrependInt32Slot(2, 1, 1)
            b.PrependInt32Slot(3, code, 0)
            codes.append(b.EndObject())
        cvec = self._table_vector(b, codes)
        svec = self._table_vector(b, [subgraph])
        bvec = self._table_vector(b, buffers)
        desc = b.CreateString(description)
        b.StartObject(8)  # Model: version 0, operator_codes 1, subgraphs 2, description 3, buffers 4
        b.PrependUint32Slot(0, SCHEMA_VERSION, 0)
        b.PrependUOffsetTRelativeSlot(1, cvec, 0)
        b.PrependUOffsetTRelativeSlot(2, svec, 0)
        b.PrependUOffsetTRelativeSlot(3, desc, 0)
        b.PrependUOffsetTRelativeSlot(4, bvec, 0)
        b.Finish(b.EndObject(), file_identifier=FILE_ID)
        return bytes(b.Output())

    @staticmethod
    def _bytes(b: flatbuffers.Builder, raw: bytes) -> int:
        """A ``[ubyte]`` vector whose data starts on a 16-byte boundary."""
        b.StartVector(1, len(raw), BUFFER_ALIGN)
        b.head -= len(raw)
        b.Bytes[b.head : b.head + len(raw)] = raw
        return b.EndVector()

    @staticmethod
    def _table_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    @staticmethod
    def _options(b: flatbuffers.Builder, options: tuple[int, list]) -> int:
        kind, fields = options
        b.StartObject(_OPTION_FIELDS[kind])
        for slot, typ, value, default in fields:
            getattr(b, _PREPEND[typ])(slot, value, default)
        return b.EndObject()
