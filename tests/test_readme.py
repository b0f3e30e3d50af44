"""The README's examples are what users copy first: they must run."""

import pathlib
import re

import nnspec

README = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```nn\n(.*?)```", README, re.S)


def test_readme_alexnet_tour_is_the_cs231n_network():
    spec = nnspec.loads(BLOCKS[0])
    assert spec.analyze().totals.params == 62_378_344  # domain.md, single-stream AlexNet


def test_readme_block_example_is_a_resnet_stage():
    # The fragment reads the incoming shape, so it is given one; 2 basic blocks of 128 channels:
    # first block 3x3 convs 64->128 and 128->128 plus a 1x1 projection, second block two 128->128.
    spec = nnspec.loads("input 64x56x56\n" + BLOCKS[1])
    bn = 4 * 128
    expected = (9 * 64 * 128 + 9 * 128 * 128 + 64 * 128 + bn + bn // 2) + (2 * 9 * 128 * 128 + bn)
    assert spec.analyze().totals.params == expected
    assert spec.graph.nodes[spec.graph.output].shape == (128, 28, 28)


def test_readme_python_api_snippet_runs():
    code = re.search(r"```python\n(import nnspec\n\nspec = .*?)```", README, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # our own example, not a spec


def test_readme_diagnostics_are_what_the_commands_print():
    """Every example of a diagnostic in the README is produced by the code: the block after
    `<!-- output of: nnspec … -->` must appear, verbatim, in that command's output."""
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parent.parent
    pairs = re.findall(r"<!-- output of: (nnspec [^>]*?) -->\n```\n(.*?)```", README, re.S)
    assert len(pairs) >= 2
    for command, block in pairs:
        p = subprocess.run([sys.executable, "-m", "nnspec", *command.split()[1:]], cwd=root,
                           capture_output=True, text=True, env={"NO_COLOR": "1", "PATH": ""})
        assert block in p.stdout + p.stderr, command
