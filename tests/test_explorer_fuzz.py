"""Schemathesis fuzzes the explorer from its own OpenAPI schema: no input may make it answer 5xx.

Schema-valid (positive) and schema-violating (negative) requests, a bounded number per operation, go
through the ASGI app in process. Beyond "no server error", every Schemathesis check applies: answers
match the documented status codes, content types and response schemas, schema-violating requests are
rejected and schema-valid ones accepted. Generation is derandomized, so a run is repeatable.
"""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from latent_atlas.explorer import create_app

EXAMPLES_PER_OPERATION = 50
EXAMPLES_PER_TWIN_OPERATION = 12  # the second run's endpoints share the first's request models: a lighter pass


@pytest.fixture(scope="module")
def explorer_schema(tmp_path_factory, trained_runs):
    root = tmp_path_factory.mktemp("fuzz") / "runs"
    shutil.copytree(trained_runs["vae"].path.parent, root)
    app = create_app([root / "vae", root / "ae"], max_batch=16)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=SchemathesisConfig(seed=0))


# One test per generation mode, looping over the operations: schemathesis' own pytest parametrization needs the
# schema at import time (or a lazy fixture loader that this pytest version does not support).
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_no_input_makes_the_explorer_fail(explorer_schema, mode):
    operations = [result.ok() for result in explorer_schema.get_all_operations()]
    per_run = {"GET {}", "GET {}/codes", "GET {}/verdicts", "GET {}/images/{{index}}", "GET {}/alignment",
               "POST {}/decode", "POST {}/encode", "POST {}/paths", "POST {}/compass", "POST {}/correspond"}
    assert {op.label for op in operations} == {"GET /api/runs"} | {
        label.format(f"/api/runs/{run}") for run in ("vae", "ae") for label in per_run}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not any(operation.iter_parameters()) and not operation.body:
            continue  # GET /api/runs takes nothing that could be violated

        twin = operation.path.startswith("/api/runs/ae")
        examples = EXAMPLES_PER_TWIN_OPERATION if twin else EXAMPLES_PER_OPERATION

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            response = case.call()
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")
            case.validate_response(response)

        fuzz()
