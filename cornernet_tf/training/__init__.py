"""The training machinery behind `python -m cornernet_tf.train`: strategy, schedule, loop."""
