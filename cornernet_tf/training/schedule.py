"""The learning-rate schedule: warmup, then constant, step drops or cosine."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="cornernet_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `learning_rate`, then `kind`: constant, step (x `decay_factor` at each
    of `decay_steps`, the paper's 10x drop) or cosine (to 0 at `total_steps`)."""

    def __init__(
        self,
        learning_rate: float,
        kind: str = "constant",
        total_steps: int = 1,
        decay_steps: tuple[int, ...] = (),
        decay_factor: float = 0.1,
        warmup_steps: int = 0,
    ):
        """Check the kind and keep the settings (they are also the Keras config).

        Args:
            learning_rate: The peak learning rate, reached after warmup.
            kind: "constant", "step" or "cosine".
            total_steps: The step cosine decay reaches 0 at.
            decay_steps: Steps at which "step" multiplies the rate by `decay_factor`.
            decay_factor: The factor of each "step" drop.
            warmup_steps: Steps of linear warmup (0: none).

        Raises:
            ValueError: An unknown `kind`.
        """
        if kind not in ("constant", "step", "cosine"):
            raise ValueError(f"unknown learning-rate schedule {kind!r}; use constant, step or cosine")
        self.learning_rate = learning_rate
        self.kind = kind
        self.total_steps = total_steps
        self.decay_steps = tuple(decay_steps)
        self.decay_factor = decay_factor
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.learning_rate, tf.float32)
        if self.kind == "step" and self.decay_steps:
            drops = tf.reduce_sum(tf.cast(step >= tf.constant(self.decay_steps, tf.float32), tf.float32))
            lr = lr * tf.pow(tf.constant(self.decay_factor, tf.float32), drops)
        elif self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            lr = lr * 0.5 * (1.0 + tf.cos(3.141592653589793 * progress))
        if self.warmup_steps > 0:
            lr = lr * tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return lr

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "kind": self.kind,
            "total_steps": self.total_steps,
            "decay_steps": list(self.decay_steps),
            "decay_factor": self.decay_factor,
            "warmup_steps": self.warmup_steps,
        }
