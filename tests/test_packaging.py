"""The wheel must carry every package and the grammar, because pyproject lists packages by hand
(the grammar lives outside nnspec/ and is mapped in as nnspec.grammar)."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nnspec").rglob("__init__.py")}
    assert found | {"nnspec.grammar"} == listed


def test_grammar_is_shipped_as_package_data():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert conf["package-dir"]["nnspec.grammar"] == "grammar"
    assert "*.lark" in conf["package-data"]["nnspec.grammar"]
    assert (ROOT / "grammar" / "nnspec.lark").is_file()
