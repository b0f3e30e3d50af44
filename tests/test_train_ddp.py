"""Data-parallel training under torchrun: 2 CPU processes (gloo) train the same weights as one
process with the whole batch; rank 0 alone reports and writes; no process is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnspec import checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = """network plain(classes = 10)
input 64
fc1: linear(32) relu
fc2: linear(classes)
train {
  loss cross_entropy
  optimizer sgd(lr=0.1, momentum=0.9)
  batch 26
  epochs 2
  seed 5
}
"""


def run(argv, timeout=600):
    """Run a command in its own process group; on a timeout stop exactly that group."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out, err


@pytest.mark.slow
def test_two_processes_train_the_same_weights_as_one(tmp_path):
    from nnspec.train import data
    spec = tmp_path / "plain.nn"
    spec.write_text(SPEC)
    # 1,040 training samples = 40 batches of 26: each process takes 13 of every batch
    s = data.load("digits")
    np.savez(tmp_path / "d.npz", x=s.train.x[:1040], y=s.train.y[:1040])
    code, out, err = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(29500 + os.getpid() % 1000), "-m", "nnspec", "train",
                          str(spec), "--data", str(tmp_path / "d.npz"), "--run-dir", str(tmp_path / "ddp")])
    assert code == 0, err
    assert out.count("epoch 2/2") == 1          # rank 0 alone reports
    code, out1, err1 = run([sys.executable, "-m", "nnspec", "train", str(spec), "--data", str(tmp_path / "d.npz"),
                            "--run", str(tmp_path / "one")])
    assert code == 0, err1
    a = checkpoint.load(tmp_path / "ddp" / "last.safetensors")
    b = checkpoint.load(tmp_path / "one" / "last.safetensors")
    for k in a:
        if k.startswith("model/"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
