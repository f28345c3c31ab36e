"""The CI recipes of the docs (``docs/ci/``) work: their shell steps run as the CI service would run them.

A small git project uses the plugin (one measured check, its baseline committed, an ``origin`` with its
``main``). Each job's steps run in a copy of it: GitHub's ``run:`` steps with ``bash -eo pipefail``, their
``${{ … }}`` expressions given by the test, ``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY`` temporary files;
GitLab's ``script:`` as one bash script with its variables and the ``CI_*`` ones of a merge request.
What talks to the service cannot run here: ``gh`` and ``curl`` are scripts that record what they were given
(the body of the comment or note must be the gate's summary), and an upload must name files the earlier
steps produced. The install steps are not run: the plugin is installed here already.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import git

ROOT = Path(__file__).parent.parent
GITHUB = ROOT / "docs" / "ci" / "github-actions.yml"
GITLAB = ROOT / "docs" / "ci" / "gitlab-ci.yml"

TINY_TEST = """
import jax.numpy as jnp
from flax import nnx

import pytest_jaxperf as jaxperf


class MLP(nnx.Module):
    def __init__(self, *, rngs):
        self.linear = nnx.Linear(32, 64, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.linear(x))


@jaxperf.jit_warm
def test_mlp(jaxperf):
    jaxperf.check(MLP(rngs=nnx.Rngs(0)), jnp.zeros((16, 32)))
"""

#: The pull request's change: it breaks a test, so the gate fails.
BROKEN_TEST = """
def test_broken_by_the_change():
    assert 1 + 1 == 3, "the change broke this"
"""

#: A short sampling budget keeps the runs quick; nothing checked here depends on it.
PYPROJECT = """
[tool.pytest.ini_options]
addopts = "-p no:cacheprovider -p no:randomly"
jaxperf_budget = "0.3"
"""

GH_STUB = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$STUB_LOG/gh.args"
while [ $# -gt 0 ]; do
    if [ "$1" = --body-file ]; then cp "$2" "$STUB_LOG/gh.body"; fi
    shift
done
"""

CURL_STUB = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$STUB_LOG/curl.args"
while [ $# -gt 0 ]; do
    if [ "$1" = --data-urlencode ]; then
        case "$2" in body@*) cp "${2#body@}" "$STUB_LOG/curl.body" ;; esac
    fi
    shift
done
"""


def environment(stubs: Path) -> dict[str, str]:
    """This machine's environment, less what the outer run and a real CI service would add, with the
    stand-ins for ``gh`` and ``curl`` and this interpreter's scripts first on the PATH."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS") and not key.startswith(("GITHUB_", "CI_"))
    }
    path = os.pathsep.join([str(stubs / "bin"), str(Path(sys.executable).parent), kept.get("PATH", "")])
    return {**kept, "PATH": path, "STUB_LOG": str(stubs / "log")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project, its baseline recorded and committed, with an ``origin`` holding its ``main``."""
    root = tmp_path_factory.mktemp("recipes")
    directory = root / "project"
    (directory / "suites").mkdir(parents=True)
    (directory / "suites" / "test_tiny.py").write_text(TINY_TEST)
    (directory / "pyproject.toml").write_text(PYPROJECT)
    git(directory, "init", "-q", "-b", "main")
    git(directory, "config", "user.email", "ci@example.invalid")
    git(directory, "config", "user.name", "CI recipes")
    git(directory, "add", ".")
    git(directory, "commit", "-q", "-m", "a tiny project")
    recorded = subprocess.run(
        [sys.executable, "-m", "pytest", "--jaxperf-update-baselines", "--jaxperf-repeat=1", "suites/"],
        cwd=directory,
        env=environment(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    git(directory, "add", "baselines")
    git(directory, "commit", "-q", "-m", "its baseline")
    subprocess.run(["git", "clone", "-q", "--bare", str(directory), str(root / "origin.git")], check=True)
    git(directory, "remote", "add", "origin", str(root / "origin.git"))
    git(directory, "fetch", "-q", "origin")
    return directory


@dataclass
class Workspace:
    directory: Path
    stubs: Path
    env: dict[str, str]

    def logged(self, name: str) -> Path:
        return self.stubs / "log" / name


@pytest.fixture
def workspace(project: Path, tmp_path: Path) -> Workspace:
    """A copy of the tiny project, as the CI service checks it out, with ``gh`` and ``curl`` stood in."""
    directory = tmp_path / "workspace"
    shutil.copytree(project, directory, symlinks=True)
    stubs = tmp_path / "stubs"
    (stubs / "bin").mkdir(parents=True)
    (stubs / "log").mkdir()
    for name, script in (("gh", GH_STUB), ("curl", CURL_STUB)):
        (stubs / "bin" / name).write_text(script)
        (stubs / "bin" / name).chmod(0o755)
    return Workspace(directory, stubs, environment(stubs))


def break_a_test(workspace: Workspace) -> None:
    (workspace.directory / "suites" / "test_broken.py").write_text(BROKEN_TEST)


def installs_the_plugin(script: str) -> bool:
    return "pip install" in script and "pytest-jaxperf" in script


# --- GitHub Actions ------------------------------------------------------------------------------------

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
#: The step conditions the test understands: each runs whatever the earlier steps did (never cancelled).
_ALWAYS = {"${{ !cancelled() }}", "!cancelled()", "${{ always() }}", "always()"}


def github_workflow() -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return {str(key): value for key, value in loaded.items()}


@dataclass
class Step:
    name: str
    ran: bool
    returncode: int | None = None
    output: str = ""


def evaluate(text: str, context: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        assert match.group(1) in context, f"the recipe uses ${{{{ {match.group(1)} }}}}, not provided here"
        return context[match.group(1)]

    return _EXPRESSION.sub(value, text)


def run_github_job(workspace: Workspace, job_name: str, event: str, context: dict[str, str]) -> list[Step]:
    """Run the job's steps as GitHub would on ``event``; the ``uses:`` steps checked, not run."""
    workflow = github_workflow()
    job = workflow["jobs"][job_name]
    assert job["if"] == f"github.event_name == '{event}'"
    assert workflow["defaults"]["run"]["shell"] == "bash"  # GitHub runs it as bash -eo pipefail
    summary = workspace.directory.parent / "step-summary.md"
    env = {
        **workspace.env,
        **{key: str(value) for key, value in workflow.get("env", {}).items()},
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(workspace.directory),
        "GITHUB_EVENT_NAME": event,
        "CI": "true",
    }
    steps: list[Step] = []
    failed = False
    for index, step in enumerate(job["steps"]):
        name = step.get("name", step.get("uses", ""))
        condition = step.get("if")
        assert condition is None or condition in _ALWAYS, f"{name}: a condition this test cannot judge"
        if condition is None and failed:
            steps.append(Step(name, ran=False))
            continue
        if "uses" in step:
            check_action(step, workspace.directory)
            steps.append(Step(name, ran=True))
            continue
        if name == "Install":
            assert installs_the_plugin(step["run"]), step["run"]
            steps.append(Step(name, ran=False))
            continue
        outputs = workspace.directory.parent / f"github-output-{index}"
        outputs.write_text("")
        step_env = {
            **env,
            **{key: evaluate(str(value), context) for key, value in step.get("env", {}).items()},
            "GITHUB_OUTPUT": str(outputs),
        }
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=workspace.directory,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        for line in outputs.read_text().splitlines():
            key, _, value = line.partition("=")
            context[f"steps.{step['id']}.outputs.{key}"] = value
        steps.append(Step(name, ran=True, returncode=done.returncode, output=done.stdout + done.stderr))
        if done.returncode != 0 and not step.get("continue-on-error"):
            failed = True
    return steps


def check_action(step: dict[str, Any], directory: Path) -> None:
    """A ``uses:`` step: checkout and setup-python are this test's own workspace and interpreter; an
    upload must name what the earlier steps wrote (a folder marked ``if-no-files-found: ignore`` may be
    missing)."""
    action = step["uses"].split("@")[0]
    if action in ("actions/checkout", "actions/setup-python"):
        return
    assert action == "actions/upload-artifact", f"an action this test does not know: {step['uses']}"
    for path in str(step["with"]["path"]).split():
        # The traces folder holds the regressed checks' traces: none where nothing regressed.
        if not (directory / path).exists() and path != "jaxperf-traces/":
            assert step["with"].get("if-no-files-found") == "ignore", (
                f"{step['name']}: {path} was not written"
            )


def by_name(steps: list[Step], name: str) -> Step:
    return next(step for step in steps if step.name == name)


def test_github_workflow_triggers_and_permissions() -> None:
    workflow = github_workflow()
    assert "pull_request" in workflow["on"]
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert {"base", "rounds", "tests"} <= set(inputs)
    assert workflow["permissions"]["pull-requests"] == "write"
    uploads = [
        step for step in workflow["jobs"]["gate"]["steps"] if "upload-artifact" in step.get("uses", "")
    ]
    # The traces in the report's own artifact: the page links them relative to itself.
    (report,) = [step for step in uploads if "jaxperf-report.html" in step["with"]["path"].split()]
    assert "jaxperf-traces/" in report["with"]["path"].split()


def test_github_gate_posts_the_summary_then_fails_on_the_gates_verdict(workspace: Workspace) -> None:
    break_a_test(workspace)
    context = {"github.token": "a-token", "github.event.pull_request.number": "7"}
    steps = run_github_job(workspace, "gate", "pull_request", context)
    directory = workspace.directory
    gate = by_name(steps, "Gate")
    assert gate.returncode == 0, gate.output  # its status is kept for the last step
    assert context["steps.gate.outputs.status"] == "1", gate.output
    summary = (directory / "jaxperf-summary.md").read_text()
    assert summary.startswith("### jaxperf")
    assert "suites/test_tiny.py::test_mlp" in summary
    # Judged against the committed baseline, not new.
    results = json.loads((directory / "jaxperf-results.json").read_text())
    verdicts = [record["verdict"]["status"] for record in results["records"] if record.get("verdict")]
    assert verdicts
    assert "new" not in verdicts
    # The comment's body is the summary, on the pull request of the event.
    comment = by_name(steps, "Comment on the pull request")
    assert comment.returncode == 0, comment.output
    assert workspace.logged("gh.args").read_text().split() == [
        "pr",
        "comment",
        "7",
        "--body-file",
        "jaxperf-summary.md",
    ]
    assert workspace.logged("gh.body").read_text() == summary
    # The plugin appended the summary to the job's summary page, once.
    assert (directory.parent / "step-summary.md").read_text() == summary
    report = by_name(steps, "Report")
    assert report.returncode == 0, report.output
    assert "test_mlp" in (directory / "jaxperf-report.html").read_text()
    # Everything ran, the uploads included; the job fails last, on the gate's status.
    assert all(step.ran for step in steps if step.name != "Install")
    assert steps[-1].name == "The gate's verdict"
    assert steps[-1].returncode == 1


def test_github_verdict_step_passes_a_green_gate_and_fails_a_missing_one() -> None:
    step = github_workflow()["jobs"]["gate"]["steps"][-1]
    for status, expected in (("0", 0), ("1", 1), ("", 1)):
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], env={"STATUS": status})
        assert done.returncode == expected, status


def assert_ab_ran(returncode: int, table: str, output: str) -> None:
    """jaxperf ab ran to its verdict: 0, or 1 with a table saying which measurement regressed. Two rounds
    of a model of microseconds on a shared machine may call the same code slower: this checks the step,
    not jaxperf ab's accuracy (suites/test_ab_accuracy.py does)."""
    assert returncode in (0, 1), output
    assert (returncode == 1) == (" regressed" in table), table


def test_github_ab_runs_jaxperf_ab_on_demand(workspace: Workspace) -> None:
    inputs = github_workflow()["on"]["workflow_dispatch"]["inputs"]
    context = {
        "inputs.base": inputs["base"]["default"],
        "inputs.rounds": "2",  # the fewest for an interval: this checks the step, not jaxperf ab
        "inputs.tests": inputs["tests"]["default"],
    }
    steps = run_github_job(workspace, "ab", "workflow_dispatch", context)
    ab = by_name(steps, "jaxperf ab")
    table = (workspace.directory / "jaxperf-ab.txt").read_text()
    assert_ab_ran(ab.returncode, table, ab.output)
    assert "suites/test_tiny.py::test_mlp" in table
    assert "jaxperf ab: 2 rounds × 2 sides" in table
    assert json.loads((workspace.directory / "jaxperf-ab.json").read_text())
    # The table alone on the job's summary page: no summary of each of jaxperf ab's pytest processes.
    summary = (workspace.directory.parent / "step-summary.md").read_text()
    assert summary.startswith("### jaxperf ab")
    assert summary.count("### jaxperf") == 1
    assert "suites/test_tiny.py::test_mlp" in summary
    assert "uncommitted" not in table  # the step's own output is written outside the checkout
    assert all(step.ran for step in steps if step.name != "Install")


# --- GitLab CI -----------------------------------------------------------------------------------------

API = "https://gitlab.invalid/api/v4"


def gitlab_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    return config


def run_gitlab_job(workspace: Workspace, job_name: str, variables: dict[str, str]) -> tuple[int, str]:
    """The job's script as GitLab's runner runs it: one bash script, with the pipeline's variables, the
    job's and the given ``CI_*`` ones; then its artifacts must exist."""
    config = gitlab_config()
    job = config[job_name]
    assert installs_the_plugin(" ".join(config["default"]["before_script"]))
    env = {
        **workspace.env,
        **{key: str(value) for key, value in config.get("variables", {}).items()},
        **{key: str(value) for key, value in job.get("variables", {}).items()},
        "CI": "true",
        **variables,
    }
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", "\n".join(job["script"])],
        cwd=workspace.directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job["artifacts"]["when"] == "always"
    for path in job["artifacts"]["paths"]:
        # GitLab warns about a missing artifact and goes on; only the traces folder may be missing.
        assert (workspace.directory / path).exists() or path == "jaxperf-traces/", f"{path} was not written"
    return done.returncode, done.stdout + done.stderr


def test_gitlab_pipeline_rules() -> None:
    config = gitlab_config()
    assert config["workflow"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert config["jaxperf-ab"]["rules"][0]["when"] == "manual"
    assert "jaxperf-traces/" in config["jaxperf-gate"]["artifacts"]["paths"]


def test_gitlab_gate_posts_the_note_then_fails_on_the_gates_verdict(workspace: Workspace) -> None:
    break_a_test(workspace)
    variables = {
        "CI_API_V4_URL": API,
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "7",
        "JAXPERF_NOTE_TOKEN": "a-token",
    }
    returncode, output = run_gitlab_job(workspace, "jaxperf-gate", variables)
    assert returncode == 1, output
    summary = (workspace.directory / "jaxperf-summary.md").read_text()
    assert "suites/test_tiny.py::test_mlp" in summary
    arguments = workspace.logged("curl.args").read_text().splitlines()
    assert f"{API}/projects/42/merge_requests/7/notes" in arguments
    assert "PRIVATE-TOKEN: a-token" in arguments
    assert workspace.logged("curl.body").read_text() == summary
    assert "test_mlp" in (workspace.directory / "jaxperf-report.html").read_text()


def test_gitlab_ab_runs_jaxperf_ab_against_the_merge_requests_base(workspace: Workspace) -> None:
    base = git(workspace.directory, "rev-parse", "HEAD").strip()
    variables = {"CI_MERGE_REQUEST_DIFF_BASE_SHA": base, "AB_ROUNDS": "2"}
    returncode, output = run_gitlab_job(workspace, "jaxperf-ab", variables)
    table = (workspace.directory / "jaxperf-ab.txt").read_text()
    assert_ab_ran(returncode, table, output)
    assert f"({base[:12]})" in table
    assert "uncommitted" not in table
    assert "suites/test_tiny.py::test_mlp" in table
    assert json.loads((workspace.directory / "jaxperf-ab.json").read_text())
