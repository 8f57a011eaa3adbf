"""`backproplab train speedrun` on the CPU: its parts against hand-written references, and short
end-to-end runs of the command on synthetic data (easy images written as an image folder)."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from template_data import write_image_folder

from backproplab.cli.main import main
from backproplab.data import Dataset
from backproplab.errors import ConfigError, ShapeError
from backproplab.torch_models.speedrun_net import SpeedrunNet, image_patches, whitening_weights
from backproplab.training.speedrun import (
    Lookahead,
    SpeedrunConfig,
    augmented_epoch,
    averaging_decay,
    eval_due,
    flip_mask,
    lr_factor,
    make_optimizer,
    tta_logits,
)
from backproplab.training.torch_device import select_device

COV_TOL = 2e-3  # |cov(whitened patches) - expected| in float32 convs over ~10^5 patches
EXACT_TOL = 1e-6  # float32 arithmetic that should be exact up to rounding
# a net that trains in ~0.1 s/epoch; --learning_rate 4 at batch 64 is a batch-mean lr of 0.25 (the default 1.5 is for
# batch 1024 and 50000 images, too slow for 4 steps per epoch)
SMALL = ("--device", "cpu", "--widths", "16,32,32", "--batch_size", "64", "--learning_rate", "4")


def synthetic_dataset(n_train: int, n_test: int, num_classes: int, seed: int) -> Dataset:
    """32x32x3 uint8 images whose class is their brightness (class k: mean 20 + k * 200/(K-1),
    Gaussian noise std 10): easy, but only learnable by actually training."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, n)
        level = 20 + y * (200 / max(num_classes - 1, 1))  # (n,)
        x = level[:, None, None, None] + rng.normal(0, 10, (n, 32, 32, 3))  # (n, 32, 32, 3)
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return Dataset("synthetic", xtr, ytr, xte, yte, tuple(f"c{k}" for k in range(num_classes)), "synthetic")


def write_synthetic(root: Path, num_classes: int = 10, n_train: int = 256, n_test: int = 128) -> Path:
    """The synthetic images as an image folder in ``root``, for ``--data_dir`` (read as CIFAR-10)."""
    return write_image_folder(synthetic_dataset(n_train, n_test, num_classes, seed=1), root)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 10 classes of 256 training and 128 test images."""
    return write_synthetic(tmp_path_factory.mktemp("data"))


def run_cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    """``backproplab train speedrun --data_dir DATA_DIR ARGS``: the exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", "speedrun", "--data_dir", str(data_dir), *args])
    return code, out.getvalue(), err.getvalue()


def read_records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------ whitening
def smooth_images(n: int, seed: int) -> torch.Tensor:
    """Correlated images (N, 3, 16, 16): blurred noise with mixed channels, like natural images'
    strongly correlated neighbouring pixels and colours."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 18, 18, generator=g, dtype=torch.float64)
    x = F.avg_pool2d(x, 3, stride=1)  # (n, 3, 16, 16): neighbours correlated
    mix = torch.tensor([[1.0, 0.8, 0.6], [0.0, 0.5, 0.4], [0.0, 0.0, 0.2]], dtype=torch.float64)
    return torch.einsum("dc,nchw->ndhw", mix, x).float()  # channels correlated


def numpy_patch_covariance(images: np.ndarray) -> np.ndarray:
    """Covariance (12, 12) of the 2x2 patches of ``images`` (N, 3, H, W), written with explicit
    slicing in (c, dy, dx) order: an independent reference for ``image_patches``."""
    h, w = images.shape[2] - 1, images.shape[3] - 1
    cols = [
        images[:, c, dy : dy + h, dx : dx + w].reshape(-1) for c in range(3) for dy in (0, 1) for dx in (0, 1)
    ]
    return np.cov(np.stack(cols).astype(np.float64))


def test_whitened_patches_have_identity_covariance() -> None:
    images = smooth_images(400, seed=0)
    cov_in = numpy_patch_covariance(images.numpy())
    lam = np.linalg.eigvalsh(cov_in)
    assert lam.max() / lam.min() > 100  # the input patches are far from white

    net = SpeedrunNet(3, 10, (8,))
    net.init_whitening(images, eps=1e-8)
    with torch.no_grad():
        out = F.conv2d(images, net.whiten.weight)  # (N, 24, 15, 15): the first layer before bias and act
    feats = out.permute(1, 0, 2, 3).reshape(24, -1).double().numpy()  # (24, patches)
    cov_out = np.cov(feats)
    np.testing.assert_allclose(cov_out[:12, :12], np.eye(12), atol=COV_TOL)
    np.testing.assert_allclose(cov_out[12:, 12:], np.eye(12), atol=COV_TOL)  # the negated copies
    np.testing.assert_allclose(cov_out[:12, 12:], -np.eye(12), atol=COV_TOL)


def test_whitening_eps_shrinks_each_component_by_lambda_over_lambda_plus_eps() -> None:
    images = smooth_images(400, seed=1)
    lam = np.linalg.eigvalsh(numpy_patch_covariance(images.numpy()))  # ascending
    eps = float(np.median(lam))  # half the components are damped noticeably
    w = whitening_weights(images, 2, eps).reshape(12, 12).double()  # rows: filters
    patches = image_patches(images, 2).double()  # (P, 12)
    cov_out = np.cov((patches @ w.T).numpy().T)
    np.testing.assert_allclose(cov_out, np.diag(lam / (lam + eps)), atol=COV_TOL)


def test_image_patches_match_conv_weight_order() -> None:
    images = smooth_images(3, seed=2)
    w = torch.randn(5, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    via_conv = F.conv2d(images, w).permute(0, 2, 3, 1).reshape(-1, 5)  # (N*15*15, 5)
    via_patches = image_patches(images, 2) @ w.reshape(5, -1).T
    torch.testing.assert_close(via_patches, via_conv, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ the net
@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    size=st.integers(9, 20),
    n_blocks=st.integers(1, 3),
    classes=st.integers(2, 12),
)
def test_net_output_shape(n: int, c: int, size: int, n_blocks: int, classes: int) -> None:
    net = SpeedrunNet(c, classes, (4,) * n_blocks)
    net.reset_parameters(torch.Generator().manual_seed(0))
    x = torch.randn(n, c, size, size + 1)
    if size < net.min_size:
        with pytest.raises(
            ShapeError, match=rf"at least {net.min_size}x{net.min_size}, got {size}x{size + 1}"
        ):
            net.check_input(x)
        return
    net.check_input(x)
    assert net.eval()(x).shape == (n, classes)


def test_net_rejects_wrong_channel_count() -> None:
    net = SpeedrunNet(3, 10)
    with pytest.raises(ShapeError, match=r"expects images of shape \(N, 3, H, W\), got \(2, 1, 32, 32\)"):
        net.init_whitening(torch.zeros(2, 1, 32, 32))


def test_reset_parameters_is_seeded_and_sets_identity_filters() -> None:
    a, b = SpeedrunNet(3, 10, (8, 16)), SpeedrunNet(3, 10, (8, 16))
    a.reset_parameters(torch.Generator().manual_seed(5))
    b.reset_parameters(torch.Generator().manual_seed(5))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    w = a.blocks[1].conv1.weight  # (16, 8, 3, 3): first 8 filters are the identity
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(F.conv2d(x, w[:8], padding=1), x)
    assert not torch.equal(w[8:], torch.zeros_like(w[8:]))  # the rest are random
    bn = a.blocks[0].norm1
    assert not bn.weight.requires_grad and torch.equal(bn.weight, torch.ones(8))


# ------------------------------------------------------------------------------------------ augmentation
def naive_augment(
    x_pad: np.ndarray, t: int, flip: np.ndarray, perm: np.ndarray, dy: np.ndarray, dx: np.ndarray
) -> np.ndarray:
    h, w = x_pad.shape[2] - 2 * t, x_pad.shape[3] - 2 * t
    out = []
    for i, src in enumerate(perm):
        crop = x_pad[src, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out.append(crop[:, :, ::-1] if flip[src] else crop)
    return np.stack(out)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 6), c=st.integers(1, 3), h=st.integers(3, 7), w=st.integers(3, 7), t=st.integers(0, 2)
)
def test_augmented_epoch_is_crop_then_flip_of_the_shuffled_images(
    n: int, c: int, h: int, w: int, t: int
) -> None:
    g = torch.Generator().manual_seed(n * 1000 + h * 10 + w)
    x_pad = torch.randn(n, c, h + 2 * t, w + 2 * t, generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    perm = torch.randperm(n, generator=g)
    state = g.get_state()
    out = augmented_epoch(x_pad, t, flip, perm, g)  # (n, c, h, w)
    g.set_state(state)  # replay the offsets the function drew
    dy = torch.randint(0, 2 * t + 1, (n,), generator=g).numpy()
    dx = torch.randint(0, 2 * t + 1, (n,), generator=g).numpy()
    expected = naive_augment(x_pad.numpy(), t, flip.numpy(), perm.numpy(), dy, dx)
    assert out.shape == (n, c, h, w)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_translations_cover_every_offset_and_flips_alternate() -> None:
    g = torch.Generator().manual_seed(0)
    n, t = 2000, 2
    # every pixel holds its column index, so the crop offset and the flip are readable from the output
    cols = torch.arange(8 + 2 * t, dtype=torch.float32)
    x_pad = cols.expand(n, 1, 8 + 2 * t, 8 + 2 * t).clone()  # (n, 1, 12, 12)
    base = torch.rand(n, generator=g) < 0.5
    perm = torch.arange(n)
    even = augmented_epoch(x_pad, t, flip_mask("alternating", 0, base, g), perm, g)
    odd = augmented_epoch(x_pad, t, flip_mask("alternating", 1, base, g), perm, g)
    flipped_even = even[:, 0, 0, 0] > even[:, 0, 0, -1]
    flipped_odd = odd[:, 0, 0, 0] > odd[:, 0, 0, -1]
    assert torch.equal(flipped_even, base) and torch.equal(flipped_odd, ~base)
    offsets = torch.where(flipped_even, even[:, 0, 0, -1], even[:, 0, 0, 0]).long()  # dx per image
    counts = torch.bincount(offsets, minlength=2 * t + 1)
    assert counts.shape == (2 * t + 1,) and counts.min() > n / (2 * t + 1) * 0.8  # ~uniform over 0..2t
    rnd = flip_mask("random", 0, base, g)
    assert 0.4 < rnd.float().mean() < 0.6 and not torch.equal(rnd, base)
    assert not flip_mask("none", 0, base, g).any()


# ------------------------------------------------------------------------------------------ lr, decay, sgd
def test_lr_schedule_is_piecewise_linear_through_start_peak_end() -> None:
    total, warm, start, end = 200, 0.25, 0.2, 0.07
    assert lr_factor(0, total, warm, start, end) == pytest.approx(start, abs=EXACT_TOL)
    assert lr_factor(50, total, warm, start, end) == pytest.approx(1.0, abs=EXACT_TOL)
    assert lr_factor(200, total, warm, start, end) == pytest.approx(end, abs=EXACT_TOL)
    assert lr_factor(25, total, warm, start, end) == pytest.approx((start + 1) / 2, abs=EXACT_TOL)
    assert lr_factor(125, total, warm, start, end) == pytest.approx((1 + end) / 2, abs=EXACT_TOL)
    assert lr_factor(10, total, 0.0, start, end) == pytest.approx(1 + (end - 1) * 10 / 200, abs=EXACT_TOL)


def test_lookahead_update_is_a_lerp_then_reset() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    avg0 = [t.detach().clone() for t in [*net.parameters(), *net.buffers()] if t.is_floating_point()]
    la = Lookahead(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.5)
        net[1].running_mean.add_(2.0)
    live = [t.detach().clone() for t in la.live]
    la.update(0.8)
    for a0, w, now in zip(avg0, live, la.live, strict=True):
        torch.testing.assert_close(now, 0.8 * a0 + 0.2 * w)
    assert averaging_decay(50, 100, 0.95, 5) == pytest.approx(0.95**5 * 0.125, abs=EXACT_TOL)
    assert averaging_decay(0, 100, 0.95, 5) == 0.0


def test_weight_decay_flag_is_the_fraction_removed_per_step_at_peak_lr_and_batch_1024() -> None:
    cfg = SpeedrunConfig(momentum=0.0, weight_decay=0.01, batch_size=128, learning_rate=0.7, bias_lr_scale=64)
    net = SpeedrunNet(3, 10, (8,))
    net.reset_parameters(torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.whiten.bias.fill_(1.0)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.fill_(1.0)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = make_optimizer(net, cfg)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    groups = opt.param_groups
    assert groups[2]["lr"] == pytest.approx(0.7 / 1024) and groups[0]["lr"] == pytest.approx(64 * 0.7 / 1024)
    shrink = 0.01 * 128 / 1024  # weight_decay is quoted at batch 1024 and scales with the batch size
    for name, p in net.named_parameters():
        if p.requires_grad:  # biases and weights alike shrink by exactly that fraction
            torch.testing.assert_close(p, before[name] * (1 - shrink), atol=EXACT_TOL, rtol=EXACT_TOL)
        else:  # frozen: whitening filters and the BatchNorm scale
            assert torch.equal(p, before[name]), name


# ------------------------------------------------------------------------------------------ TTA
class ColumnReader(torch.nn.Module):
    """A 'net' whose logits are the pixels of row 1 of channel 0, so each view is identifiable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 1, :]  # (N, W)


def test_tta_weights_views_half_quarter_quarter() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 6, 6, generator=g)
    x_pad = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (4, 2, 8, 8)
    f = ColumnReader()

    def m(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (f(v) + f(v.flip(3)))

    torch.testing.assert_close(tta_logits(f, x, x_pad, 0), f(x))
    torch.testing.assert_close(tta_logits(f, x, x_pad, 1), m(x))
    expected = 0.5 * m(x) + 0.25 * (m(x_pad[:, :, :6, :6]) + m(x_pad[:, :, 2:, 2:]))
    torch.testing.assert_close(tta_logits(f, x, x_pad, 2), expected)


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("speedrun") / "two"
    code, stdout, _ = run_cli(data_dir, *SMALL, "--max_steps", "48", "--runs", "2", "--out", str(out))
    assert code == 0
    return out, stdout


def test_two_runs_print_mean_and_std(two_runs: tuple[Path, str]) -> None:
    out, stdout = two_runs
    summary = json.loads((out / "summary.json").read_text())
    accs = [r["test_acc"] for r in summary["runs"]]
    secs = [r["train_seconds"] for r in summary["runs"]]
    assert len(accs) == 2
    assert summary["test_acc_mean"] == pytest.approx(np.mean(accs), abs=EXACT_TOL)
    assert summary["test_acc_std"] == pytest.approx(np.std(accs, ddof=1), abs=EXACT_TOL)
    assert (
        f"test accuracy: {np.mean(accs):.4f} +- {np.std(accs, ddof=1):.4f} (mean +- std over 2 runs)"
        in stdout
    )
    assert f"training time: {np.mean(secs):.3f} +- {np.std(secs, ddof=1):.3f} s" in stdout
    assert "run 1/2: test acc" in stdout and "run 2/2: test acc" in stdout
    assert f"final test accuracy: {summary['final_test_acc']:.4f}" in stdout  # the CLI's print_summary


def test_run_directory_files(two_runs: tuple[Path, str]) -> None:
    out, _ = two_runs
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["trainer"] == "speedrun" and cfg["runs"] == 2 and cfg["max_steps"] == 48
    assert cfg["resolved_device"] == "cpu" and cfg["resolved_dtype"] == "float32"
    records = read_records(out)
    for run in (1, 2):
        recs = [r for r in records if r["run"] == run]
        assert [r["epoch"] for r in recs] == list(range(1, 13))
        assert [r["step"] for r in recs] == [4 * e for e in range(1, 13)]  # 256 // 64 steps per epoch
        times = [r["elapsed_s"] for r in recs]
        assert all(0 < a < b for a, b in itertools.pairwise(times))
        assert [("test_acc" in r) for r in recs] == [False] * 11 + [True]  # evaluated at the end only
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["timing"] == "time.perf_counter"
    last = [r for r in records if r["epoch"] == 12]
    assert [s["test_acc"] for s in summary["runs"]] == [r["test_acc"] for r in last]
    assert [s["train_seconds"] for s in summary["runs"]] == [r["elapsed_s"] for r in last]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(out / "model.pt", weights_only=True)
    net = SpeedrunNet(3, 10, (16, 32, 32))
    net.load_state_dict(state)
    assert not torch.equal(state["whiten.weight"], torch.zeros_like(state["whiten.weight"]))


def test_loss_goes_down_and_the_net_learns(two_runs: tuple[Path, str]) -> None:
    out, _ = two_runs
    for run in (1, 2):
        recs = [r for r in read_records(out) if r["run"] == run]
        assert recs[0]["train_loss"] < math.log(10) + 0.1  # smoothed CE starts near uniform predictions
        assert recs[-1]["train_loss"] < 0.8 * recs[0]["train_loss"]  # measured ~0.67
        assert recs[-1]["test_acc"] > 0.5  # chance is 0.1; measured ~0.8


def test_same_seed_same_numbers(two_runs: tuple[Path, str], data_dir: Path, tmp_path: Path) -> None:
    out, _ = two_runs
    code, _, _ = run_cli(
        data_dir, *SMALL, "--max_steps", "48", "--runs", "1", "--out", str(tmp_path / "again")
    )
    assert code == 0
    first = [r for r in read_records(out) if r["run"] == 1]
    again = read_records(tmp_path / "again")
    assert [r["train_loss"] for r in again] == [r["train_loss"] for r in first]
    assert again[-1]["test_acc"] == first[-1]["test_acc"]


def test_target_acc_stops_when_reached(tmp_path: Path) -> None:
    out, two_classes = tmp_path / "target", write_synthetic(tmp_path / "data", num_classes=2)
    code, stdout, _ = run_cli(
        two_classes, *SMALL, "--max_steps", "120", "--target_acc", "0.95", "--out", str(out)
    )
    assert code == 0
    recs = read_records(out)
    evals = [r["test_acc"] for r in recs]
    assert all("test_acc" in r for r in recs)  # evaluated every epoch
    assert evals[-1] >= 0.95 and all(a < 0.95 for a in evals[:-1])  # stopped at the first hit
    assert len(recs) < 30
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["time_to_target"] == recs[-1]["elapsed_s"] == summary["train_seconds_mean"]
    assert summary["target_reached_runs"] == 1
    assert f"target 0.9500 reached in {recs[-1]['elapsed_s']:.3f} s" in stdout
    assert "target 0.9500 reached in 1/1 runs" in stdout


def test_whitening_bias_frozen_from_the_start_stays_zero(data_dir: Path, tmp_path: Path) -> None:
    code, _, _ = run_cli(
        data_dir, *SMALL, "--max_steps", "8", "--whiten_bias_epochs", "0", "--out", str(tmp_path / "r")
    )
    assert code == 0
    state = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert torch.equal(state["whiten.bias"], torch.zeros(24))
    assert torch.equal(state["blocks.0.norm1.weight"], torch.ones(16))  # BatchNorm scale never trains


def test_non_finite_loss_stops_with_a_message_and_keeps_the_metrics(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "nan"
    code, _, err = run_cli(  # lr 1e35: the first step overflows float32 logits
        data_dir, *SMALL, "--learning_rate", "1e35", "--max_steps", "12", "--runs", "2", "--out", str(out)
    )
    assert code == 3  # EXIT_DIVERGED
    assert err.startswith(
        "error: run 1: training loss became nan in epoch 1 (step 4); likely cause: --learning_rate 1e+35"
    )
    assert f"metrics so far kept in {out}" in err
    assert read_records(out)[0]["train_loss"] == "nan"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["runs"] == []


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch_size", "512"), "--batch_size 512 is larger than the 256 training images"),
        (
            ("--widths", "16,x"),
            "--widths expects comma-separated positive integers like '64,256,256', got '16,x'",
        ),
        (("--momentum", "1.0"), "--momentum must be in [0, 1), got 1.0"),
        (("--target_acc", "1.5"), "--target_acc must be in (0, 1], got 1.5"),
        (("--amp", "fp16"), "--amp fp16 needs --device cuda"),
    ],
)
def test_bad_flags_are_one_line_errors(
    args: tuple[str, ...], message: str, data_dir: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(data_dir, *SMALL, *args, "--out", str(tmp_path / "r"))
    assert code == 2
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_gpu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--device cuda was asked for but no CUDA device is available"):
        select_device(SpeedrunConfig(device="cuda").device)


def test_unknown_flag_is_an_error() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", "speedrun", "--no_such_flag", "1"]) == 2
    assert "unknown flag --no_such_flag" in err.getvalue()


@pytest.mark.parametrize(
    ("old", "new"),
    [("--lr", "--learning_rate"), ("--n_train", "--train_subset"), ("--eval_every", "--eval_freq")],
)
def test_old_spellings_are_refused_with_the_shared_name(old: str, new: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", "speedrun", old, "1"]) == 2
    assert f"unknown flag {old}; did you mean {new}?" in err.getvalue()


def test_eval_freq_evaluates_at_the_end_of_the_epoch_that_passes_a_multiple() -> None:
    # epochs of 4 steps, --eval_freq 6: the epochs ending at steps 8 (passes 6) and 12 (passes 12)
    assert [eval_due(s, s - 4, 6, False) for s in (4, 8, 12, 16, 20, 24)] == [
        False, True, True, False, True, True
    ]  # fmt: skip
    assert not any(eval_due(s, s - 4, 0, False) for s in (4, 8, 12))  # 0: the final evaluation only
    assert all(eval_due(s, s - 4, 0, True) for s in (4, 8, 12))  # --target_acc: every epoch


def test_the_recipe_is_9_9_epochs_of_cifar10_with_the_shared_seed() -> None:
    cfg = SpeedrunConfig()
    assert cfg.max_steps == math.ceil(9.9 * (50_000 // 1024)) and cfg.seed == 42
