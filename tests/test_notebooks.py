"""The notebooks in notebooks/ run top to bottom, as a new user would run them.

Each one executes in a fresh Jupyter kernel (nbclient, kernel `python3`) in smoke mode
(NOTEBOOK_SMOKE=1: a few 64-pixel images, a tiny network, a handful of steps), with everything
it writes under a temporary NOTEBOOK_WORKDIR. Beyond "no cell failed", each test checks what the
notebook is for: its pictures reached the outputs as PNGs, the metrics were printed, and the files
it promises (checkpoints, weights, an export, TFRecords) exist. The notebooks are committed without
outputs, which is checked too.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
CELL_TIMEOUT_S = 600  # one cell; a smoke notebook takes one to two minutes in all


def execute(name: str, workdir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run notebooks/<name> in smoke mode from the notebooks folder, as Jupyter would, and return
    the executed notebook. A failing cell raises CellExecutionError with its traceback, and the
    notebook's outputs up to that cell in its `notebook` attribute."""
    # the kernelspec runs `python` from PATH: make that this interpreter
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    monkeypatch.setenv("NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("NOTEBOOK_WORKDIR", str(workdir))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # figures as PNG outputs
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        err.notebook = notebook
        raise
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> tuple[str, int]:
    """All text the code cells printed or returned, and how many PNG pictures they showed."""
    text, pictures = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text.append(output["text"])
            data = output.get("data", {})
            text.append(data.get("text/plain", ""))
            pictures += "image/png" in data
    return "".join(text), pictures


def test_notebooks_are_committed_without_outputs():
    names = sorted(path.name for path in NOTEBOOK_DIR.glob("*.ipynb"))
    assert names == [
        "01_quickstart.ipynb",
        "02_inference_and_export.ipynb",
        "03_custom_dataset.ipynb",
        "04_keras_api.ipynb",
    ]
    for name in names:
        notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata.kernelspec.name == "python3", name
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs"
        first = notebook.cells[1].source  # the setup cell every notebook starts with
        assert '"google.colab" in sys.modules' in first and 'os.environ.get("NOTEBOOK_SMOKE") == "1"' in first


def test_quickstart(tmp_path, monkeypatch):
    notebook = execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    text, pictures = outputs(notebook)
    assert pictures >= 3, "expected the dataset, the loss curve and the detections/heatmaps as pictures"
    assert "step 12/12" in text and "finished at step 12" in text
    for metric in ("AP50", "AR100", "AP_small"):
        assert metric in text
    run = tmp_path / "quickstart_smoke"
    assert (run / "config.yaml").is_file() and list((run / "checkpoints").glob("ckpt-12.index"))
    assert list((run / "logs" / "train").glob("events.out.tfevents.*"))
    assert len(list((run / "eval_pictures").glob("*.png"))) == 4
    assert (run / "eval_results.json").is_file()


def test_inference_and_export(tmp_path, monkeypatch):
    notebook = execute("02_inference_and_export.ipynb", tmp_path, monkeypatch)
    text, pictures = outputs(notebook)
    assert pictures >= 2, "expected the Python and the REST detections as pictures"
    out = tmp_path / "inference_smoke"
    assert "smoke run: cornernet_squeeze_coco is not downloaded" in text  # the preset cell needs the internet
    assert (out / "CornerNet_stand_in.npz").is_file() and (out / "converted.weights.h5").is_file()
    assert "converted vs. original network: 0.0" in text
    version = out / "exports" / "cornernet" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "assets" / "class_names.txt").is_file()
    assert '"state": "AVAILABLE"' in text and "num_detections =" in text
    assert "server stopped, exit status 0" in text


def test_custom_dataset(tmp_path, monkeypatch):
    notebook = execute("03_custom_dataset.ipynb", tmp_path, monkeypatch)
    text, pictures = outputs(notebook)
    assert pictures >= 2, "expected the inspection pictures and the precision-recall / confusion matrix pictures"
    voc = tmp_path / "my_voc_smoke"
    assert sorted(p.name for p in (voc / "ImageSets" / "Main").iterdir()) == ["train.txt", "val.txt"]
    assert (tmp_path / "my_yolo_smoke" / "data.yaml").is_file()
    # the planted faults: a missing JPEG, a difficult object, a class name typo, an XML file cut short
    assert "unreadable images 1, crowd boxes 1, unknown category boxes 1, unreadable annotation files 1" in text
    assert "same classes: True, largest corner difference 0.0000 px" in text  # val read as VOC and as YOLO
    assert "class names found in the XML files: ['box', 'disc', 'dsic', 'wedge']" in text
    inspected = tmp_path / "inspect_my_voc_smoke"
    for name in ("summary.txt", "train_augmented.png", "train_box_size.png"):
        assert (inspected / name).is_file(), name
    assert "skipped: unreadable annotation files" in text  # the summary table
    train = json.loads((inspected / "summary.json").read_text())["splits"]["train"]
    assert train["images"]["listed"] == 17 and train["images"]["usable"] == 15  # less the cut XML, lost_000001
    records = tmp_path / "records_my_voc_smoke"
    for split in ("train", "val"):
        assert len(list(records.glob(f"{split}-0000?-of-00002.tfrecord"))) == 2
        assert (records / f"{split}.json").is_file()
    assert "data.dataset=tfrecord" in text
    assert (tmp_path / "my_voc_smoke.yaml").is_file()
    run = tmp_path / "my_voc_run_smoke"
    assert list((run / "checkpoints").glob("ckpt-12.index")) and (run / "val_metrics.json").is_file()
    for name in ("precision_recall_50.png", "precision_recall.png", "confusion_matrix.png"):
        assert (run / "plots" / name).is_file(), name
    assert "VOC2007 11-point mAP" in text and "VOC mAP at IoU 0.5:" in text
    for metric in ("AP50", "AR100"):
        assert metric in text
    finetune = tmp_path / "my_voc_finetune_smoke"
    assert "kept their initial values: tl_heats_0/out/kernel" in text  # the heads for 2 classes start fresh
    assert list((finetune / "checkpoints").glob("ckpt-6.index"))
    for name in ("metrics.json", "precision_recall_50.png", "confusion_matrix.png"):
        assert (finetune / "eval" / name).is_file(), name


def test_keras_api(tmp_path, monkeypatch):
    notebook = execute("04_keras_api.ipynb", tmp_path, monkeypatch)
    text, pictures = outputs(notebook)
    assert pictures >= 2, "expected the History plot and the detections as pictures"
    assert "focal:" in text and "dropped_boxes:" in text  # fit's logs name the loss parts
    assert "COCO val_AP" in text and "final val AP" in text
    assert "reopened preset predicts the same: True" in text
    assert ".keras round trip predicts the same: True" in text
    preset = tmp_path / "shapes_detector_smoke"
    assert sorted(p.name for p in preset.iterdir()) == [
        "class_names.txt",
        "config.json",
        "config.yaml",
        "metadata.json",
        "model.weights.h5",
    ]
    assert (tmp_path / "exports_smoke" / "shapes" / "1" / "saved_model.pb").is_file()
