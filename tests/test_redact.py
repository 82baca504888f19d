"""A source URL is stored and logged without its credentials."""

from __future__ import annotations

import pytest

from crm360.redact import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://crm:s3cr3t@db.internal:5432/shop#orders", "postgresql://crm:***@db.internal:5432/shop#orders"),
        ("postgresql://crm@db.internal/shop", "postgresql://crm@db.internal/shop"),
        ("https://help.example.com/api/tickets?api_token=abc123&updated_since=2026-10-31T00:00:00%2B00:00",
         "https://help.example.com/api/tickets?api_token=***&updated_since=2026-10-31T00:00:00%2B00:00"),
        ("https://hooks.example.com/services/T000?X-Amz-Signature=f00&page=2",
         "https://hooks.example.com/services/T000?X-Amz-Signature=***&page=2"),
        ("sqlite:////srv/crm/shop.sqlite#orders", "sqlite:////srv/crm/shop.sqlite#orders"),
        ("/srv/crm/exports/contacts_20261031.csv", "/srv/crm/exports/contacts_20261031.csv"),
    ],
)  # fmt: skip
def test_credentials_are_masked_and_the_rest_kept(url, expected):
    assert redact_url(url) == expected
    assert "s3cr3t" not in redact_url(url) and "abc123" not in redact_url(url)
