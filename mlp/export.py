"""A trained ``MLP`` as a standard ONNX graph, to run where this library is not installed
(onnxruntime, a browser, a phone): ``to_onnx(model, "model.onnx")``.

The graph computes what inference computes here, one ``Gemm`` per layer followed by its
activation (``Relu``, ``Sigmoid``, ``Tanh``; none for ``identity``), dropout left out as at
inference, then what ``predict_proba`` adds:

- ``cross_entropy`` over two or more outputs: ``Softmax(axis=-1)``, the class probabilities;
- ``cross_entropy`` over one output (two classes): its sigmoid ``p``, as two columns
  ``[1 - p, p]``;
- ``squared_error``: the outputs as they are, an (n, outputs) table (as ``predict`` gives);
- a model built with ``output_activation``: that activation's outputs, nothing added.

Input ``"input"``, of shape ``[batch, sizes[0]]`` with ``batch`` symbolic, in the model's
dtype (float32, or float64 for a float64 model): floats already scaled as the model saw
them, so images scaled to [0, 1]. ``uint8_input=True`` takes uint8 pixels instead and
scales them by 1/255 in the graph, as the library does. Output ``"probabilities"`` for a
classifier (a column per class), ``"predictions"`` for a regression. The model's metadata
(``metadata_props``) holds its configuration, its task and, when given, the class names.
Needs onnx (``pip install 'mlp-backprop[onnx]'``); ``import mlp`` alone never imports it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.errors import DISTRIBUTION

from . import checks
from .errors import InvalidArgument
from .extras import require
from .files import atomic_write
from .losses import SigmoidCrossEntropy, SoftmaxCrossEntropy
from .version import VERSION

if TYPE_CHECKING:  # the model calls this module to export itself; never the reverse
    from .model import MLP

#: Opset 17 (onnx 1.12): every op used here has its current form there, and onnxruntime
#: has run it since 1.12, so files load in runtimes years old as well as in today's.
OPSET = 17
#: IR version 8, the one that came with opset 17: onnx writes its newest by default (14 with
#: onnx 1.23), which onnxruntime 1.32 loads but older releases refuse.
IR_VERSION = 8
INPUT = "input"
CLASSIFIER_OUTPUT = "probabilities"
REGRESSION_OUTPUT = "predictions"
#: The symbolic first dimension: any number of rows per call.
BATCH = "batch"
#: One protobuf message holds at most 2 GiB, so a larger model cannot be one ONNX file.
MAX_BYTES = 2**31 - 1
#: The ONNX operator of each activation (``identity`` needs none).
ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def to_onnx(
    model: MLP,
    path: str | os.PathLike,
    classes: Any = None,
    *,
    uint8_input: bool = False,
) -> Path:
    """Write ``model`` to ``path`` as an ONNX graph (atomically) and return the path.

    ``classes``: a classifier's class names in label order, kept in the file's metadata.
    ``uint8_input``: the graph takes uint8 pixels and scales them by 1/255 itself (else it
    takes floats already in [0, 1], in the model's dtype). Raises ``InvalidArgument`` for
    a bad argument, ``CannotWrite`` where ``path`` cannot be written, ``MissingExtra``
    without onnx.
    """
    names = checks.class_names(classes, model.loss_function.classes)
    if not isinstance(uint8_input, bool):
        raise InvalidArgument(f"uint8_input must be True or False, got {uint8_input!r}")
    size = model.num_parameters * model.dtype.itemsize
    if size > MAX_BYTES:
        raise InvalidArgument(
            f"a model of {size} bytes of parameters is too large for one ONNX file "
            f"(protobuf holds at most {MAX_BYTES} bytes)"
        )
    onnx = require("onnx", "onnx", "ONNX export")
    graph_model = build_model(onnx, model, names, uint8_input)
    onnx.checker.check_model(graph_model, full_check=True)  # a failure here is a bug
    data = graph_model.SerializeToString()
    path = Path(path)
    atomic_write(path, lambda f: f.write(data))
    return path


def output_name(model: MLP) -> str:
    """What the graph's output is called: ``"probabilities"`` or ``"predictions"``."""
    return CLASSIFIER_OUTPUT if model.loss_function.classifies else REGRESSION_OUTPUT


def build_model(onnx: Any, model: MLP, classes: list[str] | None, uint8_input: bool) -> Any:
    """The ``onnx.ModelProto`` of ``model`` (unchecked, unwritten)."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    dtype = model.dtype
    elem_type = helper.np_dtype_to_tensor_dtype(dtype)
    nodes: list[Any] = []
    initializers: list[Any] = []

    def constant(name: str, value: Any) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    current = INPUT
    if uint8_input:  # as the library loads pixels: to the model's dtype, times 1/255
        nodes.append(helper.make_node("Cast", [INPUT], ["pixels"], to=elem_type))
        nodes.append(helper.make_node("Mul", ["pixels", constant("scale", 1.0 / 255.0)], ["x"]))
        current = "x"

    state = model.state_dict()
    for i, layer in enumerate(model.linears):  # Dropout layers: nothing at inference
        weight = constant(f"layer{i}.weight", state[f"{i}.weight"])  # (in, out): no transpose
        bias = constant(f"layer{i}.bias", state[f"{i}.bias"])
        nodes.append(helper.make_node("Gemm", [current, weight, bias], [f"layer{i}.linear"]))
        current = f"layer{i}.linear"
        if layer.activation != "identity":
            op = ACTIVATION_OPS[layer.activation]
            nodes.append(helper.make_node(op, [current], [f"layer{i}.{layer.activation}"]))
            current = f"layer{i}.{layer.activation}"

    columns = model.sizes[-1]
    loss = model.loss_function
    if model.output_activation is None and isinstance(loss, SoftmaxCrossEntropy):
        nodes.append(helper.make_node("Softmax", [current], ["softmax"], axis=-1))
    elif model.output_activation is None and isinstance(loss, SigmoidCrossEntropy):
        one = constant("one", 1.0)
        nodes.append(helper.make_node("Sigmoid", [current], ["p"]))
        nodes.append(helper.make_node("Sub", [one, "p"], ["one_minus_p"]))
        nodes.append(helper.make_node("Concat", ["one_minus_p", "p"], ["two_columns"], axis=1))
        columns = 2
    nodes[-1].output[0] = output_name(model)  # the last step writes the graph's output

    input_type = onnx.TensorProto.UINT8 if uint8_input else elem_type
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(INPUT, input_type, [BATCH, model.sizes[0]])],
        [helper.make_tensor_value_info(output_name(model), elem_type, [BATCH, columns])],
        initializers,
        doc_string=repr(model),
    )
    exported = helper.make_model(
        graph,
        producer_name=DISTRIBUTION,
        producer_version=VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        doc_string=_input_doc(uint8_input),
    )
    metadata = {
        "task": "classification" if loss.classifies else "regression",
        "config": json.dumps(model.config()),
        "input": _input_doc(uint8_input),
    }
    if classes is not None:
        metadata["classes"] = json.dumps(classes)
    helper.set_model_props(exported, metadata)
    return exported


def _input_doc(uint8_input: bool) -> str:
    if uint8_input:
        return "input: uint8 pixels, scaled by 1/255 in the graph"
    return "input: floats as the model was trained on (images scaled to [0, 1])"
