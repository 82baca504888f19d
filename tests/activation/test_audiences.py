"""Audience definitions: the shipped ones validate, and a bad one fails naming file, line and
problem before any export."""

from __future__ import annotations

import pytest

from activation.audiences import (
    AUDIENCE_DIR,
    AudienceDefinitionError,
    known_columns,
    load_audience,
    load_audiences,
    main,
)
from tests.activation.helpers import write_definition

HEADER = "name: bad\ndescription: test\nowner: me\nchannel: email\n"
DESTINATIONS = "destinations:\n  - {name: esp, format: csv}\n"


def test_shipped_definitions_validate():
    audiences = {a.name: a for a in load_audiences()}
    assert set(audiences) == {
        "dormant_reactivation",
        "at_risk_high_value",
        "champions_referral",
        "new_customer_nurturing",
        "subscription_cancellation_risk",
    }
    for audience in audiences.values():
        assert audience.referenced_columns <= known_columns()
        assert audience.destinations and 0 <= audience.control_group_percent < 100
    formats = {d.format for a in audiences.values() for d in a.destinations}
    assert formats == {"csv", "parquet", "google_customer_match", "meta_custom_audience"}
    assert main([str(AUDIENCE_DIR)]) == 0


@pytest.mark.parametrize(
    ("where", "line", "problem"),
    [
        ("is_dormant and lifetime_value > 3", 5, "unknown column(s) lifetime_value"),
        ("is_dormant; drop table marts.customer_360", 5, "single expression, without ';'"),
        ("customer_id in (select customer_id from marts.customer_360)", 5, "subquery"),
        ("order_count + 1", 5, "must be a boolean expression"),
        ("read_csv('x.csv') is not null", 5, "function 'read_csv' is not allowed"),
        ("marts.customer_360.is_dormant", 5, "must not be qualified"),
        ("is_dormant and (", 5, "is not valid SQL"),
    ],
)
def test_a_bad_predicate_is_named_with_file_and_line(tmp_path, where, line, problem):
    path = write_definition(tmp_path, "bad", HEADER + f'where: "{where}"\n' + DESTINATIONS)
    with pytest.raises(AudienceDefinitionError) as raised:
        load_audience(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: 1 problem(s):\n  - line {line}: where: ")
    assert problem in message


def test_a_block_scalar_predicate_points_at_its_first_line(tmp_path):
    body = HEADER + "where: >\n  is_dormant\n  and nonsense_column\n" + DESTINATIONS
    path = write_definition(tmp_path, "bad", body)
    with pytest.raises(
        AudienceDefinitionError,
        match=rf"{path}: 1 problem\(s\):\n  - line 6: where: unknown column",
    ):
        load_audience(path)


def test_two_expressions_are_refused(tmp_path):
    path = write_definition(
        tmp_path, "bad", HEADER + "where: is_dormant, is_business\n" + DESTINATIONS
    )
    with pytest.raises(AudienceDefinitionError, match="boolean expression|exactly one"):
        load_audience(path)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("name: bad\nchannel: email\nwhere: is_dormant\n", "line 1: description: required key is missing"),
        (HEADER + "where: is_dormant\ndestinations:\n  - {name: x, format: pdf}\n", "line 7: destinations.0.format: Input should be 'csv', 'parquet'"),
        (HEADER + "where: is_dormant\ndestinations:\n  - {name: x, format: parquet, encoding: cp932}\n", "line 7: destinations.0: encoding 'cp932': only csv files"),
        (HEADER + "where: is_dormant\n" + DESTINATIONS + "control_group_percent: 120\n", "line 8: control_group_percent: Input should be less than 100"),
        (HEADER + "where: is_dormant\ncolumns: [customer_id, password]\n" + DESTINATIONS, "line 6: columns: unknown column(s): password"),
        (HEADER.replace("email", "fax") + "where: is_dormant\n" + DESTINATIONS, "line 4: channel: Input should be 'email' or 'ads'"),
        (HEADER + "where: is_dormant\ndestinations:\n  - {name: ../../x, format: csv}\n", "line 7: destinations.0.name: String should match pattern"),
        (HEADER + "where: is_dormant\n" + DESTINATIONS + "contact_caps: {max_contact_7d: 2}\n", "line 8: contact_caps.max_contact_7d: unknown key; did you mean 'max_contacts_7d'?"),
    ],
)  # fmt: skip
def test_a_bad_definition_is_named_with_file_and_line(tmp_path, body, problem):
    path = write_definition(tmp_path, "bad", body)
    with pytest.raises(AudienceDefinitionError) as raised:
        load_audience(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert problem in str(raised.value)


def test_one_bad_file_stops_the_whole_set_and_every_problem_is_listed(tmp_path, capsys):
    write_definition(
        tmp_path, "good", HEADER.replace("bad", "good") + "where: is_dormant\n" + DESTINATIONS
    )
    write_definition(tmp_path, "bad", HEADER + "where: nope\n" + DESTINATIONS)
    write_definition(
        tmp_path, "worse", HEADER.replace("bad", "worse") + "where: also_nope\n" + DESTINATIONS
    )
    with pytest.raises(AudienceDefinitionError) as raised:
        load_audiences(tmp_path)
    for name in ("bad", "worse"):
        assert f"{name}.yml: 1 problem(s):\n  - line 5: where: unknown column" in str(raised.value)
    assert main([str(tmp_path)]) == 1
    assert "unknown column(s) nope" in capsys.readouterr().err
