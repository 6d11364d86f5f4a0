"""Losses against the official `kp_utils.py` / `AELoss` fixture, the deliberate 1-object push
deviation, empty images, batch of one, replica splitting with global counts, full-map gathering,
CenterNet terms and finite gradients."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.objective.losses import (
    cornernet_loss,
    cornernet_loss_from_gathered,
    focal_loss,
    gather_at,
    offset_loss,
    pull_push_loss,
)
from tests.conftest import load_reference, nhwc

RTOL = 1e-4
PUSH_RTOL = 1e-3
OBJECTS_PER_IMAGE = [3, 1, 0, 5]


@pytest.fixture(scope="module")
def ref():
    return load_reference("losses.npz")


def full_stacks(ref) -> list[dict[str, np.ndarray]]:
    """The full-loss fixture's per-stack outputs: heatmaps NHWC, embeddings/offsets gathered."""
    names = {
        "tl_heatmap": "tl_heat",
        "br_heatmap": "br_heat",
        "tl_embedding": "tl_tag",
        "br_embedding": "br_tag",
        "tl_offset": "tl_regr",
        "br_offset": "br_regr",
    }
    stacks = []
    for s in range(2):
        stack = {key: ref[f"full/outs/stack{s}/{name}"] for key, name in names.items()}
        stack["tl_heatmap"], stack["br_heatmap"] = nhwc(stack["tl_heatmap"]), nhwc(stack["br_heatmap"])
        stacks.append(stack)
    return stacks


def full_targets(ref) -> dict[str, np.ndarray]:
    return {
        "tl_heatmap": nhwc(ref["gt_tl_heat"]),
        "br_heatmap": nhwc(ref["gt_br_heat"]),
        "mask": ref["ae_mask"],
        "tl_offset": ref["regr_gt"],
        "br_offset": ref["full/gt_br_regr"],
    }


def one_object_push(ref) -> float:
    """The official push of a 1-object image (~1.0, tag-independent eps artefact) that we drop."""
    return float(ref["ae_pull_push_per_image"][1, 1])


# ---- focal loss ----


@pytest.mark.parametrize("stack", [0, 1])
def test_focal_matches_fixture(ref, stack):
    loss = focal_loss(nhwc(ref["gt_tl_heat"]), nhwc(ref["tl_heat_logits"][stack]))
    np.testing.assert_allclose(loss.numpy(), ref["focal_per_stack"][stack], rtol=RTOL)


def test_focal_sum_over_stacks(ref):
    gt = nhwc(ref["gt_tl_heat"])
    total = sum(focal_loss(gt, nhwc(logits)) for logits in ref["tl_heat_logits"])
    np.testing.assert_allclose(total.numpy(), ref["focal_sum_over_stacks"], rtol=RTOL)


@pytest.mark.parametrize("stack", [0, 1])
def test_focal_without_positives_is_minus_negative_sum(ref, stack):
    loss = focal_loss(nhwc(ref["gt_heat_nopos"]), nhwc(ref["tl_heat_logits"][stack]))
    np.testing.assert_allclose(loss.numpy(), ref["focal_nopos_per_stack"][stack], rtol=RTOL)


def test_focal_replica_shares_add_up_with_global_count(ref):
    gt, logits = nhwc(ref["gt_tl_heat"]), nhwc(ref["tl_heat_logits"][0])
    count = np.sum(gt == 1.0)
    shares = [focal_loss(gt[i : i + 2], logits[i : i + 2], num_positives=count) for i in (0, 2)]
    np.testing.assert_allclose(sum(shares).numpy(), focal_loss(gt, logits).numpy(), rtol=1e-6)


# ---- gather, pull/push, offsets ----


def test_gather_at():
    maps = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    indices = np.array([[0, 5, 11], [7, 7, 1]], np.int32)
    expected = np.stack([maps[b].reshape(12, 2)[indices[b]] for b in range(2)])
    np.testing.assert_array_equal(gather_at(maps, indices).numpy(), expected)


def test_pull_push_batch_matches_fixture_except_one_object_image(ref):
    pull, push = pull_push_loss(ref["ae_tl_tag"], ref["ae_br_tag"], ref["ae_mask"])
    np.testing.assert_allclose(pull.numpy(), ref["ae_pull"], rtol=RTOL)
    # The fixture's batch push includes image 1 (one object), whose official push is ~1.0.
    np.testing.assert_allclose(push.numpy() + one_object_push(ref), ref["ae_push"], rtol=PUSH_RTOL)


@pytest.mark.parametrize("image", range(4))
def test_pull_push_per_image_with_batch_of_one(ref, image):
    sl = slice(image, image + 1)
    pull, push = pull_push_loss(ref["ae_tl_tag"][sl], ref["ae_br_tag"][sl], ref["ae_mask"][sl])
    official_pull, official_push = ref["ae_pull_push_per_image"][image]
    np.testing.assert_allclose(pull.numpy(), official_pull, rtol=RTOL)
    if OBJECTS_PER_IMAGE[image] == 1:
        assert official_push == pytest.approx(1.0, abs=1e-3)  # the official eps artefact
        assert push.numpy() == 0.0  # our deliberate deviation: nothing to push apart
    else:
        np.testing.assert_allclose(push.numpy(), official_push, rtol=PUSH_RTOL)
    if OBJECTS_PER_IMAGE[image] == 0:
        assert pull.numpy() == 0.0 and push.numpy() == 0.0


def test_offset_loss_matches_fixture(ref):
    loss = offset_loss(ref["regr_pred"], ref["regr_gt"], ref["ae_mask"])
    np.testing.assert_allclose(loss.numpy(), ref["regr_loss"], rtol=RTOL)


# ---- full loss ----


def test_full_loss_from_gathered_matches_fixture(ref):
    losses = cornernet_loss_from_gathered(full_stacks(ref), full_targets(ref))
    components = ref["full/components_sum_over_stacks"]  # [focal, 0.1 pull, 0.1 push, regr], not / nstack
    artefact = 0.1 * 2 * one_object_push(ref)  # image 1's official push, once per stack, weighted
    np.testing.assert_allclose(2 * losses["focal"].numpy(), components[0], rtol=RTOL)
    np.testing.assert_allclose(2 * losses["pull"].numpy(), components[1], rtol=RTOL)
    np.testing.assert_allclose(2 * losses["push"].numpy() + artefact, components[2], rtol=PUSH_RTOL)
    np.testing.assert_allclose(2 * losses["offset"].numpy(), components[3], rtol=RTOL)
    np.testing.assert_allclose(losses["total"].numpy() + artefact / 2, ref["full/total"][0], rtol=RTOL)
    parts = sum(losses[key] for key in ("focal", "pull", "push", "offset"))
    np.testing.assert_allclose(losses["total"].numpy(), parts.numpy(), rtol=1e-6)


def scatter_to_maps(gathered: np.ndarray, indices: np.ndarray, hw: int = 16) -> np.ndarray:
    """Full [B, H, W, D] maps (noise elsewhere) holding `gathered` [B, M, D] at `indices` [B, M]."""
    b, _, d = gathered.shape
    maps = np.random.default_rng(0).standard_normal((b, hw * hw, d)).astype(np.float32)
    for i in range(b):
        maps[i, indices[i]] = gathered[i]
    return maps.reshape(b, hw, hw, d)


def full_map_inputs(ref):
    """The fixture's full-loss inputs as model-shaped full maps plus distinct target indices."""
    rng = np.random.default_rng(5)
    targets = full_targets(ref)
    targets["tl_indices"] = np.stack([rng.permutation(256)[:8] for _ in range(4)]).astype(np.int32)
    targets["br_indices"] = np.stack([rng.permutation(256)[:8] for _ in range(4)]).astype(np.int32)
    stacks = []
    for gathered in full_stacks(ref):
        stack = dict(gathered)
        for key in ("tl_embedding", "br_embedding", "tl_offset", "br_offset"):
            stack[key] = scatter_to_maps(gathered[key], targets[f"{key[:2]}_indices"])
        stacks.append(stack)
    return stacks, targets


def test_full_loss_from_maps_equals_gathered(ref):
    stacks, targets = full_map_inputs(ref)
    from_maps = cornernet_loss(stacks, targets)
    from_gathered = cornernet_loss_from_gathered(full_stacks(ref), full_targets(ref))
    for key, value in from_gathered.items():
        np.testing.assert_array_equal(from_maps[key].numpy(), value.numpy())


def test_replica_shares_add_up_with_global_counts(ref):
    stacks, targets = full_map_inputs(ref)
    whole = cornernet_loss(stacks, targets)
    num_positives = {key: np.sum(targets[key] == 1.0) for key in ("tl_heatmap", "br_heatmap")}
    num_objects = np.sum(targets["mask"])
    shares = [
        cornernet_loss(
            [{k: v[i : i + 2] for k, v in stack.items()} for stack in stacks],
            {k: v[i : i + 2] for k, v in targets.items()},
            num_positives=num_positives,
            num_objects=num_objects,
        )
        for i in (0, 2)
    ]
    for key, value in whole.items():
        np.testing.assert_allclose((shares[0][key] + shares[1][key]).numpy(), value.numpy(), rtol=1e-5)


def test_centernet_terms_add_to_focal_and_offset(ref):
    stacks, targets = full_map_inputs(ref)
    base = cornernet_loss(stacks, targets)
    targets = dict(
        targets,
        ct_heatmap=targets["tl_heatmap"][:, ::-1],
        ct_offset=targets["tl_offset"][:, ::-1],
        ct_indices=targets["br_indices"],
    )
    stacks = [dict(stack, ct_heatmap=stack["br_heatmap"], ct_offset=stack["tl_offset"]) for stack in stacks]
    with_centers = cornernet_loss(stacks, targets)
    focal = sum(focal_loss(targets["ct_heatmap"], stack["ct_heatmap"]) for stack in stacks) / 2
    offset = (
        sum(
            offset_loss(gather_at(stack["ct_offset"], targets["ct_indices"]), targets["ct_offset"], targets["mask"])
            for stack in stacks
        )
        / 2
    )
    np.testing.assert_allclose(with_centers["focal"].numpy(), (base["focal"] + focal).numpy(), rtol=1e-6)
    np.testing.assert_allclose(with_centers["offset"].numpy(), (base["offset"] + offset).numpy(), rtol=1e-6)
    for key in ("pull", "push"):
        assert with_centers[key].numpy() == base[key].numpy()


def test_no_objects_only_focal(ref):
    stacks, targets = full_map_inputs(ref)
    empty = {k: v[2:3] for k, v in targets.items()}  # image 2 has no object
    empty["tl_heatmap"] = np.zeros_like(empty["tl_heatmap"])
    empty["br_heatmap"] = np.zeros_like(empty["br_heatmap"])
    losses = cornernet_loss([{k: v[2:3] for k, v in stack.items()} for stack in stacks], empty)
    assert losses["focal"].numpy() > 0
    assert losses["pull"].numpy() == 0 and losses["push"].numpy() == 0 and losses["offset"].numpy() == 0


def test_gradients_finite(ref):
    stacks, targets = full_map_inputs(ref)
    variables = [{k: tf.Variable(v) for k, v in stack.items()} for stack in stacks]
    with tf.GradientTape() as tape:
        total = cornernet_loss(variables, targets)["total"]
    grads = tape.gradient(total, variables)
    for stack in grads:
        for key, grad in stack.items():
            assert grad is not None, key
            assert np.all(np.isfinite(grad.numpy())), key
    assert np.any(grads[0]["tl_embedding"].numpy() != 0) and np.any(grads[1]["br_offset"].numpy() != 0)
