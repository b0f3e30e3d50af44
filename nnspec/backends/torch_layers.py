"""The few layers PyTorch does not ship as modules; every other op maps to a torch.nn class.

Each class is self-contained (it imports only torch), because `nnspec compile --emit torch`
copies the source of the ones a network uses into the generated file.
"""

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    """Mean over every spatial axis: (N, C, *spatial) -> (N, C)."""

    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.dim())))


class Maxout(nn.Module):
    """max over `pieces` linear maps of the input (Goodfellow et al. 2013).

    `weight` has shape (units * pieces, in_features): rows u*pieces .. u*pieces + pieces - 1
    are the pieces of unit u. Initialised like nn.Linear.
    """

    def __init__(self, in_features, units, pieces=2):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.weight = nn.Parameter(torch.empty(units * pieces, in_features))
        self.bias = nn.Parameter(torch.empty(units * pieces))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        bound = self.weight.shape[1] ** -0.5
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        y = nn.functional.linear(x, self.weight, self.bias)
        return y.unflatten(-1, (self.units, self.pieces)).amax(dim=-1)

    def extra_repr(self):
        return f"in_features={self.weight.shape[1]}, units={self.units}, pieces={self.pieces}"


class Elementwise(nn.Module):
    """An activation from nnspec's registry table, computed by its formula over torch
    (autograd differentiates it). Not copied into generated files: it reads the registry."""

    def __init__(self, op: str, **attrs):
        super().__init__()
        from nnspec.ops import ACTIVATIONS, torch_xp
        self.op, self.attrs = op, attrs
        self._f, self._xp = ACTIVATIONS[op].f, torch_xp()

    def forward(self, x):
        return self._f(x, self.attrs, self._xp)

    def extra_repr(self):
        return ", ".join([self.op] + [f"{k}={v}" for k, v in self.attrs.items()])


class Add(nn.Module):
    """Element-wise sum of parallel paths (a residual connection)."""

    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Concatenation of parallel paths along the channel axis."""

    def forward(self, *xs):
        return torch.cat(xs, dim=1)


class Mul(nn.Module):
    """Element-wise product of parallel paths, broadcasting axes of size 1 (squeeze-and-
    excitation scales a feature map by a per-channel gate)."""

    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class StochasticDepth(nn.Module):
    """Stochastic depth (Huang et al. 2016), as torchvision.ops.StochasticDepth: in training,
    zero the input with probability p per sample (mode "row") or for the whole batch ("batch")
    and divide survivors by 1 - p; the identity in evaluation or when p is 0."""

    def __init__(self, p, mode="row"):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
        if mode not in ("row", "batch"):
            raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
        self.p, self.mode = p, mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode}"


class ChannelLayerNorm(nn.LayerNorm):
    """Layer normalisation over the channels at each position of an (N, C, *spatial) input:
    torchvision's LayerNorm2d (ConvNeXt) for any number of spatial axes. Parameters `weight`
    and `bias` of C values, as nn.LayerNorm(C)."""

    def forward(self, x):
        x = x.movedim(1, -1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


class DropConnect(nn.Linear):
    """DropConnect (Wan et al. 2013): nn.Linear whose weight, in training, is multiplied by a
    keep-mask (each weight kept with probability 1 - p, one mask per forward, shared by the
    batch) and scaled by 1 / (1 - p); in evaluation the plain linear layer (the expected
    weights). The bias is not dropped. Parameters as nn.Linear (weight, bias)."""

    def __init__(self, in_features, out_features, p=0.5, bias=True):
        super().__init__(in_features, out_features, bias=bias)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropconnect probability has to be in [0, 1), but got {p}")
        self.p = p

    def keep_scale(self):
        keep = torch.empty_like(self.weight).bernoulli_(1.0 - self.p)
        return keep / (1.0 - self.p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return nn.functional.linear(x, self.weight, self.bias)
        return nn.functional.linear(x, self.weight * self.keep_scale(), self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", p={self.p}"


class FractionalMaxPool(nn.Module):
    """Fractional max pooling (Graham 2014) as nn.FractionalMaxPool2d with output_ratio: in
    training one uniform sample per (sample, channel) and axis from torch's generator; in
    evaluation the fixed sample 0.5 for every plane (FractionalMaxPool2d itself keeps
    drawing), so evaluation is deterministic."""

    def __init__(self, kernel_size, output_ratio):
        super().__init__()
        self.kernel_size, self.output_ratio = kernel_size, output_ratio

    def samples(self, x):
        return torch.rand(x.shape[0], x.shape[1], 2, dtype=x.dtype, device=x.device)

    def forward(self, x):
        if self.training:
            u = self.samples(x)
        else:
            u = torch.full((x.shape[0], x.shape[1], 2), 0.5, dtype=x.dtype, device=x.device)
        ratio = (self.output_ratio, self.output_ratio)  # the functional form takes a pair only
        return nn.functional.fractional_max_pool2d(x, self.kernel_size, output_ratio=ratio,
                                                   _random_samples=u)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, output_ratio={self.output_ratio}"


# ---- not copied into generated files: the container that `nnspec.compile` builds ----------

_FORWARDS: dict = {}


def _compile_forward(code: str):
    """The generated `forward` source -> a function (cached: equal blocks share one)."""
    fn = _FORWARDS.get(code)
    if fn is None:
        import hashlib
        import linecache
        filename = f"<nnspec forward {hashlib.sha1(code.encode()).hexdigest()[:12]}>"
        namespace: dict = {}
        exec(compile(code, filename, "exec"), namespace)  # our own generated code, never user text
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        fn = _FORWARDS[code] = namespace["forward"]
    return fn


class SpecModule(nn.Module):
    """A network, block instance or group compiled from a spec.

    Its children are the spec's layers under their spec names; `forward` is Python source
    generated once at build time (calls of the children in order, residual adds and
    concatenations): `nnspec.backends.torch.forward_source(module)` shows it.
    """

    def __init__(self, kind: str, code: str):
        super().__init__()
        self._nnspec_kind = kind
        self._nnspec_code = code
        self._nnspec_forward = _compile_forward(code)

    def forward(self, x):
        return self._nnspec_forward(self, x)

    def _get_name(self):
        return self._nnspec_kind

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_nnspec_forward", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._nnspec_forward = _compile_forward(self._nnspec_code)


# ---- not copied into generated files: the trainer's random layers --------------------------
# `nnspec.backends.torch.use_random_streams` swaps nn.Dropout, StochasticDepth, nn.RReLU,
# DropConnect and FractionalMaxPool for these, so that their masks and slopes come from nnspec.rng's streams ("dropout", layer name,
# step), exactly as the NumPy backend (nnspec/backends/numpy/layers.py) draws them: the same
# numbers in both backends, drawn with NumPy on the CPU, then moved to the input's device.


class RandomClock:
    """The key of a model's random streams: the run seed and the global training step, which
    the trainer's backend sets before every step. Shared by all stream layers of a model."""

    def __init__(self, seed: int = 0, step: int = 0, suffix: str = ""):
        self.seed, self.step = seed, step
        self.suffix = suffix  # appended to layer names (a data-parallel rank's own masks)

    def stream(self, name: str):
        from nnspec import rng
        return rng.stream(self.seed, "dropout", name + self.suffix, self.step)


_RRELU: list = []


def _rrelu_row():
    """The rrelu row's f and the torch namespace it runs in (looked up once; kept out of the
    module so that a model with StreamRReLU pickles)."""
    if not _RRELU:
        from nnspec.ops import ACTIVATIONS, torch_xp
        _RRELU.append((ACTIVATIONS["rrelu"].f, torch_xp()))
    return _RRELU[0]


def _stream_scale(clock, name, shape, p, like):
    """Inverted dropout's factors (keep / (1 - p), 0 where dropped) for `shape`, from the
    stream's keep-mask (`nnspec.rng.keep_mask`), in `like`'s dtype on `like`'s device."""
    from nnspec import rng
    keep = rng.keep_mask(clock.stream(name), shape, p)
    mask = torch.from_numpy(keep).to(like.device, non_blocking=True).to(like.dtype)
    return mask * (0.0 if p == 1.0 else 1.0 / (1.0 - p))


class StreamDropout(nn.Module):
    """nn.Dropout with its keep-mask from the stream ("dropout", name, clock.step)."""

    def __init__(self, p, name, clock):
        super().__init__()
        self.p, self.name, self.clock = p, name, clock

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        return x * _stream_scale(self.clock, self.name, tuple(x.shape), self.p, x)

    def extra_repr(self):
        return f"p={self.p}, stream=({self.name!r})"


class StreamStochasticDepth(StochasticDepth):
    """StochasticDepth with its per-sample (or per-batch) mask from the stream."""

    def __init__(self, p, mode, name, clock):
        super().__init__(p, mode)
        self.name, self.clock = name, clock

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        size = (x.shape[0],) + (1,) * (x.dim() - 1) if self.mode == "row" else (1,) * x.dim()
        return x * _stream_scale(self.clock, self.name, size, self.p, x)


class StreamRReLU(nn.Module):
    """nn.RReLU computed by the registry row's formula: in training with a slope per element
    drawn uniformly from [lower, upper) from the stream (`nnspec.rng.uniform`), at evaluation
    with the mean slope (lower + upper) / 2."""

    def __init__(self, lower, upper, name, clock):
        super().__init__()
        self.lower, self.upper, self.name, self.clock = lower, upper, name, clock

    def forward(self, x):
        f, xp = _rrelu_row()
        if not self.training:
            return f(x, {"lower": self.lower, "upper": self.upper}, xp)
        from nnspec import rng
        slope = rng.uniform(self.clock.stream(self.name), tuple(x.shape), self.lower, self.upper)
        s = torch.from_numpy(slope).to(x.device, non_blocking=True).to(x.dtype)
        return f(x, {"lower": s, "upper": s}, xp)

    def extra_repr(self):
        return f"lower={self.lower}, upper={self.upper}, stream=({self.name!r})"


class StreamDropConnect(DropConnect):
    """DropConnect with its weight keep-mask from the stream ("dropout", name, clock.step)
    (`nnspec.rng.keep_mask` over the weight's shape): the NumPy backend's mask. Built from a
    DropConnect, sharing its parameters."""

    @classmethod
    def sharing(cls, m, name, clock):
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features, new.p = m.in_features, m.out_features, m.p
        new.weight, new.bias = m.weight, m.bias
        new.name, new.clock = name, clock
        return new

    def keep_scale(self):
        return _stream_scale(self.clock, self.name, tuple(self.weight.shape), self.p, self.weight)


class StreamFractionalMaxPool(FractionalMaxPool):
    """FractionalMaxPool with its training samples from the stream (`nnspec.rng.uniform` of
    shape (N, C, 2)): the NumPy backend's pooling regions."""

    def __init__(self, kernel_size, output_ratio, name, clock):
        super().__init__(kernel_size, output_ratio)
        self.name, self.clock = name, clock

    def samples(self, x):
        from nnspec import rng
        u = rng.uniform(self.clock.stream(self.name), (x.shape[0], x.shape[1], 2))
        return torch.from_numpy(u).to(x.device, non_blocking=True).to(x.dtype)
