"""The stacked Hourglass backbone of CornerNet (the original's `kp_module` and `kp` trunk), NHWC.

Attribute names mirror the original's module paths (`pre`, `kps`, `up1`, `low1`, `low2`,
`low3`, `cnvs`, `inters`, `inters_`, `cnvs_`) so official weights map onto them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from cornernet_tf.models.layers import ConvBNReLU, Residual, SymmetricConv2D, batch_norm, strided_side


@keras.saving.register_keras_serializable(package="cornernet_tf")
class HourglassModule(keras.layers.Layer):
    """One hourglass of depth len(dims) - 1, built recursively (the original's `kp_module`).

    up1 = modules[0] residuals at dims[0]; low1 = a stride-2 residual dims[0] -> dims[1] and
    modules[0] - 1 more; low2 = the hourglass on dims[1:], modules[1:] (innermost: modules[1]
    residuals at dims[-1]); low3 = modules[0] - 1 residuals, then dims[1] -> dims[0]; the result
    is up1 + nearest-upsampled low3 (the original's max1 is the identity). Subclasses swap the
    block (`block`: a layer class called as block(filters, strides=...)) and the upsampling
    (`_make_up2`); the recursion builds type(self).
    [B, H, W, dims[0]] -> [B, H, W, dims[0]]; H and W must be divisible by 2**(len(dims) - 1).
    """

    block: type = Residual

    def __init__(self, dims: Sequence[int], modules: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        if len(dims) < 2 or len(dims) != len(modules):
            raise ValueError(
                f"HourglassModule needs len(dims) == len(modules) >= 2, got dims={list(dims)}, modules={list(modules)}"
            )
        self.dims = list(dims)
        self.modules = list(modules)
        curr_dim, next_dim = self.dims[0], self.dims[1]
        curr_mod, next_mod = self.modules[0], self.modules[1]
        policy = self.dtype_policy
        block = self.block
        self.up1 = [block(curr_dim, dtype=policy, name=f"up1_{i}") for i in range(curr_mod)]
        self.low1 = [block(next_dim, strides=2, dtype=policy, name="low1_0")] + [
            block(next_dim, dtype=policy, name=f"low1_{i}") for i in range(1, curr_mod)
        ]
        if len(self.dims) > 2:
            self.low2 = type(self)(self.dims[1:], self.modules[1:], dtype=policy, name="low2")
        else:
            self.low2 = [block(next_dim, dtype=policy, name=f"low2_{i}") for i in range(next_mod)]
        self.low3 = [block(next_dim, dtype=policy, name=f"low3_{i}") for i in range(curr_mod - 1)] + [
            block(curr_dim, dtype=policy, name=f"low3_{curr_mod - 1}")
        ]
        self.up2 = self._make_up2(curr_dim)

    def _make_up2(self, dim: int) -> keras.layers.Layer:
        """The x2 upsampling of low3's output [B, h, w, dim] -> [B, 2h, 2w, dim]: nearest."""
        return keras.layers.UpSampling2D(size=2, interpolation="nearest", dtype=self.dtype_policy, name="up2")

    @property
    def depth(self) -> int:
        """Number of stride-2 downsamplings (the original's `n`)."""
        return len(self.dims) - 1

    def build(self, input_shape) -> None:
        curr = (None, None, None, self.dims[0])
        low = (None, None, None, self.dims[1])
        for layer in self.up1:
            layer.build(curr)
        self.low1[0].build(curr)
        for layer in self.low1[1:]:
            layer.build(low)
        if isinstance(self.low2, HourglassModule):
            self.low2.build(low)
        else:
            for layer in self.low2:
                layer.build(low)
        for layer in self.low3:
            layer.build(low)
        self.up2.build(curr)

    def call(self, x, training=None):
        return self._levels(x, training)[-1]

    def _levels(self, x, training) -> list:
        """The merge outputs of the levels below (innermost first) and then this level's: what
        CornerNet-Saccade's attention heads see; the last one is the module's output."""
        up1 = x
        for layer in self.up1:
            up1 = layer(up1, training=training)
        low = x
        for layer in self.low1:
            low = layer(low, training=training)
        inner = []
        if isinstance(self.low2, HourglassModule):
            inner = self.low2(low, training=training)
            inner = inner if isinstance(inner, list) else [inner]
            low = inner[-1]
        else:
            for layer in self.low2:
                low = layer(low, training=training)
        for layer in self.low3:
            low = layer(low, training=training)
        return [*inner, up1 + self.up2(low)]

    def compute_output_shape(self, input_shape) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(dims=self.dims, modules=self.modules)
        return config


@keras.saving.register_keras_serializable(package="cornernet_tf")
class HourglassBackbone(keras.layers.Layer):
    """Stem + `nstack` hourglasses with intermediate merges; returns every stack's features.

    pre: 7x7/2 ConvBNReLU to pre_dims[0], stride-2 Residual to pre_dims[1] (= dims[0]): stride 4
    (`_make_stem`, `hourglass_module`: what CornerNet-Squeeze replaces). Per stack s:
    cnv_s = ConvBNReLU(3x3, cnv_dim)(hourglass_s(inter)); between stacks
    inter = inters[s](ReLU(BN(conv1x1(inter)) + BN(conv1x1(cnv_s)))).
    images [B, H, W, 3] -> list of nstack tensors [B, ceil(H / 4), ceil(W / 4), cnv_dim]
    (511 -> 256 -> 128); the map side must be divisible by 2**(len(dims) - 1).
    """

    hourglass_module: type = HourglassModule

    def __init__(
        self,
        nstack: int,
        dims: Sequence[int],
        modules: Sequence[int],
        cnv_dim: int,
        pre_dims: Sequence[int],
        **kwargs,
    ):
        """Create the stem, the hourglasses and the merges between stacks.

        Args:
            nstack: Number of stacked hourglasses (>= 1).
            dims: Channels of each hourglass level, outermost first.
            modules: Blocks of each hourglass level (len(dims) of them).
            cnv_dim: Channels of each stack's output features.
            pre_dims: Channels of the stem's two layers [c0, dims[0]].
            **kwargs: Keras layer arguments (name, dtype, ...).

        Raises:
            ValueError: pre_dims is not [c0, dims[0]], nstack < 1, or dims and modules differ in
                length or have fewer than 2 entries.
        """
        super().__init__(**kwargs)
        if len(pre_dims) != 2 or pre_dims[1] != dims[0]:
            raise ValueError(
                f"HourglassBackbone needs pre_dims [c0, dims[0]], got {list(pre_dims)} for dims {list(dims)}"
            )
        if nstack < 1:
            raise ValueError(f"HourglassBackbone needs nstack >= 1, got {nstack}")
        self.nstack = nstack
        self.dims = list(dims)
        self.modules = list(modules)
        self.cnv_dim = cnv_dim
        self.pre_dims = list(pre_dims)
        policy = self.dtype_policy
        self.pre = self._make_stem()
        self.kps = [
            self.hourglass_module(self.dims, self.modules, dtype=policy, name=f"kps_{s}") for s in range(nstack)
        ]
        self.cnvs = [ConvBNReLU(cnv_dim, 3, dtype=policy, name=f"cnvs_{s}") for s in range(nstack)]
        merges = range(nstack - 1)

        def conv1x1(name: str) -> SymmetricConv2D:
            return SymmetricConv2D(self.dims[0], 1, use_bias=False, dtype=policy, name=name)

        self.inters = [Residual(self.dims[0], dtype=policy, name=f"inters_{s}") for s in merges]
        self.inters_conv = [conv1x1(f"inters__{s}_0") for s in merges]
        self.inters_bn = [batch_norm(policy, f"inters__{s}_1") for s in merges]
        self.cnvs_conv = [conv1x1(f"cnvs__{s}_0") for s in merges]
        self.cnvs_bn = [batch_norm(policy, f"cnvs__{s}_1") for s in merges]

    def _make_stem(self) -> list:
        """The `pre` layers, each with `filters` and `strides`: 7x7/2 conv, stride-2 residual."""
        policy = self.dtype_policy
        return [
            ConvBNReLU(self.pre_dims[0], 7, strides=2, dtype=policy, name="pre_0"),
            Residual(self.pre_dims[1], strides=2, dtype=policy, name="pre_1"),
        ]

    @property
    def depth(self) -> int:
        """Number of stride-2 downsamplings in one hourglass (the original's `n`)."""
        return len(self.dims) - 1

    @property
    def stride(self) -> int:
        """Input pixels per feature-map pixel: the product of the stem's strides."""
        stride = 1
        for layer in self.pre:
            stride *= layer.strides
        return stride

    def build(self, input_shape) -> None:
        shape = input_shape
        for layer in self.pre:
            layer.build(shape)
            shape = (None, None, None, layer.filters)
        hourglass = (None, None, None, self.dims[0])
        cnv = (None, None, None, self.cnv_dim)
        for s in range(self.nstack):
            self.kps[s].build(hourglass)
            self.cnvs[s].build(hourglass)
        for s in range(self.nstack - 1):
            self.inters[s].build(hourglass)
            self.inters_conv[s].build(hourglass)
            self.inters_bn[s].build(hourglass)
            self.cnvs_conv[s].build(cnv)
            self.cnvs_bn[s].build(hourglass)

    def call(self, images, training=None, return_levels=False):
        """Every stack's features; with return_levels also every stack's hourglass levels
        (`HourglassModule._levels`, innermost first; one level unless the module returns them all)."""
        inter = images
        for layer in self.pre:
            inter = layer(inter, training=training)
        features, levels = [], []
        for s in range(self.nstack):
            hourglass = self.kps[s](inter, training=training)
            levels.append(hourglass if isinstance(hourglass, list) else [hourglass])
            cnv = self.cnvs[s](levels[-1][-1], training=training)
            features.append(cnv)
            if s < self.nstack - 1:
                inter = ops.relu(
                    self.inters_bn[s](self.inters_conv[s](inter), training=training)
                    + self.cnvs_bn[s](self.cnvs_conv[s](cnv), training=training)
                )
                inter = self.inters[s](inter, training=training)
        return (features, levels) if return_levels else features

    def compute_output_shape(self, input_shape) -> list:
        batch, *side, _ = input_shape
        for layer in self.pre:
            side = [strided_side(n, layer.strides) for n in side]
        return [(batch, side[0], side[1], self.cnv_dim)] * self.nstack

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            nstack=self.nstack,
            dims=self.dims,
            modules=self.modules,
            cnv_dim=self.cnv_dim,
            pre_dims=self.pre_dims,
        )
        return config
