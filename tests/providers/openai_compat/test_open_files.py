"""The open-file limit and requests in flight: each holds a connection (a file descriptor).

The limits are set in a child process of its own (a lowered hard limit cannot be raised
again); the fake server runs in this process, whose limit is not lowered.
"""

from __future__ import annotations

import json
import sys
import textwrap

import anyio
import pytest

from tests.providers.openai_compat.fake_server import FakeApp, Flavor, serve

resource = pytest.importorskip("resource")  # POSIX only

pytestmark = pytest.mark.anyio


async def _child(code: str, *args: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; its last line of output, as JSON."""
    done = await anyio.run_process(
        [sys.executable, "-c", textwrap.dedent(code), *args], check=False
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    result["stderr"] = err
    return result


async def test_a_low_soft_limit_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard open-file limit here is {hard}")
    got = await _child(
        """
        import json, resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        from providers.openai_compat.open_files import connection_budget
        budget = connection_budget(300)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        print(json.dumps({"budget": budget, "soft": soft, "hard": hard}))
        """
    )
    assert got["soft"] == got["hard"] or got["soft"] == 10240  # macOS: OPEN_MAX
    assert got["budget"] == 300  # it fits once the soft limit is raised; at 256 it would not


async def test_a_pool_keeps_its_limits_within_a_low_hard_limit() -> None:
    got = await _child(
        """
        import json, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (600, 600))
        from providers.openai_compat.endpoints import EndpointPool
        from providers.openai_compat.open_files import RESERVED_FILES
        adaptive = EndpointPool(["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"])
        fixed = EndpointPool("http://127.0.0.1:9/v1", max_concurrency=5000)
        small = EndpointPool("http://127.0.0.1:9/v1", max_concurrency=8)
        print(json.dumps({
            "room": 600 - RESERVED_FILES,
            "adaptive": [(e.limit.limit, e.limit.maximum) for e in adaptive.endpoints],
            "fixed": [fixed.endpoints[0].limit.limit, fixed.endpoints[0].limit.adaptive],
            "small": small.endpoints[0].limit.limit,
        }))
        """
    )
    room, adaptive, fixed = got["room"], got["adaptive"], got["fixed"]
    assert isinstance(room, int) and isinstance(adaptive, list) and isinstance(fixed, list)
    for limit, maximum in adaptive:  # both endpoints share the room
        assert 100 < maximum <= room // 2
        assert limit <= maximum
    fixed_limit, fixed_adaptive = fixed
    assert 200 < fixed_limit <= room and fixed_adaptive is False
    assert got["small"] == 8  # a limit that fits is left alone
    stderr = str(got["stderr"])
    assert "max_limit=4096 per endpoint (2 endpoint(s))" in stderr
    assert "max_concurrency=5000 per endpoint (1 endpoint(s))" in stderr
    assert "RLIMIT_NOFILE 600" in stderr and "ulimit -Hn" in stderr


async def test_a_limit_set_huge_to_mean_none_is_capped_without_a_warning() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 6000:
        pytest.skip(f"the hard open-file limit here is {hard}")
    got = await _child(
        """
        import json, logging, resource
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        resource.setrlimit(resource.RLIMIT_NOFILE, (6000, 6000))
        from providers.openai_compat.endpoints import EndpointPool
        pool = EndpointPool("http://127.0.0.1:9/v1", max_concurrency=100_000)
        print(json.dumps({"limit": pool.endpoints[0].limit.limit}))
        """
    )
    limit = got["limit"]
    assert isinstance(limit, int) and 4096 < limit < 6000
    assert "INFO max_concurrency=100000 per endpoint" in str(got["stderr"])
    assert "WARNING" not in str(got["stderr"])


async def test_requests_past_the_open_file_limit_wait_instead_of_failing() -> None:
    # 1,000 requests asked to be in flight at once, in a process that may open 600 files:
    # without the cap, every connection past the limit fails with EMFILE and is retried.
    app = FakeApp(Flavor(latency_s=0.2))
    async with serve(app) as url:
        got = await _child(
            """
            import json, logging, resource, sys
            import anyio
            resource.setrlimit(resource.RLIMIT_NOFILE, (600, 600))
            from providers.openai_compat import OpenAIProvider, RetryPolicy
            from rebase_agent import StepRequest

            failures = []
            class Count(logging.Handler):
                def emit(self, record):
                    failures.append(record.getMessage())
            logging.getLogger("providers.openai_compat").addHandler(Count(logging.WARNING))

            async def main():
                once = RetryPolicy(max_attempts=1)
                async with OpenAIProvider(
                    "m", sys.argv[1], max_concurrency=1000, retry=once
                ) as provider:
                    async with anyio.create_task_group() as tg:
                        for _ in range(1000):
                            tg.start_soon(provider.generate, StepRequest(problem="p"))
                    endpoint = provider.endpoints.endpoints[0]
                    return endpoint.limit.limit, endpoint.requests

            limit, attempts = anyio.run(main)
            print(json.dumps({"limit": limit, "attempts": attempts, "failures": failures}))
            """,
            url,
        )
    failures, limit = got["failures"], got["limit"]
    assert isinstance(failures, list) and isinstance(limit, int)
    assert [f for f in failures if "connection failed" in f] == []
    assert got["attempts"] == 1000  # every request answered at its first attempt
    assert app.max_in_flight <= limit < 600
    assert any("max_concurrency=1000" in f for f in failures)  # the cap was said
