"""CenterNet (Duan et al., ICCV 2019, keypoint triplets) as a Keras model: CornerNet with
cascade corner pooling and a center-keypoint branch."""

from __future__ import annotations

import keras

from cornernet_tf.models.cornernet import OUTPUT_KEYS, CornerNet
from cornernet_tf.models.pooling import CascadeCornerPoolModule, CenterPoolModule

CENTERNET_OUTPUT_KEYS = OUTPUT_KEYS + ("ct_heatmap", "ct_offset")


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CenterNet(CornerNet):
    """The official CenterNet `kp`: CornerNet's arguments, backbone, heads and stacks, with
    CascadeCornerPoolModule as corner pools, plus per stack a CenterPoolModule (`ct_cnvs`), a
    center heatmap head (`ct_heats`, bias `heatmap_bias`) and a center offset head (`ct_regrs`);
    no center embedding.

    images [B, H, W, 3] -> CornerNet's dict plus
      ct_heatmap  [B, Ho, Wo, num_classes] logits (no sigmoid),
      ct_offset   [B, Ho, Wo, 2] (channel 0 = x, channel 1 = y),
    all float32; `return_all_stacks` as in CornerNet. The center pools are plain reductions,
    so `supports_jit` depends on the corner pools only, as in CornerNet.
    """

    output_keys = CENTERNET_OUTPUT_KEYS
    stack_layer_names = CornerNet.stack_layer_names + ("ct_cnvs", "ct_heats", "ct_regrs")
    corner_pool_module = CascadeCornerPoolModule

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ct_cnvs = self._per_stack(CenterPoolModule, "ct_cnvs", self.cnv_dim, self.pool_dim)
        self.ct_heats = self._heads("ct_heats", self.num_classes, self.heatmap_bias)
        self.ct_regrs = self._heads("ct_regrs", 2)

    def _head_maps(self, s: int, cnv, training) -> dict:
        maps = super()._head_maps(s, cnv, training)
        ct = self.ct_cnvs[s](cnv, training=training)
        maps["ct_heatmap"] = self.ct_heats[s](ct)
        maps["ct_offset"] = self.ct_regrs[s](ct)
        return maps
