"""DistributedDataParallel training on the CPU: two gloo processes started by torchrun, on one node
and as two nodes rendezvousing over loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from refcolor.train.progress import read_metrics
from refcolor.train.sampler import StepBatchSampler
from tests.training_helpers import small_image_folder

SCRIPT = """
import os, sys, torch
from refcolor.train.config import TrainConfig
from refcolor.train.trainer import Trainer

data, out, model = sys.argv[1:4]
config = TrainConfig(model=model, image_size=32, data=data, out=out, batch_size=2, steps=3, checkpoint_every=2,
                     sample_every=3, log_every=1, num_samples=2, discriminator_channels=8, progress="lines",
                     tensorboard=False, device="cpu")
trainer = Trainer(config)
assert trainer.info.world_size == 2 and torch.distributed.get_backend() == "gloo"
trainer.fit()
params = torch.cat([p.detach().flatten() for p in trainer.task.generator.parameters()])
torch.save(params, os.path.join(out, f"params_rank{trainer.info.rank}.pt"))
trainer.close()
"""


def _env(tmp_path):
    return {**os.environ, "OMP_NUM_THREADS": "1", "REFCOLOR_VGG19_WEIGHTS": "", "TORCH_HOME": str(tmp_path / "hub")}


def _torchrun(tmp_path, model):
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    data = small_image_folder(tmp_path / "data", 8)
    out = tmp_path / f"run_{model}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(data),
            str(out),
            model,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(tmp_path),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("model", ["scft", "guide"])
def test_two_gloo_processes_train_one_model(tmp_path, model):
    out, result = _torchrun(tmp_path, model)
    rank0, rank1 = torch.load(out / "params_rank0.pt"), torch.load(out / "params_rank1.pt")
    assert torch.equal(rank0, rank1)  # gradients were all-reduced: both replicas took the same steps
    assert "2 processes, batch 2 x 2" in result.stdout
    # Rank 0 alone writes checkpoints, samples and logs (one record per step, not two).
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*.pt")) == ["step_00000002.pt", "step_00000003.pt"]
    assert (out / "samples" / "step_00000003.png").is_file() and (out / "model.safetensors").is_file()


def test_two_nodes_over_loopback_train_the_same_weights_as_one_node(tmp_path):
    """As on a cluster: one torchrun per node (--nnodes 2, one process each) meeting at a c10d
    rendezvous, here 127.0.0.1 and gloo. Same world size, ranks and seeds as one node with two
    processes, so the weights must be bitwise those of that run (NCCL on GPU nodes is not run here)."""
    model = "guide"
    one_node, _ = _torchrun(tmp_path, model)
    script, data, out = tmp_path / "ddp_train.py", tmp_path / "data", tmp_path / "two_nodes"
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "refcolor-two-nodes",
                "--local-addr",
                "127.0.0.1",
                str(script),
                str(data),
                str(out),
                model,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(tmp_path),
        )
        for rank in range(2)
    ]
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, log in zip(nodes, logs, strict=True):
        assert node.returncode == 0, log[-3000:]
    rank0, rank1 = torch.load(out / "params_rank0.pt"), torch.load(out / "params_rank1.pt")
    assert torch.equal(rank0, rank1)
    assert torch.equal(rank0, torch.load(one_node / "params_rank0.pt"))
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]


def test_ranks_read_disjoint_shards_of_each_global_batch():
    samplers = [StepBatchSampler(20, 3, rank=r, world_size=2, seed=5) for r in range(2)]
    steps = samplers[0].steps_per_epoch
    assert steps == 3
    for step in range(2 * steps):
        a, b = (s.batch_at(step) for s in samplers)
        assert len(a) == len(b) == 3 and not set(a) & set(b)
    epoch0 = [i for s in samplers for step in range(steps) for i in s.batch_at(step)]
    assert len(set(epoch0)) == 18  # each image at most once per epoch (2 dropped)


def test_sampler_resumes_mid_epoch_with_the_same_batches():
    full = iter(StepBatchSampler(10, 4, seed=1))
    expected = [next(full) for _ in range(7)]
    resumed = iter(StepBatchSampler(10, 4, seed=1, start_step=3))
    assert [next(resumed) for _ in range(4)] == expected[3:]
    assert expected[0] != expected[2] or expected[1] != expected[3]  # epochs are reshuffled
