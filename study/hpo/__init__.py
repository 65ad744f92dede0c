"""The Ray Tune and Optuna layer: the Tune experiments (tuning), the per-arm Optuna search
(search, sampler, optuna_db), early stopping on schedule rungs (scheduler), the replicate
phase (replicate_phase) and failed trials (failures). Tune's private names live in
tune_compat.

The one part of study/ that imports Ray; may import study.spec, trainables and analysis.
"""
