"""The decisions every runtime shares around a create, as plain calls: the pull policy
(`_pull_policy`), a new sandbox's labels and whether an existing one may answer
(`_labels`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from rock_agent._labels import (
    LABEL_CREATED,
    LABEL_HOST,
    LABEL_OWNER,
    LABEL_OWNER_UID,
    LABEL_SANDBOX,
    LABEL_SPEC,
    LabelSource,
    adoption_problem,
    sandbox_labels,
    spec_digest,
    spec_from_labels,
)
from rock_agent._pull_policy import PULL_POLICIES, check_policy, must_pull, unpulled
from rock_core import AlreadyExists, BadRequest, ImageNotFound
from rock_core.protocol import SandboxSpec

SPEC = SandboxSpec(image="python:3.11", labels={"team": "a", LABEL_HOST: "spoofed"})


@dataclass
class Runtime:
    """A `LabelSource`: what the label rules need of a runtime."""

    host_id: str = "h1"
    uid: int = 0
    extra_labels: dict[str, str] = field(default_factory=dict)


HOST: LabelSource = Runtime()


def test_the_pull_policies_are_the_literal_s() -> None:
    assert PULL_POLICIES == ("missing", "never", "always")


@pytest.mark.parametrize(
    ("policy", "present", "pull"),
    [
        ("missing", True, False),
        ("missing", False, True),
        ("never", True, False),
        ("always", True, True),
        ("always", False, True),
    ],
)
def test_must_pull(policy: str, present: bool, pull: bool) -> None:
    check_policy(policy)  # type: ignore[arg-type]
    assert must_pull("img", policy, present) is pull  # type: ignore[arg-type]


def test_a_missing_image_under_never_is_not_found() -> None:
    with pytest.raises(ImageNotFound, match="image 'img' is not on this host and the pull "):
        must_pull("img", "never", False)


def test_an_unknown_policy_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="pull policy 'sometimes' is not one of missing, never"):
        check_policy("sometimes")  # type: ignore[arg-type]


def test_a_failed_pull_falls_back_on_a_present_copy_only() -> None:
    assert unpulled("img", True, "registry down") is None
    problem = unpulled("img", False, "registry down")
    assert isinstance(problem, ImageNotFound)
    assert str(problem) == "image 'img' is not on this host and could not be pulled: registry down"


def test_sandbox_labels_put_ours_over_the_spec_s_and_extra_over_ours() -> None:
    runtime = Runtime(extra_labels={"rock.leased": "1"})
    labels = sandbox_labels(runtime, "sb", SPEC, owner="alice", uid=1000, now=12.3456)
    assert labels["team"] == "a"
    assert labels[LABEL_HOST] == "h1"  # a spec cannot pose as another host's
    assert (labels[LABEL_SANDBOX], labels[LABEL_OWNER], labels[LABEL_OWNER_UID]) == (
        "sb",
        "alice",
        "1000",
    )
    assert labels[LABEL_CREATED] == "12.346"
    assert labels[LABEL_SPEC] == spec_digest(SPEC)
    assert spec_from_labels(labels) == SPEC
    assert labels["rock.leased"] == "1"


def _labels(owner: str = "alice", uid: int = 1000) -> dict[str, str]:
    return sandbox_labels(HOST, "sb", SPEC, owner=owner, uid=uid, now=0.0)


def _problem(labels: dict[str, str], spec: SandboxSpec = SPEC) -> AlreadyExists | None:
    return adoption_problem(HOST, labels, "sb", spec, owner="alice", uid=1000)


def test_the_same_owner_and_spec_may_adopt() -> None:
    assert _problem(_labels()) is None


@pytest.mark.parametrize("labels", [_labels(owner="bob"), _labels(uid=1001)])
def test_another_owner_or_user_is_refused(labels: dict[str, str]) -> None:
    problem = _problem(labels)
    assert isinstance(problem, AlreadyExists)
    assert str(problem) == "sandbox id 'sb' is taken on host h1 by another owner: choose another id"


def test_an_unlabelled_uid_counts_as_the_runtime_s() -> None:
    labels = _labels(uid=0)
    del labels[LABEL_OWNER_UID]
    assert _problem(labels) is not None  # the runtime's uid (0) is not the caller's 1000
    assert adoption_problem(HOST, labels, "sb", SPEC, owner="alice", uid=0) is None


def test_another_spec_is_refused() -> None:
    problem = _problem(_labels(), SandboxSpec(image="busybox:latest"))
    assert isinstance(problem, AlreadyExists)
    assert str(problem) == "sandbox sb already exists with a different spec"
