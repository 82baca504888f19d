"""Publishing audience files: complete or not at all, with a manifest that tells the truth."""

from __future__ import annotations

import csv
import hashlib
import json
import os

import pytest

import activation.publish as publish
from activation.audiences import Audience, AudienceDefinitionError, load_audience, load_audiences
from crm360.warehouse import connect


@pytest.fixture
def warehouse(settings):
    con = connect(settings.warehouse)
    con.execute("create schema marts")
    con.execute(
        """
        create table marts.customer_360 as
        select * from (values
            ('cus_a', 'a@example.com', true, true),
            ('cus_b', 'b@example.com', true, false),   -- opted out: suppressed
            ('cus_c', 'c@example.com', false, true),   -- not dormant
            ('cus_d', 'd@example.com', true, true)
        ) as t(customer_id, email, is_dormant, is_email_contactable)
        """
    )
    yield con
    con.close()


@pytest.fixture
def audience(tmp_path):
    path = tmp_path / "dormant.yml"
    path.write_text(
        "name: dormant\nchannel: email\nwhere: is_dormant\ncolumns: [customer_id, email]\n",
        encoding="utf-8",
    )
    return load_audience(path)


def read_rows(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_publish_writes_files_manifest_and_latest(warehouse, audience, settings):
    out = publish.publish_audience(
        warehouse, audience, settings.export_dir, "run:1+x", {"status": "passed"}
    )

    folder = settings.export_dir / "dormant" / "run_1_x"
    assert out == {"audience": "dormant", "rows": 2, "path": str(folder)}
    rows = read_rows(folder / "dormant.csv")
    assert [r["customer_id"] for r in rows] == ["cus_a", "cus_d"]  # cus_b suppressed
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["row_count"] == 2
    assert manifest["run_id"] == "run:1+x"
    assert manifest["columns"] == ["customer_id", "email"]
    assert manifest["quality"] == {"status": "passed"}
    digest = hashlib.sha256((folder / "dormant.csv").read_bytes()).hexdigest()
    assert manifest["files"] == [
        {"name": "dormant.csv", "format": "csv", "encoding": "utf-8", "rows": 2, "sha256": digest}
    ]
    assert manifest["definition_sha256"] == audience.definition_sha256
    latest = json.loads((settings.export_dir / "dormant" / "latest.json").read_text())
    assert latest["run_id"] == "run:1+x" and latest["path"] == "run_1_x"


def test_crash_mid_export_leaves_previous_export_and_latest_intact(
    warehouse, audience, settings, monkeypatch
):
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", {"status": "passed"})
    audience_dir = settings.export_dir / "dormant"
    before = {
        p.relative_to(audience_dir): p.read_bytes() for p in audience_dir.rglob("*") if p.is_file()
    }

    warehouse.execute("delete from marts.customer_360 where customer_id = 'cus_a'")
    real_replace = os.replace

    def crash_on_swap(src, dst):
        if str(dst).endswith("run2"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(publish.os, "replace", crash_on_swap)
    with pytest.raises(OSError, match="disk full"):
        publish.publish_audience(
            warehouse, audience, settings.export_dir, "run2", {"status": "passed"}
        )

    after = {
        p.relative_to(audience_dir): p.read_bytes()
        for p in audience_dir.rglob("*")
        if p.is_file() and not p.relative_to(audience_dir).parts[0].startswith(".tmp-")
    }
    assert after == before
    assert not (audience_dir / "run2").exists()


def test_rerun_of_the_same_run_replaces_its_own_folder(warehouse, audience, settings):
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", {"status": "passed"})
    warehouse.execute("delete from marts.customer_360 where customer_id = 'cus_a'")
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", {"status": "passed"})
    rows = read_rows(settings.export_dir / "dormant" / "run1" / "dormant.csv")
    assert [r["customer_id"] for r in rows] == ["cus_d"]
    assert sorted(p.name for p in (settings.export_dir / "dormant").iterdir()) == [
        "latest.json",
        "run1",
    ]


def test_shipped_audiences_load():
    audiences = load_audiences()
    assert "dormant_reactivation" in [a.name for a in audiences]
    assert all(isinstance(a, Audience) and a.suppression for a in audiences)


def test_definition_with_unknown_channel_is_rejected(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("name: x\nchannel: fax\nwhere: true\ncolumns: [customer_id]\n")
    with pytest.raises(AudienceDefinitionError, match=r"x\.yml: unknown channel 'fax'"):
        load_audience(path)
