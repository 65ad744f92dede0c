"""Study results in pandas: ``load_results`` and the paper's tables and figures.

Imports neither Ray nor torch, nor anything of ``study``; of ``trainables`` only the rows'
contract (trainables/contract/rows.py) and its storage helpers, which import nothing but pyarrow.
"""

from analysis.results import final_rows, load_results, trial_rows

__all__ = ["load_results", "final_rows", "trial_rows"]
