"""CornerNet-Saccade loss against the official `CornerNet_Saccade_Loss` on the official sampler
batch (`saccade_sample.npz`): total, components, attention per map, the no-positive branch,
the masked focal loss, and replica splitting with global-batch counts."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.objective.losses import attention_losses, focal_loss, positive_mask, saccade_loss
from tests.conftest import load_reference, nhwc

RTOL = 1e-5
HEADS = {
    "tl_heatmap": "tl_heat",
    "br_heatmap": "br_heat",
    "tl_embedding": "tl_tag",
    "br_embedding": "br_tag",
    "tl_offset": "tl_off",
    "br_offset": "br_off",
}


@pytest.fixture(scope="module")
def ref():
    return load_reference("saccade_sample.npz")


def stacks(ref) -> list[dict[str, np.ndarray]]:
    """The fixture's per-stack logits, NHWC, under the model's output names."""
    out = []
    for s in range(2):
        stack = {key: nhwc(ref[f"loss/outs/stack{s}/{name}"]) for key, name in HEADS.items()}
        stack.update({f"attention_{j}": nhwc(ref[f"loss/outs/stack{s}/att{j}"]) for j in range(3)})
        out.append(stack)
    return out


def targets(ref) -> dict[str, np.ndarray]:
    """The official sampler batch under the names `saccade_targets` gives them."""
    out = {"mask": ref["sampler/tag_masks"].astype(np.float32)}
    for corner in ("tl", "br"):
        out[f"{corner}_heatmap"] = nhwc(ref[f"sampler/{corner}_heats"])
        out[f"{corner}_valid"] = nhwc(ref[f"sampler/{corner}_valids"])
        out[f"{corner}_indices"] = ref[f"sampler/{corner}_tags"]
        out[f"{corner}_offset"] = ref[f"sampler/{corner}_regrs"]
    out.update({f"attention_{j}": nhwc(ref[f"sampler/att{j}"]) for j in range(3)})
    return out


def one_object_push(mask: np.ndarray) -> float:
    """The official push of the batch's one-object images: a tag-independent eps artefact,
    (1 - 1/(1 + 1e-4)) / 1e-4 each in float32, that `pull_push_loss` drops by design."""
    num = np.float32(1.0) + np.float32(1e-4)
    artefact = (np.float32(1.0) - np.float32(1.0) / num) / np.float32(1e-4)
    return float(artefact) * int(np.sum(mask.sum(axis=1) == 1))


def test_total_and_components(ref):
    gt = targets(ref)
    nstack = 2
    loss = saccade_loss(stacks(ref), gt)
    focal, attention, pull, push, offset = ref["loss/components"]
    dropped = 0.1 * nstack * one_object_push(gt["mask"])
    assert dropped > 0.1  # the batch has a one-object image
    np.testing.assert_allclose(loss["focal"].numpy() * nstack, focal, rtol=RTOL)
    np.testing.assert_allclose(loss["attention"].numpy() * nstack, attention, rtol=RTOL)
    np.testing.assert_allclose(loss["pull"].numpy() * nstack, pull, rtol=RTOL)
    np.testing.assert_allclose(loss["push"].numpy() * nstack, push - dropped, rtol=RTOL)
    np.testing.assert_allclose(loss["offset"].numpy() * nstack, offset, rtol=RTOL)
    expected = ref["loss/total"][0] - dropped / nstack
    np.testing.assert_allclose(loss["total"].numpy(), expected, rtol=RTOL)
    parts = sum(loss[key] for key in ("focal", "attention", "pull", "push", "offset"))
    np.testing.assert_allclose(loss["total"].numpy(), parts.numpy(), rtol=1e-6)


@pytest.mark.parametrize("empty_finest", [False, True])
def test_attention_per_map(ref, empty_finest):
    gt = targets(ref)
    suffix = ""
    if empty_finest:
        assert gt["attention_2"].any()
        gt["attention_2"] = np.zeros_like(gt["attention_2"])
        suffix = "_finest_att_target_empty"
    losses = attention_losses(stacks(ref), gt)
    assert list(losses) == ["attention_0", "attention_1", "attention_2"]
    per_map = [losses[f"attention_{j}"].numpy() for j in range(3)]
    np.testing.assert_allclose(per_map, ref[f"loss/att_per_scale{suffix}"], rtol=RTOL)
    if empty_finest:
        total = saccade_loss(stacks(ref), gt)["total"].numpy()
        dropped = 0.1 * one_object_push(gt["mask"])
        np.testing.assert_allclose(total, ref["loss/total_finest_att_target_empty"][0] - dropped, rtol=RTOL)


def test_ignored_cells_leave_the_focal_loss(ref):
    """The valid maps weigh positive and negative cells, but num_pos still counts every
    positive (S8): the official `_focal_loss_mask` written out in float64."""
    gt, outputs = targets(ref), stacks(ref)[0]
    assert (gt["tl_valid"] == 0).any()
    masked = focal_loss(gt["tl_heatmap"], outputs["tl_heatmap"], valid=gt["tl_valid"])
    prob = np.clip(1 / (1 + np.exp(-outputs["tl_heatmap"].astype(np.float64))), 1e-4, 1 - 1e-4)
    heat, valid = gt["tl_heatmap"].astype(np.float64), gt["tl_valid"]
    pos = np.where(heat == 1, np.log(prob) * (1 - prob) ** 2, 0) * valid
    neg = np.where(heat < 1, np.log(1 - prob) * prob**2 * (1 - heat) ** 4, 0) * valid
    expected = -(pos.sum() + neg.sum()) / (heat == 1).sum()
    np.testing.assert_allclose(masked.numpy(), expected, rtol=RTOL)
    unmasked = focal_loss(gt["tl_heatmap"], outputs["tl_heatmap"])
    assert abs(float(unmasked) - float(masked)) > 1e-3


def test_replicas_with_global_counts_add_up(ref):
    """Split the batch as replicas: with the all-reduced counts (positives per heatmap and
    attention map, objects), the replica losses add up to the whole batch's. The one-image
    replica has no attention positive on the coarser maps, but the global count normalises it."""
    gt, outputs = targets(ref), stacks(ref)
    counts = {
        key: tf.reduce_sum(tf.cast(positive_mask(gt[key]), tf.float32))
        for key in ("tl_heatmap", "br_heatmap", "attention_0", "attention_1", "attention_2")
    }
    objects = float(gt["mask"].sum())
    whole = saccade_loss(outputs, gt, num_positives=counts, num_objects=objects)
    np.testing.assert_allclose(whole["total"].numpy(), saccade_loss(outputs, gt)["total"].numpy(), rtol=1e-6)
    split = [slice(0, 2), slice(2, 3)]
    parts = [
        saccade_loss(
            [{key: value[rows] for key, value in stack.items()} for stack in outputs],
            {key: value[rows] for key, value in gt.items()},
            num_positives=counts,
            num_objects=objects,
        )
        for rows in split
    ]
    for key in ("focal", "attention", "pull", "push", "offset", "total"):
        np.testing.assert_allclose(sum(part[key].numpy() for part in parts), whole[key].numpy(), rtol=1e-5, atol=1e-6)
