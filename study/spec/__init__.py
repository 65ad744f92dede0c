"""What a study is: its frozen configuration (study_config), its margins (margins), the
presets (presets, toy_presets, coco_presets), and the study resolved once, one spec per arm
(resolved).

May import trainables.contract and trainables.engine's pure modules (branches, schedule); no
torch, no Ray.
"""
