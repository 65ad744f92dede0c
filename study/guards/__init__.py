"""Guards of the environment around a study: checks before Ray starts (preflight), disk
space (disk), one driver per study folder (driver_lock), and signals (interrupts).

May import study.spec and trainables.contract and .data; no torch, no Ray at import.
"""
