"""The pooling modules of CornerNet and CenterNet (the originals' `pool`, `pool_cross` and
cascade `pool`), NHWC, and the pure pool compositions they are built on.

All three share one structure (`PoolModule`): two ConvBNReLU branches p1, p2 at `pool_dim`,
pooled and summed, then the merge out = conv2(ReLU(p_bn1(p_conv1(pooled)) + bn1(conv1(x)))).
They differ only in the pooling:
- CornerPoolModule (CornerNet): top(p1) + left(p2), or bottom(p1) + right(p2);
- CascadeCornerPoolModule (CenterNet): each branch first adds the cross-direction pool of a
  "look" branch, then pools (`cascade_pool`);
- CenterPoolModule (CenterNet): column max of p1 + row max of p2 (`center_pool`).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

from cornernet_tf.models.layers import ConvBNReLU, SymmetricConv2D, batch_norm
from cornernet_tf.ops.corner_pool import check_corner, corner_pool, corner_pool_pair, resolve_implementation


def cascade_pool(
    p, look, direction: str, look_direction: str, implementation: str = "auto", conv: Callable | None = None
):
    """One cascade corner-pooling branch: pool_direction(conv(p + pool_look_direction(look))).

    The look branch is first pooled in the corner's other direction, so that the final pool also
    sees the object's interior, not only its border.

    Args:
        p: [B, H, W, C] branch to pool.
        look: [B, H, W, C] look branch, pooled in `look_direction` and added to `p`.
        direction: Direction of the final pool ("top", "left", "bottom" or "right").
        look_direction: Direction of the look branch's pool.
        implementation: Corner-pool kernel of every pool (`corner_pool(..., implementation)`).
        conv: The module's P*_look_conv (no BN/ReLU), between the sum and the final pool;
            None: identity.

    Returns:
        [B, H, W, C].
    """
    summed = p + corner_pool(look, look_direction, implementation)
    return corner_pool(summed if conv is None else conv(summed), direction, implementation)


def column_max(x):
    """Max over H, kept as [B, 1, W, C]: the original's Bottom(Top(x)), broadcast along H."""
    return ops.max(x, axis=1, keepdims=True)


def row_max(x):
    """Max over W, kept as [B, H, 1, C]: the original's Right(Left(x)), broadcast along W."""
    return ops.max(x, axis=2, keepdims=True)


def center_pool(a, b):
    """column_max(a) + row_max(b): a, b [B, H, W, C] -> [B, H, W, C].

    The forward is bit-identical to the original's cumulative pools (a max never rounds). The
    backward differs only on exact ties: the original sends a column max's whole gradient to
    the bottom-most maximal element (a row max's to the right-most), tf.reduce_max splits it
    among the tied elements. After the ReLU of p*_conv1 such ties are (almost) only zeros,
    where the ReLU gradient is 0 either way.
    """
    return column_max(a) + row_max(b)


class PoolModule(keras.layers.Layer):
    """The structure shared by every pool module; subclasses define `pool`.

    p1 = ConvBNReLU(pool_dim)(x), p2 = ConvBNReLU(pool_dim)(x); pooled = self.pool(x, p1, p2);
    out = conv2(ReLU(p_bn1(p_conv1(pooled)) + bn1(conv1(x)))), conv2 a 3x3 ConvBNReLU.
    x [B, H, W, cnv_dim] -> [B, H, W, cnv_dim]. Attribute names are the original's submodule
    names (`cornernet_tf.convert` maps official keys onto them).
    """

    def __init__(self, cnv_dim: int, pool_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.cnv_dim = cnv_dim
        self.pool_dim = pool_dim
        policy = self.dtype_policy
        self.p1_conv1 = ConvBNReLU(pool_dim, 3, dtype=policy, name="p1_conv1")
        self.p2_conv1 = ConvBNReLU(pool_dim, 3, dtype=policy, name="p2_conv1")
        self.p_conv1 = SymmetricConv2D(cnv_dim, 3, use_bias=False, dtype=policy, name="p_conv1")
        self.p_bn1 = batch_norm(policy, "p_bn1")
        self.conv1 = SymmetricConv2D(cnv_dim, 1, use_bias=False, dtype=policy, name="conv1")
        self.bn1 = batch_norm(policy, "bn1")
        self.conv2 = ConvBNReLU(cnv_dim, 3, dtype=policy, name="conv2")

    def build(self, input_shape) -> None:
        x_shape = (None, None, None, input_shape[-1])
        pool_shape = (None, None, None, self.pool_dim)
        out_shape = (None, None, None, self.cnv_dim)
        self.p1_conv1.build(x_shape)
        self.p2_conv1.build(x_shape)
        self.p_conv1.build(pool_shape)
        self.p_bn1.build(out_shape)
        self.conv1.build(x_shape)
        self.bn1.build(out_shape)
        self.conv2.build(out_shape)

    def pool(self, x, p1, p2, training=None):
        """The pooled sum [B, H, W, pool_dim] of the branches p1, p2 (x: the module input).

        Args:
            x: The module input [B, H, W, cnv_dim] (the cascade's look branches read it).
            p1: First branch [B, H, W, pool_dim].
            p2: Second branch [B, H, W, pool_dim].
            training: Keras training flag, for layers the pooling runs itself.

        Returns:
            [B, H, W, pool_dim].

        Raises:
            NotImplementedError: Always; subclasses define the pooling.
        """
        raise NotImplementedError(f"{type(self).__name__} must define pool()")

    def call(self, x, training=None):
        p1 = self.p1_conv1(x, training=training)
        p2 = self.p2_conv1(x, training=training)
        pooled = self.pool(x, p1, p2, training=training)
        a = self.p_bn1(self.p_conv1(pooled), training=training)
        b = self.bn1(self.conv1(x), training=training)
        return self.conv2(ops.relu(a + b), training=training)

    def compute_output_shape(self, input_shape) -> tuple:
        return (*tuple(input_shape)[:3], self.cnv_dim)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(cnv_dim=self.cnv_dim, pool_dim=self.pool_dim)
        return config


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CornerPoolModule(PoolModule):
    """CornerNet's corner pooling with its convolutions, for one corner type.

    pooled = top(p1) + left(p2) ("top_left") or bottom(p1) + right(p2) ("bottom_right"); see
    `PoolModule` for the rest. x [B, H, W, cnv_dim] -> [B, H, W, cnv_dim].

    `implementation` selects the corner-pool kernel (see `cornernet_tf.ops.corner_pool`). When it
    resolves to the compiled "op", the layer sets `supports_jit = False`, so that Keras does not
    XLA-compile a model containing it (compile(jit_compile="auto") then resolves to False); "scan"
    does the same because tf.scan with gradients is not XLA-compatible.
    """

    def __init__(self, cnv_dim: int, pool_dim: int, corner: str = "top_left", implementation: str = "auto", **kwargs):
        """Build the branches, the merge and the corner-pool kernel choice.

        Args:
            cnv_dim: Channels of the module input and output.
            pool_dim: Channels of the pooled branches.
            corner: "top_left" or "bottom_right".
            implementation: "auto" | "op" | "vectorized" | "scan" (`cornernet_tf.ops.corner_pool`).
            **kwargs: Keras layer arguments (name, dtype, ...).

        Raises:
            ValueError: An unknown corner or implementation.
        """
        check_corner(corner, type(self).__name__)
        super().__init__(cnv_dim, pool_dim, **kwargs)
        self.corner = corner
        self.implementation = implementation
        self.resolved_implementation = resolve_implementation(implementation)
        self.supports_jit = self.resolved_implementation == "vectorized"

    def pool(self, x, p1, p2, training=None):
        """top(p1) + left(p2) or bottom(p1) + right(p2), by `corner`. See `PoolModule.pool`."""
        return corner_pool_pair(p1, p2, self.corner, self.resolved_implementation)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(corner=self.corner, implementation=self.implementation)
        return config


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CascadeCornerPoolModule(CornerPoolModule):
    """CenterNet's cascade corner pooling: each branch also looks into the object's interior.

    With (d1, d2) = (top, left) for "top_left", (bottom, right) for "bottom_right":
    pooled = d1(P1_look_conv(p1 + d2(look_conv1(x)))) + d2(P2_look_conv(p2 + d1(look_conv2(x)))),
    look_conv* ConvBNReLU(pool_dim), P*_look_conv plain 3x3 convs (no bias, BN or ReLU); the
    merge is CornerNet's. x [B, H, W, cnv_dim] -> [B, H, W, cnv_dim]. Arguments, XLA support
    and serialization as CornerPoolModule.
    """

    def __init__(self, cnv_dim: int, pool_dim: int, corner: str = "top_left", implementation: str = "auto", **kwargs):
        """Add the look branches and their convolutions to CornerPoolModule's layers.

        Args:
            cnv_dim: Channels of the module input and output.
            pool_dim: Channels of the pooled and look branches.
            corner: "top_left" or "bottom_right".
            implementation: "auto" | "op" | "vectorized" | "scan" (`cornernet_tf.ops.corner_pool`).
            **kwargs: Keras layer arguments (name, dtype, ...).

        Raises:
            ValueError: An unknown corner or implementation.
        """
        super().__init__(cnv_dim, pool_dim, corner, implementation, **kwargs)
        policy = self.dtype_policy
        self.look_conv1 = ConvBNReLU(pool_dim, 3, dtype=policy, name="look_conv1")
        self.look_conv2 = ConvBNReLU(pool_dim, 3, dtype=policy, name="look_conv2")
        self.P1_look_conv = SymmetricConv2D(pool_dim, 3, use_bias=False, dtype=policy, name="P1_look_conv")
        self.P2_look_conv = SymmetricConv2D(pool_dim, 3, use_bias=False, dtype=policy, name="P2_look_conv")

    def build(self, input_shape) -> None:
        super().build(input_shape)
        x_shape = (None, None, None, input_shape[-1])
        pool_shape = (None, None, None, self.pool_dim)
        self.look_conv1.build(x_shape)
        self.look_conv2.build(x_shape)
        self.P1_look_conv.build(pool_shape)
        self.P2_look_conv.build(pool_shape)

    def pool(self, x, p1, p2, training=None):
        """d1(P1_look_conv(p1 + d2(look1))) + d2(P2_look_conv(p2 + d1(look2))) (`cascade_pool`).

        Args:
            x: The module input [B, H, W, cnv_dim], read by look_conv1 and look_conv2.
            p1: First branch [B, H, W, pool_dim].
            p2: Second branch [B, H, W, pool_dim].
            training: Keras training flag of the look convolutions.

        Returns:
            [B, H, W, pool_dim].
        """
        first, second = self.corner.split("_")  # the directions: "top_left" -> top, left
        implementation = self.resolved_implementation
        look1 = self.look_conv1(x, training=training)
        look2 = self.look_conv2(x, training=training)
        return cascade_pool(p1, look1, first, second, implementation, self.P1_look_conv) + cascade_pool(
            p2, look2, second, first, implementation, self.P2_look_conv
        )


@keras.saving.register_keras_serializable(package="cornernet_tf")
class CenterPoolModule(PoolModule):
    """CenterNet's center pooling: pooled = column max of p1 + row max of p2 (`center_pool`).

    A center sees the strongest response along its whole column and row. Always XLA-compatible
    (plain reductions). x [B, H, W, cnv_dim] -> [B, H, W, cnv_dim].
    """

    def pool(self, x, p1, p2, training=None):
        """column_max(p1) + row_max(p2) (`center_pool`). See `PoolModule.pool`."""
        return center_pool(p1, p2)
