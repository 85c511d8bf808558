"""The LiteRT engine never runs stale weights: a model called, then trained (a compiled `tf.function` step, as
scripts/train_default_model.py runs) or given new weights, then called again gives what Keras gives now."""
import numpy as np
import pytest

import minibert
from minibert import engine, weight_changes

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert publishes no wheel for this platform")

IDS = np.array([[101, 5, 17, 42, 102], [101, 7, 102, 0, 0]], np.int32)
MASK = (IDS != 0).astype(np.int32)


@pytest.fixture
def model(tiny_bert_cls, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(engine, "_warned", set())
    monkeypatch.setattr(weight_changes, "_state", {"assignments": 0, "training": False})
    m = minibert.AutoModelForSequenceClassification.from_pretrained(tiny_bert_cls, engine="litert")
    if engine.unavailable() is not None:
        pytest.fail(f"LiteRT is installed but cannot run: {engine.unavailable()}")
    return m


def on_litert(m):
    out = m(IDS, MASK).logits.numpy()
    assert m.__dict__["_compiled"].get("litert") is not None, "the call did not run on LiteRT"
    return out


def on_keras(m):
    return m(IDS, MASK, output_hidden_states=True).logits.numpy()  # hidden states run the Keras layers


def test_a_compiled_training_step_is_seen(model):
    import keras
    import tensorflow as tf

    before = on_litert(model)
    opt = keras.optimizers.AdamW(learning_rate=1e-2)
    trainable = model.trainable_weights

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model.classifier(model.bert.pooler(model.bert.call(tf.constant(IDS), tf.constant(MASK),
                                                                         tf.zeros_like(IDS)).last_hidden_state))
            loss = tf.reduce_mean(logits ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, trainable), trainable))

    step()
    first = on_litert(model)
    assert np.abs(first - before).max() > 1e-3, "one step changed nothing: the test would prove nothing"
    np.testing.assert_allclose(first, on_keras(model), atol=1e-5)
    step()  # the traced step again: no Python runs in minibert's layers now
    np.testing.assert_allclose(on_litert(model), on_keras(model), atol=1e-5)
    assert np.abs(on_litert(model) - first).max() > 1e-4


def test_assigned_weights_are_seen(model):
    before = on_litert(model)
    weights = model.get_weights()
    model.set_weights([w * 1.5 for w in weights])
    after = on_litert(model)
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(after, on_keras(model), atol=1e-5)
    # one value of one variable, the kind of change a sample could miss
    bias = model.classifier.bias
    value = bias.numpy()
    value[-1] += 3.0
    bias.assign(value)
    np.testing.assert_allclose(on_litert(model), on_keras(model), atol=1e-5)
    model.set_weights(weights)
    np.testing.assert_allclose(on_litert(model), before, atol=1e-5)


def test_inference_alone_never_rechecks(model, monkeypatch):
    on_litert(model)
    calls = []
    monkeypatch.setattr(weight_changes, "fingerprint", lambda m: calls.append(1))
    for _ in range(3):
        on_litert(model)
    assert calls == []
