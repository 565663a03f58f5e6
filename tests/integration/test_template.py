"""template.yaml and samconfig.toml: the deployment contract, checked on the parsed template (no AWS), then
the resources created from the template in moto (devstack.aws), including DynamoDB's per-item atomicity."""

from __future__ import annotations

import json
import re
import threading
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from devstack.aws import (
    TEMPLATE_PATH,
    MotoStack,
    StackResources,
    TemplateTranslationError,
    _SerialiseDynamoDB,
    create_resources_from_template,
    load_template,
    resolve_intrinsics,
)

ROOT = TEMPLATE_PATH.parent

# Every setting the functions read (one config model); all must reach the worker.
FUNCTION_ENV = {
    "LICENSE_MANAGER_URL",
    "LMS_URL",
    "OAUTH_BASE_URL",
    "OAUTH_CLIENT_ID",
    "OAUTH_CLIENT_SECRET_ARN",
    "BRAZE_API_URL",
    "BRAZE_API_KEY_SECRET_ARN",
    "BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN",
    "LIMITED_ALLOCATIONS_REMAINING_CAMPAIGN",
    "NO_ALLOCATIONS_REMAINING_CAMPAIGN",
    "WEEKLY_LICENSE_UTILIZATION_CAMPAIGN",
    "BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN",
    "ENTERPRISE_ADMIN_PORTAL_BASE_URL",
    "LEDGER_TABLE_NAME",
    "WORK_QUEUE_URL",
    "ERROR_TOPIC_ARN",
    "LOG_FULL_EMAILS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_PARAMETERS_MAX_AGE",
}
PARAMETERS = {
    "LicenseManagerUrl",
    "LmsUrl",
    "OAuthBaseUrl",
    "OAuthClientId",
    "OAuthClientSecretArn",
    "BrazeApiUrl",
    "BrazeApiKeySecretArn",
    "BrazeLicenseExpirationReminderCampaign",
    "LimitedAllocationsRemainingCampaign",
    "NoAllocationsRemainingCampaign",
    "WeeklyLicenseUtilizationCampaign",
    "BrazeSubscriptionPlanExpirationCampaign",
    "EnterpriseAdminPortalBaseUrl",
    "EnterpriseCustomerUuids",
    "DaysBeforeExpiration",
    "ReminderScheduleExpression",
    "DaysSinceExpiration",
    "PlanExpirationScheduleExpression",
    "UtilizationScheduleExpression",
    "ScheduleState",
    "WorkerMaximumConcurrency",
    "WorkerBatchSize",
    "LogLevel",
    "AlarmEmail",
    "LogFullEmails",
}
# Exactly what adapters/ledger.py calls: get, batch_get, update (claims and marks), delete (releases).
LEDGER_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
}
SCHEDULE_KEYS = {
    "license_expiration_reminders": {
        "job",
        "enterprise_customer_uuids",
        "days_before_expiration",
        "dry_run",
        "as_of",
    },
    "license_utilization": {"job", "enterprise_customer_uuids", "dry_run", "as_of"},
    "subscription_plan_expiration_emails": {
        "job",
        "enterprise_customer_uuids",
        "days_since_expiration",
        "dry_run",
        "as_of",
    },
}
SAMPLE_UUIDS = "12345678-1234-1234-1234-123456789012,87654321-4321-4321-4321-210987654321"


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Serverless functions with Globals.Function merged in (as SAM does, env variables merged)."""
    merged = {}
    globals_ = template.get("Globals", {}).get("Function", {})
    for name, resource in resources_of(template, "AWS::Serverless::Function").items():
        props = {**globals_, **resource["Properties"]}
        props["Environment"] = {
            "Variables": {
                **globals_.get("Environment", {}).get("Variables", {}),
                **resource["Properties"].get("Environment", {}).get("Variables", {}),
            }
        }
        merged[name] = props
    return merged


def getatt(logical_id: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, attribute]}


def sqs_events(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["Properties"] for e in function.get("Events", {}).values() if e["Type"] == "SQS"]


def schedules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{fn}.{name}": event["Properties"]
        for fn, props in functions(template).items()
        for name, event in props.get("Events", {}).items()
        if event["Type"] == "ScheduleV2"
    }


def role_statements(template: dict[str, Any], function: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of the function's execution role (an explicit AWS::IAM::Role of the template)."""
    role = function["Role"]
    assert set(role) == {"Fn::GetAtt"}, role
    assert role["Fn::GetAtt"][1] == "Arn", role
    resource = template["Resources"][role["Fn::GetAtt"][0]]
    assert resource["Type"] == "AWS::IAM::Role"
    return [s for p in resource["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parameter_default(template: dict[str, Any], ref: Any) -> Any:
    assert isinstance(ref, dict), f"expected a !Ref to a parameter, got {ref!r}"
    assert set(ref) == {"Ref"}, ref
    return template["Parameters"][ref["Ref"]]["Default"]


# --------------------------------------------------------------------------------------------- queue/worker


def test_worker_visibility_timeout_is_at_least_six_times_the_worker_timeout(template):
    worker = functions(template)["WorkerFunction"]
    assert worker["Timeout"] == 900
    (event,) = sqs_events(worker)
    assert event["Queue"] == getatt("WorkQueue", "Arn")
    queue = template["Resources"]["WorkQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]


def test_worker_reports_batch_item_failures_with_bounded_concurrency(template):
    worker = functions(template)["WorkerFunction"]
    (event,) = sqs_events(worker)
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 2 <= parameter_default(template, event["ScalingConfig"]["MaximumConcurrency"]) <= 1000
    assert parameter_default(template, event["BatchSize"]) == 5
    assert worker["MemorySize"] == 512
    # Concurrency is bounded by the event source, not by reserving (and starving) account concurrency.
    assert "ReservedConcurrentExecutions" not in worker


def test_work_queue_redrives_to_its_dead_letter_queue(template):
    queues = resources_of(template, "AWS::SQS::Queue")
    redrive = queues["WorkQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {"deadLetterTargetArn": getatt("WorkDeadLetterQueue", "Arn"), "maxReceiveCount": 5}
    assert queues["WorkDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    # A message keeps its first-enqueue timestamp in the DLQ: the DLQ must keep messages longer.
    assert (
        queues["WorkDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
        > queues["WorkQueue"]["Properties"]["MessageRetentionPeriod"]
    )
    for name, queue in queues.items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, name


def test_ledger_table_is_on_demand_encrypted_recoverable_with_ttl_and_retained(template):
    (name,) = resources_of(template, "AWS::DynamoDB::Table")
    assert name == "LedgerTable"
    table = template["Resources"][name]
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


LEDGER_INDEXES = {
    # a report per enterprise, in time order (sent_at serialises as 2026-03-01T09:00:00.000000+0000)
    "by-enterprise": [("enterprise_customer_uuid", "HASH"), ("sent_at", "RANGE")],
    "by-run": [("run_id", "HASH"), ("pk", "RANGE")],  # what one run sent
}


def ledger_table(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    return resolve_intrinsics(template["Resources"]["LedgerTable"]["Properties"], template, parameters=parameters)


def test_ledger_indexes_answer_reports_without_a_scan(template):
    indexes = {
        index["IndexName"]: [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]]
        for index in ledger_table(template)["GlobalSecondaryIndexes"]
    }
    assert indexes == LEDGER_INDEXES
    for value in ("ENABLED", "DISABLED"):
        props = ledger_table(template, LedgerRunIndex=value)
        keys = [*props["KeySchema"], *(k for i in props.get("GlobalSecondaryIndexes", []) for k in i["KeySchema"])]
        # DynamoDB wants exactly the key attributes defined, each with the type the ledger model writes.
        definitions = {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]}
        assert len(definitions) == len(props["AttributeDefinitions"])
        assert set(definitions) == {k["AttributeName"] for k in keys}, value
        # the ledger writes every key attribute as a string (pk, enterprise uuid, run id, formatted sent_at);
        # test_ledger_indexes_created_in_moto_find_sent_records checks that on records the ledger wrote
        assert set(definitions.values()) == {"S"}, value
        for index in props.get("GlobalSecondaryIndexes", []):
            assert index["Projection"] == {"ProjectionType": "ALL"}
            assert "ProvisionedThroughput" not in index  # on demand, like the table
    # CloudFormation adds one global secondary index per stack update: LedgerRunIndex=DISABLED is the
    # intermediate step from a ledger without indexes (docs/operations.md, "Upgrading a stack whose ledger has no indexes yet").
    disabled = ledger_table(template, LedgerRunIndex="DISABLED").get("GlobalSecondaryIndexes", [])
    assert len(disabled) == 1
    assert len(indexes) - len(disabled) == 1
    assert parameter_default(template, {"Ref": "LedgerRunIndex"}) == "ENABLED"


def test_the_ledger_model_is_the_template_table(template):
    """adapters.ledger.LedgerItem (pynamodb) and template.yaml's LedgerTable describe one table: key schema,
    attribute types, indexes (keys, projections), TTL; and each index key has the model attribute's type."""
    from license_notifications.adapters.ledger import LedgerItem

    props = ledger_table(template)  # LedgerRunIndex=ENABLED, the default: both indexes
    schema = LedgerItem._get_schema()

    def keys(key_schema: list[dict[str, str]]) -> set[tuple[str, str]]:
        return {(k["AttributeName"], k["KeyType"]) for k in key_schema}

    def types(definitions: list[dict[str, str]]) -> dict[str, str]:
        return {d["AttributeName"]: d["AttributeType"] for d in definitions}

    assert keys(schema["key_schema"]) == keys(props["KeySchema"])
    assert types(schema["attribute_definitions"]) == types(props["AttributeDefinitions"])
    model_indexes = {
        i["index_name"]: (keys(i["key_schema"]), i["projection"]) for i in schema["global_secondary_indexes"]
    }
    template_indexes = {
        i["IndexName"]: (keys(i["KeySchema"]), i["Projection"]) for i in props["GlobalSecondaryIndexes"]
    }
    assert model_indexes == template_indexes
    assert schema["local_secondary_indexes"] == []
    assert "LocalSecondaryIndexes" not in props
    assert LedgerItem._ttl_attribute().attr_name == props["TimeToLiveSpecification"]["AttributeName"]
    assert props["TimeToLiveSpecification"]["Enabled"] is True
    model_attributes = LedgerItem.get_attributes()
    for index in (LedgerItem.by_enterprise, LedgerItem.by_run):
        for name, attribute in index.Meta.attributes.items():
            assert type(attribute) is type(model_attributes[name]), (index.Meta.index_name, name)


# --------------------------------------------------------------------------------------------- functions


def test_functions_and_layer_are_python313_on_arm64(template):
    fns = functions(template)
    assert set(fns) == {"DispatcherFunction", "WorkerFunction"}
    for name, fn in fns.items():
        assert fn["Runtime"] == "python3.13", name
        assert fn["Architectures"] == ["arm64"], name
        assert fn["Tracing"] == "Active", name
        assert {"Ref": "SharedLayer"} in fn["Layers"], name
        code = ROOT / fn["CodeUri"]
        assert (code / "requirements.txt").is_file(), name
        module, _, handler = fn["Handler"].partition(".")
        assert handler == "lambda_handler", name
        assert (code / f"{module}.py").is_file(), f"{name}: {code / module}.py"
    assert not resources_of(template, "AWS::Lambda::Function")
    (layer,) = resources_of(template, "AWS::Serverless::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert (ROOT / layer["Properties"]["ContentUri"] / "requirements.txt").is_file()
    assert (ROOT / layer["Properties"]["ContentUri"] / "license_notifications" / "__init__.py").is_file()
    assert functions(template)["DispatcherFunction"]["Timeout"] == 300


def test_worker_gets_every_setting(template):
    for name, fn in functions(template).items():
        env = fn["Environment"]["Variables"]
        if name == "WorkerFunction":
            assert set(env) >= FUNCTION_ENV, FUNCTION_ENV - set(env)
        assert env["POWERTOOLS_SERVICE_NAME"] == "license-notifications"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "LicenseNotifications"
        assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
        assert env["LOG_FULL_EMAILS"] == {"Ref": "LogFullEmails"}
        assert int(env["POWERTOOLS_PARAMETERS_MAX_AGE"]) > 0
        # The dispatcher validates campaign ids before enqueueing.
        assert env["BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN"] == {"Ref": "BrazeLicenseExpirationReminderCampaign"}
        assert env["BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN"] == {"Ref": "BrazeSubscriptionPlanExpirationCampaign"}
        # Secrets are passed by ARN only, never in clear.
        assert not {"OAUTH_CLIENT_SECRET", "BRAZE_API_KEY"} & set(env)
    env = functions(template)["WorkerFunction"]["Environment"]["Variables"]
    assert env["OAUTH_BASE_URL"] == {"Fn::If": ["HasOAuthBaseUrl", {"Ref": "OAuthBaseUrl"}, {"Ref": "LmsUrl"}]}
    for oauth_base_url, expected in (("", "https://lms.example.org"), ("https://sso.example.org", None)):
        value = resolve_intrinsics(
            env["OAUTH_BASE_URL"],
            template,
            parameters={"OAuthBaseUrl": oauth_base_url, "LmsUrl": "https://lms.example.org"},
        )
        assert value == (expected or oauth_base_url)


@pytest.mark.parametrize(
    ("job", "schedule_parameter", "default_expression"),
    [
        ("license_expiration_reminders", "ReminderScheduleExpression", "rate(1 hour)"),
        ("license_utilization", "UtilizationScheduleExpression", "cron(0 9 * * ? *)"),
        ("subscription_plan_expiration_emails", "PlanExpirationScheduleExpression", "rate(1 hour)"),
    ],
)
def test_schedule_sends_the_documented_job_event(template, job, schedule_parameter, default_expression):
    found = {}
    for name, props in schedules(template).items():
        event = json.loads(
            resolve_intrinsics(props["Input"], template, parameters={"EnterpriseCustomerUuids": SAMPLE_UUIDS})
        )
        found[event["job"]] = (name, props, event)
    assert set(found) == set(SCHEDULE_KEYS)
    _, props, event = found[job]
    assert set(event) == SCHEDULE_KEYS[job]
    assert event["dry_run"] is False
    assert event["as_of"] is None
    if job == "license_expiration_reminders":
        assert event["enterprise_customer_uuids"] == SAMPLE_UUIDS
        assert event["days_before_expiration"] == 30
    elif job == "subscription_plan_expiration_emails":
        assert event["enterprise_customer_uuids"] == SAMPLE_UUIDS
        assert event["days_since_expiration"] == 7
    else:
        assert event["enterprise_customer_uuids"] is None
    assert props["ScheduleExpression"] == {"Ref": schedule_parameter}
    assert parameter_default(template, props["ScheduleExpression"]) == default_expression
    assert props["State"] == {"Ref": "ScheduleState"}
    assert template["Parameters"]["ScheduleState"]["AllowedValues"] == ["ENABLED", "DISABLED"]
    assert props["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert props["DeadLetterConfig"] == {"Arn": getatt("ScheduleDeadLetterQueue", "Arn")}


def schedule_event(template: dict[str, Any], job: str, **parameters: str) -> dict[str, Any]:
    """The event a schedule sends the dispatcher, with these parameter values (defaults otherwise)."""
    for props in schedules(template).values():
        event = json.loads(resolve_intrinsics(props["Input"], template, parameters=parameters))
        if event["job"] == job:
            return event
    raise AssertionError(f"no schedule for {job}")


def test_reminders_discover_their_enterprises_unless_a_list_limits_them(template):
    spec = template["Parameters"]["EnterpriseCustomerUuids"]
    assert spec["Default"] == ""
    for value in ("", SAMPLE_UUIDS, SAMPLE_UUIDS.replace(",", " ")):
        assert re.fullmatch(spec["AllowedPattern"], value), value
        event = schedule_event(template, "license_expiration_reminders", EnterpriseCustomerUuids=value)
        assert event["enterprise_customer_uuids"] == (value or None)


def test_post_expiration_emails_discover_their_enterprises_unless_a_list_limits_them(template):
    for value in ("", SAMPLE_UUIDS, SAMPLE_UUIDS.replace(",", " ")):
        event = schedule_event(template, "subscription_plan_expiration_emails", EnterpriseCustomerUuids=value)
        assert event["enterprise_customer_uuids"] == (value or None)
    event = schedule_event(template, "subscription_plan_expiration_emails", DaysSinceExpiration="14")
    assert event["days_since_expiration"] == 14
    spec = template["Parameters"]["DaysSinceExpiration"]
    assert (spec["Type"], spec["Default"], spec["MinValue"]) == ("Number", 7, 1)


def test_uuid_parameter_cannot_break_the_schedule_json(template):
    pattern = template["Parameters"]["EnterpriseCustomerUuids"]["AllowedPattern"]
    for bad in ('abc", "dry_run": true', "null", " ", "x\\y", "not-a-uuid", f"{SAMPLE_UUIDS},"):
        assert not re.fullmatch(pattern, bad), bad


@pytest.mark.parametrize(
    ("sample", "limited"),
    [
        ("dispatcher-expiration-reminders-discover.json", False),
        ("dispatcher-utilization.json", False),
        ("dispatcher-expiration-reminders.json", True),  # EnterpriseCustomerUuids = the sample's list
        ("dispatcher-plan-expiration-emails-discover.json", False),
        ("dispatcher-plan-expiration-emails.json", True),
    ],
)
def test_events_samples_are_what_the_schedules_send(template, sample, limited):
    """events/ has the schedules' events as deployed with the default parameters (and with a list)."""
    expected = json.loads((ROOT / "events" / sample).read_text())
    parameters = {"EnterpriseCustomerUuids": expected["enterprise_customer_uuids"]} if limited else {}
    assert schedule_event(template, expected["job"], **parameters) == expected


def test_policies_are_least_privilege(template):
    """The roles as written (tests/test_template_iam.py checks what the SAM transform makes of them)."""
    fns = functions(template)
    for name, fn in fns.items():
        # With Role set SAM ignores Policies and generates no role (nor its managed policies).
        assert "Policies" not in fn, f"{name}: Policies next to Role are ignored"
        for statement in role_statements(template, fn):
            assert statement["Effect"] == "Allow"
            actions = as_list(statement["Action"])
            for action in actions:
                assert "*" not in action, f"{name}: action {action}"
            if all(action.startswith("xray:") for action in actions):
                continue  # X-Ray has no resource-level permissions
            for resource in as_list(statement["Resource"]):
                assert resource != "*", f"{name}: {statement}"
                assert "*" not in json.dumps(resource), f"{name}: {statement}"
    worker = role_statements(template, fns["WorkerFunction"])
    dynamodb = [s for s in worker if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
    assert len(dynamodb) == 1
    assert set(dynamodb[0]["Action"]) == LEDGER_ACTIONS
    assert dynamodb[0]["Resource"] == getatt("LedgerTable", "Arn")

    def secrets(stmts: list[dict[str, Any]]) -> list[Any]:
        return [
            r for s in stmts if "secretsmanager:GetSecretValue" in as_list(s["Action"]) for r in as_list(s["Resource"])
        ]

    assert secrets(worker) == [{"Ref": "OAuthClientSecretArn"}, {"Ref": "BrazeApiKeySecretArn"}]
    dispatcher = role_statements(template, fns["DispatcherFunction"])
    # The dispatcher may need an OAuth token (enterprise discovery) but never the Braze key.
    assert secrets(dispatcher) == [{"Ref": "OAuthClientSecretArn"}]
    for stmts in (worker, dispatcher):
        publish = [s for s in stmts if "sns:Publish" in as_list(s["Action"])]
        assert [s["Resource"] for s in publish] == [{"Ref": "ErrorTopic"}]
    enqueue = [s["Resource"] for s in dispatcher if "sqs:SendMessage" in as_list(s["Action"])]
    assert getatt("WorkQueue", "Arn") in enqueue
    # the worker sends only continuations of a run, to the work queue itself
    assert [s["Resource"] for s in worker if "sqs:SendMessage" in as_list(s["Action"])] == [getatt("WorkQueue", "Arn")]


def test_error_topic_is_encrypted_and_alarms_notify_it(template):
    topic = template["Resources"]["ErrorTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "ErrorTopicKey"}
    key = template["Resources"]["ErrorTopicKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    # CloudWatch alarms can publish to the encrypted topic only if the key lets cloudwatch.amazonaws.com in.
    grants = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s["Principal"].get("Service")]
    assert grants[0]["Principal"]["Service"] == "cloudwatch.amazonaws.com"
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(grants[0]["Action"])

    subscription = template["Resources"]["ErrorTopicEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["TopicArn"] == {"Ref": "ErrorTopic"}
    for email, subscribed in (("", False), ("ops@example.org", True)):
        assert resolve_intrinsics({"Condition": "HasAlarmEmail"}, template, parameters={"AlarmEmail": email}) is (
            subscribed
        )

    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "ErrorTopic"}], name
    watched = {
        (a["Properties"]["MetricName"], json.dumps(a["Properties"]["Dimensions"][0]["Value"])): a["Properties"]
        for a in alarms.values()
    }
    dlq = watched["ApproximateNumberOfMessagesVisible", json.dumps(getatt("WorkDeadLetterQueue", "QueueName"))]
    errors = watched["Errors", json.dumps({"Ref": "WorkerFunction"})]
    for alarm in (dlq, errors):
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_parameters_and_outputs(template):
    params = template["Parameters"]
    assert set(params) >= PARAMETERS
    for name, spec in params.items():
        assert spec.get("Description"), f"{name} has no Description"
    assert params["DaysBeforeExpiration"]["Default"] == 30
    assert params["OAuthBaseUrl"]["Default"] == ""
    assert params["LogFullEmails"]["Default"] == "false"
    outputs = template["Outputs"]
    for name in (
        "WorkQueueUrl",
        "WorkQueueArn",
        "WorkDeadLetterQueueUrl",
        "LedgerTableName",
        "ErrorTopicArn",
        "DispatcherFunctionName",
        "DispatcherFunctionArn",
        "WorkerFunctionName",
        "WorkerFunctionArn",
    ):
        assert name in outputs, name


def test_samconfig_environments_provide_valid_parameters(template):
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    stacks = set()
    for env in ("default", "production"):
        deploy = config[env]["deploy"]["parameters"]
        glob = config[env]["global"]["parameters"]
        stacks.add(glob["stack_name"])
        assert glob["region"] == "us-east-1"
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        assert deploy["resolve_s3"] is True
        assert deploy["confirm_changeset"] is True
        # KEY=VALUE, where VALUE="" is the empty string (as sam deploy reads it)
        overrides = {
            name: "" if value == '""' else value
            for name, value in (item.split("=", 1) for item in deploy["parameter_overrides"])
        }
        params = template["Parameters"]
        assert set(overrides) <= set(params), set(overrides) - set(params)
        required = {name for name, spec in params.items() if "Default" not in spec}
        assert required <= set(overrides), f"{env}: missing {required - set(overrides)}"
        for name, value in overrides.items():
            spec = params[name]
            if "AllowedPattern" in spec:
                assert re.fullmatch(spec["AllowedPattern"], value), f"{env}: {name}={value}"
            if "AllowedValues" in spec:
                assert value in spec["AllowedValues"], f"{env}: {name}={value}"
        assert "example.org" in overrides["LicenseManagerUrl"] or "localhost" in overrides["LicenseManagerUrl"]
    assert len(stacks) == 2


def test_layer_requirements_are_exactly_the_packages_runtime_dependencies():
    """The layer ships what pyproject.toml says the package needs at run time: same names, same pins."""
    import tomllib

    lines = (ROOT / "layers/shared/requirements.txt").read_text().splitlines()
    layer = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    project = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert layer == project
    assert all("==" in pin for pin in layer)
    # and the dev lock (make lock) resolved the same versions: the tests run on what the layer ships
    locked = {line.split("#")[0].strip() for line in (ROOT / "requirements/dev.lock").read_text().splitlines()}
    assert {re.sub(r"\[.*\]", "", pin) for pin in project} <= locked  # extras are not in the lock's names


# --------------------------------------------------------------------------------------------- dashboard

# Per job (prefix from lambda_runtime.METRIC_PREFIX), and job-independent: what the dashboard must show.
DASHBOARD_JOB_METRICS = ("Sent", "Skipped", "Failed", "DryRunWouldSend", "Rejected", "Unrecorded")
DASHBOARD_METRICS = {
    "BrazeRequests",
    "EnterprisesProcessed",
    "EnterprisesFailed",
    "MalformedUpstreamRecords",
    "BrazeRecipientErrors",
    "EnterprisesEnqueued",  # the dispatcher's
}


def fake_attribute(logical_id: str, attribute: str | None) -> str:
    return f"{logical_id}.{attribute}" if attribute else f"{logical_id}-ref"


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = resources_of(template, "AWS::CloudWatch::Dashboard").values()
    return json.loads(resolve_intrinsics(dashboard["Properties"]["DashboardBody"], template, attributes=fake_attribute))


def dashboard_metrics(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, metric name, dimensions, rendering options) of every metric line of every widget."""
    found = []
    for widget in body["widgets"]:
        for line in widget["properties"].get("metrics", []):
            options = line[-1] if isinstance(line[-1], dict) else {}
            fields = line[:-1] if options else line
            namespace, name, *pairs = fields
            assert len(pairs) % 2 == 0, line
            dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
            found.append((namespace, name, dimensions, {**widget["properties"], **options}))
    return found


def emitted_outcome_metrics() -> set[str]:
    """Every metric name the worker's outcome recording can emit (both jobs, dry run or not, failed or not)."""
    from license_notifications.events import Job
    from license_notifications.lambda_runtime import record_outcome_metrics
    from license_notifications.outcome import EnterpriseOutcome

    class Recorder:
        names: set[str] = set()

        def add_metric(self, *, name: str, unit: Any, value: float) -> None:
            self.names.add(name)

    recorder = Recorder()
    for job in Job:
        for dry_run in (True, False):
            for error in (None, "upstream failed"):
                outcome = EnterpriseOutcome(job=job, enterprise_customer_uuid="e", dry_run=dry_run, error=error)
                record_outcome_metrics(recorder, job, outcome)  # type: ignore[arg-type]
    return recorder.names


def test_dashboard_shows_every_job_metric_under_the_functions_namespace_and_service(template):
    from license_notifications.lambda_runtime import METRIC_PREFIX
    from license_notifications.observability import METRICS_NAMESPACE, SERVICE_NAME

    env = functions(template)["WorkerFunction"]["Environment"]["Variables"]
    assert (env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]) == (METRICS_NAMESPACE, SERVICE_NAME)
    metrics = dashboard_metrics(dashboard_body(template))
    app = [(name, dims, options) for namespace, name, dims, options in metrics if namespace == METRICS_NAMESPACE]
    for name, dims, options in app:
        # Powertools EMF: one dimension, service; counts add up over the period.
        assert dims == {"service": SERVICE_NAME}, name
        assert options["stat"] == "Sum", name
    shown = {name for name, _, _ in app}
    required = {f"{prefix}{suffix}" for prefix in METRIC_PREFIX.values() for suffix in DASHBOARD_JOB_METRICS}
    assert required | DASHBOARD_METRICS <= shown, sorted((required | DASHBOARD_METRICS) - shown)
    assert emitted_outcome_metrics() <= shown, sorted(emitted_outcome_metrics() - shown)
    assert len(app) == len(shown), "a metric is drawn twice"


def test_dashboard_shows_every_dead_letter_queue_and_the_worker(template):
    metrics = dashboard_metrics(dashboard_body(template))
    depth = {
        dims["QueueName"]
        for namespace, name, dims, _ in metrics
        if (namespace, name) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    }
    # Every queue something dead-letters into: redrive targets, the function DLQ, the schedules' DLQ.
    resources = template["Resources"]
    targets = [
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
        for q in resources_of(template, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in q["Properties"]
    ]
    targets += [fn["DeadLetterQueue"]["TargetArn"] for fn in functions(template).values() if "DeadLetterQueue" in fn]
    targets += [props["DeadLetterConfig"]["Arn"] for props in schedules(template).values()]
    dead_letter_queues = {target["Fn::GetAtt"][0] for target in targets}
    assert {"WorkDeadLetterQueue", "ScheduleDeadLetterQueue"} <= dead_letter_queues
    assert {f"{queue}.QueueName" for queue in dead_letter_queues} <= depth
    for queue in dead_letter_queues:
        assert resources[queue]["Type"] == "AWS::SQS::Queue"

    worker = {
        (name, options.get("stat"))
        for namespace, name, dims, options in metrics
        if namespace == "AWS/Lambda" and dims == {"FunctionName": "WorkerFunction-ref"}
    }
    assert {("Errors", "Sum"), ("Duration", "Average"), ("Duration", "Maximum")} <= worker
    (duration,) = [
        w["properties"]
        for w in dashboard_body(template)["widgets"]
        if any(line[1] == "Duration" for line in w["properties"].get("metrics", []))
    ]
    (timeout,) = duration["annotations"]["horizontal"]
    assert timeout["value"] == functions(template)["WorkerFunction"]["Timeout"] * 1000


def test_dashboard_layout_fits_the_grid_without_overlaps(template):
    body = dashboard_body(template)
    cells: set[tuple[int, int]] = set()
    for widget in body["widgets"]:
        assert widget["type"] in {"metric", "text"}
        assert widget["x"] >= 0, widget
        assert widget["x"] + widget["width"] <= 24, widget
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "us-east-1"  # ${AWS::Region}
            assert widget["properties"]["title"]
        area = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not area & cells, f"{widget.get('properties', {}).get('title')} overlaps another widget"
        cells |= area


def test_dashboard_url_is_a_stack_output(template):
    (name,) = resources_of(template, "AWS::CloudWatch::Dashboard")
    url = resolve_intrinsics(template["Outputs"]["DashboardUrl"]["Value"], template, attributes=fake_attribute)
    assert url == (
        f"https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name={name}-ref"
    )
    # Dashboards are account-wide: a name per stack and region.
    dashboard_name = template["Resources"][name]["Properties"]["DashboardName"]
    assert resolve_intrinsics(dashboard_name, template, stack_name="s") == "s-us-east-1"


# --------------------------------------------------------------------------------------------- load_template


def test_load_template_turns_short_tags_into_long_form(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "Conditions:\n"
        "  C: !Not [!Equals [!Ref P, '']]\n"
        "Resources:\n"
        "  R:\n"
        "    Type: X\n"
        "    Properties:\n"
        "      A: !GetAtt Q.Arn\n"
        "      B: !Sub '${AWS::Region}-x'\n"
        "      C: !If [C, !Join [',', [a, b]], !Select [0, !Split [',', 'a,b']]]\n"
        "      D: !FindInMap [M, k, v]\n"
        "      E: !GetAtt [Q, QueueName]\n"
        "      Version: 2012-10-17\n"
    )
    template = load_template(path)
    assert template["Conditions"]["C"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]}
    props = template["Resources"]["R"]["Properties"]
    assert props["A"] == {"Fn::GetAtt": ["Q", "Arn"]}
    assert props["B"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert props["C"] == {
        "Fn::If": ["C", {"Fn::Join": [",", ["a", "b"]]}, {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}]
    }
    assert props["D"] == {"Fn::FindInMap": ["M", "k", "v"]}
    assert props["E"] == {"Fn::GetAtt": ["Q", "QueueName"]}
    assert props["Version"] == "2012-10-17"


# --------------------------------------------------------------------------------------------- moto


def test_resources_created_from_the_template_match_it(aws_resources: StackResources, moto_stack: MotoStack):
    dynamodb = moto_stack.client("dynamodb")
    table = dynamodb.describe_table(TableName=aws_resources.ledger_table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["Status"] == "ENABLED"
    ttl = dynamodb.describe_time_to_live(TableName=aws_resources.ledger_table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    backups = dynamodb.describe_continuous_backups(TableName=aws_resources.ledger_table_name)
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"

    sqs = moto_stack.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=aws_resources.work_queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "5400"
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": aws_resources.queue_arns["WorkDeadLetterQueue"],
        "maxReceiveCount": 5,
    }
    dlq = sqs.get_queue_attributes(QueueUrl=aws_resources.work_dead_letter_queue_url, AttributeNames=["All"])
    assert dlq["Attributes"]["MessageRetentionPeriod"] == "1209600"

    topic = moto_stack.client("sns").get_topic_attributes(TopicArn=aws_resources.error_topic_arn)["Attributes"]
    assert topic["KmsMasterKeyId"]

    assert aws_resources.lambda_env() == {
        "LEDGER_TABLE_NAME": aws_resources.ledger_table_name,
        "WORK_QUEUE_URL": aws_resources.work_queue_url,
        "ERROR_TOPIC_ARN": aws_resources.error_topic_arn,
    }
    assert all(name.endswith(aws_resources.suffix) for name in aws_resources.tables.values())


def test_ledger_indexes_created_in_moto_find_sent_records(aws_resources: StackResources, moto_stack: MotoStack):
    from license_notifications.adapters.ledger import Ledger

    dynamodb = moto_stack.client("dynamodb")
    table_name = aws_resources.ledger_table_name
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    created = {
        index["IndexName"]: [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]]
        for index in table["GlobalSecondaryIndexes"]
    }
    assert created == LEDGER_INDEXES

    ledger = Ledger(table_name)
    enterprise, run = "3f2c2b8e-0000-4000-8000-00000000e001", "license_expiration_reminders:2026-03-01T09:00:00Z:ab12"
    march, april = datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 4, 1, 9, tzinfo=UTC)
    for pk, sent_at, run_id in (("reminder#l2", april, "other-run"), ("reminder#l1", march, run)):
        claims = ledger.claim_many(
            [
                {
                    "key": pk,
                    "kind": "reminder",
                    "run_id": run_id,
                    "expires_at": april,
                    "enterprise_customer_uuid": enterprise,
                }
            ]
        )
        assert ledger.mark_sent_many(claims, as_of=sent_at, run_id=run_id, dispatch_id="d-1") == 1
    # Claimed, not sent yet: no sent_at, no run_id, so in neither index.
    ledger.claim_many(
        [
            {
                "key": "reminder#l3",
                "kind": "reminder",
                "run_id": run,
                "expires_at": april,
                "enterprise_customer_uuid": enterprise,
            }
        ]
    )

    by_enterprise = dynamodb.query(
        TableName=table_name,
        IndexName="by-enterprise",
        KeyConditionExpression="enterprise_customer_uuid = :e AND sent_at >= :since",
        ExpressionAttributeValues={":e": {"S": enterprise}, ":since": {"S": "2026-01-01"}},
    )["Items"]
    assert [item["pk"]["S"] for item in by_enterprise] == ["reminder#l1", "reminder#l2"]  # time order
    assert by_enterprise[0]["sent_at"]["S"] == "2026-03-01T09:00:00.000000+0000"
    assert by_enterprise[0]["kind"]["S"] == "reminder"  # projection ALL

    by_run = dynamodb.query(
        TableName=table_name,
        IndexName="by-run",
        KeyConditionExpression="run_id = :r",
        ExpressionAttributeValues={":r": {"S": run}},
    )["Items"]
    assert [item["pk"]["S"] for item in by_run] == ["reminder#l1"]
    assert by_run[0]["enterprise_customer_uuid"]["S"] == enterprise


def test_the_intermediate_upgrade_step_creates_only_the_enterprise_index(moto_stack: MotoStack):
    resources = create_resources_from_template(
        moto_stack.endpoint_url, suffix=None, parameters={"LedgerRunIndex": "DISABLED"}
    )
    table = moto_stack.client("dynamodb").describe_table(TableName=resources.ledger_table_name)["Table"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by-enterprise"]
    assert "run_id" not in {d["AttributeName"] for d in table["AttributeDefinitions"]}


def test_aws_resources_fixture_points_default_clients_at_moto(aws_resources: StackResources):
    table = boto3.client("dynamodb").describe_table(TableName=aws_resources.ledger_table_name)["Table"]
    assert table["TableName"] == aws_resources.ledger_table_name  # list_tables pages at 100: ask for this one


def test_a_message_failing_max_receive_count_times_lands_in_the_dlq(
    aws_resources: StackResources, moto_stack: MotoStack
):
    sqs = moto_stack.client("sqs")
    queue, dlq = aws_resources.work_queue_url, aws_resources.work_dead_letter_queue_url
    sqs.send_message(QueueUrl=queue, MessageBody='{"enterprise_customer_uuid": "e1"}')
    for attempt in range(1, 6):
        (message,) = sqs.receive_message(QueueUrl=queue, AttributeNames=["ApproximateReceiveCount"])["Messages"]
        assert message["Attributes"]["ApproximateReceiveCount"] == str(attempt)
        # The worker reported it as a failure: it becomes visible again (here at once).
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    (dead,) = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert dead["Body"] == '{"enterprise_customer_uuid": "e1"}'


@pytest.mark.slow
def test_concurrent_conditional_puts_of_one_key_have_exactly_one_winner(
    aws_resources: StackResources, moto_stack: MotoStack
):
    threads_count, rounds = 8, 5
    # One client per thread, made up front (a client takes ~0.1 s to build; the race needs a tight start).
    clients = [boto3.session.Session().client("dynamodb") for _ in range(threads_count)]
    for round_ in range(rounds):
        barrier = threading.Barrier(threads_count)
        outcomes: list[str] = []

        def claim(worker: int, key: str, barrier: threading.Barrier, outcomes: list[str]) -> None:
            barrier.wait()
            try:
                clients[worker].put_item(
                    TableName=aws_resources.ledger_table_name,
                    Item={"pk": {"S": key}, "owner": {"N": str(worker)}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
                outcomes.append("won")  # list.append is atomic
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])

        key = f"reminder#license-{round_}"
        threads = [threading.Thread(target=claim, args=(i, key, barrier, outcomes)) for i in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes) == ["ConditionalCheckFailedException"] * (threads_count - 1) + ["won"]


def test_dynamodb_requests_are_serialised_and_other_services_are_not():
    active = {"now": 0, "max": 0}
    guard = threading.Lock()

    def slow_app(environ, start_response):
        with guard:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.05)
        start_response("200 OK", [])
        yield b"part-1 "
        time.sleep(0.02)  # still inside the lock while the body is produced
        with guard:
            active["now"] -= 1
        yield b"part-2"

    app = _SerialiseDynamoDB(slow_app)

    def run(target: str, results: list[bytes]) -> None:
        results.append(b"".join(app({"HTTP_X_AMZ_TARGET": target}, lambda *a: None)))

    for target, serialised in (("DynamoDB_20120810.PutItem", True), ("AmazonSQS.ReceiveMessage", False)):
        active.update(now=0, max=0)
        results: list[bytes] = []
        threads = [threading.Thread(target=run, args=(target, results)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [b"part-1 part-2"] * 4
        assert (active["max"] == 1) is serialised, (target, active)


def test_untranslated_properties_fail_loudly(moto_stack: MotoStack):
    queue = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"Nonsense": 1}}}}
    with pytest.raises(TemplateTranslationError, match="Nonsense"):
        create_resources_from_template(moto_stack.endpoint_url, queue, suffix=None)
    table = {"Resources": {"T": {"Type": "AWS::DynamoDB::Table", "Properties": {"BillingMode": "PAY_PER_REQUEST"}}}}
    with pytest.raises(TemplateTranslationError, match="KeySchema"):
        create_resources_from_template(moto_stack.endpoint_url, table, suffix=None)
    unsupported = {
        "Resources": {
            "Q": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"VisibilityTimeout": {"Fn::ImportValue": "shared-timeout"}},
            }
        }
    }
    with pytest.raises(TemplateTranslationError, match="ImportValue"):
        create_resources_from_template(moto_stack.endpoint_url, unsupported, suffix=None)
