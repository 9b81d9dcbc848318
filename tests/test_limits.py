"""The limits are defined once (fastcolor/ops/limits.py); setup.py compiles
them into the extension, which reports them through fastcolor::limits."""

import pytest
import torch

import fastcolor
from fastcolor import ops


@pytest.mark.skipif(not ops.backend_info().get("compiled_cpu", False),
                    reason="the compiled extension fastcolor._C did not load (reference backend only)")
def test_compiled_limits_match_python():
    assert list(torch.ops.fastcolor.limits()) == [fastcolor.ops.MAX_K, fastcolor.ops.MAX_BINS]


def test_setup_parses_the_same_limits():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tree = ast.parse((root / "setup.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "read_limits")
    scope = {"os": __import__("os"), "ast": ast, "ROOT": str(root)}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "setup.py", "exec"), scope)
    assert scope["read_limits"]() == {"MAX_K": ops.MAX_K, "MAX_BINS": ops.MAX_BINS}
