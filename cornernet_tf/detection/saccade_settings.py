"""Test-time settings of CornerNet-Saccade (`saccade.saccade_detect`), the official values by default.

Standard library only, as `settings`: `inference.saccade_settings` fills one from a run's
`DetectionConfig` (every field of the same name, so a setting has one name in a config and here) and
its model's geometry, and a direct caller of `saccade_detect` can build one without a config. The
defaults are those of the official `configs/CornerNet_Saccade.json` and `core/dbs/detection.py`
(tests/fixtures/official/README.md, "Official hyperparameters"), plus the values the official test
code hard-codes (`no_border`, soft-NMS sigma 0.7).
"""

from __future__ import annotations

import dataclasses

# The COCO statistics of the official code, in RGB order like the package's models; the official
# code lists them in BGR order because it reads images with OpenCV.
RGB_MEAN = (0.47026115, 0.44719302, 0.40789654)
RGB_STD = (0.27809835, 0.27408164, 0.28863828)


@dataclasses.dataclass(frozen=True)
class SaccadeSettings:
    """How an image is searched in crops, and how the crops' detections are merged.

    init_sizes: longer side (px) of the downsized whole image in each first-pass crop.
    input_size / output_size: the network's square input and output map (stride 4).
    att_thresholds: one attention threshold per attention round (the last round runs without
        attention); att_scales: for each round, the zoom applied to a location found on each
        attention map (coarsest map first); att_ratios: input px per cell of each attention map;
        att_nms_ks: max-pool window of each map's NMS; att_max_crops: crops after the first pass.
    ref_dets: also zoom on the detections scored above 0.5 (reference locations).
    k, num_dets, ae_threshold, nms_kernel, no_border: corner decoding per crop.
    soft_nms_sigma, nms_threshold, nms_method (0 hard, 1 linear, 2 Gaussian), score_threshold: the
        per-class soft-NMS of the merge; max_detections: boxes kept (ties at the cut stay).
    num_classes: categories merged; mean, std: per-channel statistics, in the channel order
        of the images given to `saccade_detect` (RGB by default).
    """

    init_sizes: tuple[int, ...] = (192, 255)
    input_size: int = 255
    output_size: int = 64
    att_thresholds: tuple[float, ...] = (0.3,)
    att_scales: tuple[tuple[float, ...], ...] = ((1, 2, 4),)
    att_ratios: tuple[int, ...] = (16, 8, 4)
    att_nms_ks: tuple[int, ...] = (3, 3, 3)
    att_max_crops: int = 30
    ref_dets: bool = True
    k: int = 12
    num_dets: int = 12
    ae_threshold: float = 0.3
    nms_kernel: int = 3
    no_border: bool = True
    soft_nms_sigma: float = 0.7
    nms_threshold: float = 0.5
    nms_method: int = 2
    score_threshold: float = 0.001
    max_detections: int = 100
    num_classes: int = 80
    mean: tuple[float, float, float] = RGB_MEAN
    std: tuple[float, float, float] = RGB_STD

    def problems(self) -> list[str]:
        """What makes these settings unusable, one message per problem (empty when valid)."""
        maps = len(self.att_ratios)
        checks = [
            (len(self.init_sizes) >= 1, "init_sizes must not be empty"),
            (len(self.att_thresholds) >= 1, "att_thresholds needs at least one attention round"),
            (
                len(self.att_scales) == len(self.att_thresholds),
                f"att_scales needs one entry per attention round ({len(self.att_thresholds)}), "
                f"got {len(self.att_scales)}",
            ),
            (
                all(len(zooms) == maps for zooms in self.att_scales) and len(self.att_nms_ks) == maps,
                f"att_scales entries and att_nms_ks need one value per attention map ({maps})",
            ),
            (all(k >= 1 and k % 2 == 1 for k in self.att_nms_ks), f"att_nms_ks must be odd, got {self.att_nms_ks}"),
            (self.att_max_crops >= 0, f"att_max_crops must be >= 0, got {self.att_max_crops}"),
            (self.nms_method in (0, 1, 2), f"nms_method must be 0, 1 or 2, got {self.nms_method}"),
            (self.max_detections >= 1, f"max_detections must be >= 1, got {self.max_detections}"),
            (self.num_classes >= 1, f"num_classes must be >= 1, got {self.num_classes}"),
            (len(self.mean) == 3 and len(self.std) == 3, "mean and std need 3 values"),
        ]
        return [message for ok, message in checks if not ok]
