#!/usr/bin/env python
"""Regenerate docs/behind_the_pipeline.md by running every code block in it, offline.

    python scripts/make_docs.py           # write the guide
    python scripts/make_docs.py --check   # exit 1 if the committed guide is not what the code prints now

Every output block in the guide is what the code above it printed in this run: the numbers are real.
"""
import argparse
import contextlib
import io
import os
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "behind_the_pipeline.md")
SRC = "../minibert"  # links are relative to docs/

GUIDE = [
    ("md", f"""
# Behind the pipeline, with minibert

This is the Hugging Face course's "Behind the pipeline" walkthrough redone with minibert: the same code
with `from minibert import ...`, run offline on minibert's default sentiment model (the all-MiniLM-L6-v2
encoder fine-tuned on SST-2; a BERT). Every output below was printed by the code above it when
`scripts/make_docs.py` last ran; `tests/cli/test_docs.py` fails when the guide and the code disagree.

```
text -> tokenizer -> input ids + attention mask -> embeddings -> transformer layers -> head -> logits -> softmax -> label
```

## 1. Preprocessing with a tokenizer

The tokenizer splits text into word pieces, adds the special tokens `[CLS]` and `[SEP]`, maps pieces to
ids and pads the batch, with an attention mask that marks the real tokens.
Code: [`PreTrainedTokenizer.__call__`]({SRC}/tokenizer.py) (the string work is done by the `tokenizers` library).
"""),
    ("code", """
from minibert import AutoTokenizer
from minibert import default_model

checkpoint = default_model.path()  # an ordinary checkpoint folder; a Hub id works the same when online
tokenizer = AutoTokenizer.from_pretrained(checkpoint)

raw_inputs = [
    "I've been waiting for a HuggingFace course my whole life.",
    "I hate this so much!",
]
inputs = tokenizer(raw_inputs, padding=True, truncation=True, return_tensors="tf")
print(inputs)
"""),
    ("md", "Ids go back to tokens and to text; `[PAD]` (id 0) fills the shorter row where the mask is 0:"),
    ("code", """
print(tokenizer.convert_ids_to_tokens(inputs["input_ids"][1]))
print(tokenizer.tokenize("Using a Transformer network is simple"))
print(tokenizer.decode(inputs["input_ids"][0]))
"""),
    ("md", f"""
## 2. Going through the model

The bare model turns ids into one vector per token: its output `last_hidden_state` has the shape
(batch size, sequence length, hidden size).
Code: [`BertModel`]({SRC}/models/bert.py) = [`BertEmbeddings`]({SRC}/models/bert.py) (word + position +
token type, LayerNorm) then the encoder, a [`LayerStack`]({SRC}/layers.py) of `BertLayer`s: masked
multi-head self-attention ([`multi_head_attention`]({SRC}/layers.py)), add & norm, feed-forward, add & norm.
The attention mask becomes an additive mask in one place, [`additive_attention_mask`]({SRC}/layers.py).
DistilBERT is the same story in [`models/distilbert.py`]({SRC}/models/distilbert.py).
"""),
    ("code", """
from minibert import TFAutoModel

model = TFAutoModel.from_pretrained(checkpoint)
outputs = model(inputs)
print(outputs.last_hidden_state.shape)
"""),
    ("md", """
Asked for them, the model also returns every intermediate result: the embeddings' output and each
layer's output (`hidden_states`), and each layer's attention probabilities (`attentions`, one
(batch, heads, query, key) tensor per layer). Each attention row sums to 1 over the keys, and padded
keys get exactly 0:
"""),
    ("code", """
outputs = model(inputs, output_hidden_states=True, output_attentions=True)
print(len(outputs.hidden_states), outputs.hidden_states[0].shape)
print(len(outputs.attentions), outputs.attentions[0].shape)
first_layer = outputs.attentions[0].numpy()
print("row sums:", first_layer.sum(-1).min().round(5), "to", first_layer.sum(-1).max().round(5))
print("weight on padded keys of text 1:", first_layer[1, :, :, 8:].max())
"""),
    ("md", f"""
## 3. Model heads: making sense out of the numbers

The classification model adds a head on top of the same encoder: BERT's pooler (dense + tanh on the
`[CLS]` vector), dropout, and a linear layer to one score per label.
Code: [`BertForSequenceClassification`]({SRC}/models/bert.py).
"""),
    ("code", """
from minibert import TFAutoModelForSequenceClassification

model = TFAutoModelForSequenceClassification.from_pretrained(checkpoint)
outputs = model(inputs)
print(outputs.logits.shape)
print(outputs.logits.numpy().round(4))  # rounded so the guide does not churn on the last float digit
"""),
    ("md", f"""
### One body, different heads

Every task is the same encoder with a different head on top, and every head class loads any checkpoint
of its family by the one naming rule: weights whose Hub name and shape fit are used, the head's weights
that the checkpoint lacks are newly initialised, and tensors no layer takes are left unused, both
reported as transformers reports them. This checkpoint was trained for sentiment only; note that the
token classifier takes the sentiment `classifier` (same name, same shape), as it would in transformers.
Token-level heads read every token's vector, so their outputs keep the sequence axis.
Code: [`heads.py`]({SRC}/heads.py) (heads shared by every family) and each family file.
"""),
    ("code", """
import minibert

for head in ["AutoModelForTokenClassification", "AutoModelForQuestionAnswering", "AutoModelForMaskedLM"]:
    model_h, info = getattr(minibert, head).from_pretrained(checkpoint, output_loading_info=True)
    out = model_h(inputs)
    shapes = {name: tuple(value.shape) for name, value in out.items()}
    print(type(model_h).__name__, shapes)
    print("  newly initialised:", info.missing_keys, "unused:", info.unexpected_keys)
"""),
    ("md", "## 4. Postprocessing the output\n\nLogits are not probabilities; a softmax makes them so, and `id2label` names them:"),
    ("code", """
import tensorflow as tf

predictions = tf.math.softmax(outputs.logits, axis=-1)
print(predictions.numpy().round(4))
print(model.config.id2label)
"""),
    ("md", """
## 5. Why the attention mask matters

Padding a short sentence changes its logits unless the mask tells attention to ignore the padding
(the course's "Handling multiple sequences" experiment):
"""),
    ("code", """
sequence1_ids = [[101, 1045, 5223, 2023, 2061, 2172, 999, 102]]
sequence2_ids = [[101, 1045, 5223, 2023, 102]]
batched_ids = [sequence1_ids[0], sequence2_ids[0] + [tokenizer.pad_token_id] * 3]
attention_mask = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]]

print(model(sequence2_ids).logits.numpy().round(4))
print(model(batched_ids).logits.numpy().round(4))
print(model(batched_ids, attention_mask=attention_mask).logits.numpy().round(4))
"""),
    ("md", """
## 6. All of it in one line, and one command

`pipeline` does the above for a list of texts (sorted by length and batched inside):
"""),
    ("code", """
from minibert import pipeline

classifier = pipeline("sentiment-analysis")
results = classifier(raw_inputs)
print([{"label": r["label"], "score": round(r["score"], 4)} for r in results])
"""),
    ("md", """
`minibert trace` prints every stage for any text and checkpoint (`--format json` for a JSON object,
`--attention-png maps.png` for a picture of the attention maps, layers x heads):
"""),
    ("code", """
import subprocess
import sys

trace = subprocess.run([sys.executable, "-m", "minibert", "trace", "--format", "text", *raw_inputs],
                       capture_output=True, text=True, check=True)
print(trace.stdout)
"""),
]


def render() -> str:
    namespace: dict = {}
    parts = []
    for kind, text in GUIDE:
        text = textwrap.dedent(text).strip("\n")
        if kind == "md":
            parts.append(text)
            continue
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(text, "<guide>", "exec"), namespace)
        parts.append(f"```python\n{text}\n```")
        if buf.getvalue().strip():
            parts.append(f"```\n{buf.getvalue().rstrip()}\n```")
    return "\n\n".join(parts) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare with the committed guide instead of writing it")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        with open(OUT, encoding="utf-8") as f:
            current = f.read()
        if current != text:
            import difflib

            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       "docs/behind_the_pipeline.md", "regenerated"))
            print("\nthe guide is out of date: run python scripts/make_docs.py", file=sys.stderr)
            return 1
        print("docs/behind_the_pipeline.md is current")
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
