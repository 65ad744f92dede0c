"""The contract between a trial, the study and the analysis: a row's columns and keys
(rows), where rows and files live (storage, row_store), the errors that retrying cannot fix
(errors), a trial's frozen configuration and its JSON form (trial_config, config_io), and the
study's record beside its rows (study_record).

Imports nothing of the project outside this package, nor torch, Ray or pandas: study/ and
analysis/ import it without loading a trial.
"""
