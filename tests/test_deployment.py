"""docker-compose.yml cannot run here (no Docker engine), so its consistency with the repo is tested."""

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import CommonSettings
from connectors.webchat.settings import WebchatSettings
from connectors.wechat.settings import WechatSettings
from gateway.cli import _parser
from gateway.notices.settings import NoticeSettings
from gateway.settings import GatewaySettings
from knowledge.settings import KnowledgeSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def _command(service: dict[str, Any], dockerfile_cmd: list[str]) -> list[str]:
    command = service.get("command", dockerfile_cmd)
    return shlex.split(command) if isinstance(command, str) else list(command)


def _dockerfile_cmd() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert match, "Dockerfile has no exec-form CMD"
    return list(yaml.safe_load(match.group(1)))


def test_compose_has_the_production_services(compose: dict[str, Any]) -> None:
    assert {"postgres", "redis", "gateway", "migrate", "rasa", "rasa-train", "actions"} <= set(compose["services"])


def test_rasa_services_use_files_that_exist(compose: dict[str, Any]) -> None:
    for name in ("rasa", "rasa-train"):
        service = compose["services"][name]
        assert service["image"] == "rasa/rasa:3.6.21-full"
        assert "./bot:/app" in service["volumes"]
        argv = _command(service, [])
        for flag in ("--endpoints", "--credentials"):
            if flag in argv:
                assert (ROOT / "bot" / argv[argv.index(flag) + 1]).is_file(), f"{name}: {flag} file missing"
    actions = compose["services"]["actions"]
    assert (ROOT / actions["build"]["dockerfile"]).is_file()
    argv = _command(actions, [])
    assert (ROOT / argv[argv.index("--actions") + 1] / "__init__.py").is_file()


def test_every_gateway_image_service_runs_a_real_kefu_command(compose: dict[str, Any]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    built = {name: svc for name, svc in compose["services"].items() if svc.get("build") == "."}
    assert built
    for name, service in built.items():
        argv = _command(service, _dockerfile_cmd())
        assert argv[0] in scripts, f"{name}: {argv[0]} is not a console script of this project"
        args = _parser().parse_args(argv[1:])
        assert hasattr(args, "handler"), f"{name}: `{' '.join(argv)}` is not a complete kefu command"


def test_dockerfile_copies_every_package_it_installs() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for package in ("common", "knowledge", "connectors", "gateway"):
        assert f"COPY {package} ./{package}" in text
        assert (ROOT / package / "__init__.py").is_file()


def test_compose_settings_are_real_settings(compose: dict[str, Any]) -> None:
    known = {f"KEFU_{name.upper()}" for name in CommonSettings.model_fields}
    known |= {f"KEFU_{name.upper()}" for name in GatewaySettings.model_fields}
    known |= {f"KEFU_KB_{name.upper()}" for name in KnowledgeSettings.model_fields}
    known |= {f"KEFU_WEBCHAT_{name.upper()}" for name in WebchatSettings.model_fields}
    known |= {f"KEFU_WECHAT_{name.upper()}" for name in WechatSettings.model_fields}
    known |= {f"KEFU_NOTICES_{name.upper()}" for name in NoticeSettings.model_fields}
    # Read by the action server and by Rasa's production endpoints, not by the gateway's settings.
    known |= {"KEFU_GATEWAY_URL", "KEFU_DB_PASSWORD"}
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key in env if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]:
            if key.startswith("KEFU_"):
                assert key in known, f"{name}: {key} is not a Kefu setting"


def test_no_secret_is_written_into_compose(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items() if isinstance(env, dict) else []:
            if re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL", key):
                checked += 1
                assert "${" in str(value), f"{name}: {key} holds a literal secret"
    assert checked, "no secret-bearing setting found: the check checked nothing"
