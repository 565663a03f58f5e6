"""The embedded AWS side of the local stack (demo and tests): moto in server mode, resources from template.yaml.

* :func:`load_template` reads ``template.yaml`` with CloudFormation's short tags (``!Ref``, ``!GetAtt``,
  ``!Sub``...) turned into their long form (``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``...).
* :func:`resolve_intrinsics` evaluates the intrinsics the template uses: ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``,
  ``Fn::If``, ``Fn::Equals``, ``Fn::Not``, ``Condition``, ``AWS::NoValue`` and the pseudo parameters. Any
  other function raises :class:`TemplateTranslationError`.
* :class:`MotoStack` runs a moto server on 127.0.0.1 (a free port) in a daemon thread. DynamoDB requests are
  serialised, because moto does not make a conditional write atomic (condition check and write are not under
  one lock) while real DynamoDB is atomic per item; with the lock, concurrency tests behave like DynamoDB.
  (DynamoDB throttling on purpose, for the soak: ``devstack/dynamodb_faults.py``.)
* :func:`create_resources_from_template` creates, with boto3 against that server, the template's DynamoDB
  tables, SQS queues and SNS topics (and the KMS key the topic uses) with the properties the template sets;
  the tables on another engine when asked (the demo, soak and benchmark put the ledger on DynamoDB Local,
  ``devstack/dynamodb_local.py``). A property this module does not translate raises
  :class:`TemplateTranslationError` instead of being dropped.
* :func:`create_secret` stores a Secrets Manager secret (the demo's OAuth client secret and Braze API key).

moto keeps its state per process: ``moto.mock_aws`` (start or stop) resets the same backends this server
serves, so do not mix ``mock_aws`` with a running :class:`MotoStack` in one test.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

from devstack.loopback import LoopbackServer

__all__ = [
    "DEFAULT_REGION",
    "FAKE_ACCOUNT_ID",
    "TEMPLATE_PATH",
    "MotoStack",
    "StackResources",
    "TemplateTranslationError",
    "create_resources_from_template",
    "create_secret",
    "create_tables_from_template",
    "load_template",
    "resolve_intrinsics",
]

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
DEFAULT_REGION = "us-east-1"
FAKE_ACCOUNT_ID = "123456789012"  # moto's default account
_FAKE_CREDENTIAL = "testing"


class TemplateTranslationError(ValueError):
    """The template uses something this module cannot reproduce faithfully in moto."""


# --------------------------------------------------------------------------------------------- template


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that knows CloudFormation's short-form intrinsic tags and keeps dates as strings."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)
# "Version: 2012-10-17" must stay a string, as CloudFormation reads it.
_CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def load_template(path: str | Path | None = None) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template; short tags become long-form dicts.

    ``path`` defaults to the repository's ``template.yaml`` (not the current directory's).
    """
    text = Path(path or TEMPLATE_PATH).read_text(encoding="utf-8")
    template = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - _CfnLoader is a SafeLoader subclass
    if not isinstance(template, dict) or "Resources" not in template:
        raise TemplateTranslationError(f"{path or TEMPLATE_PATH} is not a CloudFormation template")
    return template


_NO_VALUE = object()  # AWS::NoValue: the property or list item is removed
Attributes = Callable[[str, str | None], Any]  # (logical id, attribute or None for Ref) -> value


def resolve_intrinsics(
    value: Any,
    template: Mapping[str, Any],
    *,
    parameters: Mapping[str, Any] | None = None,
    attributes: Attributes | None = None,
    region: str = DEFAULT_REGION,
    stack_name: str = "license-notifications-local",
) -> Any:
    """Evaluate the intrinsics of ``value`` (see the module docstring for which).

    ``parameters`` override the template's parameter defaults (a parameter with neither raises).
    ``attributes(logical_id, attribute)`` answers ``Ref`` (attribute ``None``) and ``Fn::GetAtt`` of resources;
    without it, a resource reference raises.
    """
    return _Intrinsics(template, parameters or {}, attributes, region, stack_name).resolve(value)


class _Intrinsics:
    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        attributes: Attributes | None,
        region: str,
        stack_name: str,
    ) -> None:
        declared = template.get("Parameters") or {}
        if unknown := set(parameters) - set(declared):
            raise TemplateTranslationError(f"unknown template parameter(s): {sorted(unknown)}")
        self.template, self.attributes, self.declared = template, attributes, declared
        self.values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
        self.values.update({name: str(value) for name, value in parameters.items()})
        pseudo = {"Region": region, "AccountId": FAKE_ACCOUNT_ID, "StackName": stack_name, "Partition": "aws"}
        self.values.update({f"AWS::{name}": value for name, value in pseudo.items()})

    def ref(self, name: str, attribute: str | None = None) -> Any:
        if attribute is None and name in self.values:
            return self.values[name]
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.declared:
            raise TemplateTranslationError(f"parameter {name} has no default: pass it in parameters=")
        if name not in self.template["Resources"] or self.attributes is None:
            raise TemplateTranslationError(f"cannot resolve a reference to {name} here")
        return self.attributes(name, attribute)

    def sub(self, args: str | list[Any]) -> str:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], self.resolve(args[1]))

        def substitute(match: re.Match[str]) -> str:
            name = match[1]
            if name.startswith("!"):  # ${!Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            resource, _, attribute = name.partition(".") if "::" not in name else (name, "", "")
            return str(self.ref(resource, attribute or None))

        return re.sub(r"\$\{([^}]*)\}", substitute, text)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, args),) = value.items()
            if key in _FUNCTIONS:
                return _FUNCTIONS[key](self, args)
            if key.startswith("Fn::"):
                raise TemplateTranslationError(f"intrinsic function {key} is not supported by devstack.aws")
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}


_FUNCTIONS: dict[str, Callable[[_Intrinsics, Any], Any]] = {
    "Ref": lambda r, name: r.ref(name),
    "Condition": lambda r, name: r.condition(name),
    "Fn::GetAtt": lambda r, args: r.ref(*(args if isinstance(args, list) else args.split(".", 1))),
    "Fn::Sub": lambda r, args: r.sub(args),
    "Fn::If": lambda r, args: r.resolve(args[1] if r.condition(args[0]) else args[2]),
    "Fn::Equals": lambda r, args: str(r.resolve(args[0])) == str(r.resolve(args[1])),
    "Fn::Not": lambda r, args: not r.resolve(args[0]),
}


# --------------------------------------------------------------------------------------------- moto server


class _SerialiseDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, other services untouched.

    moto checks a ConditionExpression and then writes without a lock, so two concurrent conditional puts of
    the same key can both succeed. Real DynamoDB is atomic per item. The lock is held for the whole call,
    including consuming the response body, so a request's effects are complete before the next starts.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return self.app(environ, start_response)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                getattr(result, "close", lambda: None)()


class _QuietRequestHandler(MotoRequestHandler):
    """No access log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class MotoStack:
    """A moto server (all services, one endpoint) on 127.0.0.1, a free port, in a daemon thread.

    >>> with MotoStack() as stack:  # doctest: +SKIP
    ...     boto3.client("sqs", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    """

    def __init__(self, *, region: str = DEFAULT_REGION) -> None:
        self.region = region
        self._server = LoopbackServer(
            _SerialiseDynamoDB(DomainDispatcherApplication(create_backend_app)),
            name="moto-server",
            request_handler=_QuietRequestHandler,
        )

    @property
    def endpoint_url(self) -> str:
        return self._server.url

    def start(self) -> MotoStack:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and pynamodb, Powertools) at this server.

        Fake credentials, the region, ``AWS_ENDPOINT_URL``; the shared config/credentials files are set
        to ``os.devnull`` so a developer's ``~/.aws`` (profiles, per-service endpoints) cannot interfere.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": _FAKE_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": _FAKE_CREDENTIAL,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` on this server (fake credentials; cached, thread-safe)."""
        return _client(service, self.endpoint_url, self.region)

    def __enter__(self) -> MotoStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@functools.lru_cache(maxsize=64)
def _client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client with fake credentials (cached: clients are thread-safe and slow to create)."""
    return boto3.session.Session(
        aws_access_key_id=_FAKE_CREDENTIAL, aws_secret_access_key=_FAKE_CREDENTIAL, region_name=region
    ).client(service, endpoint_url=endpoint_url)


# --------------------------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class StackResources:
    """What :func:`create_resources_from_template` created, by logical id."""

    endpoint_url: str
    region: str
    suffix: str
    dynamodb_endpoint_url: str = ""  # where the tables are (endpoint_url unless created elsewhere)
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    table_arns: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)
    topic_arns: dict[str, str] = field(default_factory=dict)
    resource_env: dict[str, str] = field(default_factory=dict)  # the functions' resource-backed env vars

    @property
    def ledger_table_name(self) -> str:
        return self.tables["LedgerTable"]

    @property
    def work_queue_url(self) -> str:
        return self.queue_urls["WorkQueue"]

    @property
    def work_dead_letter_queue_url(self) -> str:
        return self.queue_urls["WorkDeadLetterQueue"]

    @property
    def error_topic_arn(self) -> str:
        return self.topic_arns["ErrorTopic"]

    def error_inbox(self, name: str) -> Callable[[], list[Any]]:
        """An SQS queue ``name`` subscribed (raw delivery) to the error topic, standing in for the operators'
        e-mail subscription; returns a function that reads and deletes what arrived (JSON bodies)."""
        sqs, sns = _client("sqs", self.endpoint_url, self.region), _client("sns", self.endpoint_url, self.region)
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=self.error_topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
        )

        def drain() -> list[Any]:
            found = []
            while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
                for message in messages:
                    found.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return found

        return drain

    def lambda_env(self, **overrides: str) -> dict[str, str]:
        """The environment variables the functions get from these resources, as the template wires them
        (``LEDGER_TABLE_NAME``, ``WORK_QUEUE_URL``, ``ERROR_TOPIC_ARN``), plus ``overrides``."""
        return {**self.resource_env, **overrides}

    def dynamodb(self) -> Any:
        """A boto3 DynamoDB client on the engine holding the tables (fake credentials; cached)."""
        return _client("dynamodb", self.dynamodb_endpoint_url or self.endpoint_url, self.region)


# The properties translated, per resource type created; any other property in the template raises.
_PROPERTIES = {
    "AWS::DynamoDB::Table": {"BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes",
                             "TimeToLiveSpecification", "PointInTimeRecoverySpecification", "SSESpecification",
                             "DeletionProtectionEnabled"},
    "AWS::SQS::Queue": {"VisibilityTimeout", "MessageRetentionPeriod", "SqsManagedSseEnabled", "RedrivePolicy"},
    "AWS::SNS::Topic": {"DisplayName", "KmsMasterKeyId"},
    "AWS::KMS::Key": {"Description", "EnableKeyRotation", "KeyPolicy"},  # created when the topic refers to it
}  # fmt: skip
_CREATED_TYPES = ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SNS::Topic")


def _attribute_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


class _Creator:
    """Creates a resource when first referenced (a queue's dead-letter queue before the queue)."""

    def __init__(self, endpoint_url: str, template: Mapping[str, Any], suffix: str, parameters: Mapping[str, Any],
                 region: str, dynamodb_endpoint_url: str | None = None) -> None:  # fmt: skip
        self.endpoint_url, self.template, self.suffix, self.region = endpoint_url, template, suffix, region
        self.dynamodb_endpoint_url = dynamodb_endpoint_url or endpoint_url
        self.intrinsics = _Intrinsics(template, parameters, self.attribute, region, f"license-notifications{suffix}")
        self.created: dict[str, dict[str | None, str]] = {}  # logical id -> {None: Ref value, attribute: value}

    def client(self, service: str) -> Any:
        endpoint = self.dynamodb_endpoint_url if service == "dynamodb" else self.endpoint_url
        return _client(service, endpoint, self.region)

    def attribute(self, logical_id: str, attribute: str | None) -> str:
        if logical_id not in self.created:
            self.create(logical_id)
        values = self.created[logical_id]
        if attribute not in values:
            raise TemplateTranslationError(f"{logical_id}: attribute {attribute!r} is not available")
        return values[attribute]

    def create(self, logical_id: str) -> None:
        resource = self.template["Resources"][logical_id]
        kind, properties = resource["Type"], resource.get("Properties") or {}
        if kind not in _PROPERTIES:
            raise TemplateTranslationError(f"a created resource refers to {logical_id} ({kind}): not created here")
        if unknown := sorted(set(properties) - _PROPERTIES[kind]):
            raise TemplateTranslationError(f"{logical_id}: devstack.aws does not translate {unknown}")
        create = getattr(self, f"create_{kind.rpartition('::')[2].lower()}")  # create_table, create_queue...
        self.created[logical_id] = {
            "Type": kind,
            **create(f"{logical_id}{self.suffix}", self.intrinsics.resolve(properties)),
        }

    def create_table(self, name: str, props: Mapping[str, Any]) -> dict[str | None, str]:
        if missing := sorted({"KeySchema", "AttributeDefinitions"} - set(props)):
            raise TemplateTranslationError(f"{name}: {missing} required")
        dynamodb = self.client("dynamodb")
        kwargs = {key: props[key] for key in ("BillingMode", "AttributeDefinitions", "KeySchema",
                                              "GlobalSecondaryIndexes", "DeletionProtectionEnabled") if key in props}  # fmt: skip
        if "SSESpecification" in props:
            sse = props["SSESpecification"]
            kwargs["SSESpecification"] = {
                "Enabled": sse["SSEEnabled"],
                **{k: v for k, v in sse.items() if k == "SSEType"},
            }
        arn = dynamodb.create_table(TableName=name, **kwargs)["TableDescription"]["TableArn"]
        if "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        if "PointInTimeRecoverySpecification" in props:
            try:
                dynamodb.update_continuous_backups(
                    TableName=name, PointInTimeRecoverySpecification=props["PointInTimeRecoverySpecification"]
                )
            except dynamodb.exceptions.ClientError as exc:  # DynamoDB Local has no backups: nothing to recover
                if exc.response.get("Error", {}).get("Code") != "UnknownOperationException":
                    raise
        return {None: name, "Arn": arn}

    def create_queue(self, name: str, props: Mapping[str, Any]) -> dict[str | None, str]:
        sqs = self.client("sqs")
        attributes = {key: _attribute_string(value) for key, value in props.items()}
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {None: url, "Arn": arn, "QueueName": name}

    def create_topic(self, name: str, props: Mapping[str, Any]) -> dict[str | None, str]:
        attributes = {key: _attribute_string(value) for key, value in props.items()}
        arn = self.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        return {None: arn, "TopicName": name}

    def create_key(self, name: str, props: Mapping[str, Any]) -> dict[str | None, str]:
        kms = self.client("kms")
        policy = {"Policy": json.dumps(props["KeyPolicy"])} if "KeyPolicy" in props else {}
        meta = kms.create_key(Description=props.get("Description", name), **policy)["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=meta["KeyId"])
        return {None: meta["KeyId"], "Arn": meta["Arn"]}

    def resource_env(self) -> dict[str, str]:
        """The functions' env vars (Globals and each function's) that are a Ref or GetAtt of a created resource."""
        resources = self.template["Resources"].values()
        sources = [(self.template.get("Globals") or {}).get("Function") or {}]
        sources += [r.get("Properties") or {} for r in resources if r["Type"] == "AWS::Serverless::Function"]
        env = {}
        for source in sources:
            for key, value in ((source.get("Environment") or {}).get("Variables") or {}).items():
                target = value.get("Ref", (value.get("Fn::GetAtt") or [None])[0]) if isinstance(value, dict) else None
                if target in self.created:
                    env[key] = str(self.intrinsics.resolve(value))
        return env

    def of_type(self, kind: str, attribute: str | None) -> dict[str, str]:
        return {logical_id: v[attribute] for logical_id, v in self.created.items() if v["Type"] == kind}


def create_resources_from_template(
    endpoint_url: str,
    template: Mapping[str, Any] | str | Path | None = None,
    *,
    suffix: str | None = "",
    parameters: Mapping[str, Any] | None = None,
    region: str = DEFAULT_REGION,
    dynamodb_endpoint_url: str | None = None,
) -> StackResources:
    """Create the template's DynamoDB tables, SQS queues and SNS topics (and the KMS key a topic uses) in moto.

    Names are ``<LogicalId><suffix>``; ``suffix=None`` picks a random one. ``parameters`` override the
    template's defaults (e.g. ``LedgerRunIndex``). Every property is translated (keys, indexes, TTL,
    point-in-time recovery, encryption, queue attributes, ``RedrivePolicy`` with the DLQ's ARN resolved...)
    or the call fails with :class:`TemplateTranslationError`. With ``dynamodb_endpoint_url`` (DynamoDB Local,
    see devstack.dynamodb_local) the tables are created there and everything else at ``endpoint_url``.
    """
    if template is None or isinstance(template, (str, Path)):
        template = load_template(template)
    suffix = f"-{secrets.token_hex(4)}" if suffix is None else suffix
    creator = _Creator(endpoint_url, template, suffix, parameters or {}, region, dynamodb_endpoint_url)
    for logical_id, resource in template["Resources"].items():
        enabled = "Condition" not in resource or creator.intrinsics.condition(resource["Condition"])
        if resource["Type"] in _CREATED_TYPES and enabled and logical_id not in creator.created:
            creator.create(logical_id)
    return StackResources(
        endpoint_url=endpoint_url,
        region=region,
        suffix=suffix,
        dynamodb_endpoint_url=creator.dynamodb_endpoint_url,
        tables=creator.of_type("AWS::DynamoDB::Table", None),
        table_arns=creator.of_type("AWS::DynamoDB::Table", "Arn"),
        queue_urls=creator.of_type("AWS::SQS::Queue", None),
        queue_arns=creator.of_type("AWS::SQS::Queue", "Arn"),
        topic_arns=creator.of_type("AWS::SNS::Topic", None),
        resource_env=creator.resource_env(),
    )


def create_tables_from_template(
    endpoint_url: str,
    template: Mapping[str, Any] | str | Path | None = None,
    *,
    suffix: str | None = "",
    parameters: Mapping[str, Any] | None = None,
    region: str = DEFAULT_REGION,
) -> dict[str, str]:
    """Create only the template's DynamoDB tables at ``endpoint_url`` (e.g. DynamoDB Local, see
    devstack.dynamodb_local), translated as :func:`create_resources_from_template` does; returns
    ``{logical id: table name}``."""
    if template is None or isinstance(template, (str, Path)):
        template = load_template(template)
    suffix = f"-{secrets.token_hex(4)}" if suffix is None else suffix
    creator = _Creator(endpoint_url, template, suffix, parameters or {}, region)
    for logical_id, resource in template["Resources"].items():
        enabled = "Condition" not in resource or creator.intrinsics.condition(resource["Condition"])
        if resource["Type"] == "AWS::DynamoDB::Table" and enabled:
            creator.create(logical_id)
    return creator.of_type("AWS::DynamoDB::Table", None)


def create_secret(endpoint_url: str, name: str, value: str | Mapping[str, Any], *, region: str = DEFAULT_REGION) -> str:
    """Store ``value`` (a string, or a mapping stored as JSON) as secret ``name``; returns its ARN.

    An existing secret of that name gets a new current version.
    """
    client = _client("secretsmanager", endpoint_url, region)
    secret = value if isinstance(value, str) else json.dumps(dict(value))
    try:
        return client.create_secret(Name=name, SecretString=secret)["ARN"]
    except client.exceptions.ResourceExistsException:
        return client.put_secret_value(SecretId=name, SecretString=secret)["ARN"]
