"""LmsClient.enterprise_admins against the LMS stand-in (contract 3.2): paging, filtering, parsing, auth."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conftest import NOW, Upstream
from fakes import enterprise_learner_record as record
from license_notifications.adapters.http import HttpClient, RetryPolicy
from license_notifications.adapters.lms import LmsClient
from license_notifications.adapters.oauth import OAuthTokenProvider
from license_notifications.errors import BadRequestError, MalformedResponseError

LEARNER_PATH = "/enterprise/api/v1/enterprise-learner"


def http(service: str, **kwargs: Any) -> HttpClient:
    """Fast retries, no real sleeping (as tests/test_adapters.py does)."""
    return HttpClient(
        service, timeout=2.0, retry=RetryPolicy(max_attempts=3, max_wait=1), sleep=lambda _: None, **kwargs
    )


@pytest.fixture
def lms(upstream: Upstream) -> LmsClient:
    oauth = OAuthTokenProvider(
        http("lms-oauth"),
        upstream.lms.url,
        upstream.lms.client_id,
        lambda *, force_fetch=False: upstream.lms.client_secret,
    )
    return LmsClient(http("lms", auth=oauth), upstream.lms.url)


def learner_calls(up: Upstream):
    return [r for r in up.lms.requests if r.path.startswith(LEARNER_PATH)]


def page(*results: dict[str, Any]) -> dict[str, Any]:
    return {
        "next": None,
        "previous": None,
        "count": len(results),
        "num_pages": 1,
        "current_page": 1,
        "start": 0,
        "results": list(results),
    }


def test_more_than_a_hundred_admins_arrive_in_pages_of_a_hundred(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Big Corp")
    for _ in range(230):
        upstream.dataset.add_admin(customer.uuid)
    admins = list(lms.enterprise_admins(customer.uuid))
    assert len(admins) == 230
    assert len({a.id for a in admins}) == 230
    calls = learner_calls(upstream)
    assert len(calls) == 3
    first = calls[0]
    assert first.query["enterprise_customer_uuid"] == [customer.uuid]
    assert first.query["role"] == ["enterprise_admin"]
    assert first.query["page_size"] == ["100"]
    assert [c.query.get("page") for c in calls] == [None, ["2"], ["3"]]


def test_admins_are_streamed_page_by_page(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Big Corp")
    for _ in range(150):
        upstream.dataset.add_admin(customer.uuid)
    stream = lms.enterprise_admins(customer.uuid)
    next(stream)
    assert len(learner_calls(upstream)) == 1
    assert sum(1 for _ in stream) == 149
    assert len(learner_calls(upstream)) == 2


def test_an_admin_of_two_enterprises_is_one_recipient_in_each(upstream: Upstream, lms: LmsClient):
    first = upstream.dataset.add_customer("First Co")
    second = upstream.dataset.add_customer("Second Co")
    in_first = upstream.dataset.add_admin(first.uuid, email="both@example.com")
    in_second = upstream.dataset.add_admin(second.uuid, lms_user_id=in_first.user.id)
    upstream.dataset.add_admin(second.uuid)
    [a1] = list(lms.enterprise_admins(first.uuid))
    admins2 = list(lms.enterprise_admins(second.uuid))
    assert len(admins2) == 2
    [a2] = [a for a in admins2 if a.user_id == in_first.user.id]
    assert (a1.id, a2.id) == (in_first.id, in_second.id)
    assert a1.id != a2.id
    assert a1.user_id == a2.user_id == in_first.user.id
    assert a1.email == a2.email == "both@example.com"
    assert str(a1.enterprise_customer_uuid) == first.uuid
    assert str(a2.enterprise_customer_uuid) == second.uuid


def test_learners_who_are_not_admins_are_excluded(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Mixed Inc")
    admin = upstream.dataset.add_admin(customer.uuid)
    for _ in range(5):
        upstream.dataset.add_learner(customer.uuid)
    assert [a.id for a in lms.enterprise_admins(customer.uuid)] == [admin.id]


def test_non_admin_records_are_dropped_even_if_the_lms_returns_them(upstream: Upstream, lms: LmsClient):
    """A non-staff caller gets its own record whatever the filters: role membership is checked client-side."""
    customer = upstream.dataset.add_customer("Leaky")
    upstream.lms.fail_next(
        LEARNER_PATH,
        200,
        body=page(
            record(customer.uuid, id=1, role_assignments=["enterprise_learner"]),
            record(customer.uuid, id=2, role_assignments=[]),
            record(customer.uuid, id=3, role_assignments=["enterprise_admin"]),
        ),
    )
    assert [a.id for a in lms.enterprise_admins(customer.uuid)] == [3]


def test_a_record_of_another_enterprise_is_never_taken_for_this_ones_admin(upstream: Upstream, lms: LmsClient, caplog):
    customer = upstream.dataset.add_customer("Asked For")
    other = upstream.dataset.add_customer("Service Account Home")
    upstream.lms.fail_next(LEARNER_PATH, 200, body=page(record(other.uuid, id=5), record(None, id=6)))
    assert [a.id for a in lms.enterprise_admins(customer.uuid)] == [6]  # no nested customer: trusted
    assert "staff" in caplog.text


def test_fields_are_lifted_from_the_nested_user_and_created_is_aware(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Acme")
    joined = NOW - timedelta(days=3, hours=5)
    learner = upstream.dataset.add_admin(
        customer.uuid, created=joined, email="grace@acme.example.com", username="grace", first_name="Grace",
        last_name="Hopper",
    )  # fmt: skip
    [admin] = list(lms.enterprise_admins(customer.uuid))
    assert admin.id == learner.id
    assert admin.user_id == learner.user.id
    assert admin.username == "grace"
    assert admin.email == "grace@acme.example.com"
    assert admin.active is True
    assert admin.user_is_active is True
    assert admin.created == joined
    assert admin.created.tzinfo is not None
    assert admin.created.utcoffset() == timedelta(0)
    assert admin.display_name == "Grace Hopper"
    assert "enterprise_admin" in admin.role_assignments


def test_inactive_links_and_deactivated_users_are_yielded_for_the_caller_to_judge(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Acme")
    upstream.dataset.add_admin(customer.uuid, active=False)
    upstream.dataset.add_admin(customer.uuid, is_active=False)
    admins = list(lms.enterprise_admins(customer.uuid))
    assert sorted((a.active, a.user_is_active) for a in admins) == [(False, True), (True, False)]


def test_linking_a_user_to_a_second_enterprise_makes_the_first_link_inactive_as_the_real_lms_does(
    upstream: Upstream, lms: LmsClient
):
    first = upstream.dataset.add_customer("First Co")
    second = upstream.dataset.add_customer("Second Co")
    older = upstream.dataset.add_admin(first.uuid, email="both@example.com")
    newer = upstream.dataset.add_admin(second.uuid, lms_user_id=older.user.id)
    [in_first] = list(lms.enterprise_admins(first.uuid))
    [in_second] = list(lms.enterprise_admins(second.uuid))
    assert (in_first.id, in_first.active) == (older.id, False)
    assert (in_second.id, in_second.active) == (newer.id, True)


def test_a_record_that_moves_between_pages_is_yielded_once(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Big Corp")
    learners = [upstream.dataset.add_admin(customer.uuid) for _ in range(150)]
    stream = lms.enterprise_admins(customer.uuid)
    first_page = [next(stream) for _ in range(100)]
    # modified while we page: ordered by -modified, it jumps to the top of page 1 and pushes the last record
    # of page 1 down to page 2, where it would be read a second time
    upstream.dataset.touch(learners[0])
    rest = list(stream)
    ids = [a.id for a in first_page + rest]
    assert len(learner_calls(upstream)) == 2
    assert len(ids) == len(set(ids)) == 149  # the moved record was read on page 1 before it moved


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"id": None}, "id"),
        ({"created": None}, "created"),
        ({"created": "2026-02-20T10:30:00"}, "created"),  # naive: not what DRF renders
        ({"user": None}, "user"),
        ({"user": {"username": "x", "is_active": True}, "user_id": None}, "user_id"),  # no LMS user id at all
        ({"role_assignments": "enterprise_admin"}, "role_assignments"),
    ],
)
def test_a_malformed_record_is_a_malformed_response(upstream: Upstream, lms: LmsClient, overrides, where):
    customer = upstream.dataset.add_customer("Broken")
    upstream.lms.fail_next(LEARNER_PATH, 200, body=page(record(customer.uuid, **overrides)))
    with pytest.raises(MalformedResponseError, match=where):
        list(lms.enterprise_admins(customer.uuid))
    assert len(learner_calls(upstream)) == 1  # never retried


def test_a_reply_without_results_is_malformed(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Broken")
    upstream.lms.fail_next(LEARNER_PATH, 200, body={"detail": "nope"})
    with pytest.raises(MalformedResponseError, match="results"):
        list(lms.enterprise_admins(customer.uuid))


def test_a_401_refreshes_the_token_once_for_this_endpoint_too(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Acme")
    upstream.dataset.add_admin(customer.uuid)
    assert len(list(lms.enterprise_admins(customer.uuid))) == 1
    upstream.lms.revoke_all_tokens()
    assert len(list(lms.enterprise_admins(customer.uuid))) == 1
    assert upstream.lms.request_count("/oauth2/access_token") == 2
    assert [r.status for r in learner_calls(upstream)] == [200, 401, 200]
    assert all(r.headers["authorization"].startswith("JWT ") for r in learner_calls(upstream))


def test_a_401_between_pages_refreshes_and_continues(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Big Corp")
    for _ in range(120):
        upstream.dataset.add_admin(customer.uuid)
    stream = lms.enterprise_admins(customer.uuid)
    head = [next(stream) for _ in range(100)]
    upstream.lms.revoke_all_tokens()
    rest = list(stream)
    assert len({a.id for a in head + rest}) == 120
    assert [r.status for r in learner_calls(upstream)] == [200, 401, 200]


def test_an_enterprise_without_admins_yields_nothing(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Empty")
    assert list(lms.enterprise_admins(customer.uuid)) == []
    assert len(learner_calls(upstream)) == 1


def test_a_bad_uuid_is_refused_before_any_request(upstream: Upstream, lms: LmsClient):
    with pytest.raises(ValueError, match="badly formed"):
        list(lms.enterprise_admins("not-a-uuid"))
    assert learner_calls(upstream) == []


def test_a_400_is_not_retried(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Acme")
    upstream.lms.fail_next(LEARNER_PATH, 400)
    with pytest.raises(BadRequestError):
        list(lms.enterprise_admins(customer.uuid))
    assert len(learner_calls(upstream)) == 1
