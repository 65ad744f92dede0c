"""What a study will run, before it runs: the numbers (estimate), the words ``--dry-run``
prints (text), the regime indicators (regime_points), and the figure of a trial's trunk and
branches (trunk_figure).

May import study.spec, trainables.contract, trainables.engine.branches and analysis.stats;
no torch, no Ray.
"""
