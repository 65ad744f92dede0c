"""The scripts beside the package: every benchmark imports against the code as it is (they run
by hand, on other machines, so nothing else would notice a name they import move), and the
console scripts name the commands and run."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_script_imports():
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    code = (
        "import importlib.util, sys\n"
        "for path in sys.argv[1:]:\n"
        "    spec = importlib.util.spec_from_file_location('bench_' + path.rsplit('/', 1)[-1][:-3], path)\n"
        "    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "print('imported', len(sys.argv) - 1)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, scripts)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"imported {len(scripts)}" and len(scripts) >= 6


def test_the_console_scripts_name_the_commands():
    """pyproject's console scripts point at the command lines the docs run with python."""
    import importlib

    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"rethink-study", "rethink-report", "rethink-stage-data"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), target


def test_the_installed_console_scripts_run(tmp_path):
    """The scripts pip installed beside this Python: each answers --help, and rethink-study
    plans a study as python study/run.py does."""
    bin_dir = Path(sys.executable).parent
    for name in ("rethink-study", "rethink-report", "rethink-stage-data"):
        out = subprocess.run([str(bin_dir / name), "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.startswith("usage:"), (name, out.stderr[-2000:])
    planned = subprocess.run(
        [str(bin_dir / "rethink-study"), "--preset", "smoke", "--results", str(tmp_path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "study preset smoke" in planned.stdout and "(dry run: nothing was trained or written)" in planned.stdout
