"""The adapter registry: every registered type is tested, adapters stay free of Flask/DB/HTTP
libraries, and a separately installed package adds a type without touching ``bridge/``."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.contract import AdapterContract
from bridge.connections.adapter_registry import adapter_types
from bridge.extensions import db
from bridge.models import Connection

REPO = Path(__file__).resolve().parents[2]

# Every registered adapter type → the test module that covers it (repository-relative). A type
# registered without an entry here fails the suite. Modules under tests/adapters/ must hold an
# AdapterContract subclass for that type; other adapters (custom_webhook) name their own module.
ADAPTER_TEST_MODULES: dict[str, str] = {
    "activecampaign": "tests/adapters/test_activecampaign.py",
    "custom_webhook": "tests/adapters/test_custom_webhook.py",
    "fluentcrm": "tests/adapters/test_fluentcrm.py",
    "hubspot": "tests/adapters/test_hubspot.py",
    "mailchimp": "tests/adapters/test_mailchimp.py",
    "mautic": "tests/adapters/test_mautic.py",
    "pulsetech": "tests/adapters/test_pulsetech.py",
}
FORBIDDEN_IN_ADAPTERS = ("flask", "flask_sqlalchemy", "sqlalchemy", "requests", "bridge")


def test_every_registered_adapter_type_has_a_test_module() -> None:
    untested = sorted(set(adapter_types()) - set(ADAPTER_TEST_MODULES))
    assert not untested, f"registered adapter types without a test module: {untested}"
    for slug, relative in ADAPTER_TEST_MODULES.items():
        assert (REPO / relative).is_file(), f"{slug}: {relative} is missing"


@pytest.mark.parametrize("slug", sorted(k for k, v in ADAPTER_TEST_MODULES.items() if v.startswith("tests/adapters/")))
def test_contract_modules_run_the_contract_for_their_type(slug: str) -> None:
    path = REPO / ADAPTER_TEST_MODULES[slug]
    spec = importlib.util.spec_from_file_location(f"adapters.{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    suites = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, AdapterContract) and obj is not AdapterContract
    ]
    assert [suite.case.type for suite in suites] == [slug]


@pytest.mark.parametrize("path", sorted((REPO / "crm_adapters").glob("*.py")), ids=lambda p: p.name)
def test_adapters_import_no_flask_database_or_http_library(path: Path) -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & set(FORBIDDEN_IN_ADAPTERS)


PLUGIN_MODULE = '''
"""A CRM adapter shipped in its own distribution."""
from crm_adapters.base import Adapter, Contact, Setting


class AcmeAdapter(Adapter):
    type = "acme"
    label = "Acme CRM"
    settings = [Setting("api_key", "API key", required=True, secret=True)]

    def parse(self, request):
        return [Contact(contact_id=request.query.get("contact_id"))]
'''


@pytest.fixture
def plugin_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tiny installed distribution (module + dist-info with entry_points.txt) on sys.path."""
    (tmp_path / "acme_crm_adapter.py").write_text(PLUGIN_MODULE)
    dist_info = tmp_path / "acme_crm_adapter-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-crm-adapter\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[crm_bridge.adapters]\nacme = acme_crm_adapter:AcmeAdapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    adapter_types.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    adapter_types.cache_clear()


def test_an_adapter_from_a_separate_package_is_found_and_usable(plugin_distribution: Path, ctx: None) -> None:
    from bridge.connections.service import build_adapter, create_connection
    from bridge.connections.settings import effective_settings

    assert "acme" in adapter_types()
    assert "fluentcrm" in adapter_types()  # the built-in ones are still there

    _, key = create_connection("acme-crm", "acme", {"api_key": "acme-secret-key"})
    db.session.commit()

    stored = db.session.scalar(select(Connection).where(Connection.name == "acme-crm"))
    assert stored.type == "acme"
    assert "acme-secret-key" not in str(stored.settings)  # secret setting encrypted at rest
    assert effective_settings(stored)["api_key"] == "acme-secret-key"
    adapter = build_adapter(stored)
    assert type(adapter).__name__ == "AcmeAdapter"
    assert key.startswith("cbk_")
