"""`kefu run`: the whole product on one machine — Rasa, the action server and the gateway.

Rasa needs Python < 3.11, so it runs from its own venv (``.venv-rasa``) as separate processes; the
gateway works (degraded) while Rasa loads its model, and keeps working if Rasa is missing altogether.
"""

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from common.settings import CommonSettings, generated_secret

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "bot"
RASA_BIN = ROOT / ".venv-rasa" / "bin" / "rasa"
MODEL = BOT / "models" / "kefu.tar.gz"
MODEL_HASH = BOT / "models" / "kefu.sha256"
RUNTIME_ONLY = {"endpoints.yml", "endpoints.production.yml", "credentials.yml"}
RASA_PORT = 5005
ACTIONS_PORT = 5055


def rasa_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Rasa processes: no telemetry, loopback only, offline."""
    return {
        **os.environ,
        "RASA_TELEMETRY_ENABLED": "false",
        "SANIC_HOST": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(extra or {}),
    }


def bot_hash() -> str:
    """A digest of everything training reads, so an unchanged bot/ is not retrained."""
    digest = hashlib.sha256()
    for path in sorted(p for p in BOT.rglob("*") if p.is_file()):
        rel = path.relative_to(BOT)
        # Endpoints and credentials are read at run time, not by training.
        if rel.parts[0] in ("models", ".rasa") or path.suffix == ".pyc" or rel.name in RUNTIME_ONLY:
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def train(*, force: bool = False) -> bool:
    """Train the Rasa model unless one exists for exactly this bot/; returns whether it trained."""
    if not RASA_BIN.exists():
        raise RuntimeError(f"{RASA_BIN} is missing: the Rasa venv is installed by `make run` / `make test`")
    current = bot_hash()
    if not force and MODEL.exists() and MODEL_HASH.exists() and MODEL_HASH.read_text().strip() == current:
        return False
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(RASA_BIN), "train", "--fixed-model-name", "kefu", "--out", "models"],
        cwd=BOT,
        env=rasa_env(),
        check=True,
    )
    MODEL_HASH.write_text(current + "\n")
    return True


def internal_token(var_dir: Path) -> str:
    """The shared secret between gateway and action server: the environment's, or one generated once."""
    return generated_secret(var_dir, env="KEFU_INTERNAL_TOKEN", name="internal_token")


class Rasa:
    """The Rasa server and the action server as child processes."""

    def __init__(
        self,
        *,
        var_dir: Path,
        gateway_url: str,
        token: str,
        rasa_port: int = RASA_PORT,
        actions_port: int = ACTIONS_PORT,
    ):
        self.var_dir = var_dir
        self.gateway_url = gateway_url
        self.token = token
        self.rasa_port = rasa_port
        self.actions_port = actions_port
        self.children: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def start(self) -> bool:
        if not RASA_BIN.exists() or not MODEL.exists():
            log.warning("Rasa is not installed or not trained; the gateway runs without it (degraded)")
            return False
        logs = self.var_dir / "log"
        logs.mkdir(parents=True, exist_ok=True)
        env = rasa_env(
            {
                "KEFU_GATEWAY_URL": self.gateway_url,
                "KEFU_INTERNAL_TOKEN": self.token,
                # bot/endpoints.yml reads the action server's address from here.
                "KEFU_ACTIONS_URL": f"http://127.0.0.1:{self.actions_port}/webhook",
            }
        )
        self._spawn(
            [str(RASA_BIN), "run", "actions", "--actions", "actions", "-p", str(self.actions_port)],
            cwd=ROOT,
            env=env,
            log_path=logs / "actions.log",
        )
        self._spawn(
            [
                str(RASA_BIN),
                "run",
                "--enable-api",
                "-i",
                "127.0.0.1",
                "-p",
                str(self.rasa_port),
                "--model",
                str(MODEL),
                "--endpoints",
                "endpoints.yml",
                "--credentials",
                "credentials.yml",
            ],
            cwd=BOT,
            env=env,
            log_path=logs / "rasa.log",
        )
        log.info(
            "Rasa starting on 127.0.0.1:%d (model loads in about a minute), actions on 127.0.0.1:%d; logs in %s",
            self.rasa_port,
            self.actions_port,
            logs,
        )
        return True

    def _spawn(self, argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        out = log_path.open("ab")
        self._logs.append(out)
        # A new session so Ctrl-C on the gateway does not reach the children before we stop them in order.
        self.children.append(
            subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        for out in self._logs:
            out.close()


def run(*, host: str, port: int) -> int:
    """Start Rasa and the action server beside the gateway; stop them when the gateway stops."""
    import uvicorn

    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    common = CommonSettings()
    token = internal_token(common.var_dir)
    os.environ["KEFU_INTERNAL_TOKEN"] = token
    rasa = Rasa(var_dir=common.var_dir, gateway_url=f"http://127.0.0.1:{port}", token=token)
    rasa.start()
    try:
        uvicorn.run(create_app(gateway_settings=GatewaySettings()), host=host, port=port, log_level="info")
    finally:
        rasa.stop()
    return 0


def announce_credentials(path: Path, payload: dict[str, object]) -> None:
    """Write first-start credentials where the operator (and `kefu eval`) can find them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2))
    path.chmod(0o600)
    print(json.dumps(payload, ensure_ascii=False), file=sys.stderr)
