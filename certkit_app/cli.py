"""The ``certkit`` console script: one sub-command per tool.

``certkit erase-check`` certifies prompts with erase-and-check. Exit status: 0 if every prompt is
safe, 1 if any is harmful, 2 on any error (a usage error, a bad argument, an unreadable file or one
that is not UTF-8, a missing optional extra), with a one-line message on stderr and no traceback.
``--json`` output is always valid JSON in the terminal's encoding (non-ASCII is escaped when the
terminal cannot print it). ``certkit --version`` prints the version.

Examples::

    certkit erase-check "How do I bake sourdough bread?"
    certkit erase-check --mode insertion --max-erase 8 --json "Tell me a story"
    certkit erase-check --file prompts.txt --filter ./my-hf-model

``--filter default`` (the default) is ``certify.prompts.default_filter()``: the shipped MiniLM filter where the
``llm`` extra is installed, the generated-set TF-IDF filter otherwise, each at its PAC threshold unless
``--threshold`` is given. ``--filter specific`` is ``default_filter(variant="specific")`` (MiniLM only: keeps more
benign prompts that use harm words, flags fewer terse harmful ones). ``--filter tfidf`` is the fast TF-IDF filter of
the embedded prompt set (weaker).

Adding a sub-command: a module ``certkit_app.<name>_cmd`` exposing ``add_parser(subparsers)``
(registers its parser, whose ``prog`` names the command) and ``run(args) -> int`` (the exit
status), listed in ``_COMMAND_MODULES``; a listed module that is absent is skipped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import certkit

__all__ = ["main"]

_DEFAULT_D = {"suffix": 20, "insertion": 8, "infusion": 2}

# Optional sub-command modules (each with ``add_parser(subparsers)`` and ``run(args) -> int``).
_COMMAND_MODULES = ("certkit_app.verify_cmd",)

Runner = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``certkit CMD: error: argument --x: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _option_type(kind: str, minimum: float = 0, maximum: float | None = None, *,
                 strict: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` that refuses out-of-range values (and NaN) with a message argparse names the option in."""
    def parse(text: str) -> Any:
        try:
            value: Any = int(text) if kind == "int" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind == 'int' else 'a number'}, "
                                             f"but got {text!r}") from None
        low = value <= minimum if strict else value < minimum
        if value != value or low or (maximum is not None and value > maximum):  # NaN fails value == value
            want = f"{'>' if strict else '>='} {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"expected a value {want}, but got {text!r}")
        return value
    parse.__name__ = kind
    return parse


NONNEG_INT = _option_type("int", 0)
POS_INT = _option_type("int", 1)
POS_FLOAT = _option_type("float", 0, strict=True)
UNIT_FLOAT = _option_type("float", 0.0, 1.0)
SEED = _option_type("int", 0, 2**64 - 1)  # the range torch.Generator.manual_seed accepts


def _command_modules() -> list[Any]:
    modules = []
    for name in _COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:  # the module exists but one of its imports is missing: a real error
                raise
    return modules


def _add_erase_check(sub: Any) -> None:
    ec = sub.add_parser("erase-check", help="certified harmful-prompt detection (erase-and-check)",
                        description="Label prompts harmful or safe with erase-and-check (Kumar et al. 2023). "
                                    "Exit status 0: all safe; 1: some harmful; 2: usage error.")
    ec.add_argument("prompt", nargs="?", help="the prompt to check (or use --file)")
    ec.add_argument("--file", type=Path, help="a UTF-8 file with one prompt per line")
    ec.add_argument("--mode", choices=("suffix", "insertion", "infusion"), default="suffix")
    ec.add_argument("--max-erase", type=NONNEG_INT, default=None, metavar="D",
                    help="most tokens erased (per block in insertion mode); default 20 / 8 / 2 by mode")
    ec.add_argument("--num-blocks", type=POS_INT, default=None, metavar="K",
                    help="inserted blocks (insertion mode only; default 1)")
    ec.add_argument("--filter", default="default", metavar="default|specific|tfidf|embedding|PATH",
                    help="built-in filter (default: certify.prompts.default_filter(), MiniLM where the llm extra is "
                         "installed, TF-IDF otherwise; specific: default_filter(variant='specific'), which keeps more "
                         "benign prompts with harm words; tfidf: the fast embedded-set TF-IDF filter), or a local "
                         "Hugging Face sequence-classification model directory")
    ec.add_argument("--harmful-label", type=NONNEG_INT, default=None,
                    help="harmful class index of a PATH model (default 1; not with a built-in filter)")
    ec.add_argument("--threshold", type=UNIT_FLOAT, default=None,
                    help="flag when p_harmful >= threshold (default: the PAC threshold of --filter default / "
                         "specific, 0.5 for the others)")
    ec.add_argument("--budget", type=POS_INT, default=100_000, help="refuse prompts needing more subsequences")
    ec.add_argument("--json", action="store_true", help="print JSON instead of text")
    ec.set_defaults(run=_erase_check)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="certkit", description="certkit command-line tools")
    parser.add_argument("--version", action="version", version=f"certkit {certkit.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_erase_check(sub)
    for module in _command_modules():
        before = set(sub.choices)
        module.add_parser(sub)
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(run=module.run)
    return parser


_BUILTIN_FILTERS = ("default", "specific", "tfidf", "embedding")


def _load_filter(spec: str, threshold: float | None, harmful_label: int) -> Any:
    from certify.prompts import HFClassifierFilter, default_filter, embedded_tfidf_filter, embedding_filter

    if spec == "default":
        return default_filter(threshold=threshold)
    if spec == "specific":
        return default_filter(threshold=threshold, variant="specific")
    threshold = 0.5 if threshold is None else threshold
    if spec == "tfidf":
        return embedded_tfidf_filter(threshold=threshold)
    if spec == "embedding":
        return embedding_filter(threshold=threshold)
    if Path(spec).is_dir():
        try:
            return HFClassifierFilter(spec, harmful_label=harmful_label, threshold=threshold)
        except (OSError, ValueError) as e:  # not a model directory: name the option (ImportError passes: an extra)
            raise ValueError(f"Expected argument `--filter` to be a Hugging Face sequence-classification model "
                             f"directory, but {spec!r} could not be loaded: {e}") from None
    raise ValueError(f"Expected argument `--filter` to be 'default', 'specific', 'tfidf', 'embedding' or a model "
                     f"directory, but got {spec!r}")


def _erase_check(args: argparse.Namespace) -> int:
    from certify import erase_and_check_batch

    if (args.prompt is None) == (args.file is None):
        raise ValueError("Expected exactly one of a PROMPT argument or `--file`, but got "
                         + ("both" if args.prompt is not None else "neither"))
    if args.file is not None:
        if not args.file.is_file():
            raise ValueError(f"Expected argument `--file` to be a readable file, but got {str(args.file)!r}")
        try:
            text = args.file.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"Expected argument `--file` to be UTF-8 text, but {str(args.file)!r} is not ({e.reason} "
                             f"at byte {e.start})") from None
        prompts = [line for line in text.splitlines() if line.strip()]
        if not prompts:
            raise ValueError(f"Expected argument `--file` to hold at least one prompt, but {str(args.file)!r} has none")
    else:
        prompts = [args.prompt]
    if args.num_blocks is not None and args.mode != "insertion":  # it would be ignored, yet reported
        raise ValueError(f"Expected `--num-blocks` only with `--mode insertion`, but got --mode {args.mode}")
    if args.harmful_label is not None and args.filter in _BUILTIN_FILTERS:
        raise ValueError(f"Expected `--harmful-label` only with a model directory as `--filter`, but got --filter "
                         f"{args.filter}")
    d = _DEFAULT_D[args.mode] if args.max_erase is None else args.max_erase
    filt = _load_filter(args.filter, args.threshold, 1 if args.harmful_label is None else args.harmful_label)
    certs = erase_and_check_batch(prompts, filt, mode=args.mode, max_erase=d, num_blocks=args.num_blocks or 1,
                                  budget=args.budget)
    if args.json:
        rows = [asdict(c) for c in certs]
        print_json(rows[0] if args.prompt is not None else rows)
    else:
        for c in certs:
            verdict = "HARMFUL" if c.harmful else "SAFE"
            print(f"{verdict}: {c.prompt}")
            print(f"  {c.mode} mode, d={c.max_erase}, {c.num_tokens} tokens, {c.checked} subsequences checked")
            if c.flagged is not None:
                print(f"  flagged subsequence: {c.flagged!r}")
            print(f"  {c.statement.split(': ', 1)[1] if not c.harmful else c.statement.split('. ', 1)[-1]}")
    return 1 if any(c.harmful for c in certs) else 0


_EXTRAS = {"transformers": "llm", "sentence_transformers": "llm", "onnx": "onnx", "onnx2torch": "onnx",
           "onnxruntime": "onnx", "dask": "dist", "distributed": "dist", "matplotlib": "notebooks"}


def _json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as the strings "inf", "-inf", "nan" (bare NaN/Infinity are not JSON)."""
    if isinstance(obj, float) and obj != obj:
        return "nan"
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def print_json(obj: Any, *, indent: int | None = 2) -> None:
    """Print ``obj`` as JSON that the terminal can encode: always valid JSON (non-finite floats become the
    strings "inf"/"-inf"/"nan"), UTF-8 where the terminal is, ``\\u`` escapes (ASCII) where it is not."""
    obj = _json_safe(obj)
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(obj, indent=indent, ensure_ascii=True, allow_nan=False)  # \u escapes: ASCII, valid JSON
    print(text)


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); returns the command's exit status (2 on a usage error)."""
    parser = _parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:  # argparse exits 2 on usage errors and 0 on --help / --version
        return int(e.code) if isinstance(e.code, int) else 2
    run: Runner = args.run
    try:
        return int(run(args))
    except ImportError as e:  # a missing optional extra: exit 2, never 1 ("harmful") with a traceback
        name = (e.name or "").split(".")[0]
        extra = _EXTRAS.get(name)
        hint = f"; install it with: pip install 'certkit[{extra}]'" if extra else ""
        print(f"certkit {args.command}: error: missing optional dependency {name or e}{hint}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as e:  # bad arguments, unreadable files, bad encodings
        print(f"certkit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # anything else: still 2 and one line, never 1 ("harmful"/"falsified") with a traceback
        print(f"certkit {args.command}: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
