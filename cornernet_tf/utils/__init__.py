"""Helpers with no knowledge of networks or configs: the CPU runtime set-up (`runtime`, before
TensorFlow loads), the command lines' quiet start and errors (`cli`), atomic writes (`files`,
`write_errors`), COCO metrics, drawing, PyTorch checkpoint reading (`torch_checkpoint`) and the
old module names kept for a release (`moved_modules`). Imports nothing of the package but each
other."""
