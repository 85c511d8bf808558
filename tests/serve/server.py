"""The real server as a subprocess on a free loopback port, and the tiny checkpoints it serves."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

from reference import REPO, make_checkpoint, minilm_dir

# Small enough to load fast; the real uncased vocabulary so that texts tokenize as they would in use.
TINY = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2, vocab_size=30522,
            max_position_embeddings=64)
MAX_LENGTH = 64
EMBED_MAX_SEQ = 48  # sentence_bert_config.json's max_seq_length: shorter than the model's 64 positions
PROMPTS = {"query": "query: ", "passage": "passage: "}
CONCURRENT = 16  # the cross-encoder server's --max-concurrent-requests
API_KEY = "s3cret"  # the embedder server's --api-key


def sentence_transformers_folder(folder) -> str:
    """A tiny encoder saved as sentence-transformers saves one: modules, max_seq_length, prompts, pooling."""
    folder = tiny_checkpoint(folder, "model")
    files = {"modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                              {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
             "sentence_bert_config.json": {"max_seq_length": EMBED_MAX_SEQ, "do_lower_case": False},
             "config_sentence_transformers.json": {"prompts": PROMPTS, "default_prompt_name": None},
             "1_Pooling/config.json": {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}}
    for name, value in files.items():
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "w") as f:
            json.dump(value, f)
    return folder


def tiny_checkpoint(folder, head: str, **config) -> str:
    """A tiny BERT with `head`, random (perturbed) weights and the MiniLM tokenizer, 64 tokens long."""
    make_checkpoint(folder, "bert", head, **{**TINY, **config})
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_dir(), name), folder)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "model_max_length": MAX_LENGTH, "do_lower_case": True}, f)
    return str(folder)


class Server:
    """`python -m minibert serve --port 0 ...` with this worktree's code; stderr is kept line by line."""

    def __init__(self, *args: str, preexec_fn=None):
        # The plain graph for every input size: one trace to warm instead of every XLA bucket, which keeps a
        # test server's start-up short (the answers are the same to float rounding).
        env = {**os.environ, "PYTHONPATH": REPO, "MINIBERT_PATH": "onednn+graph"}
        self.proc = subprocess.Popen([sys.executable, "-m", "minibert", "serve", "--port", "0", *args], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
        self.lines: list[str] = []
        self.url = None
        self._ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("minibert serve:") and " on http://" in line:
                self.url = line.split(" on ", 1)[1].split()[0]
                self._ready.set()
        self._ready.set()  # the process ended

    def wait_ready(self, timeout: float = 600) -> "Server":
        self._ready.wait(timeout)
        if self.url is None:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "\n".join(self.lines[-30:]))
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
