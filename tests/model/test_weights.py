"""Loading ImageNet-style backbone weights: torchvision and timm layouts, clear failures."""

import dataclasses

import pytest
import torch
from torchvision.models import resnet18

from trainables.model.mask_rcnn import build_backbone_body
from trainables.model.weights import load_backbone_weights
from trainables.model.zoo import R50_GN, TINY_GN


def test_torchvision_bn_state_dict_into_frozenbn(tmp_path):
    # A torchvision ResNet-18 state_dict (the IMAGENET1K_V1 layout) saved to disk.
    ref = resnet18()
    torch.nn.init.normal_(ref.layer3[0].conv1.weight)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    body = build_backbone_body(dataclasses.replace(TINY_GN, width=64, norm="frozenbn"))
    report = load_backbone_weights(body, str(path))
    assert not report.missing and not report.unexpected
    assert report.ignored == ("fc.weight", "fc.bias")
    assert torch.equal(body.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert torch.equal(body.bn1.running_var, ref.bn1.running_var)


def test_timm_style_gn_resnet50_loads_every_tensor(tmp_path):
    # timm's resnet50_gn names modules like torchvision (conv1/bn1/layerN.M.*, downsample.0/1)
    # with GroupNorm weights in the bn slots and a 1000-way fc; a checkpoint may be wrapped.
    src = build_backbone_body(R50_GN)
    torch.nn.init.normal_(src.layer4[2].bn3.weight)
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    path = tmp_path / "resnet50_gn.pth"
    torch.save({"state_dict": state}, path)
    body = build_backbone_body(R50_GN)
    report = load_backbone_weights(body, f"file://{path}")
    backbone_keys = [k for k in body.state_dict() if not k.startswith("fc.")]
    assert set(report.loaded) >= set(backbone_keys) and not report.missing and not report.unexpected
    assert torch.equal(body.layer4[2].bn3.weight, src.layer4[2].bn3.weight)
    assert "loaded" in report.summary()


def test_safetensors_weights_load_and_a_damaged_file_is_bad_input(tmp_path):
    """timm and Hugging Face ship .safetensors: the same tensors load; a cut file is a
    ValueError naming it (bad input: the trial ends once, no retry)."""
    from safetensors.torch import save_file

    src = build_backbone_body(TINY_GN)
    torch.nn.init.normal_(src.layer1[0].conv1.weight)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    body = build_backbone_body(TINY_GN)
    report = load_backbone_weights(body, str(path))
    assert not report.missing and torch.equal(body.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cut.safetensors is not a readable safetensors file"):
        load_backbone_weights(build_backbone_body(TINY_GN), str(tmp_path / "cut.safetensors"))


def test_norm_mismatch_is_an_error(tmp_path):
    path = tmp_path / "bn.pth"
    torch.save(resnet18().state_dict(), path)
    body = build_backbone_body(dataclasses.replace(TINY_GN, width=64))  # GroupNorm
    with pytest.raises(ValueError, match="BatchNorm weights but the model's backbone uses GroupNorm"):
        load_backbone_weights(body, str(path))


def test_shape_mismatch_is_an_error(tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(build_backbone_body(dataclasses.replace(TINY_GN, width=64)).state_dict(), path)
    body = build_backbone_body(TINY_GN)  # width 16
    with pytest.raises(
        ValueError, match=r"shape mismatches.*conv1.weight: checkpoint \(64, 3, 7, 7\) vs model \(16, 3, 7, 7\)"
    ):
        load_backbone_weights(body, str(path))


def test_missing_and_unexpected_are_reported(tmp_path):
    state = build_backbone_body(TINY_GN).state_dict()
    state.pop("layer4.1.conv2.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    report = load_backbone_weights(build_backbone_body(TINY_GN), str(path))
    assert report.missing == ("layer4.1.conv2.weight",) and report.unexpected == ("extra.weight",)
    assert "1 missing" in report.summary() and "1 unexpected" in report.summary()


def test_missing_file_and_junk(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_backbone_weights(build_backbone_body(TINY_GN), str(tmp_path / "nothing.pth"))
    torch.save({"a": 1}, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="state_dict"):
        load_backbone_weights(build_backbone_body(TINY_GN), str(tmp_path / "junk.pth"))


def _to_detectron(state):
    """The inverse renaming, to write a Detectron-layout pickle (BGR conv1) for the test."""
    import re

    blobs = {}
    for key, value in state.items():
        if key.startswith("fc."):
            blobs[f"pred_{key.split('.')[1][0]}"] = value.numpy()
            continue
        if key.startswith(("conv1", "bn1")):
            name = {"conv1.weight": "conv1_w", "bn1.weight": "conv1_gn_s", "bn1.bias": "conv1_gn_b"}[key]
            blobs[name] = (value.flip(1) if key == "conv1.weight" else value).numpy()
            continue
        layer, block, module, param = re.match(r"layer(\d)\.(\d+)\.(\w+(?:\.\d)?)\.(\w+)", key).groups()
        prefix = f"res{int(layer) + 1}_{block}_branch"
        if module.startswith("downsample"):
            suffix = "1_w" if module.endswith("0") else ("1_gn_s" if param == "weight" else "1_gn_b")
        else:
            letter = "abc"[int(module[-1]) - 1]
            suffix = (
                f"2{letter}_w" if module.startswith("conv") else f"2{letter}_gn_{'s' if param == 'weight' else 'b'}"
            )
        blobs[prefix + suffix] = value.numpy()
    return blobs


def test_detectron_gn_pickle_loads_every_tensor(tmp_path):
    import pickle

    from trainables.model.zoo import R101_GN

    src = build_backbone_body(R101_GN)
    torch.nn.init.normal_(src.conv1.weight)
    blobs = _to_detectron(src.state_dict())
    assert "res4_22_branch2c_gn_b" in blobs and "res2_0_branch1_w" in blobs
    path = tmp_path / "R-101-GN.pkl"
    path.write_bytes(
        pickle.dumps({"blobs": {**blobs, "res2_0_branch2a_w_momentum": blobs["res2_0_branch2a_w"]}}, protocol=2)
    )
    body = build_backbone_body(R101_GN)
    report = load_backbone_weights(body, str(path))
    assert not report.missing and not report.unexpected
    assert len(report.loaded) == len([k for k in body.state_dict() if not k.startswith("fc.")])
    for key, value in src.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(body.state_dict()[key], value), key  # conv1 flipped back to RGB


def test_preset_weights_point_at_the_right_files():
    from study.spec.presets import PRESETS

    # The paper's own GN models (Detectron's, Caffe2 pixel convention), and the alternatives.
    gn = PRESETS["coco-r50-gn"]
    assert gn.pretrained_weights["r50"].endswith("/47261647/R-50-GN.pkl")
    assert gn.models["r50"].pixel_std == PRESETS["coco-r101-gn"].models["r101"].pixel_std == (1 / 255,) * 3
    assert PRESETS["coco-r50-gn-subsets"].pretrained_weights == gn.pretrained_weights
    assert PRESETS["coco-r101-gn"].pretrained_weights["r101"].endswith("/47592356/R-101-GN.pkl")
    timm = PRESETS["coco-r50-gn-timm"]
    assert "resnet50_gn" in timm.pretrained_weights["r50-timm"] and timm.models["r50-timm"].pixel_std == (
        0.229,
        0.224,
        0.225,
    )
    assert "resnet50-0676ba61.pth" in PRESETS["coco-r50-syncbn"].pretrained_weights["r50-syncbn"]
    # Every pretrained weight states the images it saw: 100, 600 and 90 epochs of ImageNet.
    images = {name: p.pretrained_images for name, p in PRESETS.items() if p.pretrained_weights}
    assert images["coco-r50-gn"] == {"r50": 128_116_700} and images["coco-r101-gn"] == {"r101": 128_116_700}
    assert images["coco-r50-gn-timm"] == {"r50-timm": 768_700_200}
    assert images["coco-r50-syncbn"] == {"r50-syncbn": 115_305_030}


def test_pretrained_images_reach_the_trial_config(tmp_path):
    """A preset's stated pretraining images travel with its weights into every arm's config."""
    import dataclasses

    from study.spec.presets import SMOKE
    from study.spec.resolved import base_trial
    from study.spec.study_config import Arm
    from study.workspace import prepare_inputs

    weights = str(tmp_path / "w.pth")
    study = dataclasses.replace(SMOKE, pretrained_weights={"tiny": weights}, pretrained_images={"tiny": 1_281_167})
    pretrained = prepare_inputs(study, log=lambda _m: None)
    assert pretrained == {"tiny": (weights, 1_281_167)}
    arm = base_trial(study, Arm("pretrained", 1.0, "tiny"), results_uri="", code_version="", pretrained=pretrained)
    assert arm["pretrained_weights"] == weights and arm["pretrain_images_seen"] == 1_281_167
    unknown = prepare_inputs(dataclasses.replace(study, pretrained_images={}), log=lambda _m: None)
    assert unknown == {"tiny": (weights, None)}  # drawn as "unknown", never as 0


def test_each_replicate_seed_pretrains_its_own_backbone(tmp_path, monkeypatch):
    """A seed replicate varies all of the pretrained init's randomness: with the generated
    pretraining, each seed's trial pretrains (once, then from the cache) a backbone under its
    own seed; real ImageNet weights stay one checkpoint for every seed."""
    import dataclasses

    import torch

    from study.spec.presets import SMOKE
    from study.spec.resolved import base_trial
    from study.spec.study_config import Arm
    from study.workspace import prepare_inputs, seed_backbones
    from tests.conftest import MemoryCheckpoints
    from trainables.engine.ray_entry import trial_config
    from trainables.engine.trial import with_generated_backbone

    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "cache"))
    study = dataclasses.replace(SMOKE, seed=0)
    pretrained = prepare_inputs(study, log=lambda _m: None)
    assert pretrained == {}  # nothing is pretrained in the driver
    arms = {
        arm.name: base_trial(study, arm, results_uri=str(tmp_path), code_version="", pretrained=pretrained)
        for arm in (Arm("scratch", 1.0, "tiny"), Arm("pretrained", 1.0, "tiny"))
    }
    assert arms["pretrained-tiny-f1"]["pretrain"] == dataclasses.asdict(study.pretrain)
    assert arms["pretrained-tiny-f1"]["pretrain_images_seen"] == 10 * 16 and arms["scratch-tiny-f1"]["pretrain"] is None
    backbones = seed_backbones(study, arms, [0, 1, 2])
    assert set(backbones) == {"pretrained-tiny-f1"}  # scratch has nothing to pretrain
    point = {"arm": "pretrained-tiny-f1", "lr": 0.02, "weight_decay": 1e-4, "schedule": 1.0}
    configs = {seed: trial_config({**point, "seed": seed}, arms, f"t{seed}", backbones) for seed in (0, 1, 2, 5)}
    # The search's seed keeps the study's own pretraining; seed s pretrains under seed + s.
    assert [configs[s].pretrain.seed for s in (0, 1, 2)] == [study.pretrain.seed + s for s in (0, 1, 2)]
    assert configs[5].pretrain == configs[0].pretrain  # a seed without an entry keeps the arm's
    logs: list[str] = []
    session = MemoryCheckpoints().session(log=logs.append)
    paths = {s: with_generated_backbone(configs[s], session).pretrained_weights for s in (0, 1)}
    assert len(set(paths.values())) == 2 and sum("pretraining the backbone" in m for m in logs) == 2
    weights = [torch.load(paths[s], map_location="cpu") for s in (0, 1)]
    assert any(not torch.equal(a, b) for a, b in zip(weights[0].values(), weights[1].values()))
    # A later trial of seed 1 loads the cached backbone without pretraining again.
    assert with_generated_backbone(configs[1], session).pretrained_weights == paths[1]
    assert sum("pretraining the backbone" in m for m in logs) == 2
    # Real weights: one fixed checkpoint, no per-seed backbones, nothing pretrained.
    real = dataclasses.replace(study, pretrained_weights={"tiny": str(tmp_path / "w.pth")})
    real_arms = {
        arm.name: base_trial(real, arm, results_uri="", code_version="", pretrained=prepare_inputs(real, log=print))
        for arm in (Arm("pretrained", 1.0, "tiny"),)
    }
    assert real_arms["pretrained-tiny-f1"]["pretrain"] is None
    assert seed_backbones(real, real_arms, [0, 1, 2]) == {}


def _pretrain_in_a_process(cache: str, log_file: str) -> str:
    import os

    os.environ["RETHINK_CACHE"] = cache
    from study.spec.presets import SMOKE
    from trainables.pretraining.pretrain import ensure_pretrained

    with open(log_file, "w") as f:
        return str(ensure_pretrained(SMOKE.models["tiny"], SMOKE.pretrain, log=lambda m: print(m, file=f)).path)


def test_two_processes_needing_one_backbone_pretrain_it_once(tmp_path):
    """Trials that start together and need the same generated backbone take turns on the
    cache's lock: one pretrains, the other waits and loads the same file."""
    import multiprocessing

    logs = [str(tmp_path / f"log{i}") for i in range(2)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paths = pool.starmap(_pretrain_in_a_process, [(str(tmp_path / "cache"), log) for log in logs])
    assert paths[0] == paths[1]
    trained = [open(log).read().count("pretraining the backbone") for log in logs]
    assert sorted(trained) == [0, 1]
