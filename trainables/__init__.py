"""One trial of the study, and the contract it shares with the study and the analysis.

Sub-packages by job: contract/ (rows, storage, errors, configs, study.json), data/,
pretraining/, model/, evaluation/ and engine/ (the trial itself, the only one that imports
Ray); runtime.py is the seam between a trial and its runtime (a Session: rank, world size,
device, report) with the collectives that the engine and the evaluation both use.
"""
