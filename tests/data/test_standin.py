"""The toy's stand-ins for ImageNet that ship with the package: exactly the toy's spec and
seeds, each made by trainables/pretraining/pretrain.py to its own plateau, found by ensure_pretrained in
an empty cache, and loadable into the toy's backbone."""

import dataclasses
import json

import torch

from study.standin import SEEDS, shipped_specs
from trainables.data.synthetic import CATEGORIES, KITE
from trainables.model.mask_rcnn import build_backbone_body
from trainables.pretraining import pretrain_data
from trainables.pretraining.pretrain import SHIPPED, WEIGHTS_FILE, cache_key, ensure_pretrained


def test_the_shipped_stand_ins_are_the_toys_current_spec():
    wanted = {f"pretrain-{cache_key(model, spec)}" for model, spec in shipped_specs()}
    shipped = {p.name for p in SHIPPED.glob("pretrain-*")}
    assert shipped == wanted, (
        "trainables/pretraining/standin/ does not hold the toy's current stand-ins: run `python -m study.standin`"
    )
    detection = {c["name"] for c in CATEGORIES} | {KITE["name"]}
    seeds = set()
    for model, spec in shipped_specs():
        meta = json.loads((SHIPPED / f"pretrain-{cache_key(model, spec)}" / "meta.json").read_text())
        seeds.add(meta["spec"]["seed"])
        assert meta["spec"] == json.loads(json.dumps(dataclasses.asdict(spec)))
        assert meta["classes"] == list(pretrain_data.CLASSES[: spec.num_classes])
        assert not set(meta["classes"]) & detection
        # Trained to its own plateau, and it learned its task.
        assert meta["levelled_off"] and meta["accuracy"] > 0.8, meta["accuracy_curve"]
    assert seeds == set(range(SEEDS))


def test_an_empty_cache_loads_the_shipped_backbone_without_pretraining(tmp_path):
    model, spec = shipped_specs()[0]
    said = []
    done = ensure_pretrained(model, spec, root=tmp_path, log=said.append)
    assert done.path == SHIPPED / f"pretrain-{cache_key(model, spec)}" / WEIGHTS_FILE
    assert not said and not list(tmp_path.iterdir())
    assert done.meta["spec"]["seed"] == 0 and done.images_seen == spec.images_seen
    body = build_backbone_body(model)
    state = torch.load(done.path, weights_only=True)
    missing, unexpected = body.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("fc.") for k in missing)
