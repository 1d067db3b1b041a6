"""docs/config.md is generated from the settings models and must not drift from them."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from harvester.config import Settings, config_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    assert DOC.read_text(encoding="utf-8") == config_reference(), (
        "docs/config.md is out of date: run `.venv/bin/python -m harvester.config > "
        "docs/config.md` and commit the result"
    )


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for info in model.model_fields.values():
        for candidate in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found += _models(candidate)
    return found


def test_every_key_is_described() -> None:
    for model in _models(Settings):
        assert model.__doc__, model
        for name, info in model.model_fields.items():
            is_table = isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
            assert is_table or info.description, f"{model.__name__}.{name} has no description"


def test_types_read_as_words_and_a_missing_profile_is_explained() -> None:
    reference = config_reference()
    assert "pydantic" not in reference and "dict[" not in reference
    assert "| `extra_http_headers` | table of secret strings |" in reference
    (profile,) = [line for line in reference.splitlines() if line.startswith("| `profile_dir` |")]
    assert "every harvest starts in a fresh browser whose IndexedDB is empty" in profile
