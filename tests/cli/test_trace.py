"""`minibert trace` and the attention pictures: right shapes and ids, valid JSON and PNG."""
import json
import subprocess
import sys

import numpy as np
import pytest

import minibert
from minibert import trace as tr
from reference import MINILM_IDS, MINILM_TEXT
from test_cli import ENV, no_traceback

TEXTS = [MINILM_TEXT, "I hate this so much!"]


@pytest.fixture(scope="module")
def default_trace():
    from minibert import default_model

    path = default_model.path()
    model = minibert.AutoModelForSequenceClassification.from_pretrained(path)
    return tr.trace(TEXTS, model, minibert.AutoTokenizer.from_pretrained(path)), model


def test_stages_shapes_and_ids(default_trace):
    r, model = default_trace
    assert r["input_ids"][0] == MINILM_IDS
    assert r["tokens"][1] == ["[CLS]", "i", "hate", "this", "so", "much", "!", "[SEP]"] + ["[PAD]"] * 8
    assert r["attention_mask"][1] == [1] * 8 + [0] * 8
    assert [s["stage"] for s in r["stages"]] == ["embeddings"] + [f"layer {i}" for i in range(6)]
    assert all(s["shape"] == [2, 16, 384] for s in r["stages"])
    assert r["head_input"]["shape"] == [2, 384]
    assert r["labels"] == ["POSITIVE", "NEGATIVE"]
    probs = np.array(r["probabilities"])
    assert np.allclose(probs.sum(1), 1, atol=1e-3)
    from minibert import default_model

    enc = minibert.AutoTokenizer.from_pretrained(default_model.path())(TEXTS, padding=True, return_tensors="np")
    assert np.abs(np.array(r["logits"]) - model(enc).logits.numpy()).max() < 1e-4  # rounded to 4 places


def test_attention_rows_sum_to_one_and_padding_is_zero(default_trace):
    r, _ = default_trace
    for a in r["_attentions"]:
        np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
        assert (a[1, :, :, 8:] == 0).all()


@pytest.mark.parametrize("kwargs", [{}, {"layer": 2, "head": 3}, {"text_index": 1, "layer": 0}])
def test_png_is_a_valid_image(tmp_path, default_trace, kwargs):
    from PIL import Image

    r, _ = default_trace
    path = tr.plot_attention(r, str(tmp_path / "a.png"), **kwargs)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) > 150


def test_png_layer_out_of_range(tmp_path, default_trace):
    with pytest.raises(ValueError, match=r"--layer 6 is out of range: the model has 6 layers \(0 to 5\)"):
        tr.plot_attention(default_trace[0], str(tmp_path / "a.png"), layer=6)


@pytest.mark.slow
def test_cli_trace_json_and_text(tmp_path):
    png = tmp_path / "maps.png"
    p = subprocess.run([sys.executable, "-m", "minibert", "trace", *TEXTS, "--format", "json", "--attention-png", str(png)],
                       capture_output=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    no_traceback(p)
    r = json.loads(p.stdout)
    assert r["labels"] == ["POSITIVE", "NEGATIVE"] and r["input_ids"][0] == MINILM_IDS
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = subprocess.run([sys.executable, "-m", "minibert", "trace", "hello", "--format", "text"],
                       capture_output=True, env=ENV, timeout=300)
    out = p.stdout.decode()
    assert "[CLS] hello [SEP]" in out and "(1, 3, 384)" in out and "softmax" in out


def test_trace_of_a_base_model(minilm):
    model = minibert.AutoModel.from_pretrained(minilm)
    r = tr.trace(["hello world"], model, minibert.AutoTokenizer.from_pretrained(minilm))
    assert "logits" not in r and r["head_input"]["shape"] == [1, 384]
    json.dumps(tr.to_json(r))  # JSON-ready


@pytest.mark.parametrize("head", ["token-classification", "question-answering", "masked-lm", "multiple-choice"])
def test_each_head_shows_its_own_last_stage(tmp_path, minilm, head):
    """trace picks the class from config.json's architectures and ends with that head's own stage."""
    import shutil

    from minibert.cli import load_any_model
    from minibert.pipelines import softmax
    from reference import make_checkpoint

    folder = make_checkpoint(tmp_path, "bert", head, num_labels=3 if head == "token-classification" else 2,
                             hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(f"{minilm}/{name}", folder)
    model, tok = load_any_model(folder), minibert.AutoTokenizer.from_pretrained(folder)
    texts = ["paris is the [MASK] of france.", "i hate this so much!"]
    r = tr.trace(texts, model, tok)
    json.dumps(tr.to_json(r))  # JSON-ready
    text = tr.format_trace(r)
    enc = tok(texts, padding=True, return_tensors="np")
    assert r["head"] == head
    if head == "token-classification":
        logits = model(enc).logits.numpy()
        want = [model.config.id2label[int(i)] for i in logits[1, :8].argmax(-1)]  # text 1 has 8 real tokens
        assert [x["label"] for x in r["token_labels"][1]] == want
        assert f"i/{want[1]}" in text
    elif head == "question-answering":
        out = model(enc)
        for i, span in enumerate(r["spans"]):
            real = enc["attention_mask"][i].astype(bool)
            s, e = span["start"], span["end"]
            assert s <= e and real[s] and real[e]
            p = softmax(np.where(real, out.start_logits.numpy()[i], -np.inf))[s] * \
                softmax(np.where(real, out.end_logits.numpy()[i], -np.inf))[e]
            assert abs(p - span["score"]) < 1e-4
    elif head == "masked-lm":
        (m,) = r["masked"]  # one [MASK], in text 0
        assert (m["text"], r["tokens"][0][m["position"]]) == (0, "[MASK]")
        probs = softmax(model(enc).logits.numpy()[0, m["position"]])
        assert [c["id"] for c in m["candidates"]] == list(np.argsort(-probs)[:5])
        assert m["candidates"][0]["token"] == tok.convert_ids_to_tokens(int(probs.argmax())) and "mask at" in text
    else:
        logits = model({k: v[None] for k, v in enc.items()}).logits.numpy()
        assert r["choice"] == int(logits[0].argmax()) and "softmax over the texts" in text


def test_attention_maps_past_the_bound_are_refused_before_the_model_runs(minilm, capsys):
    """A trace keeps layers x heads x T x T attention weights per text: a long text on a model with many
    positions reached gigabytes. Past MAX_ATTENTION_BYTES it is refused, with the sizes, before any forward;
    `--text-index` past the texts is refused before the model loads."""
    from minibert.cli import main
    from minibert.config import BertConfig

    class NoForward:
        config = BertConfig(num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=4096)

        def __call__(self, *args, **kwargs):
            pytest.fail("the model ran")

    tok = minibert.AutoTokenizer.from_pretrained(minilm)
    with pytest.raises(ValueError, match=r"a trace of 1 text\(s\) of 3000 tokens keeps 12 layers x 12 heads x 3000 x "
                                         r"3000 attention weights per text, 4\.8 GiB, more than the 1 GiB trace allows"):
        tr.trace(["word " * 4000], NoForward(), tok, max_length=3000)
    tr.check_attention_size(NoForward.config, 1, 512)  # one BERT-base text of 512 tokens: 151 MB, allowed
    with pytest.raises(ValueError, match=r"8 text\(s\) of 512 tokens"):  # 1.2 GB of maps
        tr.check_attention_size(NoForward.config, 8, 512)
    assert main(["trace", "one", "two", "--attention-png", "/nonexistent/maps.png", "--text-index", "3",
                 "--model", "/nonexistent/model"]) == 1
    assert capsys.readouterr().err == "minibert: error: --text-index 3 is out of range: 2 text(s) given\n"
