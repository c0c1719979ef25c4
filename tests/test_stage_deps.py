"""Every dvc.yaml stage declares exactly the code it runs, so editing any module a stage imports
makes `dvc status` report that stage changed (a stale cache would be a silent wrong answer)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from galaxyprop.provenance import code_digest, import_closure

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tools"))
import stage_deps  # noqa: E402


def relative(paths) -> set[str]:
    return {p.relative_to(PROJECT).as_posix() for p in paths}


def test_every_stage_declares_its_import_closure():
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    assert len(stages) >= 15
    found = stage_deps.differences(stages)
    assert not found, "run `python tools/stage_deps.py --write`:\n" + "\n".join(
        f"{name}: undeclared {missing}, declared but not run {extra}" for name, (missing, extra) in found.items())
    # every declared path exists (for every head a matrix may name): a moved module cannot leave a dependency
    # on nothing
    for name, stage in stages.items():
        for dep in stage_deps.declared_code(stage):
            for head in stage_deps.matrix_heads(stage) if "${item.head}" in dep else [None]:
                path = dep.replace("${item.head}", head) if head else dep
                assert (PROJECT / path).exists(), (name, path)


def test_dvc_yaml_reads_in_a_few_hundred_lines():
    assert len((PROJECT / "dvc.yaml").read_text().splitlines()) <= 400


def stage_closure(stages: dict, name: str) -> set[str]:
    """What stage `name` declares it runs, with a head-matrix stage's template filled for every head."""
    deps = set(stage_deps.declared_code(stages[name]))
    return {d.replace("${item.head}", h) for d in deps for h in stage_deps.matrix_heads(stages[name]) or [""]}


def covers(declared: set[str], path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in declared)


def test_an_edit_reruns_only_the_stages_that_run_the_edited_code():
    """DVC's promise: change one head (or the drift code), `dvc repro` reruns that head's stages (or
    drift's) and what reads their outputs, not the whole pipeline."""
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    declared = {name: set(stage_deps.declared_code(stage)) for name, stage in stages.items()}

    def running(path: str) -> set[str]:
        """The stages (a head-matrix stage: `stage@head` per head) whose declared code covers `path`."""
        names = set()
        for name, stage in stages.items():
            heads = stage_deps.matrix_heads(stage)
            for head in heads or [None]:
                deps = {d.replace("${item.head}", head) for d in declared[name]} if head else declared[name]
                if covers(deps, path):
                    names.add(f"{name}@{head}" if head else name)
        return names

    # one head: only that head's train stages, and the stages that run every trained model (or that head)
    assert running("src/galaxyprop/heads/knn/__init__.py") == {"train@knn", "register", "drift", "spectra"}
    assert running("src/galaxyprop/heads/clap/head.py") == {"train@clap", "register", "drift"}
    assert running("src/galaxyprop/heads/cnn_mm/__init__.py") == {"train_image@cnn_mm", "register", "drift"}
    # the drift code: drift, adapt (which runs the embedding test) and the params check
    assert running("src/galaxyprop/monitoring/drift.py") == {"check_params", "drift", "adapt"}
    # the simulator: only the stage that simulates (and the params check, which checks the mock's params)
    assert running("src/galaxyprop/mock/survey.py") == {"check_params", "import_data"}
    # the metrics: not the stages that make the data and the features
    metrics = running("src/galaxyprop/evaluation/metrics/point.py")
    assert not metrics & {"import_data", "prepare", "features", "train_encoder", "embed", "measure", "combine"}
    assert {"train@knn", "train@clap", "evaluate", "register"} <= metrics


def test_the_closure_follows_sibling_and_lazy_imports_and_each_head_is_its_own():
    closure = relative(import_closure(PROJECT / "pipelines/train.py"))
    assert "pipelines/common.py" in closure                          # `from common import ...`
    assert "src/galaxyprop/data/io.py" in closure                    # imported inside a function of common
    assert "src/galaxyprop/__init__.py" in closure                   # packages run
    assert "src/galaxyprop/deploy/spark.py" not in closure           # not everything: Spark is not a stage's code
    assert not any(f.startswith(("src/galaxyprop/heads/knn", "src/galaxyprop/heads/clap")) for f in closure)
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    assert stage_deps.stage_code("train", stages["train"])[-1] == "src/galaxyprop/heads/${item.head}"
    # a head alone: its own modules and what they import, never another feature head nor the pipeline's
    for head in ("knn", "gbt", "mlp", "clap"):
        own = relative(import_closure(PROJECT / f"src/galaxyprop/heads/{head}/__init__.py"))
        others = {f"src/galaxyprop/heads/{h}/" for h in ("knn", "gbt", "mlp", "clap", "cnn", "cnn_mm") if h != head}
        assert not any(f.startswith(tuple(others)) for f in own), head
        assert "pipelines/train.py" not in own
    # loading params imports no capability: a stage's closure holds the schemas of what it reads only
    prepare = relative(import_closure(PROJECT / "pipelines/prepare.py"))
    assert not any(f.startswith(("src/galaxyprop/monitoring", "src/galaxyprop/registry", "src/galaxyprop/calibration",
                                 "src/galaxyprop/encoder", "src/galaxyprop/mock")) for f in prepare)


def test_minimal_cover_writes_packages_as_folders_but_heads_and_partly_used_parents():
    physics = {p.relative_to(PROJECT).as_posix() for p in (PROJECT / "src/galaxyprop/physics").glob("*.py")}
    assert stage_deps.minimal_cover(physics) == ["src/galaxyprop/physics"]
    assert stage_deps.minimal_cover(set(sorted(physics)[1:])) == ["src/galaxyprop/physics"]   # the package, used
    # a parent with an unused subpackage is written by its files and used subpackages
    data = {"src/galaxyprop/data/__init__.py", "src/galaxyprop/data/astroclip/base.py"}
    assert stage_deps.minimal_cover(data) == ["src/galaxyprop/data"]
    # heads: shared modules as files unless every head runs
    shared = {"src/galaxyprop/heads/__init__.py", "src/galaxyprop/heads/base.py"}
    assert stage_deps.minimal_cover(shared) == sorted(shared)
    every = {p.relative_to(PROJECT).as_posix() for p in (PROJECT / "src/galaxyprop/heads").rglob("*.py")
             if "__pycache__" not in p.parts}
    assert stage_deps.minimal_cover(every) == ["src/galaxyprop/heads"]


def test_code_digest_changes_with_any_module_in_the_closure(tmp_path, monkeypatch):
    """The Optuna study key: an edit to the head or to anything it imports starts a new study."""
    import galaxyprop.provenance as provenance

    before = code_digest("galaxyprop.heads.knn")
    assert before == code_digest("galaxyprop.heads.knn") != code_digest("galaxyprop.physics.cosmology")
    copy = tmp_path / "galaxyprop"
    import shutil

    shutil.copytree(provenance.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", copy)
    assert code_digest("galaxyprop.heads.knn") == before               # same bytes, same relative paths
    base = copy / "heads" / "base.py"                                  # imported by knn, not knn itself
    base.write_text(base.read_text() + "\n# an edit\n")
    assert code_digest("galaxyprop.heads.knn") != before
    with pytest.raises(ValueError, match="no galaxyprop module"):
        code_digest("galaxyprop.heads.nothing")


def test_the_lock_has_no_entries_of_stages_that_no_longer_exist():
    from dvc.repo import Repo

    with Repo(str(PROJECT)) as repo:
        names = {stage.addressing for stage in repo.index.stages}
    lock = yaml.safe_load((PROJECT / "dvc.lock").read_text())
    assert len(names) >= 30
    orphans = sorted(set(lock["stages"]) - names)
    assert not orphans, f"dvc.lock entries of stages dvc.yaml no longer has: {orphans}"
