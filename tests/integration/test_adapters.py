"""The HTTP adapters against the local stand-ins: auth, pagination, retries and typed errors."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from conftest import BRAZE_KEY, NOW, Upstream
from license_notifications.adapters.braze import BrazeClient, Recipient, UserAlias
from license_notifications.adapters.http import HttpClient, RetryPolicy
from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.adapters.lms import LmsClient
from license_notifications.adapters.oauth import OAuthTokenProvider
from license_notifications.errors import (
    AmbiguousOutcomeError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from license_notifications.models import DEFAULT_SENDER_ALIAS


class RecordingSleep:
    """Stands in for time.sleep so retry tests are fast and can assert the waits chosen."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def fixed(secret: str):
    """A secret source that never changes (the app's reads Secrets Manager, with force_fetch after a 401)."""
    return lambda *, force_fetch=False: secret


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def http(service: str, sleep: RecordingSleep, *, attempts: int = 3, timeout: float = 2.0, **kwargs) -> HttpClient:
    return HttpClient(
        service, timeout=timeout, retry=RetryPolicy(max_attempts=attempts, max_wait=30), sleep=sleep, **kwargs
    )


@pytest.fixture
def oauth(upstream: Upstream, sleep: RecordingSleep) -> OAuthTokenProvider:
    return OAuthTokenProvider(
        http("lms-oauth", sleep), upstream.lms.url, upstream.lms.client_id, fixed(upstream.lms.client_secret)
    )


@pytest.fixture
def lm(upstream: Upstream, oauth: OAuthTokenProvider, sleep: RecordingSleep) -> LicenseManagerClient:
    return LicenseManagerClient(http("license-manager", sleep, auth=oauth), upstream.license_manager.url)


@pytest.fixture
def lms(upstream: Upstream, oauth: OAuthTokenProvider, sleep: RecordingSleep) -> LmsClient:
    return LmsClient(http("lms", sleep, auth=oauth), upstream.lms.url)


@pytest.fixture
def braze(upstream: Upstream, sleep: RecordingSleep) -> BrazeClient:
    client = http("braze", sleep, default_headers={"Authorization": f"Bearer {BRAZE_KEY}"})
    return BrazeClient(client, upstream.braze.url)


def enterprise_with_plan(up: Upstream, *, activated: int = 0, **plan_kwargs):
    customer = up.dataset.add_customer("Acme Learning", sender_alias="")
    plan = up.dataset.add_plan(customer.uuid, title="Acme 2026", expires_in_days=10, **plan_kwargs)
    if activated:
        up.dataset.add_licenses(plan.uuid, "activated", activated)
    return customer, plan


def token_requests(up: Upstream) -> int:
    return up.lms.request_count("/oauth2/access_token")


# -- OAuth ------------------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_sent_as_jwt(upstream: Upstream, lm: LicenseManagerClient):
    customer, _ = enterprise_with_plan(upstream)
    lm.enterprise_plans(customer.uuid)
    lm.customer_agreement(customer.uuid)
    assert token_requests(upstream) == 1
    api_calls = [r for r in upstream.license_manager.requests if r.path.startswith("/api/v1/")]
    assert len(api_calls) == 2
    assert all(r.headers["authorization"].startswith("JWT ") for r in api_calls)
    token_form = next(r.form for r in upstream.lms.requests if r.path.startswith("/oauth2"))
    assert token_form["grant_type"] == ["client_credentials"]
    assert token_form["token_type"] == ["jwt"]


def test_a_401_refreshes_the_token_once_and_retries_the_call(upstream: Upstream, lm: LicenseManagerClient):
    customer, _ = enterprise_with_plan(upstream)
    lm.enterprise_plans(customer.uuid)
    upstream.lms.revoke_all_tokens()
    assert len(lm.enterprise_plans(customer.uuid)) == 1
    assert token_requests(upstream) == 2
    statuses = [r.status for r in upstream.license_manager.requests]
    assert statuses == [200, 401, 200]


def test_a_second_401_after_refresh_is_an_authentication_error(upstream: Upstream, lm: LicenseManagerClient):
    customer, _ = enterprise_with_plan(upstream)
    upstream.license_manager.fail_next("/api/v1/subscriptions", 401, times=2)
    with pytest.raises(AuthenticationError):
        lm.enterprise_plans(customer.uuid)
    assert upstream.license_manager.request_count("/api/v1/subscriptions") == 2
    assert token_requests(upstream) == 2


def test_token_is_refreshed_shortly_before_it_expires(upstream: Upstream, sleep: RecordingSleep):
    clock = [1000.0]
    upstream.lms.expires_in = 100
    provider = OAuthTokenProvider(
        http("lms-oauth", sleep), upstream.lms.url, upstream.lms.client_id, fixed(upstream.lms.client_secret),
        refresh_margin=30, clock=lambda: clock[0],
    )  # fmt: skip
    first = provider.token()
    clock[0] += 60  # 40 s left: still more than the 30 s margin
    assert provider.token() == first
    clock[0] += 15  # 25 s left: inside the margin
    assert provider.token() != first
    assert token_requests(upstream) == 2


def test_wrong_client_secret_is_a_configuration_error(upstream: Upstream, sleep: RecordingSleep):
    provider = OAuthTokenProvider(http("lms-oauth", sleep), upstream.lms.url, upstream.lms.client_id, fixed("wrong"))
    with pytest.raises(ConfigurationError, match="OAUTH_CLIENT_ID/SECRET"):
        provider.token()


def test_token_reply_without_expires_in_is_malformed(upstream: Upstream, oauth: OAuthTokenProvider):
    upstream.lms.fail_next("/oauth2/access_token", 200, body={"access_token": "abc"})
    with pytest.raises(MalformedResponseError, match="expires_in"):
        oauth.token()


# -- license-manager ----------------------------------------------------------------------------------------


def test_licenses_stream_page_by_page_at_the_maximum_page_size(upstream: Upstream, lm: LicenseManagerClient):
    _, plan = enterprise_with_plan(upstream, activated=1203)
    upstream.dataset.add_licenses(plan.uuid, "assigned", 7)
    upstream.dataset.add_licenses(plan.uuid, "revoked", 3)
    pages = lm.license_pages(plan.uuid)
    first = next(pages)
    # Streaming: only the first page has been requested so far.
    assert upstream.license_manager.request_count(f"/api/v1/subscriptions/{plan.uuid}/licenses") == 1
    sizes = [len(first)] + [len(p) for p in pages]
    assert sizes == [500, 500, 203]
    calls = [r for r in upstream.license_manager.requests if "/licenses" in r.path]
    assert calls[0].query["page_size"] == ["500"]
    assert calls[0].query["status"] == ["activated"]


def test_every_activated_license_arrives_once(upstream: Upstream, lm: LicenseManagerClient):
    _, plan = enterprise_with_plan(upstream, activated=777)
    upstream.dataset.add_licenses(plan.uuid, "unassigned", 50)
    uuids = [lic.uuid for page in lm.license_pages(plan.uuid) for lic in page]
    assert len(uuids) == len(set(uuids)) == 777


def test_customer_agreement_carries_opt_out_and_active_plans(upstream: Upstream, lm: LicenseManagerClient):
    customer = upstream.dataset.add_customer("Quiet Corp", disable_expiration_notifications=True)
    upstream.dataset.add_plan(customer.uuid, title="active", expires_in_days=10)
    upstream.dataset.add_plan(customer.uuid, title="inactive", expires_in_days=10, is_active=False)
    agreement = lm.customer_agreement(customer.uuid)
    assert agreement is not None
    assert agreement.disable_expiration_notifications is True
    assert [p.title for p in agreement.subscriptions] == ["active"]
    assert agreement.subscriptions[0].expiration_date == NOW + timedelta(days=10)


def test_unknown_enterprise_has_no_agreement(lm: LicenseManagerClient):
    assert lm.customer_agreement("00000000-0000-4000-8000-000000000000") is None


def test_all_plans_feed_follows_next_across_enterprises(upstream: Upstream, lm: LicenseManagerClient):
    for i in range(3):
        customer = upstream.dataset.add_customer(f"Enterprise {i}")
        for j in range(45):
            upstream.dataset.add_plan(
                customer.uuid, title=f"plan {i}-{j}", expires_in_days=30 + j, is_active=j % 2 == 0
            )
    plans = list(lm.all_plans())
    assert len(plans) == 135
    assert upstream.license_manager.request_count("/api/v1/subscriptions") == 2  # 100 + 35


def test_malformed_json_is_not_retried(upstream: Upstream, lm: LicenseManagerClient):
    customer, _ = enterprise_with_plan(upstream)
    upstream.license_manager.malformed_next("/api/v1/subscriptions")
    with pytest.raises(MalformedResponseError, match="not JSON"):
        lm.enterprise_plans(customer.uuid)
    assert upstream.license_manager.request_count("/api/v1/subscriptions") == 1


def test_a_reply_missing_a_contract_field_is_malformed(upstream: Upstream, lm: LicenseManagerClient):
    customer, _ = enterprise_with_plan(upstream)
    upstream.license_manager.fail_next(
        "/api/v1/subscriptions", 200, body={"count": 1, "next": None, "previous": None, "results": [{"uuid": "x"}]}
    )
    with pytest.raises(MalformedResponseError, match="subscription plan"):
        lm.enterprise_plans(customer.uuid)


def test_5xx_is_retried_with_backoff_then_succeeds(upstream: Upstream, lm: LicenseManagerClient, sleep):
    customer, _ = enterprise_with_plan(upstream)
    upstream.license_manager.fail_next("/api/v1/subscriptions", 503, times=2)
    assert len(lm.enterprise_plans(customer.uuid)) == 1
    assert upstream.license_manager.request_count("/api/v1/subscriptions") == 3
    assert len(sleep.waits) == 2
    assert all(0 < w <= 30 for w in sleep.waits)


def test_5xx_past_the_attempt_bound_raises_server_error(upstream: Upstream, lm: LicenseManagerClient):
    customer, _ = enterprise_with_plan(upstream)
    upstream.license_manager.fail_next("/api/v1/subscriptions", 500, times=10)
    with pytest.raises(ServerError):
        lm.enterprise_plans(customer.uuid)
    assert upstream.license_manager.request_count("/api/v1/subscriptions") == 3


def test_400_is_not_retried(upstream: Upstream, lm: LicenseManagerClient, sleep):
    customer, _ = enterprise_with_plan(upstream)
    upstream.license_manager.fail_next("/api/v1/subscriptions", 400)
    with pytest.raises(BadRequestError):
        lm.enterprise_plans(customer.uuid)
    assert upstream.license_manager.request_count("/api/v1/subscriptions") == 1
    assert sleep.waits == []


def test_429_with_retry_after_waits_that_long(upstream: Upstream, lm: LicenseManagerClient, sleep):
    customer, _ = enterprise_with_plan(upstream)
    upstream.license_manager.fail_next("/api/v1/subscriptions", 429, headers={"Retry-After": "7"})
    lm.enterprise_plans(customer.uuid)
    assert len(sleep.waits) == 1
    assert 6.5 <= sleep.waits[0] <= 7.5


def test_timeout_is_retried(upstream: Upstream, oauth: OAuthTokenProvider, sleep):
    customer, _ = enterprise_with_plan(upstream)
    client = LicenseManagerClient(http("license-manager", sleep, auth=oauth, timeout=0.3), upstream.license_manager.url)
    upstream.license_manager.delay_next("/api/v1/subscriptions", 1.0)
    assert len(client.enterprise_plans(customer.uuid)) == 1
    assert len(sleep.waits) == 1


def test_timeouts_past_the_bound_raise_upstream_timeout(upstream: Upstream, oauth: OAuthTokenProvider, sleep):
    customer, _ = enterprise_with_plan(upstream)
    client = LicenseManagerClient(http("license-manager", sleep, auth=oauth, timeout=0.2), upstream.license_manager.url)
    upstream.license_manager.delay_next("/api/v1/subscriptions", 0.6, times=3)
    with pytest.raises(UpstreamTimeout):
        client.enterprise_plans(customer.uuid)


def test_connection_refused_is_retried_then_raised(sleep):
    client = LicenseManagerClient(http("license-manager", sleep), "http://127.0.0.1:9")
    with pytest.raises(UpstreamConnectionError):
        client.enterprise_plans("00000000-0000-4000-8000-000000000000")
    assert len(sleep.waits) == 2


# -- LMS ----------------------------------------------------------------------------------------------------


def test_enterprise_customer_falls_back_to_default_sender_alias(upstream: Upstream, lms: LmsClient):
    customer, _ = enterprise_with_plan(upstream)
    fetched = lms.enterprise_customer(customer.uuid)
    assert fetched.name == "Acme Learning"
    assert fetched.slug == customer.slug
    assert fetched.sender_alias_or_default == DEFAULT_SENDER_ALIAS


def test_inactive_enterprise_customer_is_not_found(upstream: Upstream, lms: LmsClient):
    customer = upstream.dataset.add_customer("Gone Inc", active=False)
    with pytest.raises(NotFoundError):
        lms.enterprise_customer(customer.uuid)
    assert upstream.lms.request_count(f"/enterprise/api/v1/enterprise-customer/{customer.uuid}") == 1


# -- Braze --------------------------------------------------------------------------------------------------


def alias_recipient(email: str, **props) -> Recipient:
    return Recipient(user_alias=UserAlias(email), attributes={"email": email}, trigger_properties=props)


def test_aliases_are_created_fifty_per_request(upstream: Upstream, braze: BrazeClient):
    braze.create_aliases([UserAlias(f"learner{i}@example.com") for i in range(120)])
    assert upstream.braze.request_count("/users/alias/new") == 3
    assert len(upstream.braze.aliases) == 120
    assert ("Enterprise", "learner0@example.com") in upstream.braze.aliases


def test_trigger_returns_the_dispatch_id_and_sends_what_braze_expects(upstream: Upstream, braze: BrazeClient):
    result = braze.trigger_campaign("camp", [alias_recipient("a@example.com", license_uuid="L1")])
    sent = upstream.braze.outbox[-1]
    assert sent["dispatch_id"] == result.dispatch_id
    assert result.errors == ()
    recipient = sent["recipients"][0]
    assert recipient["user_alias"] == {"alias_name": "a@example.com", "alias_label": "Enterprise"}
    assert recipient["send_to_existing_only"] is False
    assert recipient["attributes"] == {"email": "a@example.com"}
    assert upstream.braze.requests[-1].headers["authorization"] == f"Bearer {BRAZE_KEY}"


def test_more_than_fifty_recipients_are_refused_before_any_request(upstream: Upstream, braze: BrazeClient):
    with pytest.raises(ValueError, match="1 to 50"):
        braze.trigger_campaign("camp", [alias_recipient(f"{i}@example.com") for i in range(51)])
    assert upstream.braze.request_count() == 0


def test_429_waits_until_x_ratelimit_reset(upstream: Upstream, braze: BrazeClient, sleep):
    upstream.braze.rate_limit_next("/campaigns/trigger/send", reset_in_seconds=4)
    before = time.time()
    braze.trigger_campaign("camp", [alias_recipient("a@example.com")])
    assert len(sleep.waits) == 1
    assert 3.0 <= sleep.waits[0] <= 5.5 + (time.time() - before)
    assert len(upstream.braze.outbox) == 1


def test_429_past_the_attempt_bound_raises_rate_limited(upstream: Upstream, braze: BrazeClient):
    upstream.braze.rate_limit_next("/campaigns/trigger/send", reset_in_seconds=1, times=5)
    with pytest.raises(RateLimitedError) as info:
        braze.trigger_campaign("camp", [alias_recipient("a@example.com")])
    assert info.value.reset_at is not None
    assert upstream.braze.outbox == []


def test_braze_5xx_is_retried(upstream: Upstream, braze: BrazeClient):
    upstream.braze.fail_next("/campaigns/trigger/send", 502)
    braze.trigger_campaign("camp", [alias_recipient("a@example.com")])
    assert upstream.braze.request_count("/campaigns/trigger/send") == 2
    assert len(upstream.braze.outbox) == 1


@pytest.mark.parametrize(
    ("status", "error"), [(400, BadRequestError), (401, AuthenticationError), (404, NotFoundError)]
)
def test_braze_4xx_is_never_retried(upstream: Upstream, braze: BrazeClient, status, error, sleep):
    upstream.braze.fail_next("/campaigns/trigger/send", status)
    with pytest.raises(error):
        braze.trigger_campaign("camp", [alias_recipient("a@example.com")])
    assert upstream.braze.request_count("/campaigns/trigger/send") == 1
    assert sleep.waits == []


def test_wrong_braze_key_is_an_authentication_error(upstream: Upstream, sleep):
    client = BrazeClient(http("braze", sleep, default_headers={"Authorization": "Bearer nope"}), upstream.braze.url)
    with pytest.raises(AuthenticationError):
        client.create_aliases([UserAlias("a@example.com")])


def test_queued_reply_during_maintenance_counts_as_accepted(upstream: Upstream, braze: BrazeClient):
    upstream.braze.queue_next()
    assert braze.trigger_campaign("camp", [alias_recipient("a@example.com")])


def test_any_2xx_counts_as_accepted_even_without_a_dispatch_id(upstream: Upstream, braze: BrazeClient):
    """Braze accepted the send: an odd reply body must never make the caller release and send it again."""
    upstream.braze.fail_next("/campaigns/trigger/send", 201, body={"message": "success"})
    assert braze.trigger_campaign("camp", [alias_recipient("a@example.com")]).dispatch_id == (
        "accepted-without-dispatch-id"
    )
    upstream.braze.malformed_next("/campaigns/trigger/send")
    assert braze.trigger_campaign("camp", [alias_recipient("a@example.com")]).dispatch_id == (
        "accepted-without-dispatch-id"
    )
    assert upstream.braze.request_count("/campaigns/trigger/send") == 2  # neither was retried


def test_non_fatal_errors_come_back_with_the_dispatch_id(upstream: Upstream, braze: BrazeClient):
    upstream.braze.minor_error("b@example.com")
    result = braze.trigger_campaign("camp", [alias_recipient("a@example.com"), alias_recipient("b@example.com")])
    assert result.dispatch_id == upstream.braze.outbox[-1]["dispatch_id"]
    assert result.errors == ("recipients[1] (b@example.com): user is unsubscribed",)


def test_a_send_without_reply_is_ambiguous_and_not_retried(upstream: Upstream, sleep):
    """A read timeout on /campaigns/trigger/send: Braze may have accepted it, so retrying could send twice."""
    client = BrazeClient(
        http("braze", sleep, timeout=0.3, default_headers={"Authorization": f"Bearer {BRAZE_KEY}"}), upstream.braze.url
    )
    upstream.braze.delay_next("/campaigns/trigger/send", 1.0)
    with pytest.raises(AmbiguousOutcomeError):
        client.trigger_campaign("camp", [alias_recipient("a@example.com")])
    time.sleep(1.0)  # the stand-in logs the request once its delayed reply is done
    assert upstream.braze.request_count("/campaigns/trigger/send") == 1
    assert len(upstream.braze.outbox) == 1  # Braze did accept it: exactly why it must not be retried
    assert sleep.waits == []


def test_alias_creation_is_idempotent_so_its_timeouts_are_retried(upstream: Upstream, sleep):
    client = BrazeClient(
        http("braze", sleep, timeout=0.3, default_headers={"Authorization": f"Bearer {BRAZE_KEY}"}), upstream.braze.url
    )
    upstream.braze.delay_next("/users/alias/new", 1.0)
    client.create_aliases([UserAlias("a@example.com")])
    assert len(sleep.waits) == 1


def test_a_send_that_never_connected_is_retried(sleep):
    client = BrazeClient(http("braze", sleep), "http://127.0.0.1:9")
    with pytest.raises(UpstreamConnectionError):
        client.trigger_campaign("camp", [alias_recipient("a@example.com")])
    assert len(sleep.waits) == 2  # refused: nothing was sent, so trying again is safe


def test_next_links_are_followed_on_the_configured_host_only(upstream: Upstream, lm: LicenseManagerClient):
    """A proxy-written http:// or foreign-host `next` keeps its path and query but goes to our host."""
    customer, _ = enterprise_with_plan(upstream)
    upstream.license_manager.fail_next(
        "/api/v1/subscriptions",
        200,
        body={
            "count": 2,
            "next": f"http://evil.example.com/api/v1/subscriptions/?enterprise_customer_uuid={customer.uuid}&page=1",
            "previous": None,
            "results": [],
        },
    )
    assert len(lm.enterprise_plans(customer.uuid)) == 1
    assert upstream.license_manager.request_count("/api/v1/subscriptions") == 2


def test_a_pagination_loop_is_an_error(upstream: Upstream, lm: LicenseManagerClient):
    customer, _ = enterprise_with_plan(upstream)
    looping = {"count": 9, "next": f"{upstream.license_manager.url}/api/v1/subscriptions/?page=2", "results": []}
    upstream.license_manager.fail_next("/api/v1/subscriptions", 200, body=looping, times=3)
    with pytest.raises(MalformedResponseError, match="loops"):
        lm.enterprise_plans(customer.uuid)


def test_emails_in_upstream_error_bodies_are_masked(upstream: Upstream, braze: BrazeClient):
    upstream.braze.fail_next("/campaigns/trigger/send", 400, body={"message": "bad alias jane.doe@example.com"})
    with pytest.raises(BadRequestError) as info:
        braze.trigger_campaign("camp", [alias_recipient("jane.doe@example.com")])
    assert "jane.doe@example.com" not in str(info.value)
    assert "j***@example.com" in str(info.value)
