"""The contracts users read live in the repository: docs/ pages, and no docstring points elsewhere."""

from __future__ import annotations

import json
import re

from engine.music.clip import Clip
from tests.conftest import ROOT

OUTSIDE = re.compile(r"\b(design|anchors)\.md\b")


def test_engine_docstrings_point_only_inside_the_repository():
    found = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "engine").rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, "these lines cite documents that are not in the repository: " + ", ".join(found)


def test_every_docs_page_named_in_the_code_exists():
    named = {m for p in (ROOT / "engine").rglob("*.py") for m in re.findall(r"docs/([\w.-]+\.md)", p.read_text())}
    assert named >= {"clip-json.md", "onnx-metadata.md"}
    assert all((ROOT / "docs" / name).is_file() for name in named), named


def test_the_clip_page_example_is_a_valid_clip():
    page = (ROOT / "docs" / "clip-json.md").read_text()
    example = re.search(r"```json\n(.*?)```", page, re.S).group(1)
    clip = Clip.from_json(example, source="docs/clip-json.md")
    assert clip.scale == "dorian" and clip.tracks[0].notes[1].duration == 1.25
    fields = set(re.findall(r"^\| `(\w+)` \|", page, re.M))
    assert fields == set(json.loads(Clip().to_json())), "the field table lists exactly the fields a clip writes"


def test_readme_links_point_at_files_that_exist():
    # The docs pages' own links are checked by `mkdocs build --strict` in make test; README
    # lies outside the site, so its links are checked here.
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t)]
    assert len(local) >= 20, "README should link the docs pages"
    missing = sorted({t for t in local if not (ROOT / t).exists()})
    assert not missing, f"README links to files that do not exist: {missing}"


def test_readme_stays_an_overview():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the detail to a page in docs/"
    first_block = lines[lines.index("```sh") + 1:lines.index("```sh") + 3]
    assert [ln.split("#")[0].strip() for ln in first_block] == ["make demo", "make test"], \
        "the two set-up commands come first in README (CI runs exactly its test command)"


def _commands_shown(text: str) -> list[str]:
    """Every ``qriff ...`` command in the code of a markdown page: fenced blocks and inline code."""
    code = re.findall(r"```[^\n]*\n(.*?)```", text, re.S) + re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text)
    found = []
    for chunk in code:
        for line in chunk.splitlines():
            m = re.search(r"(?:^|\$\s+|^\s+)(qriff\s.*)", line)
            if m:
                found.append(m.group(1).split(" #")[0].strip())
    return found


def _unknown_words(command: str, parser) -> list[str]:
    """The subcommand or flags of ``command`` that the ``qriff`` parser does not have."""
    import argparse

    def choices(p):
        return next((a.choices for a in p._actions if isinstance(a, argparse._SubParsersAction)), {})

    words = command.split()[1:]
    p, known = parser, 0
    while words[known:] and words[known] in choices(p):
        p, known = choices(p)[words[known]], known + 1
    unknown = []
    if choices(p) and words[known:] and not words[known].startswith("-"):
        # `qriff keep|discard` shows two subcommands at once
        unknown += [w for w in words[known].split("|") if w not in choices(p)]
    flags = {o for a in p._actions for o in a.option_strings}
    unknown += [w.split("=")[0] for w in words[known:] if w.startswith("--") and w.split("=")[0] not in flags]
    return unknown


def test_every_command_in_the_docs_exists_with_its_flags():
    from engine.cli import build_parser

    parser = build_parser()
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    shown = [(p.relative_to(ROOT), c) for p in pages for c in _commands_shown(p.read_text())]
    assert len(shown) >= 100, f"only {len(shown)} commands found: is the extraction broken?"
    wrong = [f"{page}: {cmd!r}: {words}" for page, cmd in shown if (words := _unknown_words(cmd, parser))]
    assert not wrong, "commands in the docs that qriff does not have:\n" + "\n".join(wrong)
    # the check can fail: a made-up flag and a made-up subcommand are caught
    assert _unknown_words("qriff generate --no-such-flag 3", parser) == ["--no-such-flag"]
    assert _unknown_words("qriff rec recommend", parser) == ["recommend"]


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    import pretty_midi

    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "Policy.load()" in example
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "riff.mid"))
    assert [len(i.notes) > 0 for i in midi.instruments] == [True, True], "a lead and a bass, each with notes"
