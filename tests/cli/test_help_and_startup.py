"""Every command explains itself with an example; `--help` and `--version` stay light;
the README's commands are the ones CI runs."""

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lotrack import __version__
from lotrack.cli.main import COMMANDS, SHORT_HELP, cli

ROOT = Path(__file__).resolve().parents[2]


def walk(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from walk(command, ctx, (*prefix, name))


ALL = list(walk(cli, click.Context(cli)))


def test_every_lazy_command_has_a_short_help():
    assert set(COMMANDS) == set(SHORT_HELP)


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_has_help_with_an_example(path, command):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    if not isinstance(command, click.Group):
        assert "Example:" in result.output, f"lotrack {' '.join(path)} has no example"


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_import_no_database_or_drawing_code(args):
    code = ("import sys\nfrom lotrack.cli.main import cli\n"
            f"try:\n    cli.main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'sqlalchemy', 'alembic', 'reportlab', 'barcode', 'pydantic', 'argon2'})\n"
            "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


def test_version_is_the_package_version():
    assert CliRunner().invoke(cli, ["--version"]).output.strip() == f"lotrack, version {__version__}"


def test_the_readme_quick_start_is_two_one_line_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", quick, flags=re.S)[:2]
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)
    assert blocks[0].endswith("lotrack demo")
    assert blocks[1] in (ROOT / ".ci" / "run").read_text()


def test_every_package_folder_ships_in_the_wheel():
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                   ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "lotrack").rglob("__init__.py")}
    assert found <= declared
