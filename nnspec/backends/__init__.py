"""Backends: turn the framework-free graph (`nnspec.ir.Graph`) into something that runs.

- `torch`          the table `op -> torch module factory`, the ops it cannot build, and
                   `compile_torch` (an nn.Module with the spec's layer names)
- `torch_layers`   the few modules torch.nn lacks (GlobalAvgPool, Maxout, Add, Concat, Mul,
                   StochasticDepth, ChannelLayerNorm), the container `compile` builds, and
                   the trainer's stream-keyed dropout / stochastic depth / rrelu
                   (`torch.use_random_streams`: the NumPy backend's masks)
- `torch_emit`     standalone PyTorch source (`nnspec compile --emit torch`), written
                   generically by `torch_generic` (one class per block definition) with
                   `pysource` (symbolic values, black-style layout)
- `init`           initial weights from the train section: one rule per parameter, and
                   NumPy draws (the same numbers for every backend)
- `weights`        loading and saving state dicts (.safetensors, .pt/.pth) with a report
- `onnx_export`    `nnspec export --onnx`
- `commands`       the `compile`, `export` and `weights` sub-commands
- `numpy`          the NumPy backend: `NUMPY_OPS` op -> (forward, backward), a model run from
                   the plan, losses and torch.optim-exact optimizers (no torch import)

Nothing here is imported by `import nnspec` or `nnspec table`; PyTorch is imported by
`torch_layers` and inside functions only, so `--emit torch` works without it.
"""
