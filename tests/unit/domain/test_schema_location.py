"""Finding the schema files: the wheel's copy first, else the checkout's schemas/."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from streams.domain.schema_location import CHECKOUT_SCHEMAS, find_schema_root, schema_root

ROOT = Path(__file__).resolve().parents[3]


def test_the_packaged_copy_wins_when_present(tmp_path: Path) -> None:
    packaged = tmp_path / "site" / "streams" / "schemas"
    packaged.mkdir(parents=True)
    checkout = tmp_path / "checkout" / "schemas"
    checkout.mkdir(parents=True)
    assert find_schema_root(packaged, checkout) == packaged


def test_the_checkout_serves_when_there_is_no_packaged_copy(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout" / "schemas"
    checkout.mkdir(parents=True)
    assert find_schema_root(tmp_path / "streams" / "schemas", checkout) == checkout


def test_a_packaged_file_is_not_a_directory(tmp_path: Path) -> None:
    packaged = tmp_path / "schemas"
    packaged.write_text("not a directory")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    assert find_schema_root(packaged, checkout) == checkout


def test_a_zipped_package_is_passed_over(tmp_path: Path) -> None:
    # The readers glob directories, which a zip archive cannot offer.
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("streams/schemas/v1/engine_execution.json", "{}")
    packaged = zipfile.Path(archive, "streams/schemas/")
    assert packaged.is_dir()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    assert find_schema_root(packaged, checkout) == checkout


def test_neither_is_one_error_naming_both_and_the_fix(tmp_path: Path) -> None:
    packaged, checkout = tmp_path / "packaged", tmp_path / "checkout"
    with pytest.raises(FileNotFoundError) as info:
        find_schema_root(packaged, checkout)
    message = str(info.value)
    assert str(packaged) in message and str(checkout) in message
    assert "reinstall" in message and "\n" not in message


def test_this_checkout_is_found_by_an_editable_install() -> None:
    # The tests run from the checkout (an editable install): no packaged copy exists.
    assert CHECKOUT_SCHEMAS == ROOT / "schemas"
    assert schema_root() == ROOT / "schemas"
    assert (schema_root() / "v1" / "engine_execution.json").is_file()
    assert (schema_root() / "avro" / "engine_execution.avsc").is_file()
