"""The training machinery behind `python -m cornernet_tf.train`: strategy, schedule, loop,
checkpoints, progress. May import `objective` (losses), `config` (its error type) and `utils`;
never `data`, `detection` or `serving`."""
