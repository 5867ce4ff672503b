"""Count the sngan functions and modules a training command runs before its first optimizer step (issue 29's
"141 functions in 31 modules before the first Adam.step" measure).

    python scripts/dev/calls_before_step.py [sngan train arguments ...]

Runs `sngan train` in this process under `sys.setprofile`, records every distinct sngan function called (what
runs inside an import is not a call; comprehensions, lambdas and dataclass-generated methods are counted apart, as
they have no name a reader follows), and stops counting at the first `torch.optim.Optimizer.step`. Prints the
counts and the modules in first-call order (`--names`: with the functions).
"""

from __future__ import annotations

import inspect
import sys
import tempfile

import torch

VERBOSE = False


def importing(frame) -> bool:  # noqa: ANN001 - a frame
    """Whether this call runs inside an import (a module body other than this script's is on the stack): a
    dataclass decorator's generated code, a table built at import, are not the command's calls."""
    frame = frame.f_back
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__":
            return True
        frame = frame.f_back
    return False


UNNAMED = ("<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>", "<lambda>")


def unnamed(qualname: str) -> bool:
    """Code a reader does not reach by a name: a comprehension, a lambda, a dataclass's generated method."""
    return qualname.endswith(UNNAMED) or qualname.startswith("__create_fn__")


def main(argv: list[str]) -> None:
    from sngan.cli import app

    seen: dict[str, set[str]] = {}
    state = {"stepped": False}
    step_code = torch.optim.Adam.step.__wrapped__.__code__ if hasattr(torch.optim.Adam.step, "__wrapped__") else None

    def profile(frame, event, arg):  # noqa: ANN001 - sys.setprofile's signature
        if event != "call" or state["stepped"]:
            return
        code = frame.f_code
        if code is step_code or (code.co_name == "step" and "torch/optim" in code.co_filename):
            state["stepped"] = True
            return
        if not code.co_flags & inspect.CO_NEWLOCALS:  # a module or class body running at import: not a call
            return
        module = frame.f_globals.get("__name__", "")
        if (module == "sngan" or module.startswith("sngan.")) and not importing(frame):
            seen.setdefault(module, set()).add(code.co_qualname)

    with tempfile.TemporaryDirectory() as out:
        args = argv or ["train", "--config", "configs/demo.yaml", "--set", "train.iterations=2", "--no-progress"]
        args = [*args, "--out", f"{out}/run"] if "--out" not in args else args
        sys.setprofile(profile)
        try:
            app(args, standalone_mode=False)
        finally:
            sys.setprofile(None)
    named = {module: {name for name in names if not unnamed(name)} for module, names in seen.items()}
    named = {module: names for module, names in named.items() if names}
    functions = sum(len(names) for names in named.values())
    everything = sum(len(names) for names in seen.values())
    print(f"before the first optimizer step: {functions} named sngan functions in {len(named)} modules "
          f"({everything} with comprehensions, lambdas and generated dataclass methods; stepped: {state['stepped']})")
    for module, names in named.items():
        print(f"  {module}: {len(names)}" + (f" ({', '.join(sorted(names))})" if VERBOSE else ""))


if __name__ == "__main__":
    VERBOSE = "--names" in sys.argv
    main([a for a in sys.argv[1:] if a != "--names"])
