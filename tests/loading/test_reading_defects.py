"""Defects found by reading the code: each fails on the code before its fix."""
import pytest

import minibert


def test_camembert_config_keeps_transformers_defaults():
    transformers = pytest.importorskip("transformers")
    ours, theirs = minibert.CamembertConfig(), transformers.CamembertConfig()
    assert ours.vocab_size == theirs.vocab_size == 30522
    assert ours.pad_token_id == theirs.pad_token_id
    assert minibert.CamembertConfig(vocab_size=7).vocab_size == 7


def test_rerank_past_the_positions_is_one_line(tiny_bert_cls, tmp_path):
    """A rerank max_length past the position table: the base pipeline's refusal, not a TypeError."""
    import json
    import os
    import shutil

    from reference import make_checkpoint, minilm_dir

    folder = make_checkpoint(tmp_path / "cross", "bert", "sequence-classification", num_labels=1, vocab_size=30522,
                             hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
                             max_position_embeddings=16)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_dir(), name), folder)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "model_max_length": 512, "do_lower_case": True}, f)
    pipe = minibert.pipeline("rerank", model=str(folder), max_length=64)
    with pytest.raises(ValueError, match="more than the 16 this model takes.*max_length=16 or less"):
        pipe(["word " * 40], query="a query")
    assert len(pipe(["short"], query="a query", max_length=16)) == 1  # still usable


def test_save_pretrained_gives_the_files_the_usual_mode(tiny_bert_cls, tmp_path):
    import os
    import stat

    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny_bert_cls)
    umask = os.umask(0o022)
    try:
        model.save_pretrained(tmp_path / "saved")
    finally:
        os.umask(umask)
    for name in ("model.safetensors", "config.json"):
        assert stat.S_IMODE(os.stat(tmp_path / "saved" / name).st_mode) == 0o644, name
