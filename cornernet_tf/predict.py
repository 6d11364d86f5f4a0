"""Detect objects in your own images and videos, writing annotated copies and JSON-lines detections.

CLI: `python -m cornernet_tf.predict SOURCE [SOURCE ...] (--export DIR | --weights W [--config C]
[--set key=value ...] [--flip]) [--out predictions] [--score_threshold 0.3] [--max_detections N]
[--batch_size B] [--device cpu|gpu|gpu:1] [--verbose]`.

A SOURCE is an image file, a folder (searched recursively for IMAGE_EXTENSIONS and
VIDEO_EXTENSIONS), a glob (quote it: "photos/**/*.jpg") or a video file, read with OpenCV frame
by frame. --export is an export of `python -m cornernet_tf.export` (a version folder or the
model base path): a SavedModel, or a TFLite / ONNX one run in its own runtime; --weights what
`python -m cornernet_tf.evaluate` takes, with the run's config.yaml unless --config is given.
Both go through `cornernet_tf.Detector`, so they give the same boxes for the same model.

Per input file, under --out at its path relative to the SOURCE (a folder SOURCE adds its own
name, a glob is relative to its first folder without wildcards):
  <name>        the picture with boxes, class names, scores and a legend (formats OpenCV cannot
                write, such as GIF, get ".png" appended); for a video the annotated video
  <name>.jsonl  one line per image / frame: {"source", "frame" (videos), "height", "width",
                "detections": [{"box": [x1, y1, x2, y2] (pixels of the input), "score",
                "class_id" (0-based), "class_name"}]}
Every file is written under a temporary name and renamed when complete. Files that cannot be read
or decoded are skipped, counted and named in the summary. On Ctrl-C the outputs of every finished
image stay, and a video in progress is closed with the frames done so far (its JSON-lines file
holds the same frames); the exit status is then 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import pathlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO

import cv2
import numpy as np

from cornernet_tf.api.detector import DEFAULT_BATCH_SIZE, Detector, ImageDetections, load_image
from cornernet_tf.training.checkpoint import SAVED_CONFIG
from cornernet_tf.utils import cli
from cornernet_tf.utils.files import atomic_path, atomic_write_text
from cornernet_tf.utils.visualize import save_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")  # what tf.io.decode_image reads
WRITABLE_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")  # what OpenCV writes
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
VIDEO_EXTENSIONS = tuple(VIDEO_FOURCC)
PROGRESS_EVERY_S = 5.0  # when stderr is not a terminal


@dataclasses.dataclass(frozen=True)
class Input:
    """A file to predict on and the path of its outputs below --out (without the .jsonl)."""

    path: pathlib.Path
    output: pathlib.Path

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_EXTENSIONS


def _glob_root(pattern: str) -> pathlib.Path:
    """The deepest folder of a glob pattern without wildcards: its matches are named relative to it."""
    parts = pathlib.Path(pattern).expanduser().parts
    fixed = list(parts[: next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))])
    return pathlib.Path(*fixed) if fixed else pathlib.Path(".")


def collect_inputs(sources: Sequence[str]) -> list[Input]:
    """The files of every SOURCE with their output paths; a file named twice is taken once.

    A SOURCE that matches nothing is FileNotFoundError; two files that would write the same
    output are ValueError."""
    known = (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS)
    inputs: dict[pathlib.Path, Input] = {}
    for source in sources:
        path = pathlib.Path(source).expanduser()
        if path.is_dir():
            prefix = pathlib.Path(path.resolve().name)
            found = [
                (f, prefix / f.relative_to(path))
                for f in sorted(path.rglob("*"))
                if f.is_file() and f.suffix.lower() in known
            ]
            if not found:
                raise FileNotFoundError(f"{source}: the folder holds no image or video ({', '.join(known)})")
        elif path.is_file():
            found = [(path, pathlib.Path(path.name))]
        elif glob.has_magic(source):
            root = _glob_root(source)
            found = [
                (f, f.relative_to(root))
                for f in (pathlib.Path(m) for m in sorted(glob.glob(os.path.expanduser(source), recursive=True)))
                if f.is_file()
            ]
            if not found:
                raise FileNotFoundError(f"{source}: no file matches this pattern")
        else:
            raise FileNotFoundError(f"{source}: no such file or folder")
        for file, output in found:
            inputs.setdefault(file.resolve(), Input(file, output))
    writers: dict[pathlib.Path, Input] = {}
    for item in inputs.values():
        other = writers.setdefault(item.output, item)
        if other is not item:
            raise ValueError(
                f"{other.path} and {item.path} would both write {item.output} under --out; pass "
                f"their folders as SOURCEs instead of the files"
            )
    return list(inputs.values())


def picture_path(out: pathlib.Path, item: Input) -> pathlib.Path:
    """Where the annotated picture or video of `item` goes."""
    target = out / item.output
    suffix = target.suffix.lower()
    if suffix in WRITABLE_IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS:
        return target
    return target.with_name(target.name + ".png")


def detections_path(out: pathlib.Path, item: Input) -> pathlib.Path:
    return (out / item.output).with_name(item.output.name + ".jsonl")


def json_line(item: Input, found: ImageDetections, frame: int | None = None) -> str:
    """One line of a .jsonl output."""
    head = {"source": str(item.path)} | ({} if frame is None else {"frame": frame})
    return json.dumps(head | found.to_json()) + "\n"


class Progress:
    """A bar with images/s on stderr: redrawn in place on a terminal, a line every
    PROGRESS_EVERY_S seconds otherwise. `total` counts images plus the frames videos announce."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.stream = max(total, 1), stream
        self.interactive = stream.isatty()
        self.start = self.last = time.monotonic()
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if not self.interactive and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        fraction = min(self.done / self.total, 1.0)
        bar = "#" * int(fraction * 30)
        line = f"[{bar:<30s}] {self.done}/{self.total} images, {self.rate():.1f} images/s"
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        self.stream.flush()

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.start, 1e-9)

    def close(self) -> None:
        if self.interactive and self.done:
            self.stream.write("\n")
            self.stream.flush()


@dataclasses.dataclass
class Tally:
    """What a run did, for the summary."""

    images: int = 0
    videos: int = 0
    frames: int = 0
    detections: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    interrupted_video: str = ""

    def summary(self, out: pathlib.Path, seconds: float, interrupted: bool) -> str:
        done = self.images + self.frames
        head = (
            f"{'interrupted after' if interrupted else 'predicted'} {self.images} images and {self.frames} "
            f"frames of {self.videos} video(s) in {seconds:.1f} s ({done / max(seconds, 1e-9):.1f} images/s), "
            f"{self.detections} detections; outputs in {out}"
        )
        lines = [head]
        if self.interrupted_video:
            lines.append(self.interrupted_video)
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable file(s):")
            lines += [f"  {reason}" for reason in self.skipped]
        return "\n".join(lines)


def _chunks(items: Sequence[Input], size: int) -> Iterator[list[Input]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def predict_images(
    detector: Detector, items: Sequence[Input], out: pathlib.Path, tally: Tally, progress: Progress
) -> None:
    """Annotated pictures and one-line .jsonl files of still images, a batch at a time.

    Files that cannot be read or decoded are skipped and named in `tally`.

    Args:
        detector: Runs the detections; its batch_size sets the images per batch.
        items: The still images, with their output paths.
        out: The --out folder the outputs go under.
        tally: Counts images and detections, and collects the skipped files (updated in place).
        progress: Advanced by the images of each batch.

    Returns:
        None; the results are the files written and `tally`.
    """
    for chunk in _chunks(items, detector.batch_size):
        loaded = []
        for item in chunk:
            try:
                loaded.append((item, load_image(item.path)))
            except (OSError, ValueError) as err:
                tally.skipped.append(str(err))
        if not loaded:
            continue
        for (item, image), found in zip(loaded, detector.predict([image for _, image in loaded])):
            save_image(
                picture_path(out, item),
                found.draw(image),
                file_format=None if item.path.suffix.lower() in WRITABLE_IMAGE_EXTENSIONS else ".png",
            )
            atomic_write_text(detections_path(out, item), json_line(item, found))
            tally.images += 1
            tally.detections += len(found)
        progress.advance(len(loaded))


def _frames(capture: cv2.VideoCapture, count: int) -> list[np.ndarray]:
    """Up to `count` next frames as RGB."""
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def predict_video(detector: Detector, item: Input, out: pathlib.Path, tally: Tally, progress: Progress) -> None:
    """The annotated video and a .jsonl line per frame, written under temporary names and renamed
    when the video ends or on Ctrl-C (then holding the frames done); removed on any other error.

    A video OpenCV cannot read a frame of is skipped and named in `tally`.

    Args:
        detector: Runs the detections, batch_size frames at a time.
        item: The video, with its output path.
        out: The --out folder the outputs go under.
        tally: Counts the video, its frames and detections, or the skip (updated in place).
        progress: Advanced by the frames of each batch.

    Returns:
        None; the results are the files written and `tally`.

    Raises:
        OSError: OpenCV cannot write the annotated video with its codec.
        KeyboardInterrupt: Re-raised on Ctrl-C once the frames done are renamed into place.
    """
    capture = cv2.VideoCapture(str(item.path))
    first = _frames(capture, 1) if capture.isOpened() else []
    if not first:
        capture.release()
        tally.skipped.append(f"{item.path}: OpenCV cannot read a frame of this video")
        return
    video_path, lines_path = picture_path(out, item), detections_path(out, item)
    fourcc = VIDEO_FOURCC[video_path.suffix.lower()]
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    height, width = first[0].shape[:2]
    interrupted: KeyboardInterrupt | None = None
    try:
        # OpenCV picks the container by the suffix
        with atomic_path(video_path, suffix=video_path.suffix) as temp_video, atomic_path(lines_path) as temp_lines:
            writer = cv2.VideoWriter(str(temp_video), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
            if not writer.isOpened():
                raise OSError(f"{video_path}: OpenCV cannot write this video (codec {fourcc})")
            tally.videos += 1
            frame_index = 0
            try:
                with open(temp_lines, "w") as lines:
                    frames = first + _frames(capture, detector.batch_size - 1)
                    while frames:
                        for frame, found in zip(frames, detector.predict(frames)):
                            writer.write(cv2.cvtColor(found.draw(frame), cv2.COLOR_RGB2BGR))
                            lines.write(json_line(item, found, frame_index))
                            frame_index += 1
                            tally.frames += 1
                            tally.detections += len(found)
                        lines.flush()
                        progress.advance(len(frames))
                        frames = _frames(capture, detector.batch_size)
            except KeyboardInterrupt as err:  # caught so that the blocks above rename the frames done
                tally.interrupted_video = f"{item.path}: interrupted; {video_path} holds its first {frame_index} frames"
                interrupted = err
            finally:
                writer.release()
    finally:
        capture.release()
    if interrupted is not None:
        raise interrupted


def _frame_count(path: pathlib.Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()


def run(detector: Detector, inputs: Sequence[Input], out: pathlib.Path) -> Tally:
    """Predict on every input, printing the summary also when interrupted."""
    tally = Tally()
    images = [item for item in inputs if not item.is_video]
    videos = [item for item in inputs if item.is_video]
    progress = Progress(len(images) + sum(_frame_count(item.path) for item in videos))
    start, interrupted = time.monotonic(), True
    try:
        predict_images(detector, images, out, tally, progress)
        for item in videos:
            predict_video(detector, item, out, tally, progress)
        interrupted = False
    finally:
        progress.close()
        print(tally.summary(out, time.monotonic() - start, interrupted), flush=True)
    return tally


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cornernet_tf.predict", description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image, folder, glob or video")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--export",
        help="export of python -m cornernet_tf.export: SavedModel, TFLite or ONNX (version folder or base path)",
    )
    model.add_argument("--weights", help=cli.WEIGHTS_HELP)
    parser.add_argument(
        "--config",
        default=None,
        help=f"with --weights: YAML file or bundled name (default: the "
        f"run's {SAVED_CONFIG} beside --weights or above it)",
    )
    cli.add_override_flag(parser, "detection.test_mode=pad", applies_to="with --weights: ")
    cli.add_flip_flag(parser, "with --weights: also run mirrored images (default detection.flip; exports keep theirs)")
    parser.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    parser.add_argument("--score_threshold", type=float, default=0.3, help="lowest score kept (default 0.3)")
    parser.add_argument("--max_detections", type=int, default=None, help="most detections per image kept")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="images per call of the model")
    parser.add_argument("--device", default=None, help="cpu, gpu or gpu:N (default: TensorFlow's choice)")
    cli.add_verbose_flag(parser)
    args = parser.parse_args(argv)
    if args.export is not None:
        given = [
            flag
            for flag, value in (("--config", args.config), ("--set", args.overrides), ("--flip", args.flip))
            if value not in (None, [])
        ]
        if given:
            parser.error(
                f"{', '.join(given)} apply to --weights; an export has its config baked in (pass them to "
                f"python -m cornernet_tf.export)"
            )
    return args


def make_detector(args: argparse.Namespace) -> Detector:
    options = {
        "batch_size": args.batch_size,
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "device": args.device,
    }
    if args.export is not None:
        return Detector.from_export(args.export, **options)
    return Detector.from_weights(args.weights, args.config, overrides=args.overrides, flip=args.flip, **options)


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = collect_inputs(args.sources)
    detector = make_detector(args)
    print(f"predicting {len(inputs)} file(s) with {detector.description}", flush=True)
    tally = run(detector, inputs, pathlib.Path(args.out).expanduser())
    if not tally.images and not tally.frames:
        raise ValueError("no input could be read (see the skipped files above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
