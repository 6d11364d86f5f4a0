"""A TF Serving-compatible model server over a versioned SavedModel base path.

`python -m cornernet_tf.serve` is the command line. The jobs are split: `versions` (finding,
loading and hot-swapping versions), `codec` (TF Serving's JSON request/response format),
`limits` (image pixel budgets, the in-flight bound), `runner` (running a signature with a
deadline, alone or through `batching`), `rest` (the HTTP API) and `grpc_server` (the gRPC
`PredictionService` / `ModelService`); `version_writer` writes the numbered version folders that
`versions` reads. Nothing here knows about CornerNet: it may import `data` (image headers) and
`utils` only.
"""
