"""clusters/aws.yaml, validated offline: Ray's own schema, EC2's RunInstances shape, security."""

import copy
import re
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator
from ray.autoscaler._private.util import prepare_config, validate_config

YAML = Path(__file__).resolve().parents[2] / "clusters" / "aws.yaml"


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(YAML.read_text())


def test_ray_accepts_it(config):
    full = prepare_config(copy.deepcopy(config))  # merges AWS defaults; makes no AWS call
    validate_config(full)
    assert full["head_node_type"] == "head_cpu"


def _run_instances_params(node_config):
    """What Ray's AWS provider sends: it resolves its own SubnetIds list to one SubnetId
    (ray/autoscaler/_private/aws/node_provider.py) and adds the counts."""
    params = {**node_config, "MinCount": 1, "MaxCount": 1}
    if "SubnetIds" in params:
        params["SubnetId"] = params.pop("SubnetIds")[0]
    return params


def test_every_node_config_is_a_valid_run_instances_request(config):
    ec2 = botocore.session.get_session().get_service_model("ec2")
    shape = ec2.operation_model("RunInstances").input_shape
    for name, node in config["available_node_types"].items():
        params = _run_instances_params(node["node_config"])
        report = ParamValidator().validate(params, shape)
        assert not report.has_errors(), f"{name}: {report.generate_report()}"


def test_a_misspelt_key_would_be_caught(config):
    shape = botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape
    node = dict(config["available_node_types"]["gpu_8x_spot"]["node_config"])
    node["InstanceTyp"] = node.pop("InstanceType")
    assert ParamValidator().validate(_run_instances_params(node), shape).has_errors()


def test_nothing_is_open_to_the_internet(config):
    settings = "\n".join(line.split("#")[0] for line in YAML.read_text().splitlines())  # comments may name it
    assert "0.0.0.0/0" not in settings
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "--dashboard-host=0.0.0.0" not in head
    assert not config["provider"].get("security_group", {}).get("IpPermissions")
    for name, node in config["available_node_types"].items():
        # Naming a security group keeps the launcher from creating its own (SSH from anywhere).
        assert node["node_config"].get("SecurityGroupIds"), name


def test_token_auth_on_every_node(config):
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_cluster_layout(config):
    assert config["provider"]["cache_stopped_nodes"] is False
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["CPU"] == 0 and head["resources"]["study_driver"] > 0
    assert "InstanceMarketOptions" not in head["node_config"]  # the driver is never on spot
    gpu = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert {t["node_config"]["InstanceType"] for t in gpu.values()} == {"p4d.24xlarge", "g5.12xlarge"}
    assert any(t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot" for t in gpu.values())
    assert any("InstanceMarketOptions" not in t["node_config"] for t in gpu.values())
    for t in gpu.values():
        assert "IamInstanceProfile" in t["node_config"]  # workers write results to S3
        assert t["min_workers"] == 0 and t["max_workers"] >= 1
    assert config["max_workers"] >= 1 and config["idle_timeout_minutes"] > 0


def test_nodes_install_the_same_pinned_project(config):
    setup = " ".join(config["setup_commands"])
    assert "--python 3.11" in setup and 'pip install --python ~/venv/bin/python -e "$HOME/rethink-pretraining"' in setup
    pyproject = (YAML.parent.parent / "pyproject.toml").read_text()
    assert re.search(r'"ray\[default,tune,train\]==2\.60\.0"', pyproject)
    assert config["file_mounts"]["~/rethink-pretraining"] == "."
    staging = [c for c in config["worker_setup_commands"] if "study.stage_data" in c]
    assert staging and "/data/coco" in staging[0]
    assert "nvidia-smi" in config["worker_setup_commands"]


def test_every_key_is_commented():
    # Like Ray's own example YAMLs: a comment above every top-level key.
    lines = YAML.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            assert lines[i - 1].startswith("#"), f"no comment above '{line}'"
