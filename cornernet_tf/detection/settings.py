"""Test-time settings: how network outputs become detections, shared by every consumer.

Validation during training, `evaluate`, `export` (SavedModel, TFLite, ONNX), `predict`, the
`Detector` and so `serve` all decode with the one `DetectionConfig` of a run (its `detection:`
section), so what is served is what was measured. Field names are those of the decode functions.
Standard library only: `config.py` holds it as a section without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

MIN_SCORE_THRESHOLD = 0.001  # the original's soft-NMS threshold


@dataclasses.dataclass(frozen=True)
class TestProcedure:
    """One `detection.test_mode`: how an image reaches the network and how detections come back.

    transform: the evaluation pipeline's and the export graph's test transform ("pad": the
    original's, the image at each scale padded to the network's size divisor; "resize": to
    data.input_size; "original": the image as it is). multi_scale: detection.scales may hold more
    than [1.0]. flip: detection.flip may be on. normalized_input: the network input is normalized
    by data.mean / data.std before detection (the crop search normalizes each crop itself).
    crop_search: CornerNet-Saccade's test (`inference.detect_saccade`) instead of
    `detect_multiscale`. needs_attention: only for a model type with attention maps. portable: a
    fixed-size TFLite / ONNX graph can hold it (the crop search loops over a varying number of
    crops).
    """

    name: str
    transform: Literal["pad", "resize", "original"]
    multi_scale: bool = False
    flip: bool = True
    normalized_input: bool = True
    crop_search: bool = False
    needs_attention: bool = False
    portable: bool = True


TEST_PROCEDURES: dict[str, TestProcedure] = {
    procedure.name: procedure
    for procedure in (
        TestProcedure("pad", transform="pad", multi_scale=True),
        TestProcedure("resize", transform="resize"),
        TestProcedure(
            "saccade",
            transform="original",
            flip=False,
            normalized_input=False,
            crop_search=True,
            needs_attention=True,
            portable=False,
        ),
    )
}
# the `detection.test_mode` values, checked when a config is read (`config._coerce`)
TestModeName = Literal[tuple(TEST_PROCEDURES)]


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    """Decoding and test-time augmentation (the official CornerNet test values by default).

    k: corners kept per heatmap; nms_kernel: heatmap max-pool window; ae_threshold: largest
    embedding distance of a pair; num_dets: pairs kept per image and scale; max_detections: rows
    returned per image; flip: also run the mirrored images; scales: test scales, merged before
    soft-NMS (the paper's multi-scale test; more than one needs test_mode "pad"); test_mode:
    "pad" (the original's transform: the image at each scale, padded to the network's size
    divisor) or "resize" (to data.input_size); soft_nms_sigma: Gaussian soft-NMS sigma;
    center_area_threshold (CenterNet): boxes larger than this area in original-image px use the
    central 1/5 region, smaller ones the central 1/3 (`decode.centernet_rescore`).
    score_threshold: the lowest score a returned detection may have; soft-NMS drops a box as soon
    as its decayed score falls below it, so it must be above 0 (the original: 0.001). The
    original keeps boxes scored below 0.001 before any decay; they rank below every other
    detection, so dropping them cannot change a COCO metric measurably.

    test_mode "saccade" (CornerNet-Saccade's own test, `cornernet_tf.detection.saccade`): the whole image
    downsized to each of `init_sizes` (longer side, px) is the first pass; its attention maps
    (cells above `att_thresholds[0]`, after a max-pool NMS of `att_nms_ks[j]` per map, zoomed by
    `att_scales[0][j]`, coarsest map first) and, with `ref_dets`, its detections above 0.5 give
    the places cropped for the next pass, at most `att_max_crops` crops in all; a longer
    `att_thresholds` adds attention rounds. `no_border` drops pairs with a corner on the map border
    (the official Saccade decode). flip and scales must stay off / [1.0] there (the official test
    has neither).
    """

    k: int = 100
    nms_kernel: int = 3
    ae_threshold: float = 0.5
    num_dets: int = 1000
    max_detections: int = 100
    flip: bool = True
    scales: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    test_mode: TestModeName = "pad"
    soft_nms_sigma: float = 0.5
    score_threshold: float = MIN_SCORE_THRESHOLD
    center_area_threshold: float = 22500.0
    no_border: bool = False
    init_sizes: list[int] = dataclasses.field(default_factory=lambda: [192, 255])
    att_thresholds: list[float] = dataclasses.field(default_factory=lambda: [0.3])
    att_scales: list[list[float]] = dataclasses.field(default_factory=lambda: [[1.0, 2.0, 4.0]])
    att_nms_ks: list[int] = dataclasses.field(default_factory=lambda: [3, 3, 3])
    att_max_crops: int = 30
    ref_dets: bool = True

    def problems(self) -> list[str]:
        """What makes these settings unusable, one message per field (empty when valid)."""
        checks = [
            (self.k >= 1, f"detection.k must be >= 1, got {self.k}"),
            (
                self.nms_kernel >= 1 and self.nms_kernel % 2 == 1,
                f"detection.nms_kernel must be odd, got {self.nms_kernel}",
            ),
            (self.ae_threshold > 0, f"detection.ae_threshold must be > 0, got {self.ae_threshold}"),
            (self.num_dets >= 1, f"detection.num_dets must be >= 1, got {self.num_dets}"),
            (self.max_detections >= 1, f"detection.max_detections must be >= 1, got {self.max_detections}"),
            (
                len(self.scales) >= 1 and all(s > 0 for s in self.scales),
                f"detection.scales must be positive, got {self.scales}",
            ),
            (
                self.procedure.multi_scale or list(self.scales) == [1.0],
                f"detection.scales {self.scales} need detection.test_mode=pad; {self.test_mode!r} tests at one scale",
            ),
            (self.soft_nms_sigma > 0, f"detection.soft_nms_sigma must be > 0, got {self.soft_nms_sigma}"),
            (
                MIN_SCORE_THRESHOLD <= self.score_threshold < 1,
                f"detection.score_threshold must be in [{MIN_SCORE_THRESHOLD}, 1) (soft-NMS drops decayed boxes "
                f"below it), got {self.score_threshold}",
            ),
        ]
        if not self.procedure.flip:
            checks.append(
                (not self.flip, f"detection.flip must be false with test_mode {self.test_mode} (its test has no flip)")
            )
        if self.procedure.crop_search:
            checks += self._crop_search_checks()
        return [message for ok, message in checks if not ok]

    @property
    def procedure(self) -> TestProcedure:
        """The record of `test_mode`."""
        return TEST_PROCEDURES[self.test_mode]

    def _crop_search_checks(self) -> list[tuple[bool, str]]:
        levels = len(self.att_nms_ks)
        return [
            (
                len(self.init_sizes) >= 1 and all(size >= 1 for size in self.init_sizes),
                f"detection.init_sizes must be positive sides, got {self.init_sizes}",
            ),
            (
                len(self.att_thresholds) >= 1 and all(0 <= t < 1 for t in self.att_thresholds),
                f"detection.att_thresholds needs one threshold in [0, 1) per round, got {self.att_thresholds}",
            ),
            (
                len(self.att_scales) == len(self.att_thresholds)
                and all(len(row) == levels and all(z > 0 for z in row) for row in self.att_scales),
                f"detection.att_scales needs one row of {levels} positive zooms (one per attention map, as "
                f"att_nms_ks) per round of att_thresholds, got {self.att_scales}",
            ),
            (
                all(k >= 1 and k % 2 == 1 for k in self.att_nms_ks),
                f"detection.att_nms_ks must be odd, got {self.att_nms_ks}",
            ),
            (self.att_max_crops >= 1, f"detection.att_max_crops must be >= 1, got {self.att_max_crops}"),
        ]
