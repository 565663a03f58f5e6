"""The embedded AWS side of the local stack (demo and tests): moto in server mode, resources from template.yaml.

* :func:`load_template` reads ``template.yaml`` with CloudFormation's short tags (``!Ref``, ``!GetAtt``,
  ``!Sub``...) turned into their long form (``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``...).
* :class:`MotoStack` runs a moto server on 127.0.0.1 (a free port) in a daemon thread. DynamoDB requests are
  serialised, because moto does not make a conditional write atomic (condition check and write are not under
  one lock) while real DynamoDB is atomic per item; with the lock, concurrency tests behave like DynamoDB.
  ``MotoStack.dynamodb`` can also throttle DynamoDB requests as DynamoDB does (fault injection, off by
  default).
* :func:`create_resources_from_template` creates, with boto3 against that server, exactly the DynamoDB
  tables, SQS queues, SNS topics (and the KMS keys they reference) that the template declares, with the
  template's properties. A property it cannot translate raises :class:`TemplateTranslationError` instead of
  being dropped.
* :func:`create_secret` stores a Secrets Manager secret (the demo's OAuth client secret and Braze API key).

moto keeps its state per process: ``moto.mock_aws`` (start or stop) resets the same backends this server
serves, so do not mix ``mock_aws`` with a running :class:`MotoStack` in one test.
"""

from __future__ import annotations

import functools
import json
import os
import random
import secrets
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import yaml
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

__all__ = [
    "DEFAULT_REGION",
    "FAKE_ACCOUNT_ID",
    "TEMPLATE_PATH",
    "MotoStack",
    "StackResources",
    "TemplateTranslationError",
    "create_resources_from_template",
    "create_secret",
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
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
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


class _NoValue:
    """AWS::NoValue: the property is removed."""


NO_VALUE = _NoValue()


def resolve_intrinsics(
    value: Any,
    template: Mapping[str, Any],
    *,
    parameters: Mapping[str, Any] | None = None,
    attributes: Callable[[str, str | None], Any] | None = None,
    region: str = DEFAULT_REGION,
    account_id: str = FAKE_ACCOUNT_ID,
    stack_name: str = "license-notifications-local",
) -> Any:
    """Evaluate CloudFormation intrinsic functions in ``value``.

    ``parameters`` override the template's parameter defaults (a parameter with neither raises).
    ``attributes(logical_id, attribute)`` resolves ``Ref`` (attribute ``None``) and ``Fn::GetAtt`` of
    resources; without it, a resource reference raises. Supported: Ref, Fn::GetAtt, Fn::Sub, Fn::Join,
    Fn::Select, Fn::Split, Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition, Fn::FindInMap and the
    pseudo parameters; anything else raises :class:`TemplateTranslationError`.
    """
    return _Resolver(template, parameters or {}, attributes, region, account_id, stack_name).resolve(value)


class _Resolver:
    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        attributes: Callable[[str, str | None], Any] | None,
        region: str,
        account_id: str,
        stack_name: str,
    ) -> None:
        self.template = template
        self.attributes = attributes
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        declared = template.get("Parameters", {}) or {}
        unknown = set(parameters) - set(declared)
        if unknown:
            raise TemplateTranslationError(f"unknown template parameter(s): {sorted(unknown)}")
        self.parameters: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in parameters:
                self.parameters[name] = str(parameters[name])
            elif "Default" in spec:
                self.parameters[name] = str(spec["Default"])
        self._conditions: dict[str, bool] = {}

    # -- helpers
    def parameter(self, name: str) -> Any:
        if name not in self.parameters:
            raise TemplateTranslationError(f"parameter {name} has no default: pass it in parameters=")
        spec = self.template["Parameters"][name]
        value = self.parameters[name]
        if str(spec.get("Type", "")).startswith("List<") or spec.get("Type") == "CommaDelimitedList":
            return [item.strip() for item in value.split(",")]
        return value

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions", {}) or {}
            if name not in conditions:
                raise TemplateTranslationError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in (self.template.get("Parameters") or {}):
            return self.parameter(name)
        return self.resource(name, None)

    def resource(self, logical_id: str, attribute: str | None) -> Any:
        if logical_id not in self.template.get("Resources", {}):
            raise TemplateTranslationError(f"reference to unknown resource {logical_id}")
        if self.attributes is None:
            raise TemplateTranslationError(f"cannot resolve a reference to resource {logical_id} here")
        return self.attributes(logical_id, attribute)

    def sub(self, args: Any) -> str:
        if isinstance(args, str):
            text, variables = args, {}
        else:
            text, variables = args[0], {k: self.resolve(v) for k, v in args[1].items()}
        out: list[str] = []
        i = 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            end = text.find("}", start)
            if end < 0:
                raise TemplateTranslationError(f"unterminated ${{ in Fn::Sub {text!r}")
            name = text[start + 2 : end]
            if name.startswith("!"):  # ${!Literal}
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif "." in name and name.split(".", 1)[0] in self.template.get("Resources", {}):
                resource, attribute = name.split(".", 1)
                out.append(str(self.resource(resource, attribute)))
            else:
                resolved = self.ref(name)
                out.append(",".join(resolved) if isinstance(resolved, list) else str(resolved))
            i = end + 1
        return "".join(out)

    # -- the evaluator
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, args), *_ = value.items()
            if key == "Ref":
                return self.ref(args)
            if key == "Condition":
                return self.condition(args)
            if key.startswith("Fn::"):
                return self.function(key, args)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def function(self, key: str, args: Any) -> Any:
        if key == "Fn::GetAtt":
            resource, attribute = args if isinstance(args, list) else args.split(".", 1)
            return self.resource(resource, self.resolve(attribute))
        if key == "Fn::Sub":
            return self.sub(args)
        if key == "Fn::Join":
            delimiter, items = args
            return delimiter.join(str(item) for item in self.resolve(items))
        if key == "Fn::Select":
            index, items = self.resolve(args)
            return items[int(index)]
        if key == "Fn::Split":
            delimiter, text = self.resolve(args)
            return text.split(delimiter)
        if key == "Fn::If":
            name, if_true, if_false = args
            return self.resolve(if_true if self.condition(name) else if_false)
        if key == "Fn::Equals":
            left, right = self.resolve(args)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(args[0])
        if key == "Fn::And":
            return all(self.resolve(item) for item in args)
        if key == "Fn::Or":
            return any(self.resolve(item) for item in args)
        if key == "Fn::FindInMap":
            name, top, second = self.resolve(args[:3])
            return self.template["Mappings"][name][top][second]
        raise TemplateTranslationError(f"intrinsic function {key} is not supported by devstack.aws")


# --------------------------------------------------------------------------------------------- moto server


_THROTTLED_BODY = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API.",
}


class _SerialiseDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, other services untouched.

    moto checks a ConditionExpression and then writes without a lock, so two concurrent conditional puts of
    the same key can both succeed. Real DynamoDB is atomic per item. The lock is held for the whole call,
    including consuming the response body, so a request's effects are complete before the next starts.

    Fault injection (off by default): :meth:`throttle` answers a share of DynamoDB requests, and
    :meth:`throttle_next` the next few, as DynamoDB throttles: HTTP 400 with a
    ``ProvisionedThroughputExceededException`` JSON body, the request not executed. ``throttled`` counts them
    by operation (``UpdateItem``, ``BatchGetItem``...).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self._fault_lock = threading.Lock()
        self._rate = 0.0
        self._rate_operations: frozenset[str] | None = None
        self._next: list[frozenset[str] | None] = []
        self._rng = random.Random()  # fault injection, not cryptography
        self.throttled: Counter[str] = Counter()

    def throttle(self, rate: float, *, operations: Iterable[str] | None = None, seed: int | None = None) -> None:
        """Throttle each DynamoDB request with probability ``rate`` (0 turns it off), only ``operations``
        (e.g. ``{"UpdateItem"}``) when given; ``seed`` makes the draws repeatable."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        with self._fault_lock:
            self._rate = rate
            self._rate_operations = frozenset(operations) if operations is not None else None
            if seed is not None:
                self._rng.seed(seed)

    def throttle_next(self, times: int = 1, *, operations: Iterable[str] | None = None) -> None:
        """Throttle the next ``times`` DynamoDB requests (of ``operations``, when given)."""
        if times < 1:
            raise ValueError("times must be >= 1")
        wanted = frozenset(operations) if operations is not None else None
        with self._fault_lock:
            self._next.extend([wanted] * times)

    def clear_throttling(self) -> None:
        with self._fault_lock:
            self._rate, self._rate_operations = 0.0, None
            self._next.clear()

    def _throttles(self, operation: str) -> bool:
        with self._fault_lock:
            for index, wanted in enumerate(self._next):
                if wanted is None or operation in wanted:
                    del self._next[index]
                    self.throttled[operation] += 1
                    return True
            wanted = self._rate_operations is None or operation in self._rate_operations
            if self._rate and wanted and self._rng.random() < self._rate:
                self.throttled[operation] += 1
                return True
        return False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB"):
            return self.app(environ, start_response)
        if self._throttles(target.rpartition(".")[2]):
            body = json.dumps(_THROTTLED_BODY).encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("Content-Length", str(len(body))),
                    ("x-amzn-RequestId", secrets.token_hex(16)),
                ],
            )
            return [body]
        with self.lock:
            result = self.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]


class _QuietRequestHandler(MotoRequestHandler):
    """No access log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class MotoStack:
    """A moto server on 127.0.0.1 in a daemon thread (all services, one endpoint).

    ``port=0`` picks a free port; ``verbose=True`` logs every request (werkzeug's access log).

    >>> with MotoStack() as stack:  # doctest: +SKIP
    ...     boto3.client("sqs", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, region: str = DEFAULT_REGION, verbose: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.verbose = verbose
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._dynamodb: _SerialiseDynamoDB | None = None

    @property
    def dynamodb(self) -> _SerialiseDynamoDB:
        """The DynamoDB middleware of the running server: ``throttle``, ``throttle_next``,
        ``clear_throttling``, ``throttled`` (fault injection, off unless asked for)."""
        if self._dynamodb is None:
            raise RuntimeError("MotoStack is not started")
        return self._dynamodb

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("MotoStack is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MotoStack:
        if self._server is not None:
            return self
        app = self._dynamodb = _SerialiseDynamoDB(DomainDispatcherApplication(create_backend_app))
        # make_server binds before returning: the port is known and the socket accepts connections
        # (queued by the kernel) even before serve_forever runs.
        handler = MotoRequestHandler if self.verbose else _QuietRequestHandler
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"moto-server-{self._server.server_port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def reset(self) -> None:
        """Forget every resource (moto's /moto-api/reset)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback endpoint
            pass

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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    table_arns: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)
    topic_arns: dict[str, str] = field(default_factory=dict)
    kms_key_arns: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)  # the parameter values used
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

    def lambda_env(self, **overrides: str) -> dict[str, str]:
        """The environment variables the functions get from these resources, as the template wires them
        (``LEDGER_TABLE_NAME``, ``WORK_QUEUE_URL``, ``ERROR_TOPIC_ARN``), plus ``overrides``."""
        return {**self.resource_env, **overrides}


# CloudFormation property -> SQS attribute name (value rendered as a string).
_SQS_ATTRIBUTES = {
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "DelaySeconds": "DelaySeconds",
    "MaximumMessageSize": "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled": "SqsManagedSseEnabled",
    "KmsMasterKeyId": "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds": "KmsDataKeyReusePeriodSeconds",
    "FifoQueue": "FifoQueue",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "DeduplicationScope": "DeduplicationScope",
    "FifoThroughputLimit": "FifoThroughputLimit",
    "RedrivePolicy": "RedrivePolicy",
    "RedriveAllowPolicy": "RedriveAllowPolicy",
}
_SNS_ATTRIBUTES = {
    "DisplayName": "DisplayName",
    "KmsMasterKeyId": "KmsMasterKeyId",
    "FifoTopic": "FifoTopic",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "SignatureVersion": "SignatureVersion",
    "TracingConfig": "TracingConfig",
}
_DYNAMODB_PROPERTIES = {
    "TableName",
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "SSESpecification",
    "StreamSpecification",
    "TimeToLiveSpecification",
    "PointInTimeRecoverySpecification",
    "DeletionProtectionEnabled",
    "TableClass",
    "Tags",
}
_KMS_PROPERTIES = {"Description", "KeyPolicy", "EnableKeyRotation", "KeySpec", "KeyUsage", "Enabled",
                   "MultiRegion", "PendingWindowInDays", "Tags"}  # fmt: skip
_HANDLED_TYPES = ("AWS::KMS::Key", "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SNS::Topic")
_CREATED_TYPES = ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SNS::Topic")


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _tags(tags: Any) -> list[dict[str, str]]:
    return [{"Key": str(tag["Key"]), "Value": str(tag["Value"])} for tag in tags or []]


def _references(value: Any) -> Iterator[str]:
    """Logical ids referenced by Ref / Fn::GetAtt / Fn::Sub inside ``value``."""
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for key, args in value.items():
            if key == "Ref" and isinstance(args, str):
                yield args
            elif key == "Fn::GetAtt":
                yield args[0] if isinstance(args, list) else args.split(".", 1)[0]
            elif key == "Fn::Sub":
                text = args if isinstance(args, str) else args[0]
                for part in text.split("${")[1:]:
                    yield part.split("}", 1)[0].split(".", 1)[0]
                if not isinstance(args, str):
                    yield from _references(args[1])
            else:
                yield from _references(args)


class _Creator:
    def __init__(
        self,
        endpoint_url: str,
        template: Mapping[str, Any],
        suffix: str,
        parameters: Mapping[str, Any],
        region: str,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.template = template
        self.suffix = suffix
        self.region = region
        self.resources: Mapping[str, Any] = template["Resources"]
        self.resolver = _Resolver(
            template, parameters, self.attribute, region, FAKE_ACCOUNT_ID, f"license-notifications{suffix}"
        )
        self.created: dict[str, dict[str, Any]] = {}  # logical id -> {None: Ref value, attr: value}
        self._in_progress: set[str] = set()

    def client(self, service: str) -> Any:
        return _client(service, self.endpoint_url, self.region)

    def attribute(self, logical_id: str, attribute: str | None) -> Any:
        self.create(logical_id)
        values = self.created[logical_id]
        if attribute not in values:
            kind = self.resources[logical_id]["Type"]
            raise TemplateTranslationError(f"{logical_id} ({kind}): attribute {attribute!r} is not available")
        return values[attribute]

    def name(self, logical_id: str, explicit: Any) -> str:
        return f"{explicit}{self.suffix}" if explicit else f"{logical_id}{self.suffix}"

    def enabled(self, logical_id: str) -> bool:
        condition = self.resources[logical_id].get("Condition")
        return condition is None or self.resolver.condition(condition)

    def create(self, logical_id: str) -> None:
        if logical_id in self.created:
            return
        resource = self.resources[logical_id]
        kind = resource.get("Type")
        if kind not in _HANDLED_TYPES:
            raise TemplateTranslationError(
                f"a created resource references {logical_id} ({kind}), which devstack.aws does not create"
            )
        if not self.enabled(logical_id):
            raise TemplateTranslationError(f"{logical_id} is referenced but its condition is false")
        if logical_id in self._in_progress:
            raise TemplateTranslationError(f"circular reference through {logical_id}")
        self._in_progress.add(logical_id)
        try:
            properties = resource.get("Properties", {}) or {}
            # Create what this resource references first (e.g. the DLQ before its source queue).
            for dependency in sorted(set(_references(properties))):
                if dependency in self.resources:
                    self.create(dependency)
            props = self.resolver.resolve(properties)
            handler = {
                "AWS::KMS::Key": self.create_kms_key,
                "AWS::DynamoDB::Table": self.create_table,
                "AWS::SQS::Queue": self.create_queue,
                "AWS::SNS::Topic": self.create_topic,
            }[kind]
            self.created[logical_id] = handler(logical_id, props)
        finally:
            self._in_progress.discard(logical_id)

    @staticmethod
    def check_known(logical_id: str, props: Mapping[str, Any], known: Iterable[str]) -> None:
        unknown = sorted(set(props) - set(known))
        if unknown:
            raise TemplateTranslationError(f"{logical_id}: devstack.aws does not translate {unknown}")

    # -- KMS
    def create_kms_key(self, logical_id: str, props: Mapping[str, Any]) -> dict[str, Any]:
        self.check_known(logical_id, props, _KMS_PROPERTIES)
        kms = self.client("kms")
        kwargs: dict[str, Any] = {
            "Description": props.get("Description", logical_id),
            "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
            "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
            "MultiRegion": bool(props.get("MultiRegion", False)),
            "Tags": [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags(props.get("Tags"))],
        }
        if "KeyPolicy" in props:
            kwargs["Policy"] = _string(props["KeyPolicy"])
        meta = kms.create_key(**kwargs)["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=meta["KeyId"])
        if props.get("Enabled") is False:
            kms.disable_key(KeyId=meta["KeyId"])
        return {None: meta["KeyId"], "KeyId": meta["KeyId"], "Arn": meta["Arn"]}

    # -- DynamoDB
    def create_table(self, logical_id: str, props: Mapping[str, Any]) -> dict[str, Any]:
        self.check_known(logical_id, props, _DYNAMODB_PROPERTIES)
        for required in ("KeySchema", "AttributeDefinitions"):
            if required not in props:
                raise TemplateTranslationError(f"{logical_id}: {required} is required")
        dynamodb = self.client("dynamodb")
        name = self.name(logical_id, props.get("TableName"))
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in props:
            kwargs["ProvisionedThroughput"] = {k: int(v) for k, v in props["ProvisionedThroughput"].items()}
        elif kwargs["BillingMode"] == "PROVISIONED":
            raise TemplateTranslationError(f"{logical_id}: PROVISIONED billing needs ProvisionedThroughput")
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "TableClass"):
            if key in props:
                kwargs[key] = props[key]
        if "SSESpecification" in props:
            sse = props["SSESpecification"]
            spec: dict[str, Any] = {"Enabled": bool(sse.get("SSEEnabled", False))}
            if "SSEType" in sse:
                spec["SSEType"] = sse["SSEType"]
            if "KMSMasterKeyId" in sse:
                spec["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
            kwargs["SSESpecification"] = spec
        if "StreamSpecification" in props:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        if "DeletionProtectionEnabled" in props:
            kwargs["DeletionProtectionEnabled"] = bool(props["DeletionProtectionEnabled"])
        if props.get("Tags"):
            kwargs["Tags"] = _tags(props["Tags"])
        table = dynamodb.create_table(**kwargs)["TableDescription"]
        if "TimeToLiveSpecification" in props:
            ttl = props["TimeToLiveSpecification"]
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"],
                    "Enabled": bool(ttl.get("Enabled", False)),
                },
            )
        pitr = props.get("PointInTimeRecoverySpecification", {})
        if pitr.get("PointInTimeRecoveryEnabled"):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        return {None: name, "Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn")}

    def fifo_aware_name(self, logical_id: str, explicit: Any, *, fifo: bool) -> str:
        """The suffixed name; a FIFO queue or topic keeps ``.fifo`` at the end, as AWS requires."""
        if explicit and str(explicit).endswith(".fifo"):
            return f"{str(explicit)[: -len('.fifo')]}{self.suffix}.fifo"
        name = self.name(logical_id, explicit)
        return f"{name}.fifo" if fifo else name

    # -- SQS
    def create_queue(self, logical_id: str, props: Mapping[str, Any]) -> dict[str, Any]:
        self.check_known(logical_id, props, {*_SQS_ATTRIBUTES, "QueueName", "Tags"})
        sqs = self.client("sqs")
        name = self.fifo_aware_name(logical_id, props.get("QueueName"), fifo=bool(props.get("FifoQueue")))
        attributes = {_SQS_ATTRIBUTES[k]: _string(v) for k, v in props.items() if k in _SQS_ATTRIBUTES}
        kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if props.get("Tags"):
            kwargs["tags"] = {t["Key"]: t["Value"] for t in _tags(props["Tags"])}
        url = sqs.create_queue(**kwargs)["QueueUrl"]
        actual = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for key, value in attributes.items():
            got = actual.get(key)
            same = json.loads(got) == json.loads(value) if key.startswith("Redrive") and got else got == value
            if not same:
                raise TemplateTranslationError(f"{logical_id}: moto did not keep {key}={value} (got {got!r})")
        return {None: url, "QueueUrl": url, "Arn": actual["QueueArn"], "QueueName": name}

    # -- SNS
    def create_topic(self, logical_id: str, props: Mapping[str, Any]) -> dict[str, Any]:
        self.check_known(logical_id, props, {*_SNS_ATTRIBUTES, "TopicName", "Tags"})
        sns = self.client("sns")
        name = self.fifo_aware_name(logical_id, props.get("TopicName"), fifo=bool(props.get("FifoTopic")))
        attributes = {_SNS_ATTRIBUTES[k]: _string(v) for k, v in props.items() if k in _SNS_ATTRIBUTES}
        kwargs: dict[str, Any] = {"Name": name, "Attributes": attributes}
        if props.get("Tags"):
            kwargs["Tags"] = _tags(props["Tags"])
        arn = sns.create_topic(**kwargs)["TopicArn"]
        return {None: arn, "TopicArn": arn, "TopicName": name}

    # -- the functions' environment
    def resource_env(self) -> dict[str, str]:
        """Env vars of the functions (Globals + each function) whose value references created resources."""
        sources = [((self.template.get("Globals") or {}).get("Function") or {}).get("Environment")]
        for resource in self.resources.values():
            if resource.get("Type") == "AWS::Serverless::Function":
                sources.append((resource.get("Properties") or {}).get("Environment"))
        env: dict[str, str] = {}
        for source in sources:
            for key, value in ((source or {}).get("Variables") or {}).items():
                refs = {r for r in _references(value) if r in self.resources}
                if refs and refs <= set(self.created):
                    env[key] = _string(self.resolver.resolve(value))
        return env


def create_resources_from_template(
    endpoint_url: str,
    template: Mapping[str, Any] | str | Path | None = None,
    *,
    suffix: str | None = "",
    parameters: Mapping[str, Any] | None = None,
    region: str = DEFAULT_REGION,
) -> StackResources:
    """Create the template's DynamoDB tables, SQS queues and SNS topics (and the KMS keys they use) in moto.

    Names are ``<LogicalId><suffix>`` (or ``<TableName/QueueName/TopicName><suffix>`` when the template
    names them); ``suffix=None`` picks a random one. ``parameters`` override the template's defaults; they are
    only needed when a created resource uses a parameter without a default. Resources with a false
    ``Condition`` are skipped. Every property is translated (``KeySchema``, ``SSESpecification``, TTL,
    point-in-time recovery, queue attributes, ``RedrivePolicy`` with the DLQ's ARN resolved, topic
    encryption...) or the call fails with :class:`TemplateTranslationError`.
    """
    if template is None or isinstance(template, (str, Path)):
        template = load_template(template)
    if suffix is None:
        suffix = f"-{secrets.token_hex(4)}"
    creator = _Creator(endpoint_url, template, suffix, parameters or {}, region)
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") in _CREATED_TYPES and creator.enabled(logical_id):
            creator.create(logical_id)

    def by_type(kind: str, attribute: str | None) -> dict[str, str]:
        return {
            logical_id: values[attribute]
            for logical_id, values in creator.created.items()
            if template["Resources"][logical_id]["Type"] == kind
        }

    return StackResources(
        endpoint_url=endpoint_url,
        region=region,
        suffix=suffix,
        tables=by_type("AWS::DynamoDB::Table", None),
        table_arns=by_type("AWS::DynamoDB::Table", "Arn"),
        queue_urls=by_type("AWS::SQS::Queue", None),
        queue_arns=by_type("AWS::SQS::Queue", "Arn"),
        topic_arns=by_type("AWS::SNS::Topic", None),
        kms_key_arns=by_type("AWS::KMS::Key", "Arn"),
        parameters=dict(creator.resolver.parameters),
        resource_env=creator.resource_env(),
    )


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
