"""One trial: Ray Train's entry (ray_entry), the trial's set-up and step (trial), the training
loop with its hooks and its state (loop), the LR schedule and the trunk's branches (schedule,
branches), rows and reports (row_writer, trial_records) and checkpoints. Ray's private names
live in ray_compat.

May import trainables.contract, .runtime, .data, .model, .evaluation and .pretraining; nothing
of study/ or analysis/.
"""
