"""The Python API users hold: `Detector` (an export or a run, on images and files), `ObjectDetector`
(the Keras task: compile / fit / predict / presets), preset folders, named COCO presets and the
`CocoEvaluation` callback. May import every layer below it and the task layer; `from cornernet_tf
import Detector, ObjectDetector, CocoEvaluation` reads them from here."""
