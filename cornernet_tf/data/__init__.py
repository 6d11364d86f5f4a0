"""Datasets: the built-in shapes set, COCO json, TFRecords, augmentation and tf.data pipelines."""
