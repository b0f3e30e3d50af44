"""The NumPy side of training: the same interface as `torch_backend.TorchBackend`, run by
`nnspec.backends.numpy` (model, losses, optimizers), with no torch at all.

One step: forward in training mode (dropout masks from the stream ("dropout", layer, step)
of the run seed, `step` counting this backend's updates), the loss and its gradient, the
L1/L2 penalties on the weights of weighted layers, backward, clipping, one optimizer update
(skipped when the loss or gradient norm is not finite, as TorchBackend does). Its state for
a checkpoint: the weights, the optimizer state under torch's names and the step counter.
Runs on the CPU in float32 (`fp32`) or float64 (`fp64`); no data parallelism.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np

from ..ops import OpsWith

WEIGHTED = OpsWith("weighted")


class NumpyBackend:
    name = "numpy"

    def __init__(self, spec, *, seed: int, device: str = "cpu", precision: str = "fp32", config=None):
        from ..backends.numpy.losses import LOSSES
        from ..backends.numpy.model import NumpyModel
        from ..backends.numpy.optim import make_optimizer
        from ..config import TrainConfig, is_frozen
        from ..spec import Spec

        if device not in ("cpu", "auto"):
            raise RuntimeError(f"--device {device}: the numpy backend runs on the CPU only")
        if precision not in ("fp32", "fp64"):
            raise RuntimeError(f"--precision {precision}: the numpy backend runs fp32 or fp64")
        g = spec.graph
        train = dataclasses.replace(config or g.train or TrainConfig(), seed=seed)
        self.spec = Spec(dataclasses.replace(g, train=train))
        self.graph = self.spec.graph
        self.train_config = train
        self.model = NumpyModel(self.graph, dtype="float64" if precision == "fp64" else "float32", seed=seed)
        frozen_layers = [nd for nd in self.graph.layers if is_frozen(nd.name, train.freeze or ())]
        frozen = {k for nd in frozen_layers for k in self.model.param_names if k.startswith(nd.name + ".")}
        # frozen normalisation layers keep their running statistics: evaluation mode always
        self.model.always_eval = {nd.name for nd in frozen_layers if "batch_stats" in nd.opdef.traits}
        self._frozen = sorted(frozen)
        self.params = [(k, v) for k, v in self.model.parameters().items() if k not in frozen]
        self.penalised = [k for k, _ in self.params if k.endswith(".weight") and self._op_of(k) in WEIGHTED]
        self.optimizer = make_optimizer(train, dict(self.params))
        self.loss_name = train.loss.name if train.loss is not None else "cross_entropy"
        self.loss_options = dict(train.loss.options) if train.loss is not None else {}
        if self.loss_name not in LOSSES:
            raise RuntimeError(f"loss {self.loss_name}: not implemented by the numpy backend")
        self.lbfgs = train.optimizer is not None and train.optimizer.name == "lbfgs"
        self.seed = seed
        self.steps = 0
        self.last_grad_norm = 0.0
        self._grads: dict[str, np.ndarray] = {}

    def _op_of(self, param_name: str) -> str | None:
        nd = self.graph.find(param_name.rsplit(".", 1)[0])
        return nd.op if nd is not None else None

    def set_class_weights(self, weights) -> None:
        """Weigh the loss of each class (a (C,) array, PyTorch's weight=), or None."""
        self.loss_options.pop("weight", None)
        if weights is not None:
            self.loss_options["weight"] = np.asarray(weights, np.float64)

    def loss_of(self, out, y):
        from ..backends.numpy.losses import loss
        return loss(self.loss_name, self.loss_options, out, y)

    # ---- one step
    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """Forward, loss (+ L1/L2 penalties), backward, clipping, one optimizer update (with
        weight noise: on the noisy weights, the update applied to the clean ones). L-BFGS:
        one `LBFGS.step(closure)`, up to max_iter iterations on this batch."""
        m = self.model
        m.train()
        m.step = self.steps
        y = np.asarray(y)
        # the last step's gradients go before this one's exist (as torch's zero_grad with
        # set_to_none): else both sets are alive during backward
        m.grads = self._grads = {}
        noise = self._weight_noise()
        if self.lbfgs:
            return self._lbfgs_step(x, y, noise, lr)
        value, _, grads = self._evaluate_grads(x, y, noise)
        self.last_grad_norm = norm = self._clip(grads)
        self._grads = grads
        if math.isfinite(value) and math.isfinite(norm):
            self.optimizer.lr = lr
            self.optimizer.step(grads)
            self.steps += 1
        return value

    def _evaluate_grads(self, x, y, noise):
        """(data loss, loss + penalties (L-BFGS only, else None), gradients of loss +
        penalties) at the current weights plus `noise`; the weights are restored exactly
        afterwards (copies, not a subtraction)."""
        m = self.model
        params = dict(self.params)
        clean = {k: params[k].copy() for k in noise}
        for k, e in noise.items():
            params[k] += e
        try:
            out = m.forward(x, input_grad=False)
            value, dout = self.loss_of(out, y)
            m.backward(dout)
            grads = {k: m.grads[k] for k, _ in self.params if k in m.grads}
            self._penalty(grads)
            return value, (value + self._penalty_value() if self.lbfgs else None), grads
        finally:
            for k, c in clean.items():
                params[k][...] = c

    def _lbfgs_step(self, x, y, noise, lr) -> float:
        """The closure recomputes loss + penalties and the flat gradient (parameter order)."""
        params = dict(self.params)
        before = {k: v.copy() for k, v in params.items()}
        first: list = []

        def closure():
            value, total, grads = self._evaluate_grads(x, y, noise)
            if not first:
                first.append(value)
            self._grads = grads
            flat = np.concatenate([grads[k].ravel() if k in grads else np.zeros(v.size, v.dtype)
                                   for k, v in self.params])
            return total, flat

        self.optimizer.lr = lr
        self.optimizer.step(closure)
        value = first[0]
        self.last_grad_norm = norm = self._clip(self._grads)
        if (math.isfinite(value) and math.isfinite(norm)
                and all(np.isfinite(v).all() for v in params.values())):
            self.steps += 1
        else:
            for k, v in before.items():
                params[k][...] = v
        return value

    def _penalty_value(self) -> float:
        t = self.train_config
        l1, l2 = t.l1 or 0.0, t.l2 or 0.0
        params = dict(self.params)
        total = 0.0
        for k in self.penalised:
            w = params[k]
            if l2:
                total += 0.5 * l2 * float((w * w).sum())
            if l1:
                total += l1 * float(np.abs(w).sum())
        return total

    def _weight_noise(self) -> dict[str, np.ndarray]:
        """σ·N(0, 1) for each weight of a weighted layer from the stream ("noise", parameter
        name, step), as TorchBackend draws it; empty without `noise weights=σ`."""
        from .. import rng
        sigma = (self.train_config.noise or {}).get("weights")
        if not sigma:
            return {}
        params = dict(self.params)
        return {k: rng.normal(rng.stream(self.seed, "noise", k, self.steps), params[k].shape, 0.0, sigma)
                .astype(self.model.dtype) for k in self.penalised}

    def _penalty(self, grads) -> None:
        t = self.train_config
        l1, l2 = t.l1 or 0.0, t.l2 or 0.0
        params = dict(self.params)
        for k in self.penalised:
            w = params[k]
            if l2:
                grads[k] = grads[k] + l2 * w
            if l1:
                grads[k] = grads[k] + l1 * np.sign(w)

    def _clip(self, grads) -> float:
        """As torch.nn.utils.clip_grad_value_ / clip_grad_norm_; the norm before clipping."""
        c = self.train_config.clip or {}
        if c.get("value"):
            for k in grads:
                grads[k] = np.clip(grads[k], -c["value"], c["value"])
        # each gradient's squared norm as one BLAS dot in its own dtype (as torch's
        # clip_grad_norm_ computes it): no float64 copy of every gradient each step
        norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values()))
        if c.get("norm"):
            coef = c["norm"] / (norm + 1e-6)
            if coef < 1:
                for k in grads:
                    grads[k] = grads[k] * grads[k].dtype.type(coef)
        return norm

    def frozen(self) -> list[str]:
        return list(self._frozen)

    def grad_norms(self) -> dict[str, float]:
        return {k: float(np.linalg.norm(self._grads[k])) if k in self._grads else 0.0 for k, _ in self.params}

    # ---- one process only
    def distribute(self) -> None:
        raise RuntimeError("the numpy backend does not run data-parallel")

    def all_mean(self, value: float) -> float:
        return value

    def broadcast(self, value):
        return value

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass

    # ---- evaluation
    def evaluate(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        """Network outputs in evaluation mode, as float32."""
        self.model.eval()
        outs = [self.model.forward(x[i:i + batch], grad=False).astype(np.float32) for i in range(0, len(x), batch)]
        return np.concatenate(outs) if outs else np.zeros((0,) + self.graph.nodes[-1].shape, np.float32)

    def loss_numpy(self, out: np.ndarray, y: np.ndarray) -> float:
        return self.loss_of(out.astype(np.float64), np.asarray(y))[0]

    # ---- state
    def weights(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def load_weights(self, arrays: Mapping[str, np.ndarray], strict: bool = True) -> None:
        own = self.model.state_dict()
        missing = [k for k in own if k not in arrays]
        if strict and missing:
            raise KeyError(f"the checkpoint lacks {missing[:3]}")
        self.model.load_state_dict({k: v for k, v in arrays.items() if k in own}, strict=False)

    def state(self) -> dict[str, np.ndarray]:
        """Weights, optimizer state and the step counter as named arrays, with TorchBackend's
        names and meanings (model/…, optim/<param>/<slot> as torch.optim's slots, step): a
        checkpoint of either backend resumes in the other."""
        out = {f"model/{k}": v for k, v in self.weights().items()}
        if self.lbfgs:  # its global state on the first parameter, as TorchBackend writes it
            first = self.params[0][0]
            out.update({f"optim/{first}/{k}": v for k, v in self.optimizer.state_arrays().items()})
        for name, st in ({} if self.lbfgs else self.optimizer.state).items():
            for key, val in st.items():
                out[f"optim/{name}/{key}"] = np.array(val, dtype=np.float64 if key == "step" else None)
        out["step"] = np.array(self.steps, np.int64)
        return out

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.load_weights({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
        if self.lbfgs:
            prefix = f"optim/{self.params[0][0]}/"
            self.optimizer.load_arrays({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        for st in ({} if self.lbfgs else self.optimizer.state).values():
            st.clear()
        for k, v in arrays.items():
            if k.startswith("optim/") and not self.lbfgs:
                pname, key = k[6:].rsplit("/", 1)
                v = np.array(v)
                self.optimizer.state[pname][key] = (float(v) if key == "step"
                                                    else v.astype(self.model.dtype))
        for key in ("step", "numpy/step"):  # "numpy/step": checkpoints before the shared name
            if key in arrays:
                self.steps = int(arrays[key])
                break


__all__ = ["NumpyBackend"]
