"""The app image and the VM install for requirements that name a package by VCS URL, and what the image's header
says of its worker count; the Dockerfiles judged by hadolint.

The README tells users to name flaskprod as `flaskprod @ git+https://...`: pip checks such a URL out with git,
which python:*-slim-bookworm does not have ("Cannot find command 'git'" in the build stage). A git+ssh:// URL also
needs a key: the builder's ssh-agent, which BuildKit lends a RUN with --mount=type=ssh (docker build --ssh default).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from flaskprod.errors import BuildError
from flaskprod.render.compose import compose_data, render_compose
from flaskprod.render.deployment import Deployment
from flaskprod.render.image import dockerfile, render_single
from flaskprod.render.systemd import render_systemd
from tests.buildkit import build_tree, make_deployment, make_spec, run_tool, tool
from tests.support import copy_taskboard
from tests.test_serve import clean_env, flaskprod

GIT_FLASKPROD = "flaskprod @ git+https://github.com/example/flaskprod@main"


def with_requirements(root: Path, text: str, *, server: str = "gunicorn", **files: str) -> Deployment:
    """A deployment of a small project whose requirements.txt is text; files: more files by name."""
    d = make_deployment(root, server="uwsgi" if server == "uwsgi" else "gunicorn")
    (root / "requirements.txt").write_text(text)
    for name, content in files.items():
        (root / name).write_text(content)
    return d


def stages(text: str) -> tuple[str, str]:
    """A two-stage Dockerfile's build stage and runtime stage."""
    build, runtime = re.split(r"^FROM .*$", text, flags=re.MULTILINE)[1:]
    return build, runtime


def apt_installed(stage: str) -> list[str]:
    """The packages a stage's `apt-get install` lines name."""
    lines = re.findall(r"apt-get install -y --no-install-recommends ([^\\\n]+)", stage)
    return [package for line in lines for package in line.split()]


def hadolint(tmp_path: Path, text: str) -> None:
    path = tmp_path / "Dockerfile.judged"
    path.write_text(text)
    run_tool([tool("hadolint"), "--failure-threshold", "style", str(path)])


@pytest.mark.parametrize(
    ("server", "before"), [("gunicorn", []), ("uwsgi", ["gcc", "libc6-dev", "tini"])], ids=["gunicorn", "uwsgi"]
)
def test_a_git_requirement_gets_git_in_the_build_stage_alone(tmp_path: Path, server: str, before: list[str]) -> None:
    d = with_requirements(tmp_path, f"flask\n{GIT_FLASKPROD}\n", server=server)
    text = dockerfile(d)
    build, runtime = stages(text)
    assert apt_installed(build) == [*before, "git"]
    assert "# requirements.txt installs from git+ URLs, which pip checks out with git" in build
    # Installed before the requirements that need it.
    assert build.index("apt-get install") < build.index("pip install --no-cache-dir -r /tmp/requirements/")
    assert "apt-get" not in runtime and "git" not in runtime
    hadolint(tmp_path, text)


def test_requirements_from_an_index_install_no_vcs_tool(tmp_path: Path) -> None:
    d = with_requirements(tmp_path, "flask\nflaskprod==0.1.0\n")
    assert "apt-get" not in dockerfile(d)
    build, _ = stages(dockerfile(dataclasses.replace(d, server="uwsgi")))
    assert apt_installed(build) == ["gcc", "libc6-dev", "tini"]
    readme = render_systemd(d)["README.md"]
    assert "\napt-get install -y python3-venv nginx-light rsync\n" in readme


@pytest.mark.parametrize(
    ("requirements", "packages", "schemes"),
    [
        ("-e git+ssh://git@example.com/you/flaskprod.git#egg=flaskprod\n", ["git", "openssh-client"], "git+"),
        ("git+https://example.com/you/flaskprod.git@v1#egg=flaskprod --config-settings x=y\n", ["git"], "git+"),
        ("flaskprod @ hg+https://hg.example.com/flaskprod\n", ["mercurial"], "hg+"),
        ("flaskprod\nsvn+https://svn.example.com/lib/trunk#egg=lib\n", ["subversion"], "svn+"),
        (
            "flaskprod @ hg+https://hg.example.com/flaskprod\nlib @ git+https://example.com/lib\n",
            ["git", "mercurial"],
            "git+ and hg+",
        ),
    ],
    ids=["editable-git", "bare-git-url", "mercurial", "subversion", "two-tools"],
)
def test_each_vcs_scheme_gets_its_tool(tmp_path: Path, requirements: str, packages: list[str], schemes: str) -> None:
    d = with_requirements(tmp_path, requirements)
    build, _ = stages(dockerfile(d))
    assert apt_installed(build) == packages
    assert f"installs from {schemes} URLs" in build


def test_a_git_requirement_in_an_included_file_counts(tmp_path: Path) -> None:
    d = with_requirements(tmp_path, "-r base.txt\nflask\n", **{"base.txt": f"{GIT_FLASKPROD}\n"})
    d = dataclasses.replace(d, project=dataclasses.replace(d.project, requirement_includes=("base.txt",)))
    build, _ = stages(dockerfile(d))
    assert apt_installed(build) == ["git"]
    assert "COPY base.txt /tmp/requirements/base.txt" in build


@pytest.mark.parametrize(
    "pyproject",
    [
        f'[project]\nname = "shop"\nversion = "1"\ndependencies = ["flask", "{GIT_FLASKPROD}"]\n',
        '[tool.poetry]\nname = "shop"\n[tool.poetry.dependencies]\npython = "^3.11"\n'
        'flaskprod = { git = "https://github.com/example/flaskprod.git", branch = "main" }\n',
        '[build-system]\nrequires = ["setuptools", "helper @ git+https://example.com/helper"]\n'
        '[project]\nname = "shop"\nversion = "1"\ndependencies = ["flaskprod"]\n',
    ],
    ids=["project-dependencies", "poetry", "build-requirements"],
)
def test_pyproject_dependencies_by_git_get_git(tmp_path: Path, pyproject: str) -> None:
    d = make_deployment(tmp_path)
    (tmp_path / "pyproject.toml").write_text(pyproject)
    d = dataclasses.replace(d, project=dataclasses.replace(d.project, requirements=None))
    text = dockerfile(d)
    build, runtime = stages(text)
    assert apt_installed(build) == ["git"]
    assert "# pyproject.toml installs from git+ URLs" in build
    assert "apt-get" not in runtime
    hadolint(tmp_path, text)


def test_a_bazaar_requirement_is_refused_in_one_line(tmp_path: Path) -> None:
    d = with_requirements(tmp_path, "flaskprod @ bzr+https://example.com/flaskprod\n")
    with pytest.raises(BuildError) as refused:
        dockerfile(d)
    assert str(refused.value) == (
        "requirements.txt installs from a bzr+ URL, which pip checks out with `bzr`, and Debian 12 (the images' "
        "base, and the VM's) has none, only Breezy's `brz`: name the package with a version pip can download, "
        "or a git URL"
    )


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_the_vms_install_steps_get_git_for_a_git_requirement(tmp_path: Path, server: str) -> None:
    d = with_requirements(tmp_path, f"flask\n{GIT_FLASKPROD}\n", server=server)
    readme = render_systemd(d)["README.md"]
    compiler = " gcc python3-dev" if server == "uwsgi" else ""
    assert (
        "# requirements.txt installs from git+ URLs, which pip checks out with git.\n"
        f"apt-get install -y python3-venv nginx-light rsync{compiler} git\n"
    ) in readme
    assert readme.index(" git\n") < readme.index("/bin/pip install -r ")


def test_taskboard_with_flaskprod_by_git_url_as_build_writes_it(tmp_path: Path) -> None:
    """The README's advice followed: every target's app image, and the VM's steps, install git."""
    project = copy_taskboard(tmp_path / "taskboard")
    requirements = project / "requirements.txt"
    requirements.write_text(re.sub(r"(?m)^flaskprod$", GIT_FLASKPROD, requirements.read_text()))
    for target in ("single", "compose", "compose-uwsgi", "swarm", "k8s"):
        tree = build_tree(project, target, {}, ())
        build, runtime = stages(tree.files["Dockerfile"])
        assert apt_installed(build)[-1] == "git", target
        assert "apt-get" not in runtime, target
        run_tool([tool("hadolint"), "--failure-threshold", "style", str(tree.path / "Dockerfile")])
    systemd = build_tree(project, "systemd", {}, ())
    assert re.search(r"(?m)^apt-get install -y python3-venv nginx-light rsync .*\bgit$", systemd.files["README.md"])


# --- what the header says of the worker count -------------------------------------------------------


def header(text: str) -> str:
    """The comment block the Dockerfile opens with, as one line."""
    comments = re.match(r"(?:#.*\n)+", text)
    assert comments is not None
    return " ".join(line.lstrip("# ").strip() for line in comments.group(0).splitlines())


def test_the_header_says_the_worker_count_is_fixed_at_build_from_the_spec(tmp_path: Path) -> None:
    spec = make_spec(**{"app.name": "shop", "deploy.cpus": "3", "deploy.memory": "2G"})
    text = render_single(make_deployment(tmp_path, spec=spec))["Dockerfile"]
    [workers] = re.findall(r"FLASKPROD_SERVER__WORKERS=(\d+)", text)
    assert workers == "3"  # one a CPU, at 3: 2G holds more at 128 MiB each
    said = header(text)
    assert "sizes its workers from the container's own CPU and memory limits" not in said
    assert (
        f"It runs `flaskprod serve` with {workers} workers, a count fixed here (FLASKPROD_SERVER__WORKERS below) "
        "from the spec's deploy.cpus 3 and deploy.memory 2G, not from the limits the container runs under"
    ) in said
    assert "set deploy.cpus and deploy.memory (or server.workers) and build again" in said
    assert "FLASKPROD_SERVER__WORKERS set at run time overrides it" in said


def test_the_header_names_server_workers_when_the_spec_sets_it(tmp_path: Path) -> None:
    spec = make_spec(**{"app.name": "shop", "server.workers": "5"})
    text = dockerfile(make_deployment(tmp_path, spec=spec))
    assert "FLASKPROD_SERVER__WORKERS=5" in text
    said = header(text)
    assert "with 5 workers, a count fixed here (FLASKPROD_SERVER__WORKERS below) from the spec's server.workers" in said
    assert "For another count, set server.workers and build again" in said
    hadolint(tmp_path, text)


# --- requirements checked out over SSH: the builder's ssh-agent, lent to pip's RUN alone ---------------------------

SSH_LIB = "mylib @ git+ssh://git@github.com/org/mylib.git@v1"
PIP_WITH_AGENT = "RUN --mount=type=ssh pip install --no-cache-dir -r /tmp/requirements/requirements.txt"


@pytest.mark.parametrize(
    ("server", "before"), [("gunicorn", []), ("uwsgi", ["gcc", "libc6-dev", "tini"])], ids=["gunicorn", "uwsgi"]
)
def test_a_git_ssh_requirement_builds_with_the_builders_ssh_agent(
    tmp_path: Path, server: str, before: list[str]
) -> None:
    d = with_requirements(tmp_path, f"flask\nflaskprod\n{SSH_LIB}\n", server=server)
    text = dockerfile(d)
    assert text.startswith("# syntax=docker/dockerfile:1\n")  # RUN --mount needs BuildKit's Dockerfile syntax
    assert "#   docker build --ssh default -f deploy/Dockerfile -t shop:1.2.3 .\n" in header_lines(text)
    assert "--ssh default lends the build your ssh-agent for the git+ssh:// URLs requirements.txt" in header(text)
    build, runtime = stages(text)
    assert apt_installed(build) == [*before, "git", "openssh-client"]
    # The host's key trusted before pip's git connects, in a layer of this stage alone.
    assert "RUN install -d -m 0700 /root/.ssh \\\n    && ssh-keyscan github.com >> /root/.ssh/known_hosts\n" in build
    assert build.index("apt-get install") < build.index("ssh-keyscan") < build.index(PIP_WITH_AGENT)
    assert build.count("--mount=type=ssh") == 1
    assert "ssh" not in runtime and "--mount" not in runtime
    hadolint(tmp_path, text)


def test_each_ssh_host_is_scanned_on_its_port(tmp_path: Path) -> None:
    """An SSH URL with a port has its key under [host]:port in known_hosts, which ssh-keyscan -p writes."""
    requirements = f"flaskprod\n{SSH_LIB}\n-e git+ssh://git@git.example.com:2222/o/other.git#egg=other\n"
    text = dockerfile(with_requirements(tmp_path, requirements))
    build, _ = stages(text)
    assert (
        "    && ssh-keyscan -p 2222 git.example.com >> /root/.ssh/known_hosts \\\n"
        "    && ssh-keyscan github.com >> /root/.ssh/known_hosts\n"
    ) in build
    assert "(git.example.com, github.com)" in header(text)
    hadolint(tmp_path, text)


def test_requirements_by_https_lend_no_ssh_agent(tmp_path: Path) -> None:
    text = dockerfile(with_requirements(tmp_path, f"flask\n{GIT_FLASKPROD}\n"))
    assert "--ssh" not in text and "--mount" not in text and "ssh-keyscan" not in text
    assert "#   docker build -f deploy/Dockerfile -t shop:1.2.3 .\n" in text


@pytest.mark.parametrize(
    ("pyproject", "host"),
    [
        (f'[project]\nname = "shop"\nversion = "1"\ndependencies = ["flaskprod", "{SSH_LIB}"]\n', "github.com"),
        (
            '[tool.poetry]\nname = "shop"\n[tool.poetry.dependencies]\npython = "^3.11"\nflaskprod = "*"\n'
            'mylib = { git = "git@gitlab.example.com:org/mylib.git", tag = "v1" }\n',
            "gitlab.example.com",
        ),
    ],
    ids=["project-dependencies", "poetry-scp-form"],
)
def test_pyproject_dependencies_over_ssh_lend_the_agent_to_both_installs(
    tmp_path: Path, pyproject: str, host: str
) -> None:
    """Without a requirements file the image installs the dependencies, then the project: either checks out."""
    d = make_deployment(tmp_path)
    (tmp_path / "pyproject.toml").write_text(pyproject)
    d = dataclasses.replace(d, project=dataclasses.replace(d.project, requirements=None))
    text = dockerfile(d)
    build, _ = stages(text)
    assert apt_installed(build) == ["git", "openssh-client"]
    assert f"ssh-keyscan {host} >> /root/.ssh/known_hosts" in build
    assert "RUN --mount=type=ssh python -c " in build
    assert "RUN --mount=type=ssh pip install --no-cache-dir /app\n" in build
    assert "docker build --ssh default -f" in text
    hadolint(tmp_path, text)


def test_compose_lends_the_app_build_the_ssh_agent_for_a_git_ssh_requirement(tmp_path: Path) -> None:
    """The Compose spec's build.ssh (list_or_dict: `default` is the builder's agent), as `docker compose` v2 reads it.
    docker-compose 1.x, the Debian package here, predates it (and BuildKit's SSH mounts), so the file is judged by the
    Compose spec's own JSON schema, as check-jsonschema vendors it."""
    project = tmp_path / "project"
    project.mkdir()
    d = with_requirements(project, f"flaskprod\n{SSH_LIB}\n")
    data = compose_data(d)
    services = data["services"]
    assert services["app"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile", "ssh": ["default"]}
    assert "ssh" not in services["nginx"]["build"]  # the nginx image installs no requirements
    header = render_compose(d)["compose.yaml"].split("\nservices:")[0]
    assert "with your ssh-agent: ssh-add a key github.com takes" in header
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(data))
    run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
    services["app"]["build"]["ssh"] = "default"  # a string: the spec wants a list or a mapping
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(AssertionError, match="ssh"):
        run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])


def test_compose_lends_no_ssh_agent_without_one(tmp_path: Path) -> None:
    services = compose_data(with_requirements(tmp_path, f"flask\n{GIT_FLASKPROD}\n"))["services"]
    assert "ssh" not in services["app"]["build"]


def test_taskboard_with_a_git_ssh_requirement_as_build_writes_it(tmp_path: Path) -> None:
    """`flaskprod build` itself: the single target's next step builds with the agent, Compose lends it, and the
    VM's steps still install git (pip there checks out with the user's own ssh)."""
    project = copy_taskboard(tmp_path / "taskboard")
    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text() + f"{SSH_LIB}\n")
    done = flaskprod("build", "--target", "single", env=clean_env(), cwd=project)
    assert done.returncode == 0, done.stderr
    assert "next: docker build --ssh default -f deploy/single/Dockerfile -t taskboard" in done.stdout
    for target in ("single", "compose", "swarm", "k8s"):
        tree = build_tree(project, target, {}, ())
        assert PIP_WITH_AGENT in tree.files["Dockerfile"], target
        run_tool([tool("hadolint"), "--failure-threshold", "style", str(tree.path / "Dockerfile")])
    assert build_tree(project, "compose", {}, ()).yaml("compose.yaml")["services"]["app"]["build"]["ssh"] == [
        "default"
    ]
    readme = build_tree(project, "systemd", {}, ()).files["README.md"]
    assert re.search(r"(?m)^apt-get install -y python3-venv nginx-light rsync .*\bgit$", readme)
    assert "--mount" not in readme


def header_lines(text: str) -> str:
    """The comment block the Dockerfile opens with, as written."""
    comments = re.match(r"(?:#.*\n)+", text)
    assert comments is not None
    return comments.group(0)
