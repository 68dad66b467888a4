"""Trainer: the GAN training loop shared by the colorizers (refcolor.train.tasks holds what differs).

One step, for the batch of step s (refcolor.train.sampler: the batches are a function of s):
  1. task.prepare: the augmentation on the training device (seeded from (seed, rank, s)).
  2. task.forward: the generator pass (autocast on CUDA).
  3. discriminator update on [target; fake.detach()] in one forward (one DDP forward per backward),
     loss 0.5 (gan(real) + gan(fake)).
  4. generator update: the weighted task losses plus the adversarial term gan(D(fake), real), D's
     parameters frozen and D called without its DDP wrapper, so no gradient of it is synchronised.
Every random draw of a step comes from a generator seeded with (seed, rank, step), so a resumed run
continues exactly where an uninterrupted one would be (tested), on any number of processes.

Rank 0 writes checkpoints (atomically, every checkpoint_every steps, at the end and on Ctrl-C),
model.safetensors (inference weights with the model config), sample grids, metrics.jsonl and
TensorBoard logs; a Ctrl-C on any rank stops all of them at the same step boundary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from refcolor.data.image_folder import ImageFolder, UnreadableImageWarning, sample_images_dir
from refcolor.losses import gan_loss
from refcolor.models.loading import WEIGHTS_NAME
from refcolor.models.weights import save_weights
from refcolor.train import distributed as dist_utils
from refcolor.train.checkpoint import (
    CheckpointManager,
    atomic_write,
    install_interrupt_handler,
    load_checkpoint,
    restore_checkpoint,
)
from refcolor.train.config import TrainConfig, frozen_differences, lr_schedule_change
from refcolor.train.progress import MetricLog, ProgressBar
from refcolor.train.sample_grid import save_grid
from refcolor.train.sampler import StepBatchSampler
from refcolor.train.tasks import make_task
from refcolor.train.tasks.base import resolve_model_config

logger = logging.getLogger("refcolor.train")


class RunExistsError(ValueError):
    """The output directory already holds a run and --resume was not given."""


def step_seed(seed: int, rank: int, step: int) -> int:
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + step) % (2**63 - 1)


class Trainer:
    """Train config.model on the images of config.data; see the module docstring.

    Trainer(config, resume=False).fit() -> summary dict. Under torchrun every process builds a
    Trainer with the same config; the data, gradients and stop requests are shared.
    """

    def __init__(self, config: TrainConfig, *, resume: bool = False, log=print):
        self.info = dist_utils.env_info()
        self.device = dist_utils.resolve_device(config.device, self.info)
        dist_utils.init_process_group(self.info, self.device)
        self.log = log if self.info.is_main else (lambda *a, **k: None)
        self.run_dir = Path(config.out)
        self.manager = CheckpointManager(self.run_dir, keep_last=config.keep_last)
        self.start_step = 0
        saved_path = self.manager.latest_path()
        saved = None
        if resume:
            if saved_path is None:
                raise FileNotFoundError(f"nothing to resume: no checkpoint in {self.manager.directory}")
            saved = load_checkpoint(saved_path, map_location=self.device)  # read once: checked, then restored
            config = config.fix_schedules(_train_config_of(saved))
            self._check_resumable(saved_path, _train_config_of(saved), config, int(saved["step"]))
        elif saved_path is not None:
            raise RunExistsError(
                f"{self.run_dir} already holds a run (latest checkpoint {saved_path.name}); "
                "pass --resume to continue it or choose another --out"
            )
        else:
            config = config.fix_schedules()
        self.config = config
        torch.manual_seed(config.seed)

        # The data first: a wrong folder should fail before any model (or VGG) is built.
        data_root = config.data if config.data is not None else sample_images_dir()
        image_size = resolve_model_config(config).image_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnreadableImageWarning)  # counted and reported once below
            self.dataset = ImageFolder(data_root, image_size)
        self.skipped_images = len(self.dataset.skipped)
        if self.skipped_images:
            self.log(f"data: {self.dataset.summary()} (unreadable files skipped, first: {self.dataset.skipped[0][0]})")
        self.task = make_task(config, self.device)

        self.amp = config.amp == "on" or (config.amp == "auto" and self.device.type == "cuda")
        if self.amp and self.device.type != "cuda":
            raise ValueError(f"train config: amp='on' needs a CUDA device, got {self.device}")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        g, d = self.task.generator, self.task.discriminator
        self.opt_g = torch.optim.Adam(g.parameters(), lr=config.lr_generator, betas=config.betas)
        self.opt_d = torch.optim.Adam(d.parameters(), lr=config.lr_discriminator, betas=config.betas)
        self.models = {"generator": g, "discriminator": d}
        self.optimizers = {"generator": self.opt_g, "discriminator": self.opt_d}
        if config.init_weights is not None and not resume:
            from refcolor.train.initial_weights import load_initial_weights

            grown = load_initial_weights(g, config.init_weights, config.model, config.init_modules)
            parts = f" ({', '.join(config.init_modules)} only)" if config.init_modules else ""
            widened = f", widened: {grown}" if grown else ""
            self.log(f"generator initialised from {config.init_weights}{parts}{widened}")
        if resume and saved_path is not None:  # (resume without a checkpoint is refused above)
            ckpt = restore_checkpoint(
                saved_path, self.models, self.optimizers, self.scaler, restore_rng=True, checkpoint=saved
            )
            self.start_step = int(ckpt["step"])
            self.log(f"resumed from {saved_path} at step {self.start_step}")
        self.g_train: torch.nn.Module  # DDP-wrapped when distributed, else the models themselves
        self.d_train: torch.nn.Module
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = self.task.find_unused_parameters
            self.g_train = DistributedDataParallel(g, device_ids=ids, find_unused_parameters=unused)
            self.d_train = DistributedDataParallel(d, device_ids=ids)
        else:
            self.g_train, self.d_train = g, d
        self._rng = torch.Generator(device=self.device)

    # ---------------------------------------------------------------- config
    @staticmethod
    def _check_resumable(path: Path, saved: dict, given: TrainConfig, step: int) -> None:
        try:
            previous = TrainConfig.from_dict(saved, source=f"checkpoint {path}").fix_schedules(saved)
        except ValueError as err:
            raise ValueError(f"checkpoint {path} holds a config this version cannot read: {err}") from None
        diffs = frozen_differences(previous.to_dict(), given.to_dict())
        if diffs:
            old, new = previous.to_dict(), given.to_dict()
            details = ", ".join(f"{k} (saved {old.get(k)!r}, given {new.get(k)!r})" for k in diffs)
            raise ValueError(f"cannot resume {path} with a different config: {details}")
        change = lr_schedule_change(previous, given, step)
        if change is not None:
            raise ValueError(f"cannot resume {path}: {change}")

    def checkpoint_config(self) -> dict:
        return {
            **self.config.to_dict(),
            "model_config": self.task.model_config.to_dict(),
            "resolved": self.task.run_record(),
        }

    # ---------------------------------------------------------------- pieces of a step
    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def train_step(self, images: torch.Tensor, step: int) -> dict[str, float]:
        """One discriminator and one generator update on a batch of images (B, 3, S, S) in [0, 1]."""
        cfg, task = self.config, self.task
        self._rng.manual_seed(step_seed(cfg.seed, self.info.rank, step))
        self.g_train.train()
        self.d_train.train()
        data = task.prepare(images, self._rng)
        with self._autocast():
            out = task.forward(self.g_train, data, step, self._rng)
        fake, target, sketch = out["fake"], data["target"], data["sketch"]

        # Discriminator: real and fake in one forward; skipped when the generator does not use it.
        adversarial = task.weights["adversarial"] > 0
        d_loss = torch.zeros((), device=self.device)
        if adversarial:
            task.discriminator.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                logits = self.d_train(torch.cat([target, fake.detach().to(target.dtype)]), torch.cat([sketch, sketch]))
                real_logits, fake_logits = logits.float().chunk(2)
                d_loss = 0.5 * (gan_loss(real_logits, True, cfg.gan_mode) + gan_loss(fake_logits, False, cfg.gan_mode))
            self.scaler.scale(d_loss).backward()
            for group in self.opt_d.param_groups:
                group["lr"] = cfg.lr_discriminator * cfg.lr_factor(step)
            self.scaler.step(self.opt_d)

        # Generator: D frozen and unwrapped (its gradients are neither needed nor synchronised).
        task.discriminator.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        for group in self.opt_g.param_groups:
            group["lr"] = task.generator_lr(step) * cfg.lr_factor(step)
        with self._autocast():
            terms = task.losses(data, out, self._rng)
            if adversarial:
                g_logits = task.discriminator(fake, sketch).float()
                terms["adversarial"] = gan_loss(g_logits, True, cfg.gan_mode, for_discriminator=False)
            g_loss = sum(task.weights[name] * value for name, value in terms.items() if task.weights[name] > 0)
        self.scaler.scale(g_loss).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        task.discriminator.requires_grad_(True)

        logs = {"g": float(g_loss.detach()), "d": float(d_loss.detach())}
        logs.update({name: float(value.detach()) for name, value in terms.items()})
        return logs

    def sample_batch(self) -> dict:
        """The fixed batch of the sample grids: the first num_samples images, a fixed augmentation."""
        n = min(self.config.num_samples, len(self.dataset))
        images = torch.stack([self.dataset[i]["image"] for i in range(n)]).to(self.device)
        return self.task.prepare(images, torch.Generator(device=self.device).manual_seed(self.config.seed))

    def write_samples(self, step: int, batch: dict, metrics: MetricLog | None = None) -> Path | None:
        if not batch or not self.info.is_main:
            return None
        g = self.task.generator
        g.eval()
        try:
            columns = self.task.sample_columns(g, batch)
        finally:
            g.train()
        path = self.run_dir / "samples" / f"step_{step:08d}.png"
        grid = save_grid(path, columns)
        if metrics is not None:
            metrics.image(step, "samples", grid)
        return path

    def save(self, step: int) -> Path | None:
        """Checkpoint + inference weights (rank 0)."""
        if not self.info.is_main:
            return None
        path = self.manager.save(step, self.models, self.optimizers, self.scaler, config=self.checkpoint_config())
        save_weights(self.run_dir / WEIGHTS_NAME, self.task.generator, self.task.metadata())
        return path

    def data_iterator(self, start_step: int):
        sampler = StepBatchSampler(
            len(self.dataset),
            self.config.batch_size,
            rank=self.info.rank,
            world_size=self.info.world_size,
            seed=self.config.seed,
            start_step=start_step,
        )
        workers = self.config.num_workers
        if workers is None:
            workers = 0 if self.device.type == "cpu" else min(8, torch.get_num_threads())
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )
        return iter(loader)

    # ---------------------------------------------------------------- the loop
    def fit(self, until: int | None = None) -> dict:
        """Train from the current step to config.steps, or only up to step `until` (a checkpoint is
        written there, so a later --resume continues exactly: e.g. time-boxed sessions)."""
        cfg = self.config
        total = cfg.steps
        stop = total if until is None else min(int(until), total)
        if self.start_step >= stop:
            self.log(f"nothing to do: the run is at step {self.start_step} of {total} (raise --steps to go on)")
            return {"step": self.start_step, "stopped": "done", "seconds": 0.0, "images_per_s": 0.0}
        is_main = self.info.is_main
        if is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.run_dir / "config.json", "w") as f:
                json.dump(self.checkpoint_config(), f, indent=2, sort_keys=True)
        metrics = MetricLog(self.run_dir, tensorboard=cfg.tensorboard) if is_main else None
        progress = ProgressBar(total, self.start_step, mode=cfg.progress if is_main else "off", log_every=cfg.log_every)
        world = self.info.world_size
        self.log(
            f"training {cfg.model} ({cfg.preset}, {self.task.image_size}px) on {self.dataset.summary()} | "
            f"device {self.device}, {world} process{'es' if world > 1 else ''}, batch {cfg.batch_size}"
            f"{f' x {world}' if world > 1 else ''}, steps {self.start_step} -> {total} | "
            f"losses {', '.join(f'{k} {v:g}' for k, v in self.task.weights.items() if v > 0)} | out {self.run_dir}"
        )
        samples = self.sample_batch() if is_main and cfg.num_samples > 0 else None
        step = self.start_step
        last_saved = None
        data = self.data_iterator(step)
        window_start, window_images = time.perf_counter(), 0
        images_per_s, started = 0.0, time.perf_counter()
        summary: dict[str, object] = {"stopped": "done"}

        def save_now() -> None:
            nonlocal last_saved
            if last_saved != step:
                self.save(step)
                last_saved = step
                progress.message(f"checkpoint saved at step {step} in {self.manager.directory}")

        try:
            with install_interrupt_handler(save_now) as guard:
                while step < stop:
                    batch = next(data)
                    images = batch["image"].to(self.device, non_blocking=True)
                    logs = self.train_step(images, step)
                    step += 1
                    window_images += images.shape[0] * world
                    now = time.perf_counter()
                    if now - window_start >= 1.0 or step == total:
                        images_per_s = window_images / (now - window_start)
                        window_start, window_images = now, 0
                    eta = (total - step) * cfg.batch_size * world / images_per_s if images_per_s else float("nan")
                    if step % cfg.log_every == 0 or step == total:
                        logs = dist_utils.mean_over_ranks(logs, self.info, self.device)
                        if metrics is not None:
                            metrics.scalars(step, {**logs, "images_per_s": images_per_s})
                    progress.update(step, logs, images_per_s, eta)
                    if samples is not None and (step % cfg.sample_every == 0 or step == total):
                        self.write_samples(step, samples, metrics)
                    if step % cfg.checkpoint_every == 0 or step == stop:
                        save_now()
                    guard.requested = dist_utils.any_rank(guard.requested, self.info, self.device)
                    if guard.requested:
                        if not is_main:
                            guard.saved = True  # only rank 0 writes
                        dist_utils.barrier(self.info)
                        guard.check()
        except KeyboardInterrupt:
            summary["stopped"] = "interrupted"
            raise
        finally:
            progress.close()
            if metrics is not None:
                metrics.close()
            summary.update(step=step, seconds=time.perf_counter() - started, images_per_s=images_per_s)
            self.summary = summary
        dist_utils.barrier(self.info)
        self.log(
            f"{'done' if step == total else 'stopped'}: step {step} of {total}, "
            f"weights in {self.run_dir / WEIGHTS_NAME}"
        )
        return summary

    def close(self) -> None:
        dist_utils.destroy_process_group()


def _train_config_of(checkpoint: dict) -> dict:
    """The TrainConfig keys of a checkpoint's config (it also stores the resolved model config and
    the task's run_record)."""
    saved = dict(checkpoint["config"])
    saved.pop("model_config", None)
    saved.pop("resolved", None)  # what the run resolved (feature network, loss weights), not settings
    return saved


def saved_config(run_dir: str | Path) -> dict:
    """The TrainConfig dict of the latest checkpoint in `run_dir` (the base of a resumed run)."""
    path = CheckpointManager(run_dir).latest_path()
    if path is None:
        raise FileNotFoundError(f"nothing to resume: no checkpoint in {Path(run_dir) / 'checkpoints'}")
    return _train_config_of(load_checkpoint(path))


def train(config: TrainConfig, *, resume: bool = False, log=print) -> dict:
    """Build a Trainer, fit, and tear the process group down."""
    trainer = Trainer(config, resume=resume, log=log)
    try:
        return trainer.fit()
    finally:
        trainer.close()


__all__ = ["RunExistsError", "Trainer", "saved_config", "step_seed", "train"]
