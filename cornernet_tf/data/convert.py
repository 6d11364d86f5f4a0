"""Convert the dataset of a config once: each split into a COCO instances json, or into sharded TFRecords.

    python -m cornernet_tf.data.convert --config C [--set key=value ...] --to coco --out DIR [--splits train val]
    python -m cornernet_tf.data.convert --config C [--set key=value ...] --to tfrecord --out DIR [--shards 8]

Why: the Pascal VOC and YOLO readers parse every XML or label file again on every run (a
training, each evaluation); a dataset converted once reads fast, as one json or as records read
in sequence.

Each split is read as training and evaluation read it (`tasks.data.split_files`,
`pipeline.annotated_source`: the same image and box checks, class names and, for VOC, the same
handling of `difficult` objects), and its summary (what is left out and why) goes to stderr
before anything is written. `--to coco` writes `DIR/<split>.json`: the split's ground truth whose
`file_name` entries are relative to one images folder, the common parent folder of the split's
image files (the records keep the reader's extra keys, such as VOC's `difficult` and `voc_id`).
`--to tfrecord` writes `tfrecord.write_tfrecords`' shards and sidecar per split (and, for a VOC or
YOLO split, its ground truth json for evaluation). stdout gets the config overrides that read the
converted splits, `data.dataset=...` and one line per split, for `--set KEY=VALUE` or a config's
data section. A config whose splits already are TFRecords is refused. Nothing is written until
every split has been read; the COCO jsons are written all-or-nothing, the TFRecords of each split
too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys

from pycocotools.coco import COCO

from cornernet_tf.config import Config, load_config
from cornernet_tf.data import coco, pipeline, tfrecord
from cornernet_tf.tasks import data as data_tasks
from cornernet_tf.utils import cli
from cornernet_tf.utils.files import atomic_path
from cornernet_tf.utils.write_errors import reason


def read_splits(config: Config, splits: list[str]) -> dict[str, coco.CocoSource]:
    """Each split of the config's annotation source, read as the pipelines read it; every split is
    located before any is read, so a bad name fails fast.

    Raises:
        ValueError: An unknown split, a config that does not locate it, or a TFRecord source.
    """
    located = {}
    for split in splits:
        files = data_tasks.split_files(config, split)
        if isinstance(files, pipeline.TFRecordFiles):
            raise ValueError(
                f"data.dataset=tfrecord: the {split} split already is TFRecords ({files.pattern}); convert the "
                "dataset they were written from instead"
            )
        located[split] = files
    return {split: pipeline.annotated_source(files) for split, files in located.items()}


def coco_dataset(source: coco.CocoSource) -> tuple[dict, str]:
    """The split's ground truth as a COCO dataset dict whose file names are relative to one images
    folder (the common parent folder of its image files), and that folder.

    A source converted in memory gives its annotation set's dict, a json source its json; the
    records are kept as they are, only `file_name` changes.
    """
    if isinstance(source.ground_truth, COCO):
        dataset = source.ground_truth.dataset
    else:
        with open(source.ground_truth, encoding="utf-8") as f:
            dataset = json.load(f)
    path_of = {int(i): os.path.abspath(p) for i, p in zip(source.image_ids, source.image_paths)}
    images_dir = os.path.commonpath([os.path.dirname(p) for p in path_of.values()])
    images = [
        {**image, "file_name": os.path.relpath(path_of[int(image["id"])], images_dir)} for image in dataset["images"]
    ]
    return {**dataset, "images": images}, images_dir


def write_coco(sources: dict[str, coco.CocoSource], out_dir: str) -> list[str]:
    """Write `out_dir/<split>.json` of every split, all or none; returns the override line of each
    split (`data.<split>_annotations=... data.<split>_images=...`).

    Raises:
        OSError: A write failed; nothing was written.
    """
    lines = []
    try:
        with contextlib.ExitStack() as stack:  # renamed into place once every json is written
            for split, source in sources.items():
                dataset, images_dir = coco_dataset(source)
                path = os.path.join(out_dir, f"{split}.json")
                stack.enter_context(atomic_path(path)).write_text(json.dumps(dataset), encoding="utf-8")
                lines.append(shlex.join([f"data.{split}_annotations={path}", f"data.{split}_images={images_dir}"]))
    except OSError as err:
        raise OSError(
            f"could not write the COCO json in {out_dir} ({reason(err)}); nothing was written, the folder is as it was"
        ) from None
    return lines


def write_records(sources: dict[str, coco.CocoSource], out_dir: str, num_shards: int) -> list[str]:
    """`tfrecord.write_tfrecords` of every split, named by the split; returns the override line of
    each split (`data.<split>_tfrecords=...`)."""
    lines = []
    for split, source in sources.items():
        tfrecord.write_tfrecords(source, out_dir, split, num_shards)
        pattern = os.path.join(out_dir, f"{split}-*.tfrecord")
        print(tfrecord.summary(pattern, tfrecord.read_sidecar(pattern)), file=sys.stderr)
        lines.append(shlex.join([f"data.{split}_tfrecords={pattern}"]))
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.data.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="YAML config or bundled config name; its data section")
    parser.add_argument("--to", required=True, choices=("coco", "tfrecord"), help="the format to write")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--splits", nargs="+", default=list(data_tasks.SPLITS), help="splits to convert (train val)")
    parser.add_argument("--shards", type=int, default=8, help="TFRecord shards per split (default 8)")
    cli.add_override_flag(parser, "data.voc_dir=~/VOCdevkit/VOC2012")
    cli.add_verbose_flag(parser)
    return parser.parse_args(argv)


@cli.command
def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input or a failed write)."""
    args = parse_args(argv)
    if args.shards < 1:
        raise ValueError(f"--shards must be >= 1, got {args.shards}")
    config = load_config(args.config, args.overrides)
    sources = read_splits(config, list(dict.fromkeys(args.splits)))
    for source in sources.values():
        print(source.summary(), file=sys.stderr)
    out_dir = os.path.abspath(os.path.expanduser(args.out))
    if args.to == "coco":
        lines = write_coco(sources, out_dir)
    else:
        lines = write_records(sources, out_dir, args.shards)
    print(f"data.dataset={args.to}", *lines, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
