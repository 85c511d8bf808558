"""Feature extraction (token vectors) against transformers' pipeline."""

import numpy as np

from task_checkpoints import TEXTS, reference, ours


# -- feature extraction --------------------------------------------------------------------------
def test_feature_extraction(base_dir):
    ref, pipe = reference("feature-extraction", base_dir), ours("feature-extraction", base_dir)
    want, got = ref(TEXTS, truncation=True), pipe(TEXTS, batch_size=2)
    assert [np.asarray(g).shape for g in got] == [np.asarray(w).shape for w in want]  # (1, T, hidden) each
    assert max(np.abs(np.asarray(g) - np.asarray(w)).max() for g, w in zip(got, want)) <= 1e-4
    one = pipe(TEXTS[0], return_tensors=True)
    assert one.shape == tuple(ref(TEXTS[0], return_tensors=True).shape) == (1, 16, 32)
    assert np.abs(one - np.asarray(got[0])).max() <= 1e-5  # alone or in a batch: the same vectors
    pooled = pipe(TEXTS, pooling="mean", normalize=True)
    assert pooled.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(pooled[1], np.asarray(got[1])[0].mean(0) / np.linalg.norm(np.asarray(got[1])[0].mean(0)), atol=1e-6)
