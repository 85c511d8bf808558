"""The checkpoints the fast serve tests use, and their servers, started together: each server's start-up
(TensorFlow, the model, the warm-up) runs while the other's does, and while the first module runs."""
from __future__ import annotations

import pytest
from server import API_KEY, CONCURRENT, Server, sentence_transformers_folder, tiny_checkpoint


@pytest.fixture(scope="session")
def launched(tmp_path_factory):
    """{name: (folder, started Server)}; each test module waits for its own and stops it."""
    cross = tiny_checkpoint(tmp_path_factory.mktemp("cross_encoder"), "sequence-classification", num_labels=1)
    embedder = sentence_transformers_folder(tmp_path_factory.mktemp("embedder"))
    servers = {"cross-encoder": (cross, Server("--model", cross, "--max-concurrent-requests", str(CONCURRENT),
                                               "--max-wait-ms", "5")),
               "embedder": (embedder, Server("--model", embedder, "--api-key", API_KEY)),
               # the compiled engine, which some CPU kinds run by default (the suite pins Keras elsewhere)
               "embedder-litert": (embedder, Server("--model", embedder, "--engine", "litert"))}
    yield servers
    for _, server in servers.values():
        server.stop()
