"""The PyTorch side of training: a backend builds the model and runs one step; the trainer
(nnspec/train/loop.py) owns everything else.

A backend supplies: `step(x, y, lr) -> loss`, `evaluate(x) -> outputs as NumPy`, `loss_of`,
its state as named NumPy arrays (`state()` / `load_state()`, the weights and optimizer
state that go into a checkpoint) and `weights()` / `load_weights()` for the model alone.

Losses and optimizers are PyTorch's own (`torch.nn.functional`, `torch.optim`), configured
from the train section:

    sgd(lr, momentum, nesterov, dampening)  torch.optim.SGD
    adagrad(lr, eps)                         torch.optim.Adagrad
    rmsprop(lr, decay, eps, momentum)        torch.optim.RMSprop (alpha = decay)
    adam(lr, beta1, beta2, eps)              torch.optim.Adam
    adamw(…, weight_decay)                   torch.optim.AdamW (decoupled decay)
    lbfgs(lr, history, max_iter, line_search) torch.optim.LBFGS (full batch: one step is up
                                             to max_iter iterations, with a closure)

With `noise weights=σ` every weight of a weighted layer gets σ·N(0, 1) noise from the stream
("noise", parameter name, step) for the step's forward and backward; the update is applied
to the clean weights (Graves 2011).

`weight_decay` is the optimizer's (every trainable parameter, as torch applies it); `l2`
adds l2/2·ΣW² and `l1` adds l1·Σ|W| to the loss, over the weights of weighted layers only
(not biases or normalisation), as the lecture notes regularise.

Dropout, stochastic depth and rrelu draw from the streams ("dropout", layer, step) of
`nnspec.rng` (`nnspec.backends.torch.use_random_streams`), keyed by `steps`, this backend's
update counter: the NumPy backend's masks, bit for bit. The checkpoint names are the NumPy
backend's too (model/…, optim/<param>/<slot>, step), so a run resumes in either.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np

from ..ops import OpsWith

WEIGHTED = OpsWith("weighted")


def _torch():
    import torch
    return torch


class TorchBackend:
    name = "torch"

    def __init__(self, spec, *, seed: int, device: str = "cpu", precision: str = "fp32", config=None):
        torch = _torch()
        from ..backends.torch import compile_torch, use_random_streams
        from ..config import TrainConfig
        from ..spec import Spec

        g = spec.graph
        train = dataclasses.replace(config or g.train or TrainConfig(), seed=seed)
        self.spec = Spec(dataclasses.replace(g, train=train))
        self.graph = self.spec.graph
        self.train_config = train
        self.device = torch.device(_device(device))
        self.precision = precision
        self.dtype = torch.float64 if precision == "fp64" else torch.float32
        torch.manual_seed(seed)  # any draw of torch's own generator follows the run seed
        model = compile_torch(self.spec)
        # dropout, stochastic depth and rrelu draw from the streams ("dropout", layer, step),
        # the NumPy backend's masks and slopes; `steps` (this backend's updates) is the step
        self.clock = use_random_streams(model, seed)
        self.seed = seed
        self.steps = 0
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        # frozen normalisation layers keep their running statistics: evaluation mode always
        self.frozen_norms = [m for m in self.model.modules()
                             if getattr(m, "track_running_stats", False)
                             and not any(p.requires_grad for p in m.parameters(recurse=False))
                             and any(True for _ in m.parameters(recurse=False))]
        self.penalised = [p for n, p in self.params
                          if n.endswith(".weight") and self._op_of(n) in WEIGHTED]
        self.optimizer = make_optimizer(train, [p for _, p in self.params])
        self.loss_name = train.loss.name if train.loss is not None else "cross_entropy"
        self.loss_options = dict(train.loss.options) if train.loss is not None else {}
        self.autocast = (precision in ("bf16", "fp16") and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" and self.autocast else None

    def _op_of(self, param_name: str) -> str | None:
        nd = self.graph.find(param_name.rsplit(".", 1)[0])
        return nd.op if nd is not None else None

    # ---- one step
    def tensor(self, a: np.ndarray):
        torch = _torch()
        t = torch.from_numpy(np.ascontiguousarray(a))
        if t.is_floating_point():
            t = t.to(self.dtype)
        return t.to(self.device, non_blocking=True)

    def set_class_weights(self, weights) -> None:
        """Weigh the loss of each class (a (C,) array, PyTorch's weight=), or None."""
        self.loss_options.pop("weight", None)
        if weights is not None:
            self.loss_options["weight"] = np.asarray(weights, np.float64)

    def loss_of(self, out, y):
        return compute_loss(self.loss_name, self.loss_options, out, y)

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """Forward, loss (+ L1/L2 penalties), backward, clipping, one optimizer update (with
        weight noise: on the noisy weights, the update applied to the clean ones). L-BFGS:
        one `optimizer.step(closure)`, up to max_iter iterations on this batch."""
        torch = _torch()
        # (walking the module tree costs ~0.2 ms a step: only on a switch of mode)
        if not self.model.training or any(m.training for m in self.frozen_norms):
            self.model.train()
            for m in self.frozen_norms:
                m.eval()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        xt, yt = self.tensor(x), self.tensor(y)
        self.clock.step = self.steps
        noise = self.weight_noise()
        if isinstance(self.optimizer, torch.optim.LBFGS):
            return self._lbfgs_step(xt, yt, noise)
        self.optimizer.zero_grad(set_to_none=True)
        with _noisy(noise):
            with torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16,
                                enabled=self.autocast):
                out = (self.ddp if getattr(self, "ddp", None) is not None else self.model)(xt)
                loss = self.loss_of(out.float() if self.autocast else out, yt)
            penalty = self.penalty()
            total = loss + penalty if penalty is not None else loss
            if self.scaler is not None:
                self.scaler.scale(total).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                total.backward()
        self.last_grad_norm = norm = self.clip()
        value = float(loss.detach())
        if self.scaler is not None:  # fp16: the scaler skips steps with inf gradients itself
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.steps += 1
        elif math.isfinite(value) and math.isfinite(norm):
            self.optimizer.step()
            self.steps += 1
        # else: no update. The weights stay those that gave the non-finite loss or gradient,
        # so the trainer can replay the batch on them and keep its last good checkpoint.
        return value

    def _lbfgs_step(self, xt, yt, noise) -> float:
        """torch.optim.LBFGS's step with a closure that re-evaluates loss + penalties and
        their gradients (on the noisy weights, when weight noise is on). Returns the data
        loss at the weights the step started from; on a non-finite loss or gradient the
        weights go back to those (no update)."""
        torch = _torch()
        before = [p.detach().clone() for _, p in self.params]
        first: list = []

        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            with _noisy(noise):
                loss = self.loss_of(self.model(xt), yt)
                penalty = self.penalty()
                total = loss + penalty if penalty is not None else loss
                total.backward()
            if not first:
                first.append(float(loss.detach()))
            return total

        self.optimizer.step(closure)
        value = first[0]
        self.last_grad_norm = norm = self.clip()
        ok = math.isfinite(value) and math.isfinite(norm) and all(
            bool(torch.isfinite(p).all()) for _, p in self.params)
        if ok:
            self.steps += 1
        else:
            with torch.no_grad():
                for (_, p), b in zip(self.params, before):
                    p.copy_(b)
        return value

    def weight_noise(self):
        """(parameter, noise) for each weight of a weighted layer, σ·N(0, 1) from the stream
        ("noise", parameter name, step): the NumPy backend's numbers. Empty without
        `noise weights=σ`."""
        torch = _torch()
        sigma = (self.train_config.noise or {}).get("weights")
        if not sigma:
            return []
        from .. import rng
        names = {id(p): n for n, p in self.params}
        return [(w, torch.from_numpy(rng.normal(rng.stream(self.seed, "noise", names[id(w)], self.steps),
                                                tuple(w.shape), 0.0, sigma)).to(w.device, w.dtype))
                for w in self.penalised]

    def penalty(self):
        t = self.train_config
        l1, l2 = t.l1 or 0.0, t.l2 or 0.0
        if not (l1 or l2) or not self.penalised:
            return None
        total = 0.0
        for w in self.penalised:
            if l2:
                total = total + 0.5 * l2 * (w * w).sum()
            if l1:
                total = total + l1 * w.abs().sum()
        return total

    def clip(self) -> float:
        """Clip as the train section says; returns the global gradient norm (before clipping
        by norm), the cheap every-step health check."""
        torch = _torch()
        c = self.train_config.clip or {}
        ps = [p for _, p in self.params]
        if c.get("value"):
            torch.nn.utils.clip_grad_value_(ps, c["value"])
        if c.get("norm"):
            return float(torch.nn.utils.clip_grad_norm_(ps, c["norm"]))
        grads = [p.grad for p in ps if p.grad is not None]
        if not grads:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))

    def frozen(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if not p.requires_grad]

    # ---- data parallel (torchrun): DistributedDataParallel averages the gradients
    def distribute(self) -> None:
        torch = _torch()
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            self.device = torch.device("cuda", dist.get_rank() % torch.cuda.device_count())
            self.model.to(self.device)
        self.module = self.model
        if dist.get_rank():  # each process its own masks (rank 0 draws the single-process ones)
            self.clock.suffix = f"@rank{dist.get_rank()}"
        self.ddp = torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def all_mean(self, value: float) -> float:
        torch = _torch()
        import torch.distributed as dist
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / dist.get_world_size()

    def broadcast(self, value):
        """Rank 0's value, on every process."""
        import torch.distributed as dist
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        import torch.distributed as dist
        dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def grad_norms(self) -> dict[str, float]:
        """The gradient norm of every trainable parameter after the last step."""
        return {n: float(p.grad.norm()) if p.grad is not None else 0.0 for n, p in self.params}

    # ---- evaluation
    def evaluate(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        """Network outputs in evaluation mode, as float32 NumPy."""
        torch = _torch()
        self.model.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(x), batch):
                outs.append(self.model(self.tensor(x[i:i + batch])).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0,) + self.graph.nodes[-1].shape, np.float32)

    def loss_numpy(self, out: np.ndarray, y: np.ndarray) -> float:
        torch = _torch()
        with torch.no_grad():
            return float(self.loss_of(torch.from_numpy(out).to(torch.float64), torch.from_numpy(y)))

    # ---- state
    def weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}

    def load_weights(self, arrays: Mapping[str, np.ndarray], strict: bool = True) -> None:
        torch = _torch()
        sd = self.model.state_dict()
        missing = [k for k in sd if k not in arrays]
        if strict and missing:
            raise KeyError(f"the checkpoint lacks {missing[:3]}")
        with torch.no_grad():
            for k, v in sd.items():
                if k in arrays:
                    v.copy_(torch.from_numpy(np.asarray(arrays[k])).to(v.dtype))

    def state(self) -> dict[str, np.ndarray]:
        """Weights, optimizer state (torch.optim's slot names), the step counter (the key of
        the dropout streams) and torch's random state, as named arrays: the NumPy backend
        reads and writes the same names (model/…, optim/<param>/<slot>, step)."""
        torch = _torch()
        out = {f"model/{k}": v for k, v in self.weights().items()}
        names = {id(p): n for n, p in self.params}
        if isinstance(self.optimizer, torch.optim.LBFGS):
            out.update(self._lbfgs_state(names))
        for p, st in ([] if isinstance(self.optimizer, torch.optim.LBFGS) else self.optimizer.state.items()):
            for key, val in st.items():
                arr = val.detach().cpu().numpy() if torch.is_tensor(val) else np.asarray(val, np.float64)
                out[f"optim/{names[id(p)]}/{key}"] = arr.copy()
        out["step"] = np.array(self.steps, np.int64)
        out["rng/torch"] = torch.get_rng_state().numpy().copy()
        return out

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        torch = _torch()
        self.load_weights({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
        by_name = dict(self.params)
        self.optimizer.state.clear()
        if isinstance(self.optimizer, torch.optim.LBFGS):
            self._load_lbfgs_state(arrays)
        for k, v in arrays.items():
            if not k.startswith("optim/") or isinstance(self.optimizer, torch.optim.LBFGS):
                continue
            pname, key = k[6:].rsplit("/", 1)
            p = by_name[pname]
            t = torch.from_numpy(np.array(v))
            # torch.optim keeps `step` as a CPU scalar tensor of the default float type; the
            # slots in the parameter's dtype (a checkpoint of another precision or backend)
            self.optimizer.state[p][key] = (t.to(p.device, p.dtype) if key != "step"
                                            else t.to(_scalar_dtype()))
        if "step" in arrays:
            self.steps = int(arrays["step"])
        if "rng/torch" in arrays:
            torch.set_rng_state(torch.from_numpy(np.array(arrays["rng/torch"], dtype=np.uint8)))


    # ---- L-BFGS: its state, global to the optimizer, lives on the first parameter (as torch
    # keeps it); the layout is nnspec.backends.numpy.lbfgs's (flat vectors, stacked history)
    def _lbfgs_state(self, names) -> dict[str, np.ndarray]:
        torch = _torch()
        from ..backends.numpy.lbfgs import to_arrays
        first = self.params[0][1]
        st = {k: (v.detach().cpu().numpy() if torch.is_tensor(v) else
                  [x.detach().cpu().numpy() if torch.is_tensor(x) else x for x in v] if isinstance(v, list) else v)
              for k, v in self.optimizer.state.get(first, {}).items() if k != "al"}
        numel = sum(p.numel() for _, p in self.params)
        return {f"optim/{names[id(first)]}/{k}": v for k, v in to_arrays(st, numel).items()}

    def _load_lbfgs_state(self, arrays) -> None:
        torch = _torch()
        from ..backends.numpy.lbfgs import from_arrays
        first_name, first = self.params[0]
        prefix = f"optim/{first_name}/"
        mine = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        if not mine:
            return
        st = from_arrays(mine, lambda a: torch.from_numpy(np.array(a)).to(first.device, first.dtype),
                         lambda a: torch.tensor(float(a), dtype=first.dtype, device=first.device))
        for key in ("t", "prev_loss"):  # plain numbers in torch's own state
            if key in st:
                st[key] = float(st[key])
        self.optimizer.state[first] = st


def _noisy(noise):
    """Add the noise to the weights in place for the block, then restore the clean weights
    bit for bit (a copy, not a subtraction: (w + e) − e need not be w)."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        if not noise:
            yield
            return
        torch = _torch()
        clean = [w.detach().clone() for w, _ in noise]
        with torch.no_grad():
            for w, e in noise:
                w.add_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for (w, _), c in zip(noise, clean):
                    w.copy_(c)
    return ctx()


def _scalar_dtype():
    """The dtype torch.optim gives its `step` tensors (float64 only under a float64 default)."""
    torch = _torch()
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _device(name: str) -> str:
    torch = _torch()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available here")
    return name


def make_optimizer(train, params):
    torch = _torch()
    opt = train.optimizer
    name = opt.name if opt is not None else "sgd"
    o = dict(opt.options) if opt is not None else {"lr": 0.01}
    wd = train.weight_decay or 0.0
    if name == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.0),
                               dampening=o.get("dampening", 0.0), nesterov=o.get("nesterov", False),
                               weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=o["lr"], eps=o.get("eps", 1e-10), weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o["lr"], alpha=o.get("decay", 0.99), eps=o.get("eps", 1e-8),
                                   momentum=o.get("momentum", 0.0), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)),
                                eps=o.get("eps", 1e-8), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)),
                                 eps=o.get("eps", 1e-8), weight_decay=wd or o.get("weight_decay", 0.01))
    if name == "lbfgs":  # full batch; the trainer refuses weight_decay and clip with it
        return torch.optim.LBFGS(params, lr=o["lr"], max_iter=o["max_iter"], history_size=o["history"],
                                 line_search_fn=None if o["line_search"] == "none" else o["line_search"])
    raise ValueError(f"unknown optimizer {name!r}")


def compute_loss(name: str, o: Mapping, out, y):
    """The train section's loss of a batch, as PyTorch defines it (mean over the batch).

    `y` is class indices (int64), soft targets (N, C) from mixup/cutmix, or float targets
    (regression, multi-label). Classification losses given class indices with a regression
    or binary loss use one-hot targets."""
    torch = _torch()
    F = torch.nn.functional
    soft = y.is_floating_point()
    w = o.get("weight")  # class weights (C,): PyTorch's weight=, a weighted mean
    if w is not None:
        w = torch.as_tensor(w, dtype=out.dtype, device=out.device)
    if name == "cross_entropy":
        return F.cross_entropy(out, y, weight=w, label_smoothing=o.get("label_smoothing", 0.0))
    if name == "nll":
        if soft:
            return -(y * (out if w is None else out * w)).sum(dim=1).mean()
        return F.nll_loss(out, y, weight=w)
    if name == "hinge":
        if soft:
            y = y.argmax(dim=1)
        return F.multi_margin_loss(out, y, margin=o.get("margin", 1.0))
    target = _dense_target(out, y)
    if name == "bce":
        return F.binary_cross_entropy(out, target)
    if name == "bce_logits":
        return F.binary_cross_entropy_with_logits(out, target)
    if name == "mse":
        return F.mse_loss(out, target)
    if name == "l1":
        return F.l1_loss(out, target)
    if name == "huber":
        return F.huber_loss(out, target, delta=o.get("delta", 1.0))
    raise ValueError(f"unknown loss {name!r}")


def _dense_target(out, y):
    torch = _torch()
    if y.is_floating_point():
        return y.to(out.dtype).reshape(out.shape)
    if out.dim() == 2 and out.shape[1] > 1:
        return torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
    return y.to(out.dtype).reshape(out.shape)


def accuracy_of(out: np.ndarray, y: np.ndarray, loss: str = "cross_entropy") -> float | None:
    """Fraction of samples whose predicted class is the label (classification only)."""
    if y.dtype.kind not in "iu" or out.ndim != 2 or len(y) == 0:
        return None
    return float((predictions(out, loss) == y).mean())


def predictions(out: np.ndarray, loss: str = "cross_entropy") -> np.ndarray:
    """Predicted classes: the largest output, or for one output a threshold (0 on logits,
    0.5 on probabilities)."""
    if out.shape[1] > 1:
        return out.argmax(axis=1)
    return (out[:, 0] > (0.0 if loss in ("bce_logits", "hinge", "mse", "l1", "huber") else 0.5)).astype(np.int64)


__all__ = ["TorchBackend", "accuracy_of", "compute_loss", "make_optimizer", "predictions"]
