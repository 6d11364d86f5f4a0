"""CornerNet / CenterNet / CornerNet-Saccade training losses (NHWC), as the official `kp_utils.py`,
`kp.py: AELoss` and CornerNet-Lite's `CornerNet_Saccade_Loss`.

Heatmaps arrive as logits. Normalisers (positive peaks, objects) can be passed in for the whole
global batch: the training loop all-reduces (SUM) the per-replica counts across replicas and
passes them here, so each replica's loss is its share of the global-batch loss, the replica
losses add up to it, and the optimizer's cross-replica gradient sum is its gradient. Without
them, the counts of the batch at hand are used (the original's single-device behaviour).
Pull and push are sums over images, so they add up across replicas without any count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

_CLAMP = 1e-4  # the original's `_sigmoid` clamps probabilities to [1e-4, 1 - 1e-4]
_EPS = 1e-4  # added to every count in a denominator, as the original
# Per-object outputs and the target indices they are gathered at.
_INDICES = {
    "tl_embedding": "tl_indices",
    "br_embedding": "br_indices",
    "tl_offset": "tl_indices",
    "br_offset": "br_indices",
    "ct_offset": "ct_indices",
}


def positive_mask(gt_heatmap: tf.Tensor) -> tf.Tensor:
    """The cells a heatmap target marks as keypoints: exactly 1 (the gaussian's peak), as the
    original counts them; the loss and the trainer's global-batch counts both use this."""
    return tf.equal(tf.cast(gt_heatmap, tf.float32), 1.0)


def focal_loss(
    gt_heatmap: tf.Tensor,
    logits: tf.Tensor,
    num_positives: tf.Tensor | None = None,
    valid: tf.Tensor | None = None,
) -> tf.Tensor:
    """Corner focal loss (alpha 2, beta 4) of one stack, the original `_neg_loss` per stack.

    gt_heatmap, logits [B, H, W, C]. Positives are cells with gt exactly 1; negatives are
    weighted by (1 - gt)^4. Returns -(pos_sum + neg_sum) / num_pos, or -neg_sum when there is
    no positive; num_pos is an integer count, so both are -(pos_sum + neg_sum) / max(num_pos, 1).
    `num_positives`: the global-batch count of positives (default: count them in `gt_heatmap`).
    `valid` [B, H, W, C]: CornerNet-Saccade's `_focal_loss_mask`, whose mask weighs positive
    and negative cells alike while num_pos still counts every positive, masked or not (quirk S8).
    """
    gt = tf.cast(gt_heatmap, tf.float32)
    prob = tf.clip_by_value(tf.sigmoid(tf.cast(logits, tf.float32)), _CLAMP, 1.0 - _CLAMP)
    positive = positive_mask(gt)
    pos = tf.where(positive, tf.math.log(prob) * tf.square(1.0 - prob), 0.0)
    neg_weight = tf.square(tf.square(1.0 - gt))
    neg = tf.where(gt < 1.0, tf.math.log(1.0 - prob) * tf.square(prob) * neg_weight, 0.0)
    if valid is not None:
        valid = tf.cast(valid, tf.float32)
        pos, neg = pos * valid, neg * valid
    if num_positives is None:
        num_positives = tf.reduce_sum(tf.cast(positive, tf.float32))
    num_positives = tf.maximum(tf.cast(num_positives, tf.float32), 1.0)
    return -(tf.reduce_sum(pos) + tf.reduce_sum(neg)) / num_positives


def gather_at(feature_map: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Values of `feature_map` [B, H, W, D] at flat cell indices (y * W + x) [B, M] -> [B, M, D]."""
    shape = tf.shape(feature_map)
    flat = tf.reshape(feature_map, [shape[0], shape[1] * shape[2], shape[3]])
    return tf.gather(flat, tf.cast(indices, tf.int32), batch_dims=1)


def pull_push_loss(tl_embedding: tf.Tensor, br_embedding: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Associative-embedding pull and push losses, the original `_ae_loss`, summed over images.

    tl_embedding, br_embedding: gathered tags [B, M, 1]; mask [B, M] (prefix of ones). Per image
    with n objects and e_k = (t_k + b_k) / 2: pull = sum_k ((t_k - e_k)^2 + (b_k - e_k)^2) / (n + 1e-4);
    push = sum over pairs (j, k), j = k included, of (relu(1 - |e_j - e_k|) - 1 / (n + 1e-4))
    / (n (n - 1) + 1e-4); for n >= 2 the diagonal cancels the -1/n terms (up to the eps).
    Deviation: an image with n = 1 has push exactly 0. The original gives ~1.0 there, an artefact
    of the eps (1 - 1/(1 + 1e-4)) / 1e-4 with no pair to push apart. Also unlike the original,
    a batch of one works (it squeezes the batch dimension away). Returns scalars (pull, push).
    """
    mask = tf.cast(mask, tf.float32)
    tl = tf.cast(tl_embedding, tf.float32)[..., 0]
    br = tf.cast(br_embedding, tf.float32)[..., 0]
    num = tf.reduce_sum(mask, axis=1, keepdims=True)  # [B, 1]
    mean = (tl + br) / 2.0
    pull = tf.reduce_sum(((tl - mean) ** 2 + (br - mean) ** 2) / (num + _EPS) * mask)
    pair_mask = mask[:, :, tf.newaxis] * mask[:, tf.newaxis, :]  # [B, M, M]
    num = num[:, :, tf.newaxis]  # [B, 1, 1]
    dist = tf.nn.relu(1.0 - tf.abs(mean[:, :, tf.newaxis] - mean[:, tf.newaxis, :]))
    dist = (dist - 1.0 / (num + _EPS)) / ((num - 1.0) * num + _EPS)
    has_pairs = tf.cast(num >= 2.0, tf.float32)
    push = tf.reduce_sum(dist * pair_mask * has_pairs)
    return pull, push


def offset_loss(pred: tf.Tensor, gt: tf.Tensor, mask: tf.Tensor, num_objects: tf.Tensor | None = None) -> tf.Tensor:
    """Smooth-L1 (beta 1) offset loss, the original `_regr_loss`.

    Summed over the masked objects' x and y, divided by (number of objects + 1e-4).

    Args:
        pred: Gathered predicted offsets [B, M, 2].
        gt: Target offsets [B, M, 2].
        mask: [B, M], 1 for the real objects.
        num_objects: The global-batch count of objects; None: the sum of `mask`.

    Returns:
        The scalar float32 loss.
    """
    mask = tf.cast(mask, tf.float32)
    diff = tf.abs(tf.cast(pred, tf.float32) - tf.cast(gt, tf.float32))
    smooth = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    if num_objects is None:
        num_objects = tf.reduce_sum(mask)
    return tf.reduce_sum(smooth * mask[:, :, tf.newaxis]) / (tf.cast(num_objects, tf.float32) + _EPS)


def cornernet_loss_from_gathered(
    stack_outputs: Sequence[Mapping[str, tf.Tensor]],
    targets: Mapping[str, tf.Tensor],
    pull_weight: float = 0.1,
    push_weight: float = 0.1,
    offset_weight: float = 1.0,
    num_positives: Mapping[str, tf.Tensor] | None = None,
    num_objects: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """The official `AELoss` on per-stack outputs whose embeddings and offsets are gathered.

    Pull, push and offset carry their weights and every part is divided by the number of stacks,
    so total is their sum (the original's value). CenterNet's center heatmap and offset, when
    present in both outputs and targets, add to focal and offset (embeddings stay tl/br only).
    A target `tl_valid` / `br_valid` (CornerNet-Saccade's ignore maps) masks its heatmap's focal
    loss (`focal_loss(valid=...)`, the official `_focal_loss_mask`).

    Args:
        stack_outputs: One dict per stack with tl_heatmap, br_heatmap [B, H, W, C] logits,
            tl_embedding, br_embedding [B, M, 1], tl_offset, br_offset [B, M, 2] (gathered at the
            target indices), and for CenterNet ct_heatmap, ct_offset [B, M, 2].
        targets: Batched `build_targets` output, with tl_valid, br_valid [B, H, W, C] for Saccade.
        pull_weight: Weight of the pull loss.
        push_weight: Weight of the push loss.
        offset_weight: Weight of the offset loss.
        num_positives: Heatmap key to its global-batch positive count; None: counted per batch.
        num_objects: The global-batch object count; None: the sum of targets["mask"].

    Returns:
        Scalars "total", "focal", "pull", "push", "offset".
    """
    mask = targets["mask"]
    present = [key for key in targets if key in stack_outputs[0]]
    heatmaps = [key for key in ("tl_heatmap", "br_heatmap", "ct_heatmap") if key in present]
    offsets = [key for key in ("tl_offset", "br_offset", "ct_offset") if key in present]
    focal = pull = push = offset = 0.0
    for outputs in stack_outputs:
        for key in heatmaps:
            count = None if num_positives is None else num_positives[key]
            focal += focal_loss(targets[key], outputs[key], count, targets.get(key.replace("heatmap", "valid")))
        stack_pull, stack_push = pull_push_loss(outputs["tl_embedding"], outputs["br_embedding"], mask)
        pull += stack_pull
        push += stack_push
        for key in offsets:
            offset += offset_loss(outputs[key], targets[key], mask, num_objects)
    nstack = float(len(stack_outputs))
    parts = {
        "focal": focal / nstack,
        "pull": pull_weight * pull / nstack,
        "push": push_weight * push / nstack,
        "offset": offset_weight * offset / nstack,
    }
    return {"total": parts["focal"] + parts["pull"] + parts["push"] + parts["offset"], **parts}


def cornernet_loss(
    stack_outputs: Sequence[Mapping[str, tf.Tensor]],
    targets: Mapping[str, tf.Tensor],
    pull_weight: float = 0.1,
    push_weight: float = 0.1,
    offset_weight: float = 1.0,
    num_positives: Mapping[str, tf.Tensor] | None = None,
    num_objects: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """Training loss from full per-stack maps: gathers embeddings/offsets at the target indices.

    Args:
        stack_outputs: One dict per stack as the model returns them (tl_heatmap, br_heatmap
            [B, H, W, C] logits; tl_embedding, br_embedding [B, H, W, 1]; tl_offset, br_offset
            [B, H, W, 2]; optionally ct_heatmap, ct_offset).
        targets: Batched `build_targets` output (tl_indices [B, M], mask [B, M], ...).
        pull_weight, push_weight, offset_weight, num_positives, num_objects: As
            `cornernet_loss_from_gathered`.

    Returns:
        Scalars "total", "focal", "pull", "push", "offset", as `cornernet_loss_from_gathered`.
    """
    gathered = [
        {
            key: gather_at(value, targets[_INDICES[key]]) if _INDICES.get(key) in targets else value
            for key, value in outputs.items()
        }
        for outputs in stack_outputs
    ]
    return cornernet_loss_from_gathered(
        gathered, targets, pull_weight, push_weight, offset_weight, num_positives, num_objects
    )


def attention_keys(targets: Mapping[str, tf.Tensor]) -> list[str]:
    """The attention-map keys of CornerNet-Saccade targets, "attention_0" (coarsest) first."""
    keys = [key for key in targets if key.startswith("attention_")]
    return sorted(keys, key=lambda key: int(key.removeprefix("attention_")))


def attention_losses(
    stack_outputs: Sequence[Mapping[str, tf.Tensor]],
    targets: Mapping[str, tf.Tensor],
    num_positives: Mapping[str, tf.Tensor] | None = None,
) -> dict[str, tf.Tensor]:
    """Per attention map, the official `CornerNet_Saccade_Loss` term: the unmasked focal loss
    (`_focal_loss`: binary targets, so negatives weigh 1) summed over the stacks and divided by
    their number. A map without a positive in the batch gives its raw negative sum, not
    normalized (quirk S8).

    Args:
        stack_outputs: One dict per stack with attention_j [B, h_j, w_j, 1] logits.
        targets: With attention_j [B, h_j, w_j, 1] binary maps.
        num_positives: attention_j to its global-batch positive count; None: counted here.

    Returns:
        attention_j to its scalar loss, for every attention_j of `targets`.
    """
    nstack = float(len(stack_outputs))
    losses = {}
    for key in attention_keys(targets):
        count = None if num_positives is None else num_positives[key]
        losses[key] = sum(focal_loss(targets[key], outputs[key], count) for outputs in stack_outputs) / nstack
    return losses


def saccade_loss(
    stack_outputs: Sequence[Mapping[str, tf.Tensor]],
    targets: Mapping[str, tf.Tensor],
    pull_weight: float = 0.1,
    push_weight: float = 0.1,
    offset_weight: float = 1.0,
    num_positives: Mapping[str, tf.Tensor] | None = None,
    num_objects: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """The official `CornerNet_Saccade_Loss`: `cornernet_loss` with the heat focal loss masked by
    the ignore maps (tl_valid, br_valid), plus the attention loss.

    Every part is divided by the number of stacks, the attention part too, although each of its
    terms already is (`attention_losses`): the original divides it by nstack twice (quirk S8).
    The push deviation of `pull_push_loss` applies (an image with one object pushes 0).

    Args:
        stack_outputs: One dict per stack as the model returns them: tl_heatmap, br_heatmap
            [B, H, W, C] logits, tl_embedding, br_embedding [B, H, W, 1], tl_offset, br_offset
            [B, H, W, 2], attention_0 .. attention_{n-1} [B, h_j, w_j, 1] logits.
        targets: `build_batch_targets(..., positive=...)` output (tl_heatmap, br_heatmap,
            tl_valid, br_valid [B, H, W, C], tl_indices, br_indices [B, M], tl_offset, br_offset
            [B, M, 2], mask [B, M]) plus attention_0 .. [B, h_j, w_j, 1].
        pull_weight, push_weight, offset_weight: As `cornernet_loss` (official 0.1, 0.1, 1).
        num_positives: Global-batch positive counts per heatmap and attention key; None:
            counted in this batch.
        num_objects: The global-batch object count; None: the sum of targets["mask"].

    Returns:
        Scalars "total", "focal", "attention", "pull", "push", "offset", each / nstack;
        total is their sum.
    """
    parts = cornernet_loss(stack_outputs, targets, pull_weight, push_weight, offset_weight, num_positives, num_objects)
    attention = sum(attention_losses(stack_outputs, targets, num_positives).values()) / float(len(stack_outputs))
    return {**parts, "total": parts["total"] + attention, "attention": attention}
