"""IAM as CloudFormation will create it: the SAM transform's output, not the SAM source.

SAM adds roles, managed policies and event source mappings that the source template never spells out
(``AWSLambdaBasicExecutionRole`` for every generated role, ``AWSLambdaSQSQueueExecutionRole`` for an SQS event,
``AWSXrayWriteOnlyAccess`` for tracing), all on ``Resource: "*"``. These tests run the transform (the
``aws-sam-translator`` that the SAM CLI ships) and check every identity policy it produces.

The translator runs in the SAM CLI's own environment (``.tools/sam``, which ``make test`` installs; its pins
-- pydantic among them -- conflict with the app's), in a subprocess fed the template as JSON. ``SAM_PYTHON``
points at another interpreter that has ``samtranslator``. Without one the tests skip, except under CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from devstack.aws import TEMPLATE_PATH, load_template

ROOT = TEMPLATE_PATH.parent
SAM_PYTHON = Path(os.environ.get("SAM_PYTHON") or ROOT / ".tools" / "sam" / "bin" / "python")

# X-Ray has no resource-level permissions (its actions only take Resource "*"): the one documented exception.
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# AWS managed policies a role may carry, each with its reason. None: every permission is inline and scoped.
ALLOWED_MANAGED_POLICIES: dict[str, str] = {}
# What Lambda's SQS event source needs from the function's role (on the queue it reads).
SQS_POLLER_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}

# Runs in the SAM CLI's interpreter: local CodeUri/ContentUri become S3 URIs, as `sam validate` does, because
# the translator only accepts S3 locations; no AWS call is made (no managed policy names to look up).
_TRANSFORM = r"""
import json, sys
import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

template = json.load(sys.stdin)
for resource in template["Resources"].values():
    props = resource.get("Properties") or {}
    if resource.get("Type") == "AWS::Serverless::Function":
        props["CodeUri"] = "s3://bucket/code.zip"
    elif resource.get("Type") == "AWS::Serverless::LayerVersion":
        props["ContentUri"] = "s3://bucket/layer.zip"
session = boto3.session.Session(region_name="us-east-1")
translator = Translator(managed_policy_map=None, sam_parser=Parser(), plugins=[], boto_session=session)
out = translator.translate(sam_template=template, parameter_values={}, get_managed_policy_map=dict)
json.dump(out, sys.stdout)
"""


def sam_transform(template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template the SAM transform makes of ``template`` (long-form intrinsics)."""
    if not SAM_PYTHON.is_file():
        message = f"{SAM_PYTHON} not found: `make test` installs the SAM CLI there (or set SAM_PYTHON)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = subprocess.run(
        [str(SAM_PYTHON), "-c", _TRANSFORM],
        input=json.dumps(template),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if result.returncode:
        sys.stderr.write(result.stderr)
        pytest.fail(f"the SAM transform failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def transformed(source: dict[str, Any]) -> dict[str, Any]:
    return sam_transform(source)


# --------------------------------------------------------------------------------------------- helpers


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def getatt(logical_id: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, attribute]}


def identity_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, statement) for every statement of every identity policy: roles' inline policies,
    AWS::IAM::Policy / ManagedPolicy / RolePolicy documents."""
    found = []
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [(p["PolicyName"], p["PolicyDocument"]) for p in props.get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            documents = [(name, props["PolicyDocument"])]
        for policy, document in documents:
            found.extend((f"{name}/{policy}", s) for s in as_list(document["Statement"]))
    return found


def role_of(transformed: dict[str, Any], function: str) -> dict[str, Any]:
    role = transformed["Resources"][function]["Properties"]["Role"]
    assert set(role) == {"Fn::GetAtt"}, f"{function}: role {role}"
    assert role["Fn::GetAtt"][1] == "Arn", f"{function}: role {role}"
    return transformed["Resources"][role["Fn::GetAtt"][0]]


def grants(role: dict[str, Any]) -> dict[str, set[str]]:
    """resource (as JSON) -> actions the role's inline policies allow on it."""
    out: dict[str, set[str]] = {}
    for policy in role["Properties"].get("Policies", []):
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            for resource in as_list(statement["Resource"]):
                out.setdefault(json.dumps(resource, sort_keys=True), set()).update(as_list(statement["Action"]))
    return out


def key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --------------------------------------------------------------------------------------------- tests


def iam_violations(transformed: dict[str, Any]) -> list[str]:
    """What breaks least privilege in a transformed template: an identity statement that is not scoped to a
    resource of the stack or a parameter (X-Ray's excepted), an action pattern, Not*, a managed policy."""
    found = []
    for where, statement in identity_statements(transformed):
        if statement["Effect"] != "Allow" or {"NotAction", "NotResource"} & set(statement):
            found.append(f"{where}: only plain Allow statements are expected: {statement}")
        actions = set(as_list(statement["Action"]))
        found.extend(f"{where}: action pattern {a}" for a in actions if "*" in a or ":" not in a)
        resources = as_list(statement["Resource"])
        if actions <= XRAY_ACTIONS:
            if resources != ["*"]:
                found.append(f"{where}: X-Ray statement with {resources}")
            continue
        for resource in resources:
            # A resource of this stack or a parameter (the secrets' ARNs), never a literal, never a pattern.
            if not isinstance(resource, dict) or "*" in key(resource):
                found.append(f"{where}: resource {resource!r} for {sorted(actions)}")
    for name, role in of_type(transformed, "AWS::IAM::Role").items():
        found.extend(
            f"{name}: managed policy {arn}"
            for arn in role["Properties"].get("ManagedPolicyArns", [])
            if arn not in ALLOWED_MANAGED_POLICIES
        )
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        found.extend(
            f"{name}: AWS managed policy"
            for name, policy in of_type(transformed, kind).items()
            if "arn:aws:iam::aws:policy" in key(policy)
        )
    return found


def test_every_identity_policy_statement_is_scoped_and_no_managed_policy_is_attached(transformed):
    assert identity_statements(transformed), "the transform produced no IAM policies: the test would prove nothing"
    assert iam_violations(transformed) == []


def test_the_check_catches_what_sam_generates_by_default():
    """A function as SAM's documentation writes it (generated role, SQS event, tracing, a policy template)."""
    template = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Runtime": "python3.13",
                    "Handler": "app.handler",
                    "CodeUri": ".",
                    "Tracing": "Active",
                    "Policies": [{"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["Queue", "QueueName"]}}}],
                    "Events": {"Work": {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["Queue", "Arn"]}}}},
                },
            },
        },
    }
    found = "\n".join(iam_violations(sam_transform(template)))
    for policy in ("service-role/AWSLambdaBasicExecutionRole", "service-role/AWSLambdaSQSQueueExecutionRole"):
        assert f"managed policy arn:aws:iam::aws:policy/{policy}" in found
    assert "managed policy arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess" in found
    assert "action pattern sqs:SendMessage*" in found


def test_each_function_has_its_own_role_trusting_only_lambda(transformed):
    functions = of_type(transformed, "AWS::Lambda::Function")
    assert set(functions) == {"DispatcherFunction", "WorkerFunction"}
    roles = [key(f["Properties"]["Role"]) for f in functions.values()]
    assert len(set(roles)) == len(roles), "functions share a role"
    for name in functions:
        trust = role_of(transformed, name)["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [as_list(s["Principal"]["Service"]) for s in trust] == [["lambda.amazonaws.com"]], name
        assert all(set(s["Principal"]) == {"Service"} for s in trust), name
        assert [as_list(s["Action"]) for s in trust] == [["sts:AssumeRole"]], name


def test_functions_write_only_their_own_log_group_and_traces(transformed):
    for name, function in of_type(transformed, "AWS::Lambda::Function").items():
        props = function["Properties"]
        log_group = props["LoggingConfig"]["LogGroup"]
        assert set(log_group) == {"Ref"}, name
        role = grants(role_of(transformed, name))
        logs = {resource: actions & LOG_ACTIONS for resource, actions in role.items() if actions & LOG_ACTIONS}
        assert logs == {key(getatt(log_group["Ref"], "Arn")): LOG_ACTIONS}, name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert role[key("*")] == XRAY_ACTIONS, name


def test_the_worker_reads_only_its_queue_through_one_event_source_mapping(transformed):
    (mapping,) = of_type(transformed, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": "WorkerFunction"}
    assert props["EventSourceArn"] == getatt("WorkQueue", "Arn")
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == {"Ref": "WorkerBatchSize"}
    assert props["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WorkerMaximumConcurrency"}}
    worker = grants(role_of(transformed, "WorkerFunction"))
    sqs = {resource: {a for a in actions if a.startswith("sqs:")} for resource, actions in worker.items()}
    # polls it, and sends a run's continuation messages to it (a large enterprise, a worker out of time)
    assert {r: a for r, a in sqs.items() if a} == {
        key(props["EventSourceArn"]): SQS_POLLER_ACTIONS | {"sqs:SendMessage"}
    }


def test_the_dispatcher_sends_only_to_the_work_queue_and_its_dead_letter_queue(transformed):
    dispatcher = transformed["Resources"]["DispatcherFunction"]["Properties"]
    role = grants(role_of(transformed, "DispatcherFunction"))
    sqs = {resource: {a for a in actions if a.startswith("sqs:")} for resource, actions in role.items()}
    assert {r: a for r, a in sqs.items() if a} == {
        key(getatt("WorkQueue", "Arn")): {"sqs:SendMessage"},
        # Lambda puts failed asynchronous invocations there with the function's role.
        key(dispatcher["DeadLetterConfig"]["TargetArn"]): {"sqs:SendMessage"},
    }


def test_schedules_may_only_invoke_the_dispatcher_and_use_their_dead_letter_queue(transformed):
    schedules = of_type(transformed, "AWS::Scheduler::Schedule")
    assert len(schedules) == 3  # reminders, post-expiration emails, utilization
    for name, schedule in schedules.items():
        target = schedule["Properties"]["Target"]
        role_id = target["RoleArn"]["Fn::GetAtt"][0]
        role = transformed["Resources"][role_id]
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [as_list(s["Principal"]["Service"]) for s in trust] == [["scheduler.amazonaws.com"]], name
        assert grants(role) == {
            key(target["Arn"]): {"lambda:InvokeFunction"},
            key(target["DeadLetterConfig"]["Arn"]): {"sqs:SendMessage"},
        }, name


def test_only_this_stacks_alarms_may_publish_to_the_error_topic(transformed):
    """The topic policy lets CloudWatch publish on behalf of exactly the alarms that notify the topic
    (aws:SourceArn), in this account; nobody else is granted anything by it."""
    alarms = of_type(transformed, "AWS::CloudWatch::Alarm")
    notifying: dict[str, set[str]] = {}
    for name, alarm in alarms.items():
        for action in alarm["Properties"]["AlarmActions"]:
            notifying.setdefault(key(action), set()).add(key(getatt(name, "Arn")))
    assert notifying, "no alarm notifies a topic"
    policies = of_type(transformed, "AWS::SNS::TopicPolicy")
    for topic, alarm_arns in notifying.items():
        (policy,) = [p for p in policies.values() if topic in map(key, p["Properties"]["Topics"])]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        for statement in statements:
            assert statement["Effect"] == "Allow"
            assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}, statement
            assert as_list(statement["Action"]) == ["sns:Publish"]
            assert key(statement["Resource"]) == topic
            condition = statement["Condition"]
            assert set(map(key, as_list(condition["ArnEquals"]["aws:SourceArn"]))) == alarm_arns
            assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_the_transform_keeps_sam_local_invoke_working(source, transformed):
    """sam local invoke finds functions by their logical id and reads their code from CodeUri: both stay."""
    for name, function in of_type(source, "AWS::Serverless::Function").items():
        assert transformed["Resources"][name]["Type"] == "AWS::Lambda::Function"
        assert (ROOT / function["Properties"]["CodeUri"]).is_dir(), name
        assert "Policies" not in function["Properties"], f"{name}: Policies are ignored once Role is set"
