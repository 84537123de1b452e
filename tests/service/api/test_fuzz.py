"""Schema-driven fuzzing: schemathesis generates requests for every operation of the served /openapi.json and sends
them to a real server. Every answer must be a documented status (never a 5xx), with a documented content type and
headers, and a body matching its documented schema; requests that break the schema must be refused.

Per operation: the documented request examples, then DIGITAE_FUZZ_EXAMPLES (default 100) valid-by-schema requests and
as many invalid ones. Model names are drawn from the served models as well as at random, so most requests reach a
model. The default sends well over 1,000 requests in total and takes about half a minute; raise the variable for a
longer hunt. The run is deterministic unless DIGITAE_FUZZ_SEED picks a seed.
"""

from __future__ import annotations

import collections
import contextlib
import os
from dataclasses import dataclass, field

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import TINY_MODELS, ServerProcess

EXAMPLES = int(os.environ.get("DIGITAE_FUZZ_EXAMPLES", "100"))
SEED = os.environ.get("DIGITAE_FUZZ_SEED")
SERVED = [name for name, _, _ in TINY_MODELS]
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CHECKS = {GenerationMode.POSITIVE: CONFORMANCE, GenerationMode.NEGATIVE: [*CONFORMANCE, negative_data_rejection]}


@dataclass
class Tally:
    sent: collections.Counter[str] = field(default_factory=collections.Counter)  # operation -> requests
    statuses: dict[str, collections.Counter[int]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    failures: dict[str, str] = field(default_factory=dict)  # first line of the problem -> the whole report

    def send(self, label: str, case: schemathesis.Case, session: requests.Session, mode: GenerationMode) -> None:
        self.sent[label] += 1
        try:
            response = case.call_and_validate(session=session, checks=CHECKS[mode])
            self.statuses[label][response.status_code] += 1
        except Exception as exc:  # a failed check, or no answer at all
            problem = f"{label} ({mode.value}): {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            self.failures.setdefault(problem, f"{problem}\n{exc}\nreproduce: {case.as_curl_command()}")


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def drive(strategy: st.SearchStrategy, max_examples: int, send) -> None:
    """Draw up to `max_examples` cases from `strategy` and `send` each; an operation without anything to
    vary (e.g. no invalid request exists for GET /healthz) simply ends early."""
    test = given(case=strategy)(lambda case: send(case))
    if SEED is not None:
        test = seed(int(SEED))(test)
    with contextlib.suppress(Unsatisfiable):
        fuzz_settings(max_examples)(test)()


@pytest.mark.timeout(900)
def test_every_endpoint_survives_schema_driven_fuzzing(server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    tally = Tally()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            label = operation.label
            for example in schema.get_strategies_from_examples(operation):
                drive(example, 1, lambda case, label=label: tally.send(label, case, session, GenerationMode.POSITIVE))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode)
                if "{name}" in operation.path:  # mostly the served models, sometimes any name the schema allows
                    served = [
                        operation.as_strategy(generation_mode=mode, path_parameters={"name": name}) for name in SERVED
                    ]
                    strategy = st.one_of(*served, strategy)
                drive(strategy, EXAMPLES, lambda case, label=label, mode=mode: tally.send(label, case, session, mode))

    total = sum(tally.sent.values())
    print(f"\nfuzzing: {total} requests, {len(tally.failures)} distinct failures")
    for label, count in tally.sent.items():
        print(f"  {label:40s} {count:5d}  statuses {dict(sorted(tally.statuses[label].items()))}")
    assert not tally.failures, "\n\n".join(list(tally.failures.values())[:10])
    assert len(tally.sent) >= 10, f"only {sorted(tally.sent)} were fuzzed"
    assert total >= 10 * EXAMPLES, f"only {total} requests were generated"
    served_ok = sum(counts[200] for label, counts in tally.statuses.items() if "{name}/" in label)
    assert served_ok >= EXAMPLES, f"only {served_ok} generated requests reached a model and succeeded"
    log = server.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
