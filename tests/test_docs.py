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
