"""The composition root: builds the adapters and jobs from :class:`~license_notifications.config.Settings`
(one place, used by the Lambda handlers, the CLI and the demo). Only this module, ``lambda_runtime`` and
``cli`` know every piece; the jobs take what they use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from license_notifications.adapters.braze import BrazeClient, SendPacer
from license_notifications.adapters.http import HttpClient, RetryPolicy
from license_notifications.adapters.ledger import MARK_WORST_CASE_SECONDS, Ledger
from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.adapters.lms import LmsClient
from license_notifications.adapters.notifier import ErrorNotifier
from license_notifications.adapters.oauth import OAuthTokenProvider
from license_notifications.adapters.queue import WorkQueue
from license_notifications.config import Settings
from license_notifications.events import Job
from license_notifications.jobs.enterprise_run import EnterpriseJob
from license_notifications.jobs.expiration_reminders import ExpirationReminders
from license_notifications.jobs.license_emails import LicenseEmailJob
from license_notifications.jobs.plan_expiration_emails import PlanExpirationEmails
from license_notifications.jobs.utilization import UtilizationNotifications
from license_notifications.observability import EmailRenderer
from license_notifications.rules.utilization import NotificationType

WORKER_TIME_SLACK_SECONDS = 5.0


@dataclass
class Services:
    settings: Settings

    @property
    def time_margin_seconds(self) -> float:
        """How long before its timeout the worker starts no new Braze request or license page: one request
        attempt (``HTTP_TIMEOUT_SECONDS`` bounds an attempt's total time, and retries stop at the deadline),
        then the ledger record of what Braze accepted with its own bounded retries, plus a little slack. A
        timeout can then never fall between Braze accepting a batch and the ledger recording it."""
        return self.settings.http_timeout_seconds + MARK_WORST_CASE_SECONDS + WORKER_TIME_SLACK_SECONDS

    @cached_property
    def retry(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(max_attempts=s.http_max_attempts, max_wait=s.http_max_wait_seconds)

    def _http(self, service: str, **kwargs) -> HttpClient:
        return HttpClient(service, timeout=self.settings.http_timeout_seconds, retry=self.retry, **kwargs)

    @cached_property
    def oauth(self) -> OAuthTokenProvider:
        s = self.settings
        return OAuthTokenProvider(
            self._http("lms-oauth"), s.oauth_url, s.oauth_client_id, s.resolve_oauth_client_secret
        )

    @cached_property
    def license_manager(self) -> LicenseManagerClient:
        return LicenseManagerClient(self._http("license-manager", auth=self.oauth), self.settings.license_manager_url)

    @cached_property
    def lms(self) -> LmsClient:
        return LmsClient(self._http("lms", auth=self.oauth), self.settings.lms_url)

    @cached_property
    def braze(self) -> BrazeClient:
        resolve = self.settings.resolve_braze_api_key
        resolve()  # fail fast (a configuration error) if the key cannot be read

        def bearer(*, force_refresh: bool = False) -> str:
            # Read through Powertools' cache on every request: a rotated key is picked up within its max age,
            # and a 401 reads it afresh once.
            return f"Bearer {resolve(force_fetch=force_refresh)}"

        pacer = SendPacer(self.settings.braze_send_interval_seconds)
        return BrazeClient(self._http("braze", auth=bearer), self.settings.braze_api_url, pacer=pacer)

    @cached_property
    def ledger(self) -> Ledger:
        self.settings.require("ledger_table_name")
        return Ledger(self.settings.ledger_table_name, lease_seconds=self.settings.claim_lease_seconds)

    @cached_property
    def emails(self) -> EmailRenderer:
        return EmailRenderer(full=self.settings.log_full_emails)

    def job_for(self, job: Job) -> EnterpriseJob:
        """The job a work message names, wired to the adapters (its settings checked first)."""
        jobs = {
            Job.EXPIRATION_REMINDERS: self.expiration_reminders,
            Job.UTILIZATION: self.utilization,
            Job.PLAN_EXPIRATION_EMAILS: self.plan_expiration_emails,
        }
        return jobs[job]()

    def expiration_reminders(self) -> ExpirationReminders:
        return self._learner_job(ExpirationReminders, "expiration_reminder_campaign")

    def plan_expiration_emails(self) -> PlanExpirationEmails:
        return self._learner_job(PlanExpirationEmails, "plan_expiration_campaign")

    def _learner_job[J: LicenseEmailJob](self, job_class: type[J], campaign_setting: str) -> J:
        self.settings.require_job(job_class.name)
        return job_class(
            license_manager=self.license_manager,
            lms=self.lms,
            braze=self.braze,
            ledger=self.ledger,
            campaign_id=getattr(self.settings, campaign_setting),
            emails=self.emails,
        )

    def utilization(self) -> UtilizationNotifications:
        s = self.settings
        s.require_job(Job.UTILIZATION)
        return UtilizationNotifications(
            license_manager=self.license_manager,
            lms=self.lms,
            braze=self.braze,
            ledger=self.ledger,
            campaigns={
                NotificationType.LIMITED_ALLOCATIONS_REMAINING: s.limited_allocations_campaign,
                NotificationType.NO_ALLOCATIONS_REMAINING: s.no_allocations_campaign,
                NotificationType.PERIODIC_INFORMATIONAL: s.weekly_utilization_campaign,
            },
            admin_portal_base_url=s.admin_portal_base_url,
            emails=self.emails,
        )

    @cached_property
    def notifier(self) -> ErrorNotifier | None:
        """Error notifications go to SNS when ERROR_TOPIC_ARN is set (always, in the deployed stack)."""
        if not self.settings.error_topic_arn:
            return None
        import boto3

        return ErrorNotifier(boto3.client("sns"), self.settings.error_topic_arn)

    @cached_property
    def queue(self) -> WorkQueue:
        import boto3

        self.settings.require("work_queue_url")
        return WorkQueue(boto3.client("sqs"), self.settings.work_queue_url)
