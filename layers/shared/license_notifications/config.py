"""The one configuration model: every setting the service reads, validated once at start.

Settings come from environment variables (each listed in docs/operations.md#configuration). A missing or
malformed setting raises :class:`ConfigurationError` whose message names the variable, before any work
starts. Secrets are given either in clear (local runs: ``OAUTH_CLIENT_SECRET``, ``BRAZE_API_KEY``) or as a
Secrets Manager ARN (Lambda: ``*_ARN``), resolved through Powertools Parameters (cached, ``max_age``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from license_notifications.errors import ConfigurationError
from license_notifications.events import Job
from license_notifications.observability import register_secret


def _http_url(value: str) -> str:
    value = value.strip()
    if not value.startswith(("http://", "https://")) or len(value) < len("http://x"):
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]
NonEmpty = Annotated[str, Field(min_length=1)]
OptionalStr = Annotated[str | None, AfterValidator(lambda v: (v or "").strip() or None)]


# The settings each job cannot run without, by job name (checked before anything is enqueued or sent).
JOB_SETTINGS: dict[Job, tuple[str, ...]] = {
    Job.EXPIRATION_REMINDERS: ("expiration_reminder_campaign",),
    Job.PLAN_EXPIRATION_EMAILS: ("plan_expiration_campaign",),
    Job.UTILIZATION: (
        "limited_allocations_campaign",
        "no_allocations_campaign",
        "weekly_utilization_campaign",
        "admin_portal_base_url",
    ),
}


class Settings(BaseModel):
    """Service settings. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    license_manager_url: HttpUrl = Field(alias="LICENSE_MANAGER_URL")
    lms_url: HttpUrl = Field(alias="LMS_URL")
    oauth_base_url: HttpUrl | None = Field(default=None, alias="OAUTH_BASE_URL")
    oauth_client_id: NonEmpty = Field(alias="OAUTH_CLIENT_ID")
    oauth_client_secret: SecretStr | None = Field(default=None, alias="OAUTH_CLIENT_SECRET")
    oauth_client_secret_arn: OptionalStr = Field(default=None, alias="OAUTH_CLIENT_SECRET_ARN")
    braze_api_url: HttpUrl = Field(alias="BRAZE_API_URL")
    braze_api_key: SecretStr | None = Field(default=None, alias="BRAZE_API_KEY")
    braze_api_key_secret_arn: OptionalStr = Field(default=None, alias="BRAZE_API_KEY_SECRET_ARN")
    expiration_reminder_campaign: OptionalStr = Field(default=None, alias="BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN")
    plan_expiration_campaign: OptionalStr = Field(default=None, alias="BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN")
    limited_allocations_campaign: OptionalStr = Field(default=None, alias="LIMITED_ALLOCATIONS_REMAINING_CAMPAIGN")
    no_allocations_campaign: OptionalStr = Field(default=None, alias="NO_ALLOCATIONS_REMAINING_CAMPAIGN")
    weekly_utilization_campaign: OptionalStr = Field(default=None, alias="WEEKLY_LICENSE_UTILIZATION_CAMPAIGN")
    admin_portal_base_url: Annotated[HttpUrl | None, Field(alias="ENTERPRISE_ADMIN_PORTAL_BASE_URL")] = None
    ledger_table_name: OptionalStr = Field(default=None, alias="LEDGER_TABLE_NAME")
    work_queue_url: OptionalStr = Field(default=None, alias="WORK_QUEUE_URL")
    error_topic_arn: OptionalStr = Field(default=None, alias="ERROR_TOPIC_ARN")
    log_full_emails: bool = Field(default=False, alias="LOG_FULL_EMAILS")
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=120, alias="HTTP_TIMEOUT_SECONDS")
    http_max_attempts: int = Field(default=5, ge=1, le=10, alias="HTTP_MAX_ATTEMPTS")
    http_max_wait_seconds: float = Field(default=60.0, ge=0, le=900, alias="HTTP_MAX_WAIT_SECONDS")
    claim_lease_seconds: int = Field(default=1200, ge=10, le=43200, alias="CLAIM_LEASE_SECONDS")
    # This deployment's share of the Braze workspace's send budget (250,000/hour for every system of the
    # workspace), split across the workers that may run at once (the SQS event source's maximum concurrency).
    braze_send_requests_per_hour: int = Field(default=100_000, ge=1, le=250_000, alias="BRAZE_SEND_REQUESTS_PER_HOUR")
    worker_max_concurrency: int = Field(default=1, ge=1, le=1000, alias="WORKER_MAX_CONCURRENCY")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        # CloudFormation cannot omit an env var conditionally without !If; an empty value means "unset".
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}
        return data

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> Settings:
        if self.oauth_client_secret is None and self.oauth_client_secret_arn is None:
            raise ValueError("OAUTH_CLIENT_SECRET or OAUTH_CLIENT_SECRET_ARN must be set")
        if self.braze_api_key is None and self.braze_api_key_secret_arn is None:
            raise ValueError("BRAZE_API_KEY or BRAZE_API_KEY_SECRET_ARN must be set")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # A claim must outlive the slowest batch (alias + trigger, each with every retry), or a live worker
        # could lose it mid-send and another could send the same batch.
        one_call = (
            self.http_max_attempts * self.http_timeout_seconds
            + (self.http_max_attempts - 1) * self.http_max_wait_seconds
        )
        if self.claim_lease_seconds <= 2 * one_call:
            raise ValueError(
                f"CLAIM_LEASE_SECONDS ({self.claim_lease_seconds}) must exceed the slowest Braze batch, "
                f"{2 * one_call:.0f} s with HTTP_MAX_ATTEMPTS, HTTP_TIMEOUT_SECONDS and HTTP_MAX_WAIT_SECONDS as set"
            )
        return self

    @property
    def braze_send_interval_seconds(self) -> float:
        """The least time between two trigger requests of one worker, so that every worker at once stays
        within ``BRAZE_SEND_REQUESTS_PER_HOUR``."""
        return 3600 * self.worker_max_concurrency / self.braze_send_requests_per_hour

    @property
    def oauth_url(self) -> str:
        return self.oauth_base_url or self.lms_url

    def require(self, *names: str) -> None:
        """Fail with a message naming each unset setting a job needs (by environment variable name)."""
        missing = [type(self).model_fields[name].alias or name for name in names if getattr(self, name) in (None, "")]
        if missing:
            raise ConfigurationError(f"missing setting(s): {', '.join(missing)}")

    def require_job(self, job: Job) -> None:
        """Fail with a message naming each unset setting ``job`` needs (see ``JOB_SETTINGS``)."""
        self.require(*JOB_SETTINGS[job])

    def resolve_oauth_client_secret(self, *, force_fetch: bool = False) -> str:
        return _secret(self.oauth_client_secret, self.oauth_client_secret_arn, "OAUTH_CLIENT_SECRET_ARN", force_fetch)

    def resolve_braze_api_key(self, *, force_fetch: bool = False) -> str:
        return _secret(self.braze_api_key, self.braze_api_key_secret_arn, "BRAZE_API_KEY_SECRET_ARN", force_fetch)


def _secret(clear: SecretStr | None, arn: str | None, arn_setting: str, force_fetch: bool) -> str:
    """The secret in clear, or read from Secrets Manager through Powertools Parameters, which caches it for
    ``POWERTOOLS_PARAMETERS_MAX_AGE`` seconds (``force_fetch`` skips the cache: after a rotation). Either way it
    is registered for redaction from the logs (observability.register_secret)."""
    if clear is not None:
        value = clear.get_secret_value()
        register_secret(value)
        return value
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(arn, force_fetch=force_fetch)
    except parameters.exceptions.GetParameterError as exc:
        raise ConfigurationError(f"{arn_setting}: cannot read secret {arn!r}: {exc}") from exc
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{arn_setting}: secret {arn!r} is empty")
    register_secret(value.strip())
    return value.strip()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from the environment, or raise a ConfigurationError naming the culprits."""
    env = os.environ if environ is None else environ
    wanted = {f.alias for f in Settings.model_fields.values() if f.alias}
    try:
        return Settings.model_validate({k: v for k, v in env.items() if k in wanted})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"{where}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
