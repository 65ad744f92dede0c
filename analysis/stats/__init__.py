"""The statistics behind the report: the non-inferiority verdict (verdict), seed replicates
and gap intervals (replicates), the regime indicators (regime), and early stopping's rank
agreement (rank_agreement).

May import trainables.contract; pandas and scipy, no torch, no Ray.
"""
