"""The bad-stack corpus: every file in tests/fixtures/bad_stacks is a stack file a platform engineer could
write, with `# expect: <key> | <message fragment>` lines. Each runs through the real program under the
offline engine and must be rejected before any resource, naming every expected key with its message, in
the stack file's terms (no Python reprs or parser jargon)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.config import PROJECT
from offline.engine import run_program

JARGON = ("Input should be", "None", "True", "False", "[{", "{'", "pydantic", "Traceback", "ValidationError")
CORPUS = Path(__file__).resolve().parent / "fixtures" / "bad_stacks"
FILES = sorted(CORPUS.glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (?P<key>\S+) \| (?P<fragment>.+)$")


def expectations(path: Path) -> list[tuple[str, str]]:
    found = [_EXPECT.match(line) for line in path.read_text().splitlines()]
    return [(m["key"], m["fragment"]) for m in found if m]


def test_the_corpus_is_large_and_every_file_says_what_it_expects() -> None:
    assert len(FILES) >= 60
    assert all(expectations(f) for f in FILES), [f.name for f in FILES if not expectations(f)]
    assert sum(len(expectations(f)) >= 2 for f in FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_bad_stack_is_rejected_before_any_resource(path: Path) -> None:
    run = run_program("dev", stack_file=path)
    assert run.error is not None, "the program accepted a bad stack file"
    assert run.registrations == [], "resources were registered before the configuration was rejected"
    message = str(run.error)
    lines = message.splitlines()
    for key, fragment in expectations(path):
        assert any(f"{PROJECT}:{key}: " in line and fragment in line for line in lines), (key, fragment, lines)
    assert not [word for word in JARGON if word in message], message


def test_the_readme_example_is_the_real_output() -> None:
    """The README's multi-fault example is what the program prints for multi-readme-example.yaml."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("    invalid stack configuration:\n", 1)[1].split("\n\n", 1)[0]
    shown = [line.strip() for line in block.splitlines()]
    run = run_program("dev", stack_file=CORPUS / "multi-readme-example.yaml")
    assert run.error is not None
    printed = [line.strip() for line in str(run.error).splitlines() if line.strip().startswith(f"{PROJECT}:")]
    assert sorted(shown) == sorted(printed)
