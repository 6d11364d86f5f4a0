"""Sources and build script of the compiled TensorFlow ops (see ``custom_ops/build.py``)."""
