"""Training a spec: `nnspec.train(spec, **overrides) -> Result`, and the pieces behind it.

- `data`           data sources: the embedded digits, .npz, MNIST/Fashion IDX, CIFAR-10 binary,
                   generated 2-D sets; fixed splits; normalisation from the training split
- `augment`        augmentations on NumPy batches, drawn from named random streams
- `schedule`       the learning rate at every epoch (pure Python: lint reads it too)
- `loop`           the backend-neutral loop: evaluation, early stopping, checkpoints, resume
- `runs`           the run directory: manifest, checkpoints, log.jsonl
- `torch_backend`  PyTorch builds the model and runs one step
- `evaluate`, `plot`, `commands`   `nnspec evaluate`, `--plot`, the CLI

This package is also callable: `nnspec.train(spec, epochs=5)` is `loop.train(spec, epochs=5)`
(the package and the function share the name the issue tracker promised users). Importing it
imports neither torch nor matplotlib.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, spec, **overrides):
        from .loop import train
        return train(spec, **overrides)


sys.modules[__name__].__class__ = _CallablePackage
