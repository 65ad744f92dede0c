"""The generated stand-in for ImageNet: its images (pretrain_data) and the pretraining of a
backbone on them (pretrain), with the shipped backbones in standin/.

May import trainables.contract, .data and .model; no Ray.
"""
