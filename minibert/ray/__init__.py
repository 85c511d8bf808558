"""Corpus-scale inference on Ray Data: the same pipelines over files too large for one process.

Ray Data does the scheduling (reading files in parallel, streaming batches to a pool of actors,
retrying the batches of an actor that dies, writing Parquet or JSON lines); minibert supplies three
pieces:

- a reader (a Ray `FileBasedDatasource`) for text lines, JSON lines, CSV and Parquet that gives every
  row its file and row number and turns a malformed row into an `error` value instead of failing the
  whole file or dropping the row;
- `Predict` (and `Classify`, `Embed`), callable classes for `Dataset.map_batches` that load a model once
  per actor and run each batch through `minibert.pipeline(...)`, whose length-sorted batching is the
  one every other entry point uses;
- `run`, the `--input` side of every task command (`minibert classify`, `embed`, `ner`, `qa`,
  `fill-mask`, `zero-shot`, `rerank`), which passes the same call options as their one-process runs.

Every task of `minibert.pipelines.TASKS` runs here: which columns it reads and what columns it adds
are declared in its own module. The modules follow the data: `readers.py` (files -> rows),
`actor.py` (rows -> a pipeline per actor -> columns), `job.py` (the checks, the run, the summary).

Library use, on a dataset of your own (one row per text in a `text` column):

    workers = max(1, int(ray.cluster_resources()["CPU"]) - 1)  # one CPU left for reading
    ds.map_batches(minibert.ray.Classify, batch_format="pyarrow", batch_size=1024,
                   compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)

Nothing here imports Ray, pyarrow or TensorFlow at import time: `minibert classify --help` stays fast and
minibert's core does not depend on Ray (`pip install "minibert-tf[ray]"` brings it).
"""
from __future__ import annotations

from .actor import BadRow, Classify, Embed, Predict, predict
from .job import check_address, check_output, count_output, run
from .readers import (
                      ERROR_COLUMN,
                      FILE_COLUMN,
                      FORMATS,
                      INSTALL_HINT,
                      MAX_TEXT_BYTES,
                      READERS,
                      ROW_COLUMN,
                      expand_paths,
                      input_columns,
                      input_format,
                      read,
)

__all__ = ["BadRow", "Classify", "Embed", "Predict", "predict", "read", "run", "check_address", "check_output",
           "count_output", "expand_paths", "input_columns", "input_format", "ERROR_COLUMN", "FILE_COLUMN",
           "ROW_COLUMN", "FORMATS", "INSTALL_HINT", "MAX_TEXT_BYTES", "READERS"]
