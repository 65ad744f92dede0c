"""Study results in pandas: ``load_results`` and the paper's tables and figures.

Imports neither Ray nor torch, nor anything of ``study`` or ``trainables``. The package
loads pandas only when ``load_results``/``final_rows``/``trial_rows`` are first used, so
``analysis.schema`` (the rows' contract, which trials import) stays light.
"""

__all__ = ["load_results", "final_rows", "trial_rows"]


def __getattr__(name: str):
    if name in __all__:
        from analysis import results

        return getattr(results, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
