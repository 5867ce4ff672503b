"""Evaluation: IS and FID (and KID, PRDC, intra-FID) under a named protocol, stamped with how.

- `protocols`: the protocols (paper, standard, quick) and the metric names that record them.
- `reference`: statistics of real images (cached) and `sngan stats`.
- `scoring`: generator -> uint8 -> Inception -> scores in exact float32; `TrainingEvaluator` for training.
- `command`: `sngan eval` as a plain function.
"""
