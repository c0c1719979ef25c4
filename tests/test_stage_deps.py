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
    # every declared path exists: a moved module cannot leave a dependency on nothing
    for name, stage in stages.items():
        for dep in stage_deps.declared_code(stage):
            assert (PROJECT / dep).exists(), (name, dep)


def test_the_closure_follows_sibling_lazy_and_by_name_imports():
    closure = relative(import_closure(PROJECT / "pipelines/train.py"))
    assert "pipelines/common.py" in closure                          # `from common import ...`
    assert "src/galaxyprop/data/io.py" in closure                    # imported inside a function of common
    assert "src/galaxyprop/heads/knn.py" in closure                  # named by string in heads.FEATURE_HEADS
    assert {"src/galaxyprop/__init__.py", "src/galaxyprop/heads/clap/__init__.py"} <= closure   # packages run
    assert "src/galaxyprop/deploy/spark.py" not in closure           # not everything: Spark is not a stage's code
    # a head alone: its own modules and what they import, not the pipeline's
    knn = relative(import_closure(PROJECT / "src/galaxyprop/heads/knn.py"))
    assert "src/galaxyprop/heads/knn.py" in knn and "pipelines/train.py" not in knn


def test_minimal_cover_writes_complete_folders_as_folders():
    physics = {p.relative_to(PROJECT).as_posix() for p in (PROJECT / "src/galaxyprop/physics").glob("*.py")}
    assert stage_deps.minimal_cover(physics) == ["src/galaxyprop/physics"]
    partial = sorted(physics)[1:]
    assert stage_deps.minimal_cover(set(partial)) == partial


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
