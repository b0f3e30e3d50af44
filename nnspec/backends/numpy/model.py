"""`NumpyModel`: a graph run step by step from its plan (`nnspec.plan`), in NumPy.

forward(x) runs the plan's steps in order, each node's forward from `NUMPY_OPS`, keeping each
step's cache for backward and dropping values after their last use (`Step.frees`);
backward(dout) runs the steps in reverse, summing the gradients of values read by several
steps, and leaves every parameter's gradient in `grads` (state-dict name -> array).

Weights start from `nnspec.backends.init.initial_weights(graph, seed)`: with the same seed
the torch model (`compile_torch` of a spec whose train section has that seed) and this one
start identical. Parameters and buffers have torch's state-dict names (the plan's `state`).

>>> import nnspec, numpy as np
>>> m = nnspec.compile(nnspec.loads("input 4\\nfc: linear(3)\\n"), backend="numpy", dtype="float64")
>>> out = m.forward(np.ones((2, 4)))
>>> dx = m.backward(np.ones_like(out))
>>> sorted(m.grads), m.grads["fc.bias"].tolist()
(['fc.bias', 'fc.weight'], [2.0, 2.0, 2.0])
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ...errors import Diagnostic, SpecError
from ...ir import Graph
from ...plan import plan as make_plan
from .. import init as nninit
from . import UNSUPPORTED, Context, Unsupported, pair_for

BACKEND_CODE = "NN040"


def _probe(node) -> None:
    """Raise Unsupported where this backend cannot run the node (checked at build time)."""
    if node.op in UNSUPPORTED:
        raise Unsupported(UNSUPPORTED[node.op])
    if pair_for(node.op) is None:
        raise Unsupported("the op is missing from the NumPy backend's table")


class NumpyModel:
    """forward / backward / parameters / grads / state_dict / train / eval over NumPy arrays."""

    def __init__(self, graph: Graph, dtype="float32", seed: int | None = None):
        self.graph = graph
        self.plan = make_plan(graph)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        diags = []
        for step in self.plan.steps:
            nd = step.node
            try:
                _probe(nd)
            except Unsupported as e:
                diags.append(Diagnostic(BACKEND_CODE, f"{nd.name}: the numpy backend cannot run "
                                                      f"`{nd.op}`: {e}", nd.span, chain=nd.chain,
                                        help="change the layer, or use the torch backend"))
        if diags:
            raise SpecError(diags, {graph.file: graph.source})
        train_seed = graph.train.seed if graph.train is not None else None
        self.seed = seed if seed is not None else (train_seed if train_seed is not None else 0)
        drawn = nninit.initial_weights(graph, self.seed)
        self._state: dict[str, np.ndarray] = {}
        self.param_names: list[str] = []
        for key, t in self.plan.state.items():
            if t.role == "param":
                self._state[key] = drawn[key].astype(self.dtype)
                self.param_names.append(key)
            elif t.role == "counter":
                self._state[key] = np.zeros((), np.int64)
            else:  # running mean 0, running variance 1 (as torch resets them)
                fill = 1.0 if key.endswith("running_var") else 0.0
                self._state[key] = np.full(t.shape, fill, self.dtype)
        # each node's tensors under their local names: views of the same arrays
        self._local = {}
        for step in self.plan.steps:
            prefix = step.node.name + "."
            self._local[step.output] = {k[len(prefix):]: v for k, v in self._state.items()
                                        if k.startswith(prefix) and "." not in k[len(prefix):]}
        self.training = True
        self.always_eval: set[str] = set()  # layer names run in evaluation mode (frozen norms)
        self.step = 0          # the global training step: keys the dropout streams
        self.grads: dict[str, np.ndarray] = {}
        self._caches: dict[int, object] = {}

    # ---- modes
    def train(self, mode: bool = True) -> "NumpyModel":
        self.training = mode
        return self

    def eval(self) -> "NumpyModel":
        return self.train(False)

    # ---- running
    def forward(self, x: np.ndarray, grad: bool = True, input_grad: bool = True,
                observe=None) -> np.ndarray:
        """x (N, *input shape) -> the network's output (N, *output shape). With `grad=False`
        nothing is kept for backward (evaluation without the caches' memory); with
        `input_grad=False` backward skips the gradient of x (training: the data needs none).
        `observe(node, inputs, output)`, if given, sees every step's values as they are made
        (`nnspec histograms`)."""
        x = np.asarray(x, self.dtype)
        mode = "train" if self.training else "eval"
        values = {0: x}
        self._caches = {}
        for step in self.plan.steps:
            nd = step.node
            forward, _ = pair_for(nd.op)
            ins = [values[i] for i in step.inputs]
            arg = tuple(ins) if nd.opdef.n_inputs == 0 else ins[0]
            ctx = Context(nd.name, self.seed, self.step, input_grad or 0 not in step.inputs)
            m = "eval" if nd.name in self.always_eval else mode
            out, cache = forward(arg, self._local[step.output], nd.attrs, m, ctx)
            if observe is not None:
                observe(nd, ins, out)
            if grad:
                self._caches[step.output] = cache
            values[step.output] = out
            for v in step.frees:
                if v != self.graph.output:
                    values.pop(v, None)
        return values[self.graph.output]

    __call__ = forward

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """The gradient of the last forward's output -> the gradient of its input; parameter
        gradients land in `grads` (state-dict names)."""
        if not self._caches:
            raise RuntimeError("backward needs a forward first (and runs once per forward)")
        dvals = {self.graph.output: np.asarray(dout, self.dtype)}
        grads = {}
        for step in reversed(self.plan.steps):
            nd = step.node
            d = dvals.pop(step.output, None)
            if d is None:  # nothing downstream reached the output
                continue
            _, backward = pair_for(nd.op)
            dx, g = backward(d, self._caches.pop(step.output))
            for k, v in g.items():
                grads[f"{nd.name}.{k}"] = v
            dxs = dx if nd.opdef.n_inputs == 0 else (dx,)
            for i, di in zip(step.inputs, dxs):
                if di is None:  # the network's input, its gradient not asked for
                    continue
                dvals[i] = di if i not in dvals else dvals[i] + di
        self.grads = grads
        return dvals.get(0, np.zeros(()))

    # ---- state
    def parameters(self) -> dict[str, np.ndarray]:
        """Trainable parameters by state-dict name (the live arrays: update them in place)."""
        return {k: self._state[k] for k in self.param_names}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by torch's state-dict names (copies)."""
        return {k: v.copy() for k, v in self._state.items()}

    def load_state_dict(self, arrays: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays in by name (in place: views stay valid); shapes must match; with
        `strict`, every key must be present and none unknown."""
        if strict:
            missing, unexpected = set(self._state) - set(arrays), set(arrays) - set(self._state)
            if missing or unexpected:
                raise KeyError(f"state dict mismatch: missing {sorted(missing)}, "
                               f"unexpected {sorted(unexpected)}")
        for k, v in arrays.items():
            if k not in self._state:
                continue
            v = np.asarray(v)
            if v.shape != self._state[k].shape:
                raise ValueError(f"{k}: expected shape {self._state[k].shape}, got {v.shape}")
            self._state[k][...] = v
