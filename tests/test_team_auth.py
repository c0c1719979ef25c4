"""Team mode with users: `galaxyprop server --auth` runs MLflow's basic-auth app. The admin comes from an
environment variable or a file, never a default; a request without a user cannot move an alias (401), a
user with the default READ permission cannot either (403), and the admin's promotion through galaxyprop's
gate works against the server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import mlflow
import pytest

from galaxyprop.config import Stores
from galaxyprop.registry import versions as registry
from galaxyprop.tracking import runs as tracking
from test_registry import GATE, knn_predictor, mse_on

from postgres_server import mlflow_server

pytestmark = pytest.mark.slow
PASSWORD = "a-Long-team-Passw0rd"


def call(url: str, path: str, body: dict, user: tuple[str, str] | None = None) -> int:
    """POST `body` to the server's REST API as `user` (None: no credentials); the HTTP status."""
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    if user:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_server_needs_a_password_and_never_has_a_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GALAXYPROP_ADMIN_PASSWORD"}
    result = subprocess.run([sys.executable, "-m", "galaxyprop.cli.main", "server", "--auth", "--backend-store-uri",
                             f"sqlite:///{tmp_path}/mlflow.db"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--auth: give the admin's password in $GALAXYPROP_ADMIN_PASSWORD or a file" in result.stderr
    assert "there is no default password" in result.stderr


def test_without_a_user_an_alias_cannot_move_and_the_admin_promotes_through_the_gate(tmp_path, galaxies,
                                                                                     monkeypatch):
    train, test = galaxies
    (tmp_path / "password").write_text(PASSWORD + "\n")
    with mlflow_server(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts", cwd=tmp_path,
                       options=("--auth", "--admin-password-file", str(tmp_path / "password"), "--workers", "1")) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        stores = Stores(url, "", f"sqlite:///{tmp_path}/optuna.db", "galaxyprop-team")
        tracking.connect(stores)
        with tracking.stage_run(stores, "register"):
            version = registry.register_predictor(knn_predictor(train), test.head(5), {"head": "knn"}, {"mse": 0.1})
        name = "galaxyprop-z-catalogue"
        move = {"name": name, "alias": "production", "version": version}
        assert call(url, "registered-models/alias", move) == 401                      # nobody
        assert call(url, "users/create", {"username": "alice", "password": "alice-Passw0rd-long"},
                    ("admin", PASSWORD)) == 200
        assert call(url, "registered-models/alias", move, ("alice", "alice-Passw0rd-long")) == 403   # READ
        assert call(url, "registered-models/alias", move, ("admin", "wrong")) == 401
        result = registry.promote("z-catalogue", None, mse_on(test), GATE)
        assert result.promoted, result
        assert str(mlflow.MlflowClient().get_model_version_by_alias(name, "production").version) == version
    assert not (tmp_path / "mlruns" / "server_auth.ini").read_text().count(PASSWORD)   # never written to disk
