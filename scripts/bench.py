#!/usr/bin/env python
"""minibert against its peers on this machine, in one run: latency, corpus, big batch, load, the limit.

    python scripts/bench.py [--json bench.json] [--data data/sst2] [--paths | --paths-only] [--bf16 | --bf16-only]
                            [--engines-only] [--embeddings-only] [--families-only [FAMILY ...]] [--calls N] [--cpu avx2]

What is measured, and why this way: a speed figure means something only next to a peer's, timed on the same CPU
in the same run. A shared machine, a busy neighbour or another CPU moves every library's time, so a time from
another run or another machine is not a comparison. So every figure here is a ratio taken within one run:
minibert's time against transformers on PyTorch eager (needs the test extras), against ONNX Runtime on a graph
exported from the same PyTorch model (when `onnxruntime` and `onnx` are installed), against sentence-transformers
for embeddings, or against a limit of this machine (numpy's sgemm peak, and how fast memory reads). The JSON's
"machine" names the CPU, its ISA, its cores and the date (and the default, engine, embeddings and family reports
print it), so that a figure always travels with the CPU it came from. Speed is judged here, never by timing a test.

The modes (MODES: one at a time; the default runs every line):
    (default)          a distilbert-base-uncased-sized sentiment classifier: latency 1x16, the 872 SST-2 dev
                       sentences, a 32x128 batch, load time and peak RSS, against the peers and the sgemm limit;
                       then the embeddings line and the family lines; then TARGETS, each met or not
    --bf16-only        minibert in float32 and in bfloat16 (an opt-in), no peers (--bf16: add it to the default)
    --paths-only       minibert on every path (MINIBERT_PATH), the measurements behind minibert/cpu.py's rule
                       (--paths: add them to the default)
    --engines-only     minibert on Keras and on LiteRT (float32, int8) against ONNX Runtime (float32, int8), and
                       one-shot CLI runs against transformers' and sentence-transformers' one-shot scripts;
                       then ENGINE_TARGETS
    --embeddings-only  minibert's SentenceTransformer.encode against sentence-transformers' encode on the
                       all-MiniLM-L6-v2 folder and the SST-2 dev sentences
    --families-only    minibert against transformers on each family's base-sized checkpoint (FAMILY_BENCHES):
                       roberta-base (a byte-level BPE trained by `tokenizers` on SST-2 train), all-mpnet-base-v2,
                       deberta-v3-base and ModernBERT-base, latency and corpus

Every model has random weights (speed does not depend on them) and is written into a temp folder. The family
checkpoints' shapes are BASE in tests/family_configs.py, which the tests and scripts/parity.py read too. Every
measurement runs in its own subprocess (`bench.py --worker NAME OPTIONS`, WORKERS), so TensorFlow and PyTorch never
share a process, a thread pool or a peak-memory figure. Every worker takes one dict of options (folder, data, calls)
and returns one dict of results.
"""
import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..", "tests")  # tests/family_configs.py: every family's configs
SENTENCE_16 = "I've been waiting for a HuggingFace course my whole life."  # 16 tokens with [CLS]/[SEP]
SENTIMENT = dict(id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
EMBED_BATCH = 32  # sentence-transformers' default encode batch size, given to both
PATH_ROUNDS = 3
ONE_SHOT_ROUNDS = 3
ONE_SHOT_TEXT = "a gripping, beautifully acted film"
# `--cpu avx2` on an AVX-512 machine: every library held to AVX2 code, as far as its flags allow
# (onnxruntime has no such flag and is not held).
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell"}


# == the targets: (what, how to read it off the results, the bound, ">=" or "<=") ==============================
def _ratio(peer, what):
    return lambda r: r[peer][what]["min_s"] / r["minibert"][what]["min_s"]


TARGETS = [
    ("corpus >= 1.8x transformers b=32", lambda r: r["transformers"]["corpus_b32"]["min_s"] / r["minibert"]["corpus"]["min_s"], 1.8, ">="),
    ("corpus >= 80% of the sgemm limit", lambda r: r["summary"]["corpus_of_limit"], 0.80, ">="),
    ("big batch >= 1.1x transformers eager", _ratio("transformers", "big_batch"), 1.1, ">="),
    ("big batch >= 85% of the sgemm peak", lambda r: r["summary"]["big_batch_of_peak"], 0.85, ">="),
    ("latency >= 1.5x transformers eager", _ratio("transformers", "latency"), 1.5, ">="),
    ("latency within 1.2x of onnxruntime", lambda r: r["minibert"]["latency"]["min_s"] / r["onnxruntime"]["latency"]["min_s"], 1.2, "<="),
    ("load <= 1 s after import", lambda r: r["minibert"]["load_s"], 1.0, "<="),
    ("peak RSS <= weights + 1 GB", lambda r: r["minibert"]["peak_rss_mb"] - r["minibert"]["weights_mb"], 1024, "<="),
    ("embeddings >= 1.5x sentence-transformers", lambda r: r["embeddings"]["sentence_transformers"]["corpus"]["min_s"]
     / r["embeddings"]["minibert"]["corpus"]["min_s"], 1.5, ">="),
]
# The compiled engine's targets (`--engines-only`, which also times transformers and the sgemm peak for them).
ENGINE_TARGETS = [
    ("engine latency within 1.1x of ORT fp32", lambda r: r["engine"]["latency"]["min_s"]
     / r["onnxruntime"]["latency"]["min_s"], 1.1, "<="),
    ("engine int8 latency <= ORT int8", lambda r: r["engine_int8"]["latency"]["min_s"]
     / r["onnxruntime_int8"]["latency"]["min_s"], 1.0, "<="),
    ("engine corpus >= 3x transformers pipeline", lambda r: r["transformers"]["corpus_default"]["min_s"]
     / r["engine"]["corpus"]["min_s"], 3.0, ">="),
    ("engine corpus >= 90% of the sgemm limit", lambda r: corpus_limit_s(r) / r["engine"]["corpus"]["min_s"], 0.9, ">="),
    ("engine big batch >= 1.5x transformers eager", lambda r: r["transformers"]["big_batch"]["min_s"]
     / r["engine"]["big_batch"]["min_s"], 1.5, ">="),
    ("one-shot classify, LiteRT <= 2 s", lambda r: r["one_shot"]["classify_litert"]["later"]["wall_s"], 2.0, "<="),
    ("one-shot classify, LiteRT <= 400 MB", lambda r: r["one_shot"]["classify_litert"]["later"]["peak_rss_mb"], 400, "<="),
    ("int8 SST-2 dev <= 0.5 points below fp32", lambda r: 100 * (r["engine"]["sst2_dev_accuracy"]
                                                               - r["engine_int8"]["sst2_dev_accuracy"]), 0.5, "<="),
    ("int8 same label as fp32 >= 98%", lambda r: r["engine_int8"]["label_agreement"], 0.98, ">="),
]


# == measuring, inside a worker ================================================================================
def read_labelled(data):
    """SST-2 dev as (labels, texts): each line is `LABEL TEXT` (data/sst2/README.md)."""
    with open(os.path.join(data, "dev.txt"), encoding="utf-8") as f:
        pairs = [line.rstrip("\n").split(" ", 1) for line in f]
    return [int(label) for label, _ in pairs], [text for _, text in pairs]


def read_texts(data):
    return read_labelled(data)[1]


def read_train_texts(data):
    """SST-2 train's texts: the corpus the family checkpoints' tokenizers are trained on."""
    with open(os.path.join(data, "train.txt"), encoding="utf-8") as f:
        return [line.rstrip("\n").split(" ", 1)[1] for line in f]


def token_batch(B, T, dtype=int):
    """A (B, T) batch of one repeated token, no padding, as numpy: what the batch timings feed every model."""
    import numpy as np

    return {"input_ids": np.full((B, T), 2000, dtype), "attention_mask": np.ones((B, T), dtype)}


def timed(fn, n, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"min_s": min(times), "median_s": statistics.median(times)}


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """The largest resident size seen while the block runs (sampled every 5 ms, Linux)."""

    def __enter__(self):
        import threading

        self.peak, self._stop = rss_mb(), threading.Event()

        def sample():
            while not self._stop.wait(0.005):
                self.peak = max(self.peak, rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


# == workers: each runs in a fresh process; opts -> results ======================================================
# opts: "folder" (the checkpoint, None where the worker needs none), "data" (--data), "calls" (--calls), and any
# option a row of WORKERS fixes (see `variant`).
def worker_minibert(opts):
    folder, n = opts["folder"], opts["calls"]
    t = time.perf_counter()
    import minibert
    import minibert.auto  # noqa: F401  (TensorFlow and the model code: "after import" means after this)

    import_s = time.perf_counter() - t
    rss_import = rss_mb()
    from minibert import cpu
    t = time.perf_counter()
    model = minibert.AutoModelForSequenceClassification.from_pretrained(folder)
    load_s = time.perf_counter() - t
    tok = minibert.AutoTokenizer.from_pretrained(folder)
    one = tok(SENTENCE_16, return_tensors="np")  # 16 tokens with the uncased WordPiece; RoBERTa's BPE differs
    big = token_batch(32, 128)
    res = {"import_s": import_s, "load_s": load_s, "rss_after_import_mb": rss_import,
           "latency_tokens": one["input_ids"].shape[1], "cpu": cpu.describe(), "engine": model.engine}
    res["latency"] = timed(lambda: model(one).logits.numpy(), n)
    from minibert.engine import LiteRTForward

    if model.engine == "litert" and not isinstance(model.compiled_forward(), LiteRTForward):
        res["engine"] = "keras (litert could not convert it)"  # what ran: the fallback warned once
    res["big_batch"] = timed(lambda: model(big).logits.numpy(), 5, warmup=2)
    texts = read_texts(opts["data"])
    pipe = minibert.pipeline("sentiment-analysis", model=model, tokenizer=tok)
    res["rss_before_corpus_mb"] = rss_mb()
    with PeakRSS() as peak:
        res["corpus"] = timed(lambda: pipe(texts), 3, warmup=1)
    res["weights_mb"] = sum(v.numpy().nbytes for v in model.weights) / 2**20
    res["peak_rss_mb"] = peak.peak
    return res


def worker_path(opts):
    """One round of `--paths`: minibert's latency, a mid-sized batch and the big batch on the path MINIBERT_PATH names."""
    import minibert
    from minibert import cpu

    folder, n = opts["folder"], opts["calls"]
    # the kernel plans are TensorFlow's: on the Keras path, whatever engine this CPU runs by default
    model = minibert.AutoModelForSequenceClassification.from_pretrained(folder, engine="keras")
    one = minibert.AutoTokenizer.from_pretrained(folder)(SENTENCE_16, return_tensors="np")
    mid, big = token_batch(64, 24), token_batch(32, 128)  # a corpus batch, and the big one
    return {"path": cpu.describe()["path"], "latency": timed(lambda: model(one).logits.numpy(), min(n, 40)),
            "mid_batch": timed(lambda: model(mid).logits.numpy(), 5), "big_batch": timed(lambda: model(big).logits.numpy(), 3, warmup=1)}


def worker_bf16(opts):
    """minibert with dtype="bfloat16" (an opt-in): speed on the bench model, and on the default sentiment model
    (trained) its SST-2 dev accuracy in float32 and bfloat16 and how often the two agree on the label."""
    import numpy as np

    import minibert
    from minibert import default_model

    folder, n = opts["folder"], opts["calls"]
    model = minibert.AutoModelForSequenceClassification.from_pretrained(folder, dtype="bfloat16")
    if model.dtype_name != "bfloat16":
        return {"error": "bfloat16 is not fast on this CPU; the model stayed float32"}
    tok = minibert.AutoTokenizer.from_pretrained(folder)
    one = tok(SENTENCE_16, return_tensors="np")
    big = token_batch(32, 128)
    gold, texts = read_labelled(opts["data"])
    res = {"latency": timed(lambda: model(one).logits.numpy(), n),
           "big_batch": timed(lambda: model(big).logits.numpy(), 5, warmup=2)}
    pipe = minibert.pipeline("sentiment-analysis", model=model, tokenizer=tok)
    res["corpus"] = timed(lambda: pipe(texts), 3, warmup=1)
    labels = {}
    for dtype in ("float32", "bfloat16"):
        p = minibert.pipeline("sentiment-analysis", model=default_model.path(), model_kwargs={"dtype": dtype})
        labels[dtype] = [int(r["label"] == "POSITIVE") for r in p(texts)]
        res[f"sst2_dev_accuracy_{dtype}"] = float(np.mean(np.array(labels[dtype]) == np.array(gold)))
    res["label_agreement"] = float(np.mean(np.array(labels["float32"]) == np.array(labels["bfloat16"])))
    return res


def worker_engine(opts):
    """minibert on the LiteRT engine (minibert/engine.py) in opts["dtype"] (float32 or int8): the conversion (into
    an empty cache), latency, the big batch and the corpus; and on the default sentiment model (trained) its SST-2
    dev accuracy in this dtype and how often its label agrees with the Keras path's float32 one."""
    import numpy as np

    folder, n, dtype = opts["folder"], opts["calls"], opts.get("dtype", "float32")
    os.environ["MINIBERT_CACHE"] = cache = tempfile.mkdtemp(prefix="minibert-bench-cache-")
    try:
        import minibert
        from minibert import default_model
        from minibert.engine import LiteRTForward

        model = minibert.AutoModelForSequenceClassification.from_pretrained(folder, engine="litert", dtype=dtype)
        t = time.perf_counter()
        if not isinstance(model.compiled_forward(), LiteRTForward):
            return {"error": "the engine fell back to Keras (see the warning)"}
        res = {"convert_s": time.perf_counter() - t}
        tok = minibert.AutoTokenizer.from_pretrained(folder)
        one, big = tok(SENTENCE_16, return_tensors="np"), token_batch(32, 128)
        res["latency"] = timed(lambda: model(one).logits.numpy(), n)
        res["big_batch"] = timed(lambda: model(big).logits.numpy(), 3, warmup=1)
        gold, texts = read_labelled(opts["data"])
        pipe = minibert.pipeline("sentiment-analysis", model=model, tokenizer=tok)
        res["corpus"] = timed(lambda: pipe(texts), 3, warmup=1)
        labels = {}
        for engine in ("keras", "litert"):
            p = minibert.pipeline("sentiment-analysis", model=default_model.path(), engine=engine,
                                  model_kwargs={"dtype": dtype if engine == "litert" else "float32"})
            labels[engine] = np.array([int(r["label"] == "POSITIVE") for r in p(texts)])
        res["sst2_dev_accuracy"] = float(np.mean(labels["litert"] == np.array(gold)))
        res["sst2_dev_accuracy_keras_float32"] = float(np.mean(labels["keras"] == np.array(gold)))
        res["label_agreement"] = float(np.mean(labels["litert"] == labels["keras"]))
        return res
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def worker_transformers(opts):
    import torch
    import transformers as tr

    folder, n = opts["folder"], opts["calls"]
    torch.set_num_threads(os.cpu_count())
    # ModernBERT picks flash-attn whenever it can dispatch it; this CPU peer is its sdpa path.
    kw = {"attn_implementation": "sdpa"} if tr.AutoConfig.from_pretrained(folder).model_type == "modernbert" else {}
    t = time.perf_counter()
    model = tr.AutoModelForSequenceClassification.from_pretrained(folder, **kw).eval()
    load_s = time.perf_counter() - t
    tok = tr.AutoTokenizer.from_pretrained(folder)
    one = tok(SENTENCE_16, return_tensors="pt")
    big = {k: torch.from_numpy(v) for k, v in token_batch(32, 128, "int64").items()}
    res = {"load_s": load_s}
    with torch.inference_mode():
        res["latency"] = timed(lambda: model(**one).logits.numpy(), n)
        res["big_batch"] = timed(lambda: model(**big).logits.numpy(), 5, warmup=2)
    texts = read_texts(opts["data"])
    pipe = tr.pipeline("text-classification", model=model, tokenizer=tok, truncation=True)
    res["corpus_default"] = timed(lambda: pipe(texts), 1, warmup=1)
    with PeakRSS() as peak:
        res["corpus_b32"] = timed(lambda: pipe(texts, batch_size=32), 3, warmup=1)
    res["peak_rss_mb"] = peak.peak
    return res


def worker_onnxruntime(opts):
    """ONNX Runtime on the PyTorch model exported to ONNX; with opts["quantized"]: after its own `quantize_dynamic`
    (int8, per channel), the int8 peer of the LiteRT engine's dynamic-range quantisation."""
    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers as tr

    folder, n = opts["folder"], opts["calls"]
    path = os.path.join(folder, "model.onnx")
    if not os.path.exists(path):
        model = tr.AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
        ids = torch.ones((1, 16), dtype=torch.long)
        torch.onnx.export(model, (ids, ids), path, input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={k: {0: "batch", 1: "seq"} for k in ("input_ids", "attention_mask")},
                          opset_version=17, dynamo=False)
    if opts.get("quantized"):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path_int8 = os.path.join(folder, "model.int8.onnx")
        if not os.path.exists(path_int8):
            quantize_dynamic(path, path_int8, per_channel=True, weight_type=QuantType.QInt8)
        path = path_int8
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    tok = tr.AutoTokenizer.from_pretrained(folder)
    one = {k: v.astype(np.int64) for k, v in tok(SENTENCE_16, return_tensors="np").items() if k != "token_type_ids"}
    big = token_batch(32, 128, "int64")
    return {"latency": timed(lambda: sess.run(None, one), n), "big_batch": timed(lambda: sess.run(None, big), 5, warmup=2)}


def worker_sgemm(opts):
    """The machine's limits: numpy's sgemm peak, and how fast memory can be read (one thread, or one
    per core, whichever is faster), which bounds a batch-1 forward that must stream every weight."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((2048, 2048), dtype=np.float32)
    t = timed(lambda: a @ b, 30, warmup=3)  # the best of many: a busy neighbour only ever slows it
    big = np.ones(64 * 2**20, np.float32)  # 256 MB, far past any cache
    parts = np.array_split(big, os.cpu_count())
    with ThreadPoolExecutor(len(parts)) as pool:  # numpy's sum releases the GIL
        read_s = min(timed(lambda: big.sum(), 10)["min_s"],
                     timed(lambda: list(pool.map(np.sum, parts)), 10)["min_s"])
    return {"sgemm_gflops": 2 * 2048**3 / t["min_s"] / 1e9, "read_gb_s": big.nbytes / read_s / 1e9}


def worker_corpus_tokens(opts):
    import minibert

    tok = minibert.AutoTokenizer.from_pretrained(opts["folder"])
    texts = read_texts(opts["data"])
    return {"tokens": sum(len(x) for x in tok(texts, truncation=True)["input_ids"]), "texts": len(texts)}


def worker_embed_minibert(opts):
    """SentenceTransformer.encode on the all-MiniLM-L6-v2 folder (its modules: mean pooling, Normalize)."""
    import minibert
    from minibert import cpu, default_model
    from minibert.engine import engine_name

    model = minibert.SentenceTransformer(default_model.encoder_dir())
    texts = read_texts(opts["data"])
    return {"corpus": timed(lambda: model.encode(texts, batch_size=EMBED_BATCH), 3, warmup=1),
            "dim": int(model.encode(texts[:1]).shape[1]), "cpu": cpu.describe(), "engine": engine_name()}


def worker_embed_st(opts):
    """sentence-transformers' own encode, same folder, texts and batch size, on PyTorch."""
    os.environ.setdefault("USE_TF", "0")
    from sentence_transformers import SentenceTransformer

    from minibert import default_model

    model = SentenceTransformer(default_model.encoder_dir(), device="cpu")
    texts = read_texts(opts["data"])
    return {"corpus": timed(lambda: model.encode(texts, batch_size=EMBED_BATCH), 3, warmup=1),
            "version": __import__("sentence_transformers").__version__}


# -- the family checkpoints (workers too: they write opts["folder"]) ---------------------------------------------
def base_config(model_type):
    """A family's Hub base size: BASE in tests/family_configs.py, which the tests and scripts/parity.py read too."""
    if TESTS not in sys.path:
        sys.path.append(TESTS)
    from family_configs import BASE

    return dict(BASE[model_type])


def worker_make_roberta(opts):
    """roberta-base's shapes (vocab 50265, 514 positions, one token type, eps 1e-5), random weights, saved by
    transformers, with a byte-level BPE trained by `tokenizers` on SST-2 train and saved as RobertaTokenizerFast.
    The trained vocabulary is smaller than 50265 (SST-2 has fewer merges to learn); the model keeps roberta-base's
    embedding table, so its size and speed are roberta-base's."""
    import torch
    import transformers as tr
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing

    folder = opts["folder"]
    torch.manual_seed(0)
    config = tr.RobertaConfig(**base_config("roberta"), **SENTIMENT)
    model = tr.RobertaForSequenceClassification(config)
    model.save_pretrained(folder)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(read_train_texts(opts["data"]), vocab_size=50265,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    tok = tr.RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, model_max_length=512)
    tok.save_pretrained(folder)
    return {"vocab": len(tok), "params": sum(p.numel() for p in model.parameters())}


def worker_make_mpnet(opts):
    """all-mpnet-base-v2's shapes (12 x 768, vocab 30527, 514 positions, eps 1e-5), random weights, saved by
    transformers, with the MiniLM uncased vocabulary laid out as MPNet's (<s> <pad> </s> <unk> first, <mask>
    last) and saved as MPNetTokenizerFast."""
    import torch
    import transformers as tr

    import minibert
    from minibert import default_model

    folder = opts["folder"]
    torch.manual_seed(0)
    config = tr.MPNetConfig(**base_config("mpnet"), **SENTIMENT)
    model = tr.MPNetForSequenceClassification(config)
    model.save_pretrained(folder)
    with open(os.path.join(default_model.encoder_dir(), "vocab.txt"), encoding="utf-8") as f:
        words = f.read().splitlines()
    vocab = os.path.join(folder, "mpnet_vocab.txt")
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("\n".join(["<s>", "<pad>", "</s>", "<unk>", *words, "<mask>"]) + "\n")
    tok = tr.MPNetTokenizerFast(vocab, model_max_length=512)
    os.remove(vocab)
    tok.save_pretrained(folder)
    assert len(minibert.AutoTokenizer.from_pretrained(folder)) == config.vocab_size
    return {"vocab": len(tok), "params": sum(p.numel() for p in model.parameters())}


def worker_make_deberta_v2(opts):
    """deberta-v3-base's shapes (12 x 768, vocab 128100, 512 positions, 256 log buckets, shared c2p/p2c keys,
    LayerNorm on the relative embeddings, no absolute positions or token types, eps 1e-7), random weights, saved by
    transformers, with a SentencePiece Unigram trained by `sentencepiece` on SST-2 train in deberta-v3's layout
    ([PAD] [CLS] [SEP] [UNK] first, [MASK] added after) and saved as DebertaV2TokenizerFast ([CLS] A [SEP]).
    The trained vocabulary is far smaller than 128,000 pieces (SST-2 holds fewer); the model keeps deberta-v3-base's
    embedding table, so its size and speed are deberta-v3-base's."""
    import io

    import sentencepiece
    import torch
    import transformers as tr

    folder = opts["folder"]
    torch.manual_seed(0)
    config = tr.DebertaV2Config(**base_config("deberta-v2"), **SENTIMENT)
    model = tr.DebertaV2ForSequenceClassification(config)
    model.save_pretrained(folder)
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(read_train_texts(opts["data"])), model_writer=out, vocab_size=128000,
        hard_vocab_limit=False, minloglevel=2, model_type="unigram", pad_id=0, pad_piece="[PAD]", bos_id=1,
        bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]")
    spm_model = os.path.join(folder, "sst2_spm.model")
    with open(spm_model, "wb") as f:
        f.write(out.getvalue())
    tok = tr.DebertaV2TokenizerFast(vocab_file=spm_model, model_max_length=512)
    tok.save_pretrained(folder)  # tokenizer.json and spm.model
    os.remove(spm_model)
    return {"vocab": len(tok), "params": sum(p.numel() for p in model.parameters())}


def worker_make_modernbert(opts):
    """ModernBERT-base's shapes (22 x 768, intermediate 1152, vocab 50368, 8192 positions, a global layer every
    third, the others a 128-token sliding window, mean pooling as its config.json says), random weights, saved by
    transformers, with a byte-level BPE trained by `tokenizers` on SST-2 train in ModernBERT's layout (NFC, no prefix
    space, [UNK] [CLS] [SEP] [PAD] [MASK] after the vocabulary, [CLS] A [SEP]) and saved as PreTrainedTokenizerFast;
    the config's special ids are the tokenizer's. transformers runs it with attn_implementation="sdpa" (its default
    without flash-attn, pinned in worker_transformers). The model keeps ModernBERT-base's embedding table, so its
    size and speed are ModernBERT-base's."""
    import torch
    import transformers as tr
    from tokenizers import AddedToken, ByteLevelBPETokenizer, normalizers
    from tokenizers.processors import TemplateProcessing

    folder = opts["folder"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(read_train_texts(opts["data"]), vocab_size=50280, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    t = bpe._tokenizer
    t.normalizer = normalizers.NFC()
    t.add_special_tokens([AddedToken(s, special=True) for s in ("[UNK]", "[CLS]", "[SEP]", "[PAD]")]
                         + [AddedToken("[MASK]", lstrip=True, special=True)])
    cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
    t.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                          special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok = tr.PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                     pad_token="[PAD]", mask_token="[MASK]", model_max_length=8192,
                                     model_input_names=["input_ids", "attention_mask"], clean_up_tokenization_spaces=True)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = tr.ModernBertConfig(**base_config("modernbert"), classifier_pooling="mean",  # as ModernBERT-base's config.json
                                 pad_token_id=tok.pad_token_id, cls_token_id=cls, sep_token_id=sep, bos_token_id=cls,
                                 eos_token_id=sep, **SENTIMENT)
    model = tr.ModernBertForSequenceClassification(config)
    model.save_pretrained(folder)
    return {"vocab": len(tok), "params": sum(p.numel() for p in model.parameters())}


# The families timed after the distilbert table, each at its Hub base size: name -> (checkpoint writer, what it is).
FAMILY_BENCHES = {
    "roberta": (worker_make_roberta, "roberta-base-sized classifier (random weights, byte-level BPE trained on SST-2 train)"),
    "mpnet": (worker_make_mpnet, "all-mpnet-base-v2-sized classifier (random weights, the MiniLM uncased vocabulary as "
                                 "MPNet's)"),
    "deberta_v2": (worker_make_deberta_v2, "deberta-v3-base-sized classifier (random weights, SentencePiece Unigram "
                                           "trained on SST-2 train)"),
    "modernbert": (worker_make_modernbert, "ModernBERT-base-sized classifier (random weights, byte-level BPE trained "
                                           "on SST-2 train)"),
}


def variant(worker, **fixed):
    """`worker` with some of its options fixed: a row of WORKERS that differs from another only in its options."""
    return lambda opts: worker({**opts, **fixed})


# What `--worker NAME` runs: every worker takes one dict of options and returns one dict of results.
WORKERS = {"minibert": worker_minibert, "path": worker_path, "bf16": worker_bf16,
           "engine": worker_engine, "engine_int8": variant(worker_engine, dtype="int8"),
           "transformers": worker_transformers, "onnxruntime": worker_onnxruntime,
           "onnxruntime_int8": variant(worker_onnxruntime, quantized=True),
           "sgemm": worker_sgemm, "tokens": worker_corpus_tokens,
           "embed_minibert": worker_embed_minibert, "embed_st": worker_embed_st,
           **{f"make_{name}": make for name, (make, _) in FAMILY_BENCHES.items()}}


# == the parent side: starting workers =========================================================================
# The environment workers start from: this process's as the user gave it (with --cpu's flags), taken before
# `import minibert`, which sets TF_ENABLE_ONEDNN_OPTS here (minibert/cpu.py). A worker that inherited that
# value would take it as the user's own choice, and every `--paths` worker would run this machine's rule.
WORKER_ENV = dict(os.environ)


def say(what):
    print(what, file=sys.stderr, flush=True)


def run_worker(name, opts, env=None):
    """WORKERS[name](opts) in a fresh process (with `env` on top of WORKER_ENV): its results, or {"error": ...}."""
    p = subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), "--worker", name, json.dumps(opts)],
                       capture_output=True, text=True, env={**WORKER_ENV, **(env or {})})
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def make_checkpoint(folder):
    """distilbert-base-uncased-sized, random weights, with the uncased vocabulary from the MiniLM package."""
    import minibert
    from minibert import default_model

    config = minibert.DistilBertConfig(**base_config("distilbert"), id2label=SENTIMENT["id2label"])
    minibert.DistilBertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(default_model.encoder_dir(), name), folder)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "DistilBertTokenizer", "model_max_length": 512, "do_lower_case": True}, f)


@contextlib.contextmanager
def bench_checkpoint():
    """The distilbert-sized classifier (make_checkpoint) in a temp folder, removed afterwards."""
    folder = tempfile.mkdtemp(prefix="minibert-bench-")
    try:
        make_checkpoint(folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(args, short=False):
    """What the results were measured on (the JSON's "machine"); `short`: the one-line modes' (no Python, no --cpu)."""
    from minibert import cpu

    if short:
        return {"cpu": cpu_name(), "cores": os.cpu_count(), "isa": cpu.isa(), "date": time.strftime("%Y-%m-%d")}
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(), "isa": cpu.isa(),
            "held_to": args.cpu, "date": time.strftime("%Y-%m-%d")}


def run_each(results, names, opts):
    """Each worker named, in turn, into results[name]."""
    for name in names:
        say(f"running {name} ...")
        results[name] = run_worker(name, opts)


def run_embeddings(results, opts):
    """The embeddings line: each library in its own process; minibert on the engine it picks here (the line the
    target reads), then on the other one."""
    from minibert.engine import ENGINES, engine_name

    runs = [("minibert", None)] + [(f"minibert_{e}", {"MINIBERT_ENGINE": e}) for e in ENGINES if e != engine_name()]
    for name, env in runs:
        say(f"running {name} encode on SST-2 dev ...")
        results.setdefault("embeddings", {})[name] = run_worker("embed_minibert", opts, env=env)
    say("running sentence_transformers encode on SST-2 dev ...")
    results["embeddings"]["sentence_transformers"] = run_worker("embed_st", opts)


def run_families(results, opts, families):
    """The family lines (FAMILY_BENCHES): each checkpoint written into its own temp folder, then timed by minibert
    and by transformers, each in its own process."""
    for family in families:
        folder = tempfile.mkdtemp(prefix=f"minibert-bench-{family}-")
        try:
            say(f"writing the {family} checkpoint ...")
            results[family] = {"checkpoint": run_worker(f"make_{family}", {**opts, "folder": folder})}
            if "error" not in results[family]["checkpoint"]:
                for name in ("minibert", "transformers"):
                    say(f"running {name} on {family} ...")
                    results[family][name] = run_worker(name, {**opts, "folder": folder})
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def run_paths(results, opts):
    """minibert on every path, in rounds that alternate the paths: a busy neighbour then slows them all alike."""
    from minibert import cpu

    paths = [f"{m}+{s}" for m in cpu.MATMULS for s in cpu.SMALL]
    rounds = {p: [] for p in paths}
    for i in range(PATH_ROUNDS):
        say(f"running minibert on each path, round {i + 1} of {PATH_ROUNDS} ...")
        for path in paths:
            rounds[path].append(run_worker("path", opts, env={"MINIBERT_PATH": path}))
    results["paths"] = {p: best_of(r) for p, r in rounds.items()}


def best_of(runs):
    """The fastest of several rounds of `worker_path`, per measure (or the first error)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    return {"path": ok[0]["path"], "rounds": len(ok),
            **{k: {"min_s": min(r[k]["min_s"] for r in ok)} for k in ("latency", "mid_batch", "big_batch")}}


# Runs one command and prints its wall time and peak RSS. A forked child starts with its parent's peak RSS
# on Linux, so the command is started from this small launcher, not from the bench's own large process.
LAUNCHER = """
import json, os, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read().decode(errors="replace")
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t
if os.waitstatus_to_exitcode(status) != 0:
    print(json.dumps({"error": (err.strip().splitlines() or ["failed"])[-1]}))
else:
    print(json.dumps({"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}))  # ru_maxrss is in KiB on Linux
"""


def one_shot(argv, env):
    """One fresh process running `argv` to the end: its wall time and peak RSS (the kernel's own count)."""
    run = subprocess.run([sys.executable, "-c", LAUNCHER, *argv], capture_output=True, text=True, env=env)
    return json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else {"error": run.stderr.strip()}


def run_one_shots(results):
    """What a user waits for when one command classifies (or embeds) one text: minibert's CLI on Keras and
    on LiteRT, in a fresh cache (the first run builds the default model and, on LiteRT, converts it; later
    runs start from what is cached), against transformers' and sentence-transformers' one-shot scripts on
    the same folders. Each later figure is the best of ONE_SHOT_ROUNDS fresh processes."""
    cache = tempfile.mkdtemp(prefix="minibert-bench-oneshot-")
    env = {**WORKER_ENV, "MINIBERT_CACHE": cache, "USE_TF": "0", "TOKENIZERS_PARALLELISM": "false"}
    out = results["one_shot"] = {}
    try:
        cli = [sys.executable, "-m", "minibert"]
        peers = {
            "classify": ("transformers", "import sys; from transformers import pipeline; "
                                         "print(pipeline('text-classification', model=sys.argv[1])(sys.argv[2]))",
                         "path"),
            "embed": ("sentence-transformers", "import sys; from sentence_transformers import SentenceTransformer; "
                                               "print(SentenceTransformer(sys.argv[1], device='cpu').encode([sys.argv[2]]))",
                      "encoder_dir"),
        }
        for verb, (peer, code, folder_fn) in peers.items():
            for engine in ("keras", "litert"):
                say(f"running one-shot {verb} on {engine} ...")
                run_env = {**env, "MINIBERT_ENGINE": engine}
                row = out[f"{verb}_{engine}"] = {"first": one_shot([*cli, verb, ONE_SHOT_TEXT], run_env)}
                later = [one_shot([*cli, verb, ONE_SHOT_TEXT], run_env) for _ in range(ONE_SHOT_ROUNDS)]
                row["later"] = min(later, key=lambda r: r.get("wall_s", float("inf")))
            folder = subprocess.run([sys.executable, "-c", f"from minibert import default_model; print(default_model.{folder_fn}())"],
                                    capture_output=True, text=True, env=env).stdout.strip()
            say(f"running one-shot {peer} ...")
            later = [one_shot([sys.executable, "-c", code, folder, ONE_SHOT_TEXT], env) for _ in range(ONE_SHOT_ROUNDS)]
            out[f"{verb}_{peer}"] = {"later": min(later, key=lambda r: r.get("wall_s", float("inf")))}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# == reports: what each mode prints ============================================================================
def flops(r):
    """(FLOPs per token, FLOPs per text, numpy's sgemm peak in FLOP/s) of the benchmark's classifier."""
    dim, hidden, layers = 768, 3072, 6
    flops_per_token = 2 * layers * (4 * dim * dim + 2 * dim * hidden)  # 2 x the encoder's matmul weights
    flops_per_text = 2 * (dim * dim + dim * 2)  # the head (pre_classifier, classifier) sees one vector per text
    return flops_per_token, flops_per_text, r["sgemm"]["sgemm_gflops"] * 1e9


def corpus_limit_s(r):
    """The corpus's matmul FLOPs (real tokens only) at numpy's sgemm peak: no forward can run it faster."""
    flops_per_token, flops_per_text, peak = flops(r)
    return (r["tokens"]["tokens"] * flops_per_token + r["tokens"]["texts"] * flops_per_text) / peak


def report_targets(r, targets):
    print("\ntargets:")
    r.setdefault("targets", {})
    for what, read, bound, op in targets:
        try:
            value = read(r)
        except KeyError:  # a peer was not measured
            print(f"  {what:<44} not measured")
            continue
        met = value >= bound if op == ">=" else value <= bound
        r["targets"][what] = {"value": value, "met": met}
        print(f"  {what:<44} {value:10.3f}  {'met' if met else 'NOT met'}")


def report(r):
    mb, hf, ort = r["minibert"], r["transformers"], r["onnxruntime"]
    if "error" in mb:
        sys.exit(f"minibert worker failed: {mb['error']}")
    flops_per_token, flops_per_text, peak = flops(r)
    # One 16-token sentence: every matmul weight is read once (float32) and multiplied by 16 rows;
    # no implementation can beat the slower of reading them and computing with them.
    latency_floor_s = max(flops_per_token / 2 * 4 / (r["sgemm"]["read_gb_s"] * 1e9), 16 * flops_per_token / peak)
    limit_s = corpus_limit_s(r)
    big_flops = 32 * 128 * flops_per_token + 32 * flops_per_text
    rows = []

    def row(what, ours, peer_name, peer):
        ratio = f"{peer / ours:.2f}x" if peer else "-"
        rows.append((what, f"{ours * 1e3:.1f} ms", peer_name, f"{peer * 1e3:.1f} ms" if peer else "n/a", ratio))

    m, c = r["machine"], mb["cpu"]
    held = " held to AVX2 by flags (--cpu avx2)" if m["held_to"] == "avx2" else ""
    print(f"machine: {m['cpu']} ({m['isa']}{held}), {m['cores']} cores, Python {m['python']}, {m['date']}; "
          f"numpy sgemm peak {peak / 1e9:.0f} GFLOP/s")
    print(f"minibert: engine {mb.get('engine', 'keras')}; path {c['path']} ({c['why']}); TensorFlow oneDNN "
          f"{'on' if c['onednn'] else 'off'} (its default here: {'on' if c['tensorflow_onednn_default'] else 'off'})")
    assert mb["latency_tokens"] == 16, "the latency floor below assumes SENTENCE_16's 16 tokens"
    row("latency, 1x16 (min)", mb["latency"]["min_s"], "transformers eager", hf.get("latency", {}).get("min_s"))
    row("latency, 1x16 (median)", mb["latency"]["median_s"], "transformers eager", hf.get("latency", {}).get("median_s"))
    if "latency" in ort:
        row("latency, 1x16 (min)", mb["latency"]["min_s"], "onnxruntime", ort["latency"]["min_s"])
    row("corpus, 872 SST-2 dev", mb["corpus"]["min_s"], "transformers pipeline", hf.get("corpus_default", {}).get("min_s"))
    row("corpus, 872 SST-2 dev", mb["corpus"]["min_s"], "transformers b=32", hf.get("corpus_b32", {}).get("min_s"))
    row("big batch, 32x128", mb["big_batch"]["min_s"], "transformers eager", hf.get("big_batch", {}).get("min_s"))
    if "big_batch" in ort:
        row("big batch, 32x128", mb["big_batch"]["min_s"], "onnxruntime", ort["big_batch"]["min_s"])
    print(f"\n{'measure':<24} {'minibert':>10}   {'peer':<22} {'peer time':>10} {'peer/minibert':>14}")
    for w, o, pn, pt, ratio in rows:
        print(f"{w:<24} {o:>10}   {pn:<22} {pt:>10} {ratio:>14}")
    corpus_frac = limit_s / mb["corpus"]["min_s"]
    big_frac = big_flops / peak / mb["big_batch"]["min_s"]
    print(f"\ncorpus: {r['tokens']['tokens']} tokens; sgemm limit {limit_s * 1e3:.0f} ms; minibert reaches {corpus_frac:.0%} of it")
    print(f"big batch: minibert reaches {big_frac:.0%} of the sgemm peak")
    print(f"latency floor, 1x16: {latency_floor_s * 1e3:.1f} ms (matmul weights at {r['sgemm']['read_gb_s']:.0f} GB/s "
          f"read, or their FLOPs at the sgemm peak, whichever is slower); minibert takes "
          f"{mb['latency']['min_s'] / latency_floor_s:.1f}x the floor")
    print(f"load (from_pretrained after import): {mb['load_s'] * 1e3:.0f} ms (import {mb['import_s']:.2f} s); "
          f"transformers {hf.get('load_s', float('nan')) * 1e3:.0f} ms")
    print(f"peak RSS during the corpus: {mb['peak_rss_mb']:.0f} MB (weights {mb['weights_mb']:.0f} MB, "
          f"{mb['rss_before_corpus_mb']:.0f} MB before it, {mb['rss_after_import_mb']:.0f} MB after importing TensorFlow); transformers b=32 {hf.get('peak_rss_mb', float('nan')):.0f} MB")
    for k, v in (("transformers", hf), ("onnxruntime", ort)):
        if "error" in v:
            print(f"{k}: not measured ({v['error']})")
    r["summary"] = {"corpus_of_limit": corpus_frac, "big_batch_of_peak": big_frac, "limit_s": limit_s,
                    "latency_floor_s": latency_floor_s}
    report_targets(r, TARGETS)


def report_bf16(r):
    b, f = r["bf16"], r["minibert"]
    if "error" in b:
        print(f"\nbfloat16: not measured ({b['error']})")
        return
    print("\nminibert with dtype='bfloat16' (opt-in; float32 in brackets):")
    for what, key in (("latency, 1x16 (min)", "latency"), ("big batch, 32x128", "big_batch"), ("corpus, 872 SST-2 dev", "corpus")):
        print(f"  {what:<24} {b[key]['min_s'] * 1e3:>9.1f} ms  ({f[key]['min_s'] * 1e3:.1f} ms, "
              f"{f[key]['min_s'] / b[key]['min_s']:.2f}x faster)")
    print(f"  default sentiment model on SST-2 dev: accuracy {b['sst2_dev_accuracy_bfloat16']:.1%} in bfloat16, "
          f"{b['sst2_dev_accuracy_float32']:.1%} in float32; the same label on {b['label_agreement']:.1%} of the texts")


ENGINE_ROWS = ("keras", "engine", "engine_int8", "onnxruntime", "onnxruntime_int8")
ENGINE_NAMES = {"keras": "minibert, Keras path (TF)", "engine": "minibert, LiteRT fp32", "engine_int8": "minibert, LiteRT int8",
                "onnxruntime": "ONNX Runtime fp32", "onnxruntime_int8": "ONNX Runtime int8"}


def report_engines(r):
    """The engine rows: each variant in its own process, in one run, on this machine."""
    m = r["machine"]
    print(f"\nengines on {m['cpu']} ({m['cores']} cores, {m['isa']}, held to {m['held_to']}), one run:")
    print(f"{'variant':<28} {'1x16':>9} {'32x128':>9} {'corpus':>8} {'convert':>8} {'SST-2 dev':>10} {'same label':>10}")
    ref = r.get("onnxruntime", {}).get("latency", {}).get("min_s")
    for name in ENGINE_ROWS:
        v = r[name]
        if "error" in v:
            print(f"{ENGINE_NAMES[name]:<28} failed: {v['error']}")
            continue
        corpus = f"{v['corpus']['min_s']:.2f} s" if "corpus" in v else "-"
        convert = f"{v['convert_s']:.0f} s" if "convert_s" in v else "-"
        acc = f"{v['sst2_dev_accuracy']:.2%}" if "sst2_dev_accuracy" in v else "-"
        agree = f"{v['label_agreement']:.1%}" if "label_agreement" in v else "-"
        vs = f" ({v['latency']['min_s'] / ref:.2f}x ORT fp32)" if ref else ""
        print(f"{ENGINE_NAMES[name]:<28} {v['latency']['min_s'] * 1e3:>6.1f} ms {v['big_batch']['min_s']:>7.2f} s "
              f"{corpus:>8} {convert:>8} {acc:>10} {agree:>10}{vs}")
    if "sst2_dev_accuracy_keras_float32" in r.get("engine", {}):
        print(f"  (the Keras path's float32 accuracy on SST-2 dev: {r['engine']['sst2_dev_accuracy_keras_float32']:.2%})")


def report_one_shots(r):
    print(f"\none-shot: a fresh process classifies or embeds one text (best of {ONE_SHOT_ROUNDS}; 'first' builds the "
          "default model and, on LiteRT, converts it):")
    print(f"{'command':<44} {'first':>14} {'later':>9} {'peak RSS':>9}")
    names = {"keras": "minibert {verb} (Keras, TensorFlow)", "litert": "minibert {verb} (LiteRT, no TensorFlow)",
             "transformers": "transformers pipeline(...)(text)",
             "sentence-transformers": "sentence-transformers encode([text])"}
    for key, v in r["one_shot"].items():
        verb, who = key.split("_", 1)
        name = names[who].format(verb=verb)
        if "error" in v.get("first", {}) or "error" in v["later"]:
            print(f"{name:<44} failed: {v.get('first', {}).get('error') or v['later']['error']}")
            continue
        first = f"{v['first']['wall_s']:.1f} s" if "first" in v else "-"
        print(f"{name:<44} {first:>14} {v['later']['wall_s']:>7.2f} s {v['later']['peak_rss_mb']:>6.0f} MB")


def report_paths(r):
    """minibert on each path in this run, the chosen one marked: what minibert/cpu.py's rule rests on."""
    chosen = r["minibert"]["cpu"]["path"]
    print(f"\nminibert on each path (MINIBERT_PATH; best of {PATH_ROUNDS} alternating rounds; chosen: {chosen}):")
    print(f"{'path':<14} {'latency 1x16':>13} {'batch 64x24':>12} {'batch 32x128':>13}")
    for path, v in r["paths"].items():
        if "error" in v:
            print(f"{path:<14} failed: {v['error']}")
            continue
        ran = "" if v["path"] == path else f"   ran {v['path']} instead (TF_ENABLE_ONEDNN_OPTS is set)"
        print(f"{path:<14} {v['latency']['min_s'] * 1e3:>10.1f} ms {v['mid_batch']['min_s'] * 1e3:>9.0f} ms "
              f"{v['big_batch']['min_s']:>11.2f} s{'   <- chosen' if path == chosen else ''}{ran}")


def report_embeddings(r):
    e = r["embeddings"]
    if any("error" in v for v in e.values()):
        print("\nembeddings: not measured (" + "; ".join(f"{k}: {v['error']}" for k, v in e.items() if "error" in v) + ")")
        return
    ours, peer = e["minibert"]["corpus"]["min_s"], e["sentence_transformers"]["corpus"]["min_s"]
    other = "".join(f"; on {k.split('_', 1)[1]} {v['corpus']['min_s']:.2f} s ({peer / v['corpus']['min_s']:.2f}x)"
                    for k, v in e.items() if k.startswith("minibert_"))
    print(f"\nembeddings: all-MiniLM-L6-v2, 872 SST-2 dev sentences, batch {EMBED_BATCH} (min of 3): minibert "
          f"SentenceTransformer.encode {ours:.2f} s on {e['minibert']['engine']} (this CPU's default engine), "
          f"sentence-transformers {e['sentence_transformers']['version']} encode {peer:.2f} s: {peer / ours:.2f}x{other}")


def report_family(what, r):
    """A family's base-sized rows, under the distilbert table: minibert against transformers, latency and corpus."""
    print(f"\n{what}:")
    mb, hf = r.get("minibert", {}), r.get("transformers", {})
    for what, v in (("checkpoint", r["checkpoint"]), ("minibert", mb), ("transformers", hf)):
        if "error" in v:
            print(f"  {what}: not measured ({v['error']})")
    if "latency" not in mb:
        return
    n = mb["latency_tokens"]
    print(f"  minibert on {mb.get('engine', 'keras')}")
    rows = [(f"latency, 1x{n} (min)", mb["latency"]["min_s"], "transformers eager", hf.get("latency", {}).get("min_s")),
            (f"latency, 1x{n} (median)", mb["latency"]["median_s"], "transformers eager",
             hf.get("latency", {}).get("median_s")),
            ("corpus, 872 SST-2 dev", mb["corpus"]["min_s"], "transformers pipeline", hf.get("corpus_default", {}).get("min_s")),
            ("corpus, 872 SST-2 dev", mb["corpus"]["min_s"], "transformers b=32", hf.get("corpus_b32", {}).get("min_s")),
            ("big batch, 32x128", mb["big_batch"]["min_s"], "transformers eager", hf.get("big_batch", {}).get("min_s"))]
    print(f"{'measure':<24} {'minibert':>10}   {'peer':<22} {'peer time':>10} {'peer/minibert':>14}")
    for what, ours, peer_name, peer in rows:
        print(f"{what:<24} {ours * 1e3:>7.1f} ms   {peer_name:<22} "
              f"{(f'{peer * 1e3:.1f} ms' if peer else 'n/a'):>10} {(f'{peer / ours:.2f}x' if peer else '-'):>14}")
    print(f"load (from_pretrained after import): {mb['load_s'] * 1e3:.0f} ms; transformers "
          f"{hf.get('load_s', float('nan')) * 1e3:.0f} ms; vocabulary {r['checkpoint']['vocab']} tokens, "
          f"{r['checkpoint']['params'] / 1e6:.0f} M parameters")


def report_families(r):
    for family, (_, what) in FAMILY_BENCHES.items():
        if family in r:
            report_family(what, r[family])


def print_short_machine(r):
    m = r["machine"]
    print(f"machine: {m['cpu']} ({m['isa']}), {m['cores']} cores, {m['date']}")


# == the modes: args, worker options -> results (measured and reported) ============================================
def mode_default(args, opts):
    """Every line: the classifier with its peers and limits (with --bf16, --paths), embeddings, families."""
    with bench_checkpoint() as folder:
        results = {"machine": machine(args)}
        run_each(results, ("sgemm", "tokens", "minibert", "transformers", "onnxruntime"), {**opts, "folder": folder})
        if args.bf16:
            say("running minibert in bfloat16 ...")
            results["bf16"] = run_worker("bf16", {**opts, "folder": folder})
        if args.paths:
            run_paths(results, {**opts, "folder": folder})
    run_embeddings(results, opts)
    run_families(results, opts, list(FAMILY_BENCHES))
    report_embeddings(results)
    report(results)
    if "bf16" in results:
        report_bf16(results)
    if "paths" in results:
        report_paths(results)
    report_families(results)
    return results


def mode_bf16_only(args, opts):
    """minibert in float32 (the minibert worker) and in bfloat16; with --paths, the paths too (measured, not printed)."""
    with bench_checkpoint() as folder:
        results = {"machine": machine(args)}
        run_each(results, ("minibert",), {**opts, "folder": folder})
        say("running minibert in bfloat16 ...")
        results["bf16"] = run_worker("bf16", {**opts, "folder": folder})
        if args.paths:
            run_paths(results, {**opts, "folder": folder})
    report_bf16(results)
    return results


def mode_paths_only(args, opts):
    """minibert on every path, and the path this machine's rule chooses."""
    from minibert import cpu

    with bench_checkpoint() as folder:
        results = {"machine": machine(args)}
        run_paths(results, {**opts, "folder": folder})
    results["minibert"] = {"cpu": cpu.describe()}  # the path this machine's rule chooses
    report_paths(results)
    return results


def mode_engines_only(args, opts):
    """The Keras path and the LiteRT engine against ONNX Runtime, with transformers and the sgemm peak for the
    targets; then the one-shot CLI runs."""
    with bench_checkpoint() as folder:
        results = {"machine": machine(args)}
        for name in ("sgemm", "tokens", "transformers", *ENGINE_ROWS):
            say(f"running {name} ...")
            results[name] = run_worker("minibert" if name == "keras" else name, {**opts, "folder": folder},
                                       env={"MINIBERT_ENGINE": "keras"} if name == "keras" else None)
        run_one_shots(results)
    report_engines(results)
    report_one_shots(results)
    report_targets(results, ENGINE_TARGETS)
    return results


def mode_embeddings_only(args, opts):
    results = {"machine": machine(args, short=True)}
    run_embeddings(results, opts)
    print_short_machine(results)
    report_embeddings(results)
    return results


def mode_families_only(args, opts):
    results = {"machine": machine(args, short=True)}
    run_families(results, opts, args.families_only or list(FAMILY_BENCHES))
    print_short_machine(results)
    report_families(results)
    return results


# The modes, by the flag that picks each (argparse's dest); "default" runs when none of those flags is given.
MODES = {"default": mode_default, "bf16_only": mode_bf16_only, "paths_only": mode_paths_only,
         "engines_only": mode_engines_only, "embeddings_only": mode_embeddings_only, "families_only": mode_families_only}


def write_results(results, path):
    """The one place the results are written: every mode's JSON, to --json."""
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    say(f"\nwrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(HERE, "..", "data", "sst2"))
    p.add_argument("--json", default="bench.json", help="where to write the results (default bench.json)")
    p.add_argument("--calls", type=int, default=100, help="timed calls for latency (default 100: the minimum of many is what a shared machine can repeat)")
    p.add_argument("--paths", action="store_true",
                   help="also time minibert on every path (MINIBERT_PATH), the measurements behind minibert/cpu.py's rule")
    p.add_argument("--bf16", action="store_true",
                   help="also time minibert with dtype='bfloat16' (opt-in), with its SST-2 dev accuracy and label agreement")
    p.add_argument("--bf16-only", action="store_true", help="time only minibert in float32 and bfloat16 (--bf16), no peers")
    p.add_argument("--paths-only", action="store_true", help="time only minibert's paths (--paths), no peers")
    p.add_argument("--engines-only", action="store_true",
                   help="time only the engines: minibert on Keras and on LiteRT (float32, int8) against ONNX Runtime "
                        "(float32, int8), latency, big batch, one corpus pass, conversion, SST-2 dev accuracy; and one-shot "
                        "CLI runs against transformers' and sentence-transformers' one-shot scripts")
    p.add_argument("--cpu", choices=["native", "avx2"], default="native",
                   help="avx2: hold TensorFlow, PyTorch and numpy to AVX2 code on an AVX-512 machine (flags; onnxruntime is not held)")
    p.add_argument("--embeddings-only", action="store_true",
                   help="time only the embeddings line: minibert's SentenceTransformer.encode against sentence-transformers'")
    p.add_argument("--families-only", nargs="*", metavar="FAMILY",
                   help="time only the family lines (FAMILY_BENCHES, or the families named: "
                        f"{', '.join(FAMILY_BENCHES)}): minibert against transformers on each family's base-sized checkpoint")
    p.add_argument("--worker", nargs=2, metavar=("NAME", "OPTIONS"), help=argparse.SUPPRESS)  # WORKERS[NAME](json)
    args = p.parse_args(argv)
    if args.worker:
        name, opts = args.worker
        print(json.dumps(WORKERS[name](json.loads(opts))))
        return 0
    only = [mode for mode in MODES if getattr(args, mode, None) not in (None, False)]
    if len(only) > 1:
        p.error(f"{' and '.join('--' + m.replace('_', '-') for m in only)} each time one thing alone; give one of them")
    if args.cpu == "avx2":
        os.environ.update(AVX2_ENV)  # for this process's own cpu.isa() (it reads ONEDNN_MAX_CPU_ISA)
        WORKER_ENV.update(AVX2_ENV)  # and for every worker

    import minibert  # noqa: F401  (fails early with a clear message if minibert is not installed)

    unknown = set(args.families_only or ()) - set(FAMILY_BENCHES)
    if unknown:
        p.error(f"--families-only: no bench for {', '.join(sorted(unknown))}; there are {', '.join(FAMILY_BENCHES)}")
    mode = MODES[only[0] if only else "default"]
    write_results(mode(args, {"folder": None, "data": args.data, "calls": args.calls}), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
