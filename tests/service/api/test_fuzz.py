"""Schema-driven fuzzing: schemathesis generates requests for every operation of the served /openapi.json and sends
them to a real server, with every check it has. Every answer must be a documented status (never a 5xx), with a
documented content type and headers, and a body matching its documented schema; requests the schema allows must be
served and requests that break it refused; auth, methods and required headers as declared.

Per operation: the documented request examples, then DIGITAE_FUZZ_EXAMPLES (default 50) valid-by-schema requests and
as many invalid ones, each checked by every check (schemathesis.toml at the repository root says where a rule depends
on the model, and tests/support/fuzz_hooks.py gives real images for binary bodies). Model names are drawn from the
served models as well as at random, so most requests reach a model. The checks that need schemathesis' own phases
(a required header left out, an unsupported method, auth ignored, the stateful links) run in `st run --checks all`
with its coverage and stateful phases, as a client developer would run it. The default sends well over 1,000
requests in total; raise the variable for a longer hunt. The run is deterministic unless DIGITAE_FUZZ_SEED picks a
seed.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support import REPO_ROOT, TINY_MODELS, ServerProcess

EXAMPLES = int(os.environ.get("DIGITAE_FUZZ_EXAMPLES", "50"))
SEED = os.environ.get("DIGITAE_FUZZ_SEED")
SERVED = [name for name, _, _ in TINY_MODELS]
# `st run`'s phases for the checks that need them: examples, coverage (headers left out, other methods, no key) and
# stateful (links between operations); its fuzzing phase is the Python harness's own, above.
CLI_PHASES = "examples,coverage,stateful"
CLI_EXAMPLES = max(5, EXAMPLES // 5)


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
            response = case.call_and_validate(session=session)  # every check schemathesis has, as configured
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


@pytest.mark.timeout(600)
def test_schemathesis_run_with_every_check_finds_nothing(server: ServerProcess, tmp_path: Path) -> None:
    """What a client developer runs: `st run --checks all` on the spec, from the repository root (schemathesis.toml)."""
    command = [str(Path(sys.executable).with_name("st")), "run", "--checks", "all", "--phases", CLI_PHASES]
    command += ["--max-examples", str(CLI_EXAMPLES), "--seed", SEED or "0", "--no-color", f"{server.url}/openapi.json"]
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=540)
    summary = result.stdout[result.stdout.find("SUMMARY") :] or result.stdout[-3000:]
    print(f"\nst run --checks all ({CLI_PHASES}): {time.monotonic() - started:.0f} s\n{summary[-1500:]}")
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
    assert "Configuration:" in result.stdout and "schemathesis.toml" in result.stdout, "the repository's config"
    log = server.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
