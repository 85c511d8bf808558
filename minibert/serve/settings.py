"""Everything `minibert serve` takes, with its defaults, in one place: the CLI's flags and `serve.run`'s
keywords read them here, and the HTTP layer's limits are made from them. Imports nothing heavy."""
from __future__ import annotations

from dataclasses import dataclass, fields

MAX_WAIT_MS = 10_000  # a batch waits at most this long for more requests


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # a checkpoint folder or Hub id (None: the task's default model)
    task: str | None = None  # None: from the checkpoint's head
    host: str = "127.0.0.1"
    port: int = 8080
    served_model_name: str | None = None  # /info's and /v1/embeddings' name (None: the model id or folder)
    api_key: str | None = None
    max_length: int | None = None
    engine: str | None = None  # "keras" or "litert" (None: MINIBERT_ENGINE, else the CPU's default)
    # batching and limits
    max_batch_tokens: int = 16384
    max_batch_requests: int = 64
    batch_size: int = 16
    max_wait_ms: float = 2.0
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    payload_limit: int = 2_000_000
    read_timeout: float = 30.0  # to send one whole request: a 2 MB body at 70 kB/s
    auto_truncate: bool = False
    batching: bool = True
    # Ray Serve
    ray: bool = False
    replicas: int | None = None
    threads: int = 1
    address: str | None = None
    # start-up
    warm_up: bool = True
    log_level: str = "info"

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


DEFAULTS = Settings()
