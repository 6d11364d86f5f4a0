"""The task layer: the only code below the command lines that reads a `Config`.

Each module turns one job's configuration into the plain, typed arguments of the library
(`models`, `data`, `training`, `detection`, `portable`), once: `model` (the network and its
geometry), `data` (input pipelines), `training` (the trainer and its optimizer), `evaluation`
(COCO metrics of a model), `export` (the detection module and the export's files),
`official_weights` (the original implementations' checkpoints and configs mapped onto ours). May
import every level below; the API (`api`) and command lines call these; nothing here parses flags.
"""
