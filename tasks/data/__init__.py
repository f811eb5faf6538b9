"""Data: the dataset at its pinned DVC revision, its per-image property table, its validation, its tf.data input."""
