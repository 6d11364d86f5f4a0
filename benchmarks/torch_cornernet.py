"""CornerNet in PyTorch (NCHW, BGR input), the stand-in for the original code in benchmarks/train_step.py.

The modules carry the original's names (pre, kps, cnvs, inters, inters_, cnvs_, tl_cnvs, tl_heats, ...),
so `state_dict()` is an official-layout checkpoint that `cornernet_tf.tasks.official_weights.load_official_weights`
loads into our Keras model; corner pools are `torch.cummax`. The loss is ours (`cornernet_tf.objective.losses`)
on our targets (`cornernet_tf.objective.targets.build_batch_targets`), so both steps do the same work.
`check_same_network` proves it: same outputs after conversion, same loss on one batch.

    python benchmarks/torch_cornernet.py [--config shapes_tiny] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cornernet_tf.config import ModelConfig, load_config
from cornernet_tf.objective.losses import cornernet_loss
from cornernet_tf.objective.targets import build_batch_targets
from cornernet_tf.tasks.model import build_model
from cornernet_tf.tasks.official_weights import load_official_weights

Maps = dict[str, torch.Tensor]
_CLAMP = 1e-4  # as cornernet_tf.objective.losses: probability clamp, and the eps added to every count
_GATHERED = {
    "tl_embedding": "tl_indices",
    "br_embedding": "br_indices",
    "tl_offset": "tl_indices",
    "br_offset": "br_indices",
}


class Convolution(nn.Module):
    """The original's `convolution`: k x k conv (symmetric padding) -> BN, or a conv bias -> ReLU."""

    def __init__(self, k: int, inp: int, out: int, stride: int = 1, with_bn: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(inp, out, k, stride, (k - 1) // 2, bias=not with_bn)
        self.bn = nn.BatchNorm2d(out) if with_bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    """The original's `residual`: two 3x3 conv-BN, a 1x1 conv-BN skip when the shape changes, ReLU."""

    def __init__(self, inp: int, out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        changed = stride != 1 or inp != out
        self.skip = (
            nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out)) if changed else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + self.skip(x))


def residuals(inp: int, out: int, count: int, stride: int = 1, change_last: bool = False) -> nn.Sequential:
    """`count` residuals inp -> out; the channel change (and stride) in the first one, or in the last."""
    dims = [inp] * count + [out] if change_last else [inp] + [out] * count
    return nn.Sequential(
        *(Residual(a, b, stride if i == 0 else 1) for i, (a, b) in enumerate(itertools.pairwise(dims)))
    )


class Hourglass(nn.Module):
    """The original's `kp_module`: up1 + nearest-upsampled low3(low2(low1(x))), recursive over dims."""

    def __init__(self, dims: list[int], modules: list[int]):
        super().__init__()
        (curr, nxt), (curr_mod, next_mod) = dims[:2], modules[:2]
        self.up1 = residuals(curr, curr, curr_mod)
        self.low1 = residuals(curr, nxt, curr_mod, stride=2)
        self.low2 = Hourglass(dims[1:], modules[1:]) if len(dims) > 2 else residuals(nxt, nxt, next_mod)
        self.low3 = residuals(nxt, curr, curr_mod, change_last=True)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up1(x) + self.up2(self.low3(self.low2(self.low1(x))))


def directional_max(x: torch.Tensor, direction: str) -> torch.Tensor:
    """Corner pool of NCHW x: cumulative max towards the bottom/right; top/left flip, cummax, flip back."""
    dim = 2 if direction in ("top", "bottom") else 3
    if direction in ("bottom", "right"):
        return torch.cummax(x, dim).values
    return torch.cummax(x.flip(dim), dim).values.flip(dim)


class CornerPool(nn.Module):
    """The original's `pool`: conv2(ReLU(p_bn1(p_conv1(d1(p1) + d2(p2))) + bn1(conv1(x))))."""

    def __init__(self, dim: int, pool_dim: int, directions: tuple[str, str]):
        super().__init__()
        self.directions = directions
        self.p1_conv1 = Convolution(3, dim, pool_dim)
        self.p2_conv1 = Convolution(3, dim, pool_dim)
        self.p_conv1 = nn.Conv2d(pool_dim, dim, 3, padding=1, bias=False)
        self.p_bn1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.conv2 = Convolution(3, dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.directions
        pooled = directional_max(self.p1_conv1(x), first) + directional_max(self.p2_conv1(x), second)
        return self.conv2(torch.relu(self.p_bn1(self.p_conv1(pooled)) + self.bn1(self.conv1(x))))


def head(cnv_dim: int, hidden: int, out: int, bias: float = 0.0) -> nn.Sequential:
    """The original's `make_kp_layer`: 3x3 conv + bias + ReLU, then a 1x1 conv (bias `bias`)."""
    layer = nn.Sequential(Convolution(3, cnv_dim, hidden, with_bn=False), nn.Conv2d(hidden, out, 1))
    nn.init.constant_(layer[1].bias, bias)
    return layer


class TorchCornerNet(nn.Module):
    """The original `kp` network: BGR images [B, 3, H, W] -> per-stack dicts of NCHW maps keyed as ours
    (heatmap logits, embeddings, offsets); all stacks in training mode, the last one in eval mode."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        dim, n = c.dims[0], c.nstack
        hidden = dim if c.head_dim is None else c.head_dim
        self.pre = nn.Sequential(Convolution(7, 3, c.pre_dims[0], stride=2), Residual(c.pre_dims[0], dim, stride=2))
        self.kps = nn.ModuleList(Hourglass(c.dims, c.modules) for _ in range(n))
        self.cnvs = nn.ModuleList(Convolution(3, dim, c.cnv_dim) for _ in range(n))
        self.inters = nn.ModuleList(Residual(dim, dim) for _ in range(n - 1))
        self.inters_ = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim)) for _ in range(n - 1)
        )
        self.cnvs_ = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c.cnv_dim, dim, 1, bias=False), nn.BatchNorm2d(dim)) for _ in range(n - 1)
        )
        for corner, directions in (("tl", ("top", "left")), ("br", ("bottom", "right"))):
            setattr(
                self, f"{corner}_cnvs", nn.ModuleList(CornerPool(c.cnv_dim, c.pool_dim, directions) for _ in range(n))
            )
            for kind, out, bias in (("heats", c.num_classes, c.heatmap_bias), ("tags", 1, 0.0), ("regrs", 2, 0.0)):
                setattr(self, f"{corner}_{kind}", nn.ModuleList(head(c.cnv_dim, hidden, out, bias) for _ in range(n)))

    def forward(self, images: torch.Tensor) -> list[Maps]:
        inter = self.pre(images)
        outputs = []
        for s in range(len(self.kps)):
            cnv = self.cnvs[s](self.kps[s](inter))
            if self.training or s == len(self.kps) - 1:
                tl, br = self.tl_cnvs[s](cnv), self.br_cnvs[s](cnv)
                outputs.append(
                    {
                        "tl_heatmap": self.tl_heats[s](tl),
                        "br_heatmap": self.br_heats[s](br),
                        "tl_embedding": self.tl_tags[s](tl),
                        "br_embedding": self.br_tags[s](br),
                        "tl_offset": self.tl_regrs[s](tl),
                        "br_offset": self.br_regrs[s](br),
                    }
                )
            if s < len(self.kps) - 1:
                inter = self.inters[s](torch.relu(self.inters_[s](inter) + self.cnvs_[s](cnv)))
        return outputs


def build_torch_cornernet(model_config: ModelConfig) -> TorchCornerNet:
    """The PyTorch CornerNet of a `type: cornernet` ModelConfig (official default init)."""
    model_config.validate()
    if model_config.type != "cornernet":
        raise ValueError(f"build_torch_cornernet: model.type must be 'cornernet', got {model_config.type!r}")
    return TorchCornerNet(model_config)


def to_torch_targets(targets: Mapping[str, Any]) -> Maps:
    """Our batched targets (NHWC heatmaps, tf or numpy) as torch tensors: heatmaps NCHW, indices int64."""
    out = {}
    for key, value in targets.items():
        t = torch.from_numpy(np.array(value))
        out[key] = t.permute(0, 3, 1, 2).contiguous() if key.endswith("_heatmap") else t
    return out | {key: out[key].long() for key in ("tl_indices", "br_indices")}


def focal_loss(gt: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Ours: alpha 2, beta 4 on clamped sigmoid probabilities, over max(positives, 1)."""
    prob = torch.sigmoid(logits).clamp(_CLAMP, 1.0 - _CLAMP)
    positive = gt == 1.0
    pos = torch.where(positive, torch.log(prob) * (1.0 - prob) ** 2, 0.0).sum()
    neg = torch.where(gt < 1.0, torch.log(1.0 - prob) * prob**2 * (1.0 - gt) ** 4, 0.0).sum()
    return -(pos + neg) / positive.sum().clamp(min=1)


def pull_push_loss(tl: torch.Tensor, br: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ours: gathered tags [B, M], mask [B, M]; pull and push summed over images, push 0 for n < 2."""
    num = mask.sum(1, keepdim=True)
    mean = (tl + br) / 2.0
    pull = (((tl - mean) ** 2 + (br - mean) ** 2) / (num + _CLAMP) * mask).sum()
    num = num[:, :, None]
    dist = torch.relu(1.0 - (mean[:, :, None] - mean[:, None, :]).abs())
    dist = (dist - 1.0 / (num + _CLAMP)) / ((num - 1.0) * num + _CLAMP)
    return pull, (dist * mask[:, :, None] * mask[:, None, :] * (num >= 2.0)).sum()


def offset_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ours: smooth-L1 over the masked objects' x and y, over (objects + 1e-4)."""
    smooth = nn.functional.smooth_l1_loss(pred, gt, reduction="none", beta=1.0)
    return (smooth * mask[:, :, None]).sum() / (mask.sum() + _CLAMP)


def gather_at(maps: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Values of NCHW `maps` [B, D, H, W] at flat cell indices y * W + x [B, M] -> [B, M, D]."""
    return maps.flatten(2).gather(2, indices[:, None].expand(-1, maps.shape[1], -1)).transpose(1, 2)


def torch_cornernet_loss(
    stack_outputs: list[Maps],
    targets: Maps,
    pull_weight: float = 0.1,
    push_weight: float = 0.1,
    offset_weight: float = 1.0,
) -> torch.Tensor:
    """`cornernet_tf.objective.losses.cornernet_loss`'s total on NCHW outputs and `to_torch_targets` targets."""
    mask = targets["mask"]
    total = 0.0
    for outputs in stack_outputs:
        gathered = {key: gather_at(outputs[key], targets[index]) for key, index in _GATHERED.items()}
        pull, push = pull_push_loss(gathered["tl_embedding"][..., 0], gathered["br_embedding"][..., 0], mask)
        total = (
            total
            + focal_loss(targets["tl_heatmap"], outputs["tl_heatmap"])
            + focal_loss(targets["br_heatmap"], outputs["br_heatmap"])
            + pull_weight * pull
            + push_weight * push
            + offset_weight * sum(offset_loss(gathered[k], targets[k], mask) for k in ("tl_offset", "br_offset"))
        )
    return total / len(stack_outputs)


def torch_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    autocast_dtype: torch.dtype | None = None,
    **loss_weights: float,
) -> Callable[[torch.Tensor, Maps], float]:
    """step(images_nchw, torch_targets) -> loss: zero_grad, forward (training mode), loss, backward, step.

    images_nchw [B, 3, H, W] BGR (our RGB images channel-reversed); torch_targets from `to_torch_targets`;
    autocast_dtype: e.g. torch.bfloat16 runs the forward under CPU autocast (PyTorch's mixed precision)
    and the loss on its outputs cast to float32, as Keras' mixed_bfloat16 policy and our heads do;
    loss_weights: pull_weight, push_weight, offset_weight (ours by default)."""
    model.train()

    def forward(images: torch.Tensor) -> list[Maps]:
        if autocast_dtype is None:
            return model(images)
        with torch.autocast("cpu", dtype=autocast_dtype):
            stacks = model(images)
        return [{key: value.float() for key, value in stack.items()} for stack in stacks]

    def step(images: torch.Tensor, targets: Maps) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = torch_cornernet_loss(forward(images), targets, **loss_weights)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def _randomise_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics and affines, so the inference comparison exercises every BN variable."""
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            for tensor, low, high in (
                (bn.weight, 0.5, 1.5),
                (bn.bias, -0.2, 0.2),
                (bn.running_mean, -0.2, 0.2),
                (bn.running_var, 0.5, 1.5),
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)


def parameter_counts(torch_model: nn.Module, keras_model: Any) -> tuple[int, int]:
    """Trainable values of both networks (equal when the architectures are)."""
    return (
        sum(p.numel() for p in torch_model.parameters()),
        sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights),
    )


def check_same_network(
    model_config: ModelConfig, threads: int, size: int = 128, batch: int = 2, seed: int = 0
) -> dict[str, float]:
    """Build both nets, load the torch weights into ours with cornernet_tf.convert, and compare the
    inference outputs (max abs difference over all maps) and the training-mode loss on targets built
    from random boxes (relative difference). Also returns both parameter counts. The training-mode loss is
    only as well-conditioned as its BatchNorm batch statistics: Hourglass-104 at 128 px normalises its
    1 x 1 innermost maps over `batch` values, where float32 rounding alone moves the loss by ~1e-4."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = build_torch_cornernet(model_config)
    _randomise_batch_norms(net, generator)
    ours = build_model(model_config)
    load_official_weights(ours, {k: v.detach().numpy() for k, v in net.state_dict().items()})
    rng = np.random.default_rng(seed)
    images_bgr = rng.normal(size=(batch, size, size, 3)).astype(np.float32)
    images_rgb, images_nchw = images_bgr[..., ::-1].copy(), torch.from_numpy(images_bgr).permute(0, 3, 1, 2)
    net.eval()
    with torch.no_grad():
        theirs = net(images_nchw)[-1]
    mine = ours(images_rgb, training=False)
    output_diff = max(float(np.abs(theirs[k].permute(0, 2, 3, 1).numpy() - np.asarray(mine[k])).max()) for k in mine)

    out = size // 4
    corners = rng.uniform(0, size - 8, size=(batch, 6, 2, 2)).astype(np.float32)
    boxes = np.concatenate([corners.min(2), corners.max(2) + 4.0], -1)  # [B, 6, 4] x1 y1 x2 y2, inside the image
    classes = rng.integers(0, model_config.num_classes, size=(batch, 6)).astype(np.int32)
    targets = build_batch_targets(
        boxes,
        classes,
        rng.integers(1, 7, size=batch),
        model_config.num_classes,
        (size, size),
        (out, out),
        max_objects=8,
    )
    net.train()
    torch_loss = float(torch_cornernet_loss(net(images_nchw), to_torch_targets(targets)).detach())
    keras_loss = float(cornernet_loss(ours(images_rgb, training=True, return_all_stacks=True), targets)["total"])
    torch_params, keras_params = parameter_counts(net, ours)
    return {
        "output_max_abs_diff": output_diff,
        "torch_loss": torch_loss,
        "keras_loss": keras_loss,
        "loss_rel_diff": abs(torch_loss - keras_loss) / abs(keras_loss),
        "torch_params": torch_params,
        "keras_params": keras_params,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="shapes_tiny", help="YAML config or bundled config name")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    result = check_same_network(load_config(args.config).model, args.threads)
    for name, value in result.items():
        print(f"{name:>20}: {value:.6g}" if isinstance(value, float) else f"{name:>20}: {value}")
    ok = result["output_max_abs_diff"] < 1e-4 and result["loss_rel_diff"] < 1e-4
    print("same network" if ok and result["torch_params"] == result["keras_params"] else "MISMATCH")
