"""Test-time tensor code: how network outputs become detections, shared by evaluation, every export
and serving. `settings` (`DetectionConfig`, standard library only), `decode` (corners to boxes,
soft-NMS), `saccade` (CornerNet-Saccade's crop search), `inference` (model + decoding + test-time
augmentation), `module` (preprocessing + inference as the SavedModel's tf.Module). May import
`data` (image geometry, test transforms), `objective` (gathers) and `utils`; never `models`
(it takes any network with the output dictionary), `training`, `tasks` or a command."""
