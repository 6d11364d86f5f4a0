"""What the network is trained to output: `targets` (gaussian corner heatmaps, offsets, embedding
indices, ignore maps) and `losses` (focal, pull/push, offset and attention losses over stacks).
Tensor code on plain arguments; imports nothing of the package above `utils`."""
