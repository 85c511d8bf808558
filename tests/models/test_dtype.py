"""dtype="bfloat16": an opt-in outside the float32 parity suite. It must agree with float32 closely, keep the float32
weights for saving, refuse what is not a dtype, and stay float32 with one warning where bfloat16 would not be fast."""
import warnings

import numpy as np
import pytest

import minibert
from minibert import cpu
from minibert.models import distilbert  # noqa: F401  (TensorFlow imported quietly before the tests touch it)
from reference import SST2, minilm_dir

BF16_FAST = cpu.bfloat16_matmuls() is None


@pytest.fixture(scope="module")
def sst2_dev():
    import os

    here = os.path.join(SST2, "dev.txt")
    with open(here, encoding="utf-8") as f:
        return [line.rstrip("\n").split(" ", 1)[1] for line in f][:300]


@pytest.mark.parametrize("dtype", ["float16", "uint8", "bf16", 3])
def test_a_dtype_that_is_not_offered_is_refused(tiny_distilbert_cls, dtype):
    with pytest.raises(ValueError, match=r"dtype must be 'float32', 'bfloat16' .* or 'int8' .*got"):
        minibert.AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_cls, dtype=dtype)


def test_bfloat16_where_it_is_not_fast_stays_float32_with_one_warning(tiny_distilbert_cls, monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx2", "fma"})  # a CPU without bfloat16 instructions
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_cls, dtype="bfloat16")
    msgs = [str(w.message) for w in caught if "bfloat16" in str(w.message)]
    assert msgs == ["dtype='bfloat16': this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16); "
                    "the model runs in float32"]
    assert model.dtype_name == "float32"


@pytest.mark.slow
def test_bfloat16_labels_agree_with_float32_and_weights_stay(tmp_path, sst2_dev, monkeypatch):
    """On the default model's encoder with its trained head: same label on at least 98% of 300 SST-2 dev texts,
    probabilities within 0.05; float32 weights untouched and saved unchanged; set_dtype('float32') is exact again."""
    from minibert import default_model

    if not BF16_FAST:  # this CPU cannot run it fast: force it, so the numbers are still checked (slowly)
        monkeypatch.setattr(cpu, "bfloat16_matmuls", lambda: None)
    model = minibert.AutoModelForSequenceClassification.from_pretrained(default_model.path())
    tok = minibert.AutoTokenizer.from_pretrained(default_model.path())
    batch = tok(sst2_dev, padding=True, truncation=True, return_tensors="np")
    want = model(**batch).logits.numpy()
    weights = [w.numpy().copy() for w in model.weights]
    assert model.set_dtype(np.dtype("float32")) == "float32"
    assert model.set_dtype("bfloat16") == "bfloat16" and model.dtype_name == "bfloat16"
    got = model(**batch).logits.numpy()
    assert got.dtype == np.float32 and np.abs(got - want).max() > 0  # it really ran in bfloat16
    agree = np.mean(got.argmax(-1) == want.argmax(-1))
    assert agree >= 0.98, agree
    soft = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
    assert np.abs(soft(got) - soft(want)).max() < 0.05
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights))
    model.save_pretrained(tmp_path)
    again = minibert.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert np.abs(again(**batch).logits.numpy() - want).max() <= 1e-5
    assert model.set_dtype("float32") == "float32"
    assert np.abs(model(**batch).logits.numpy() - want).max() <= 1e-6  # back on the float32 path


def test_pipeline_takes_dtype_through_model_kwargs(monkeypatch):
    monkeypatch.setattr(cpu, "bfloat16_matmuls", lambda: None)
    pipe = minibert.pipeline("feature-extraction", model=minilm_dir(), model_kwargs={"dtype": "bfloat16"})
    assert pipe.model.dtype_name == "bfloat16"
    assert pipe(["A man is eating food."], pooling="mean").shape == (1, 384)
