"""The fast path: compiled forwards stay exact, and compilations stay bounded whatever the input shapes."""
import numpy as np
import pytest

import minibert
from minibert.compiled import XLA_BATCHES, XLA_SEQS
from reference import TOL, max_diffs, reference



def batch(rng, B, T, vocab=120):
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    ids = rng.integers(103, vocab, size=(B, T))
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    return np.where(mask == 1, ids, 0), mask


@pytest.mark.parametrize("B,T", [(1, 7), (3, 40), (4, 32), (6, 9), (2, 130), (1, 512)])
def test_both_paths_match_transformers(tmp_path, B, T):
    """(1, 7) and (3, 40) run under XLA on padded buckets, (4, 32) on its own bucket; the others as a plain graph."""
    from reference import make_checkpoint

    folder = make_checkpoint(tmp_path, "bert", "sequence-classification", hidden_size=32, num_attention_heads=4, intermediate_size=37,
                             num_hidden_layers=2, vocab_size=120, max_position_embeddings=512)
    ids, mask = batch(np.random.default_rng(B * 1000 + T), B, T)
    ref = reference(folder, ids, mask, head="sequence-classification")
    model = minibert.AutoModelForSequenceClassification.from_pretrained(folder)
    out = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    diffs = max_diffs(out, ref, mask)
    assert all(d <= TOL[k] for k, d in diffs.items()), diffs
    eager = model.call(*model.prepare_inputs(ids, mask), True, True)  # Keras layers, no tf.function
    assert np.abs(eager.logits.numpy() - out.logits.numpy()).max() <= 1e-5
    fwd = model.compiled_forward(True, True)
    assert fwd.shapes == ({fwd.bucket(B, T)} if fwd.bucket(B, T) else set())


def test_compilations_are_bounded(tiny_distilbert_cls):
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_cls)
    rng = np.random.default_rng(0)
    for _ in range(60):
        B, T = int(rng.integers(1, 12)), int(rng.integers(1, 41))
        ids, mask = batch(rng, B, T)
        assert model(ids, attention_mask=mask).logits.shape == (B, 2)
    fwd = model.compiled_forward()
    assert fwd.xla.experimental_get_tracing_count() == 1  # traced once, with open dimensions
    assert fwd.graph.experimental_get_tracing_count() == 1
    assert len(fwd.shapes) <= len(XLA_BATCHES) * len(XLA_SEQS)
    assert all(t <= 40 for _, t in fwd.shapes)  # buckets never exceed max_position_embeddings


@pytest.fixture(scope="module")
def tiny_pipe(minilm):
    config = minibert.DistilBertConfig(dim=32, n_heads=4, hidden_dim=37, n_layers=2, max_position_embeddings=40)
    model = minibert.DistilBertForSequenceClassification(config)  # random weights, the uncased vocabulary
    tok = minibert.AutoTokenizer.from_pretrained(minilm)
    return minibert.pipeline("text-classification", model=model, tokenizer=tok, max_length=40)


def mixed_texts(n, seed=1):
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "film", "the", "a", "plot", "slow", "fun"]
    return [" ".join(rng.choice(words, size=int(rng.integers(0, 60)))) for _ in range(n)]


def test_many_texts_of_mixed_length(tiny_pipe):
    """10,000 texts through the pipeline: one result each, in order, the same as one at a time."""
    texts = mixed_texts(10_000)
    results = tiny_pipe(texts, top_k=None)
    assert len(results) == 10_000
    for i in (0, 17, 4321, 9999):
        alone = tiny_pipe(texts[i], top_k=None)
        assert [r["label"] for r in alone] == [r["label"] for r in results[i]]
        assert abs(alone[0]["score"] - results[i][0]["score"]) <= 1e-5


def test_an_iterator_is_streamed(tiny_pipe):
    """A generator gives a generator: it reads the input a chunk at a time, results in order."""
    from minibert.pipelines import STREAM_CHUNK

    texts = mixed_texts(2 * STREAM_CHUNK + 5, seed=2)
    pulled = 0

    def source():
        nonlocal pulled
        for t in texts:
            pulled += 1
            yield t

    out = tiny_pipe(source())
    assert pulled == 0  # nothing is read until the first result is asked for
    b = tiny_pipe.batch_size
    got = [next(out)]
    assert pulled == b  # the first window is one batch: a result after one forward
    got += [next(out) for _ in range(b)]
    assert pulled == 3 * b  # then windows double (up to STREAM_CHUNK), never the whole input
    got, want = [*got, *out], tiny_pipe(texts)
    assert len(got) == len(want) == len(texts)
    assert all(a["label"] == b["label"] and abs(a["score"] - b["score"]) <= 1e-5 for a, b in zip(got, want))
    with pytest.raises(TypeError, match=f"input {STREAM_CHUNK + 1} is int"):  # numbered across chunks
        list(tiny_pipe(iter(texts[:STREAM_CHUNK + 1] + [7])))
    with pytest.raises(ValueError, match="pooling"):  # bad arguments fail at the call, not later
        minibert.pipelines.FeatureExtractionPipeline(tiny_pipe.model, tiny_pipe.tokenizer)(iter(texts), pooling="median")
