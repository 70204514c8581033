"""Property-based requests generated from the service's OpenAPI schema (schemathesis): no
request, however odd, gets a 500. Bounded: a few examples per operation, in-process."""

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from metarec.data.synthetic import WorldConfig, make_world  # noqa: E402
from metarec.models import make_scorer  # noqa: E402
from metarec.models.io import save_model  # noqa: E402
from metarec.serving.app import create_app  # noqa: E402


def _app(tmp_path_factory=None):
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="metarec-schema-"))
    data = make_world(WorldConfig(n_users=80, n_items=50, seed=2))
    save_model(make_scorer("hybrid", encoder="hashing-32").fit(data), data, root / "m")
    return create_app(root / "m", f"sqlite:///{root / 'e.db'}", "schema-key")


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_500(case):
    # Half the calls carry the key, so writes are exercised past authentication too.
    headers = {"X-API-Key": "schema-key"} if hash(repr(case.path_parameters)) % 2 == 0 else {}
    response = case.call(headers=headers)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
