"""``backproplab train convnet``: the practical's PreAct ConvNet (:class:`backproplab.torch_models.ConvNet`).

Defaults are the practical's: Adam, lr 1e-4, batch 32, 5000 steps, evaluation on the whole test
split every 500 steps. Inputs are standardised per channel (``--preprocess standardize``); the
practical's data utilities subtracted the mean training image instead (``--preprocess
mean_image``). On a GPU (``--device auto`` picks one) the data set is copied to GPU memory once and
batches are drawn and augmented there; TF32 matmuls and cuDNN autotuning are enabled.

Fashion-MNIST (28x28) and the 8x8 digits train too, with one input channel: the five max-pools
reduce any side of at most 32 to 1 (the digits reach 1x1 after three pools, and the last two
pools then keep it), so the final Linear always sees 512 features.

Recipe knobs beyond the practical: ``--augment`` (random crop with padding 4 and horizontal
flip, on the device), ``--optimizer {adam,adamw,sgd}`` with the optimizer and
schedule flags every trainer shares (:class:`~backproplab.training.optim_flags.OptimFlags`:
``--momentum``, ``--nesterov``, ``--weight_decay``, ``--lr_schedule {constant,step,cosine,onecycle}``),
``--label_smoothing``, ``--amp bf16`` and ``--channels_last``.

The fast recipe (:data:`FAST_RECIPE`): 30 epochs of 97 batches of 512 augmented images, SGD with
Nesterov momentum, a one-cycle schedule peaking at 0.1, weight decay 5e-4, label smoothing 0.1,
bf16 autocast and channels-last memory. It is meant to reach 85% on the CIFAR-10 JPEG copy in
under two minutes on one H100; it has not been measured on a GPU yet (no GPU was available when
it was written), so treat it as a proposal until the README reports a run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from backproplab.data import Dataset, load_dataset
from backproplab.torch_models import ConvNet
from backproplab.training.augment import AUGMENT_PADDING, random_crop_flip
from backproplab.training.config_checks import check_float32
from backproplab.training.convnet_config import ConvNetBaseConfig
from backproplab.training.device_data import DeviceBatchSampler, DeviceData
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.lr_schedules import torch_scheduler
from backproplab.training.optimizers import OPTIMIZERS
from backproplab.training.prepared_data import prepare
from backproplab.training.seeds import derive_seeds
from backproplab.training.torch_device import (
    AMP_MODES,
    DEVICES,
    fast_cuda_matmul,
    make_generator,
    select_device,
)
from backproplab.training.torch_run import run_torch_trainer
from backproplab.training.torch_task import TorchTrainTask

TRAINER = "convnet"
#: Flags of the fast recipe (see the module docstring); 2910 steps = 30 epochs of 50000 // 512 batches.
FAST_RECIPE = (
    "--augment --optimizer sgd --momentum 0.9 --nesterov --learning_rate 0.1 --weight_decay 5e-4 "
    "--lr_schedule onecycle --label_smoothing 0.1 --batch_size 512 --max_steps 2910 --eval_freq 485 "
    "--amp bf16 --channels_last"
)


@dataclass
class ConvNetConfig(ConvNetBaseConfig):
    """Flags of ``train convnet`` (the practical's defaults, plus recipe knobs that are off by default)."""

    optimizer: str = field(default="adam", metadata={"help": "optimizer", "choices": OPTIMIZERS})
    augment: bool = field(
        default=False, metadata={"help": "random crop (padding 4) and horizontal flip, on the device"}
    )
    amp: str = field(default="none", metadata={"help": "mixed precision autocast", "choices": AMP_MODES})
    channels_last: bool = field(
        default=False, metadata={"help": "NHWC memory format (faster convolutions on GPUs)"}
    )
    device: str = field(
        default="auto", metadata={"help": "device: cuda if available (auto), cpu or cuda", "choices": DEVICES}
    )
    resume: str | None = field(
        default=None, metadata={"help": "continue the run in this directory from its last checkpoint"}
    )

    def validate(self) -> None:
        """The base checks, plus a seed and step sizes that the run can use."""
        super().validate()
        for name in ("learning_rate", "weight_decay"):
            check_float32(name, getattr(self, name))

    def resolved(self) -> ConvNetConfig:
        """The config with ``schedule_steps`` fixed (so extending a run keeps its schedule)."""
        return self.with_fixed_schedule(resuming=self.resume is not None)


def build_task(
    cfg: ConvNetConfig, interrupts: InterruptFlag, dataset: Dataset | None = None
) -> tuple[TorchTrainTask, str, str]:
    """Load the data onto the device and build the ConvNet, optimizer and schedule of ``cfg``."""
    device = select_device(cfg.device)
    subset_seed, init_seed, batch_seed, augment_seed = derive_seeds(cfg.seed, 4)
    ds = load_dataset(cfg.dataset, cfg.data_dir) if dataset is None else dataset
    if cfg.train_subset is not None or cfg.test_subset is not None:
        ds = ds.subset(cfg.train_subset, cfg.test_subset, np.random.default_rng(subset_seed))
    data = prepare(ds, cfg.preprocess, layout="NCHW", validation_size=cfg.validation_size, seed=cfg.seed)
    n_channels = int(data.x_train.shape[1])
    model = ConvNet(
        n_channels, data.num_classes, generator=make_generator(init_seed, torch.device("cpu"))
    ).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = cfg.optimizer_spec().torch(model.parameters())
    scheduler = torch_scheduler(optimizer, cfg)
    device_data = DeviceData.from_prepared(data, device, channels_last=cfg.channels_last)
    task = TorchTrainTask(
        trainer=TRAINER,
        config=cfg,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        data=device_data,
        sampler=DeviceBatchSampler(device_data.n_train, cfg.batch_size, make_generator(batch_seed, device)),
        loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        device=device,
        divergence_hint=(
            f"likely causes: --learning_rate {cfg.learning_rate:g} is too high "
            f"for --optimizer {cfg.optimizer}"
            + (" (or bf16 overflow: try --amp none)" if cfg.amp != "none" else "")
        ),
        augment=(lambda x, g: random_crop_flip(x, g, AUGMENT_PADDING)) if cfg.augment else None,
        augment_generator=make_generator(augment_seed, device) if cfg.augment else None,
        amp=cfg.amp,
        channels_last=cfg.channels_last,
        eval_batch_size=cfg.eval_batch_size,
        interrupts=interrupts,
    )
    return task, ds.source, f"{TRAINER} on {ds.name} ({device.type})"


def run(
    cfg: ConvNetConfig, *, dataset: Dataset | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Train (or with ``cfg.resume``, continue) the ConvNet; return the summary.

    ``dataset``, when given, is trained on instead of loading ``cfg.dataset`` (from Python: a
    notebook, a test); the config is validated either way.
    """
    with fast_cuda_matmul(select_device(cfg.device)):
        return run_torch_trainer(
            TRAINER, cfg.resolved(), functools.partial(build_task, dataset=dataset), progress=progress
        )


CONFIG = ConvNetConfig
