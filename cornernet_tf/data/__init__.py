"""Datasets: the built-in shapes set, COCO json, TFRecords, augmentation and tf.data pipelines.

May import `objective` (targets drawn in the pipeline) and `utils`; never the network (`models`),
`detection`, `training` or a command. `data.tfrecord` and `data.shapes` are also command lines."""
