"""Finding the model ids the workers need (protocol.md 1.10, 3.9, 7b item 28)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from edge_core.models.discovery import discover_models, scan_worker_file


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_calls_are_found_by_parsing_not_by_mentions(tmp_path: Path) -> None:
    """Only real ``cw.models.load`` calls count; comments, strings and docs do not."""
    worker = _write(
        tmp_path / "wf_a.py",
        '''
        """Docs mention cw.models.load("in-docstring")."""
        import cyberwave as cw
        # cw.models.load("in-comment")
        text = 'cw.models.load("in-string")'
        detector = cw.models.load("yolov8n")
        other = cw.models.load('background-subtraction')
        ''',
    )

    ids, problems = scan_worker_file(worker)

    assert ids == ["yolov8n", "background-subtraction"]
    assert problems == []


def test_receiver_forms_keyword_and_non_literals(tmp_path: Path) -> None:
    """``self.cw`` and ``model_id=`` count; variables and other receivers do not."""
    worker = _write(
        tmp_path / "wf_b.py",
        """
        class Worker:
            def setup(self, name):
                self.a = self.cw.models.load("from-attribute")
                self.b = cw.models.load(model_id="from-keyword")
                self.c = cw.models.load(name)
                self.d = other.models.load("not-cw")
                self.e = cw.models.get("not-load")
        """,
    )

    ids, _ = scan_worker_file(worker)

    assert ids == ["from-attribute", "from-keyword"]


def test_ids_come_in_source_order(tmp_path: Path) -> None:
    """Nested and later calls are listed in the order they appear in the file."""
    worker = _write(
        tmp_path / "wf_c.py",
        """
        def f():
            return wrap(cw.models.load("second"), cw.models.load("third"))
        first = cw.models.load("first")
        """,
    )

    ids, _ = scan_worker_file(worker)

    assert ids == ["second", "third", "first"]


def test_broken_python_falls_back_to_a_text_scan_and_is_reported(
    tmp_path: Path,
) -> None:
    """A file that does not parse is text-scanned and its problem names the line."""
    worker = _write(
        tmp_path / "wf_broken.py",
        """
        model = cw.models.load("yolov8n")
        def broken(:
        """,
    )

    ids, problems = scan_worker_file(worker)

    assert ids == ["yolov8n"]
    assert len(problems) == 1
    assert "wf_broken.py is not valid Python" in problems[0]
    assert "line 3" in problems[0]


def test_yaml_and_python_are_merged_in_first_seen_order(tmp_path: Path) -> None:
    """cyberwave.yml ids come first, then the .py files by name; duplicates drop."""
    _write(tmp_path / "cyberwave.yml", "models:\n  - yolov8n\n  - segmenter\n")
    _write(tmp_path / "wf_b.py", 'x = cw.models.load("tracker")\n')
    _write(tmp_path / "wf_a.py", 'x = cw.models.load("segmenter")\n')
    _write(tmp_path / "notes.txt", 'cw.models.load("ignored")\n')

    found = discover_models(tmp_path)

    assert found.model_ids == ("yolov8n", "segmenter", "tracker")
    assert found.problems == ()


def test_broken_yaml_is_reported_and_python_still_counts(tmp_path: Path) -> None:
    """A cyberwave.yml that is not YAML is one problem; worker files still count."""
    _write(tmp_path / "cyberwave.yml", "models: [yolov8n\n")
    _write(tmp_path / "wf_a.py", 'x = cw.models.load("tracker")\n')

    found = discover_models(tmp_path)

    assert found.model_ids == ("tracker",)
    assert len(found.problems) == 1
    assert "cyberwave.yml is not valid YAML" in found.problems[0]


def test_yaml_shape_problems_are_reported(tmp_path: Path) -> None:
    """Non-string entries and a non-list ``models`` are reported and skipped."""
    _write(tmp_path / "cyberwave.yml", "models:\n  - yolov8n\n  - {a: 1}\n  - 7\n")

    found = discover_models(tmp_path)

    assert found.model_ids == ("yolov8n",)
    assert len(found.problems) == 2

    _write(tmp_path / "cyberwave.yml", "models: yolov8n\n")
    found = discover_models(tmp_path)
    assert found.model_ids == ()
    assert "'models' is not a list" in found.problems[0]


def test_unsafe_ids_are_reported_not_returned(tmp_path: Path) -> None:
    """An id that could escape the cache directory is dropped with a problem line."""
    _write(
        tmp_path / "wf_a.py", 'x = cw.models.load("../etc")\ny = cw.models.load("ok")\n'
    )

    found = discover_models(tmp_path)

    assert found.model_ids == ("ok",)
    assert "path separator" in found.problems[0]


def test_missing_workers_directory_finds_nothing(tmp_path: Path) -> None:
    """A workers directory that does not exist yet gives no ids and no problems."""
    found = discover_models(tmp_path / "workers")

    assert found.model_ids == ()
    assert found.problems == ()


def test_yaml_without_models_key_is_fine(tmp_path: Path) -> None:
    """A cyberwave.yml with other keys only contributes nothing and no problem."""
    _write(tmp_path / "cyberwave.yml", "name: demo\n")

    found = discover_models(tmp_path)

    assert found == discover_models(tmp_path / "absent")
