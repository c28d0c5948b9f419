"""How encoder actors share a cluster's CPUs: the rule that keeps a pipeline from starving (no Ray needed)."""

from __future__ import annotations

import pytest

from mmembed.errors import InputError
from mmembed.scale import DECODE_RESERVE_CPUS, DECODE_TASK_CPUS, plan_resources


def test_two_actors_on_two_cpus_get_fractions_and_leave_the_decode_share() -> None:
    # measured with ray 2.60: two 1-CPU actors on a 2-CPU cluster stalled the pipeline for 300 s
    plan = plan_resources(2, concurrency=2)
    assert plan.concurrency == 2 and plan.threads == 1
    assert 2 * plan.actor_cpus + DECODE_RESERVE_CPUS <= 2
    assert plan.actor_cpus == pytest.approx(0.75)


def test_default_is_one_actor_per_two_cpus_with_threads_to_match() -> None:
    one = plan_resources(2)
    assert (one.concurrency, one.actor_cpus, one.threads) == (1, 1.5, 2)
    many = plan_resources([16.0, 16.0])
    assert many.concurrency == 16 and many.actor_cpus * 16 <= 32 - DECODE_RESERVE_CPUS and many.threads == 2


def test_an_explicit_plan_that_would_starve_is_refused_with_the_reason() -> None:
    with pytest.raises(InputError, match="stall"):
        plan_resources(2, concurrency=2, num_cpus=1)
    assert plan_resources(2, concurrency=2, num_cpus=0.5).actor_cpus == 0.5


def test_actors_must_fit_on_a_node() -> None:
    # three CPUs in all, but an actor cannot span the 1-CPU and the 2-CPU node
    plan = plan_resources([1.0, 2.0], concurrency=2)
    assert plan.actor_cpus == 1.0
    with pytest.raises(InputError, match="cannot span"):
        plan_resources([1.0, 2.0], concurrency=2, num_cpus=1.2)
    # one actor per 1-CPU node, each leaving a decode task's share
    assert plan_resources([1.0, 1.0], concurrency=2).actor_cpus == 1.0 - DECODE_TASK_CPUS


def test_gpus_and_tiny_clusters() -> None:
    plan = plan_resources(8, 2, num_gpus=1)
    assert plan.concurrency == 2 and plan.actor_gpus == 1
    with pytest.raises(InputError, match="GPU"):
        plan_resources(8, 1, num_gpus=1, concurrency=2)
    with pytest.raises(InputError, match="too few"):
        plan_resources(0.5)
