"""What `sam local invoke` does, without Docker: run a function of template.yaml in this process.

``sam local invoke`` reads the template, merges ``Globals``, resolves the function's environment
(parameter defaults, ``--parameter-overrides``, pseudo parameters, ``--env-vars``), mounts the code
and the layers, and calls the handler with the event and a Lambda context. This module does the
same in-process, so that integration tests run the real handlers against moto::

    app = SamApp.load(Path("template.yaml"))
    planner = app.resolve(
        "PlannerFunction",
        parameter_overrides={"AWS::StackName": "amikeeper", "Regions": "eu-west-1"},
        env_vars={"Parameters": {"AMIKEEPER_WORK_QUEUE_URL": queue_url, ...}},
    )
    result = planner.invoke(load_event(app.events_for("PlannerFunction")[0]))

Resolution follows SAM CLI (``samcli.lib.providers`` and ``samcli.local.lambdafn.env_vars``):

- ``Globals.Function`` is merged into the function the way the SAM transform does it: maps merge
  (the function's keys win), lists concatenate (globals first), scalars are replaced.
- ``Ref`` to a parameter gives its ``--parameter-overrides`` value, else its ``Default``; pseudo
  parameters get SAM CLI's local values (``AWS::StackName`` is ``local``, ``AWS::Region`` is
  ``us-east-1``, ...) unless overridden like any parameter (``{"AWS::Region": "eu-west-1"}``).
  ``Fn::Sub``, ``Fn::Join``, ``Fn::If``, ``Fn::Select``, ``Fn::Split`` and ``Fn::FindInMap`` over those
  are evaluated.
- ``env_vars`` has the shape of the ``--env-vars`` file: ``{"Parameters": {...}}`` for every function,
  ``{"<LogicalId>": {...}}`` for one; the function's own entry wins. It replaces any declared variable,
  which is how values that only exist once deployed (``Ref`` to a queue, ``Fn::GetAtt``) are given.
  It may also set runtime switches the template does not declare (``AWS_*``, ``POWERTOOLS_*``);
  ``AWS_REGION`` there also becomes ``AWS::Region``.
- The runtime variables Lambda sets (``AWS_REGION``, ``AWS_LAMBDA_FUNCTION_NAME``, ...) are set too,
  with ``AWS_SAM_LOCAL=true`` as SAM CLI does (Powertools' tracer switches itself off on it).

Deliberate differences, each to make a test fail loudly rather than run on a wrong value:

- A variable that cannot be resolved and has no ``env_vars`` value raises
  :class:`UnresolvedEnvironmentError` naming it (SAM CLI passes an empty string or a logical id).
- An ``env_vars`` entry for a variable the function does not declare, other than a runtime switch,
  raises :class:`UndeclaredEnvironmentVariableError` (SAM CLI ignores it silently): it is a typo.
- The shell's environment does not override declared variables (SAM CLI lets it): tests stay
  hermetic. Credentials are left alone; moto provides fake ones.
- ``AWS_LAMBDA_FUNCTION_NAME`` is the resolved ``FunctionName`` (SAM CLI uses the logical id), since
  a handler that invokes itself needs the deployed name.
- The event goes through a JSON round trip on the way in and the result on the way out, as with a
  real invocation; a result that is not JSON raises :class:`ResponseNotJsonError`.

A resolved function is one container: its first invocation is a cold start (``app.py`` is imported,
running its module-level code with the function's environment), later ones are warm and reuse the
module; ``invoke(..., fresh=True)`` starts a new container. The layer's package (``amikeeper``) is
imported once per test process, like a layer every container shares: state that must be rebuilt on a
cold start belongs in the handler module.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml  # type: ignore[import-untyped]

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"
LAMBDA_LAYER = "AWS::Lambda::LayerVersion"

# samcli.lib.intrinsic_resolver.intrinsics_symbol_table.IntrinsicsSymbolTable.DEFAULT_PSEUDO_PARAM_VALUES
PSEUDO_PARAMETER_DEFAULTS: Mapping[str, str] = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "local",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/"
    "local/51af3dc0-da77-11e4-872e-1234567db123",
    "AWS::URLSuffix": "localhost",
}

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_INTRINSIC_FUNCTIONS = (
    "Base64 Cidr FindInMap GetAtt GetAZs ImportValue Join Select Split Sub Transform "
    "If Equals Not And Or ToJsonString Length"
)
_INTRINSIC_KEYS = frozenset(
    {"Ref", "Condition"} | {f"Fn::{name}" for name in _INTRINSIC_FUNCTIONS.split(" ")}
)
# Variables a test may set although the template does not declare them: they steer the runtime.
RUNTIME_SWITCH_PREFIXES = ("AWS_", "POWERTOOLS_", "_X_AMZN_")
_module_numbers = itertools.count(1)


class SamLocalError(Exception):
    """Base of every error this harness raises."""


class TemplateError(SamLocalError):
    """template.yaml cannot be read, or lacks something the invocation needs."""


class UnknownFunctionError(SamLocalError):
    def __init__(self, logical_id: str, known: list[str]) -> None:
        super().__init__(
            f"{logical_id!r} is not an {SERVERLESS_FUNCTION} of the template; known: {', '.join(known)}"
        )


class UnknownParameterError(SamLocalError):
    def __init__(self, names: list[str], known: list[str]) -> None:
        super().__init__(
            f"parameter override(s) {', '.join(names)} name no template parameter or pseudo parameter; "
            f"known: {', '.join(known)}"
        )


class UnresolvedEnvironmentError(SamLocalError):
    """Variables whose template value exists only once deployed; give them through ``env_vars``."""

    def __init__(self, logical_id: str, reasons: Mapping[str, str]) -> None:
        listed = "; ".join(f"{name} ({reason})" for name, reason in sorted(reasons.items()))
        super().__init__(
            f"{logical_id}: cannot resolve {listed} locally; give a value with "
            f"env_vars={{'{logical_id}': {{...}}}} or env_vars={{'Parameters': {{...}}}}"
        )
        self.variables = sorted(reasons)


class UndeclaredEnvironmentVariableError(SamLocalError):
    def __init__(self, logical_id: str, names: list[str]) -> None:
        super().__init__(
            f"{logical_id} declares no environment variable {', '.join(names)}; env_vars may only replace "
            f"variables of the template or set runtime switches ({', '.join(RUNTIME_SWITCH_PREFIXES)}...)"
        )


class HandlerNotFoundError(SamLocalError):
    """The function's CodeUri has no module or no callable for its Handler."""


class ResponseNotJsonError(SamLocalError):
    """The handler returned something Lambda could not serialise as its JSON response."""


class UnresolvableValueError(SamLocalError):
    """An intrinsic whose value only exists once the stack is deployed (Ref to a resource, GetAtt)."""


@dataclass
class FakeLambdaContext:
    """The attributes and the one method of the Python runtime's LambdaContext.

    ``memory_limit_in_mb`` is a string, as the real runtime reads it from the environment.
    The remaining time counts down from ``budget_ms`` on ``clock`` (monotonic seconds), so a test can
    hand a handler an almost expired budget, or drive the countdown with its own clock.
    """

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: str
    log_group_name: str
    budget_ms: int
    clock: Callable[[], float] = time.monotonic
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_stream_name: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    _started: float = field(init=False)

    def __post_init__(self) -> None:
        self._started = self.clock()

    def get_remaining_time_in_millis(self) -> int:
        elapsed_ms = int((self.clock() - self._started) * 1000)
        return max(0, self.budget_ms - elapsed_ms)


@dataclass
class _Container:
    module: ModuleType | None = None
    cold_starts: int = 0


@dataclass(frozen=True)
class ResolvedFunction:
    """One function of the template, resolved like `sam local invoke` would, ready to invoke."""

    logical_id: str
    function_name: str
    handler: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    environment: Mapping[str, str]
    region: str
    account_id: str
    memory_mb: int
    timeout_s: int
    logging_config: Mapping[str, str] = field(default_factory=dict)
    # What the cloud does once the function returned: the test stack delivers the messages it queued to
    # their consumers, as Lambda's SQS event source mappings would (see tests.fixtures.stack).
    after_invoke: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _container: _Container = field(default_factory=_Container, repr=False, compare=False)

    @property
    def cold_starts(self) -> int:
        """How many containers this function has started (each cold start imports app.py anew)."""
        return self._container.cold_starts

    def recycle(self) -> None:
        """Lambda retires the container: the next invocation is a cold start that imports app.py anew."""
        if self._container.module is not None:
            sys.modules.pop(self._container.module.__name__, None)
            self._container.module = None

    def warm_module(self) -> ModuleType:
        """The module of a warm container (cold-starting one if there is none): what a simulation patches,
        e.g. the clock its handler reads."""
        if self._container.module is None:
            with self._running():
                self._container.module = self._import_handler_module()
                self._container.cold_starts += 1
        return self._container.module

    def runtime_environment(self) -> dict[str, str]:
        """Everything the handler sees: Lambda's runtime variables, then the function's own."""
        runtime = {
            "AWS_SAM_LOCAL": "true",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCOUNT_ID": self.account_id,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s),
            "AWS_LAMBDA_FUNCTION_HANDLER": self.handler,
            "AWS_LAMBDA_LOG_GROUP_NAME": self._log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        }
        if log_format := self.logging_config.get("LogFormat"):
            runtime["AWS_LAMBDA_LOG_FORMAT"] = log_format
            if log_format == "JSON":
                runtime["AWS_LAMBDA_LOG_LEVEL"] = self.logging_config.get("ApplicationLogLevel", "INFO")
        return runtime | dict(self.environment)

    def context(
        self, budget_ms: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> FakeLambdaContext:
        """A fresh context; the budget defaults to the function's Timeout."""
        return FakeLambdaContext(
            function_name=self.function_name,
            invoked_function_arn=(
                f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"
            ),
            memory_limit_in_mb=str(self.memory_mb),
            log_group_name=self._log_group_name,
            budget_ms=self.timeout_s * 1000 if budget_ms is None else budget_ms,
            clock=clock,
        )

    def invoke(self, event: Mapping[str, Any], context: Any = None, fresh: bool = False) -> Any:
        """Call the handler as Lambda would; the first call, and any with ``fresh``, is a cold start."""
        payload = json.loads(json.dumps(event))
        with self._running():
            if fresh or self._container.module is None:
                self._container.module = self._import_handler_module()
                self._container.cold_starts += 1
            handler = self._handler_callable(self._container.module)
            result = handler(payload, context if context is not None else self.context())
        try:
            answer = json.loads(json.dumps(result))
        except (TypeError, ValueError) as error:
            raise ResponseNotJsonError(
                f"{self.logical_id} returned {type(result).__name__} that is not JSON: {error}"
            ) from None
        if self.after_invoke is not None:
            self.after_invoke()
        return answer

    @property
    def _log_group_name(self) -> str:
        return self.logging_config.get("LogGroup") or f"/aws/lambda/{self.function_name}"

    @property
    def _module_file(self) -> Path:
        module_path, _, _ = self.handler.rpartition(".")
        return self.code_dir.joinpath(*module_path.split(".")).with_suffix(".py")

    def _import_handler_module(self) -> ModuleType:
        if self._container.module is not None:
            sys.modules.pop(self._container.module.__name__, None)
            self._container.module = None
        source = self._module_file
        if not source.is_file():
            raise HandlerNotFoundError(f"{self.logical_id}: handler {self.handler!r} needs {source}")
        # Every function has an app.py: a unique name keeps their modules (and containers) apart.
        name = f"sam_local_{self.logical_id}_{next(_module_numbers)}"
        spec = importlib.util.spec_from_file_location(name, source)
        if spec is None or spec.loader is None:
            raise HandlerNotFoundError(f"{self.logical_id}: {source} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        # Registered before running, as a real import does: pydantic and dataclasses look it up.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module

    def _handler_callable(self, module: ModuleType) -> Callable[[Any, Any], Any]:
        attribute = self.handler.rpartition(".")[2]
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise HandlerNotFoundError(
                f"{self.logical_id}: {self._module_file} has no callable {attribute!r}"
            )
        return handler  # type: ignore[no-any-return]

    @contextmanager
    def _running(self) -> Iterator[None]:
        with _environment(self.runtime_environment()), _import_path([self.code_dir, *self.layer_dirs]):
            yield


@dataclass(frozen=True)
class SamApp:
    """A SAM template on disk, with its events/ folder beside it."""

    path: Path
    template: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path) -> SamApp:
        try:
            template = load_template(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise TemplateError(f"{path}: {error}") from None
        if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
            raise TemplateError(f"{path}: no Resources mapping")
        return cls(path=path.resolve(), template=template)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def resources(self) -> Mapping[str, Mapping[str, Any]]:
        return self.template["Resources"]  # type: ignore[no-any-return]

    @property
    def parameters(self) -> Mapping[str, Mapping[str, Any]]:
        return self.template.get("Parameters") or {}

    def function_ids(self) -> list[str]:
        """Logical ids of the template's serverless functions, in template order."""
        return [
            fid for fid, resource in self.resources.items() if resource.get("Type") == SERVERLESS_FUNCTION
        ]

    def function_properties(self, logical_id: str) -> dict[str, Any]:
        """The function's properties with Globals.Function merged in, as the SAM transform does."""
        resource = self.resources.get(logical_id)
        if resource is None or resource.get("Type") != SERVERLESS_FUNCTION:
            raise UnknownFunctionError(logical_id, self.function_ids())
        global_properties = (self.template.get("Globals") or {}).get("Function") or {}
        merged = _merge_globals(global_properties, resource.get("Properties") or {})
        return merged  # type: ignore[no-any-return]

    def resolve(
        self,
        logical_id: str,
        parameter_overrides: Mapping[str, str | int] | None = None,
        env_vars: Mapping[str, Mapping[str, str]] | None = None,
    ) -> ResolvedFunction:
        """Resolve the function like `sam local invoke` with these overrides and --env-vars."""
        properties = self.function_properties(logical_id)
        variables = _merged_env_vars(logical_id, env_vars or {})
        parameter_values = self._parameter_values(parameter_overrides or {})
        if "AWS_REGION" in variables and "AWS::Region" not in (parameter_overrides or {}):
            parameter_values["AWS::Region"] = variables["AWS_REGION"]
        resolver = _Resolver(self.template, parameter_values)
        environment = self._environment(logical_id, properties, resolver, variables)
        handler = properties.get("Handler")
        if not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{logical_id}: Handler {handler!r} is not 'module.function'")
        try:
            function_name = str(resolver.value(properties.get("FunctionName", logical_id)))
        except UnresolvableValueError:
            function_name = logical_id
        return ResolvedFunction(
            logical_id=logical_id,
            function_name=function_name,
            handler=handler,
            code_dir=self._local_dir(logical_id, "CodeUri", properties.get("CodeUri", ".")),
            layer_dirs=tuple(self._layer_dir(logical_id, layer) for layer in properties.get("Layers", [])),
            environment=environment,
            region=resolver.pseudo("AWS::Region"),
            account_id=resolver.pseudo("AWS::AccountId"),
            memory_mb=int(resolver.value(properties.get("MemorySize", 128))),
            timeout_s=int(resolver.value(properties.get("Timeout", 3))),
            logging_config=_resolvable_strings(resolver, properties.get("LoggingConfig") or {}),
        )

    def evaluate(self, node: Any, parameter_overrides: Mapping[str, str | int] | None = None) -> Any:
        """A template value with its intrinsics evaluated, e.g. a log group's LogGroupName."""
        return _Resolver(self.template, self._parameter_values(parameter_overrides or {})).value(node)

    def events_for(self, logical_id: str) -> list[Path]:
        """The events/ files of a function: functions/instance_state/ owns events/instance-state-*.json."""
        code_uri = self.function_properties(logical_id).get("CodeUri", "")
        prefix = Path(str(code_uri)).name.replace("_", "-")
        if not prefix:
            raise TemplateError(f"{logical_id}: CodeUri {code_uri!r} names no folder to derive events from")
        return sorted((self.root / "events").glob(f"{prefix}-*.json"))

    def _parameter_values(self, overrides: Mapping[str, str | int]) -> dict[str, str]:
        unknown = sorted(set(overrides) - set(self.parameters) - set(PSEUDO_PARAMETER_DEFAULTS))
        if unknown:
            raise UnknownParameterError(unknown, sorted(self.parameters) + sorted(PSEUDO_PARAMETER_DEFAULTS))
        values = dict(PSEUDO_PARAMETER_DEFAULTS)
        for name, definition in self.parameters.items():
            if "Default" in definition:
                values[name] = _scalar_text(definition["Default"])
        values.update({name: _scalar_text(value) for name, value in overrides.items()})
        return values

    def _environment(
        self,
        logical_id: str,
        properties: Mapping[str, Any],
        resolver: _Resolver,
        overrides: Mapping[str, str],
    ) -> dict[str, str]:
        declared: Mapping[str, Any] = (properties.get("Environment") or {}).get("Variables") or {}
        undeclared = sorted(set(overrides) - set(declared))
        if typos := [name for name in undeclared if not name.startswith(RUNTIME_SWITCH_PREFIXES)]:
            raise UndeclaredEnvironmentVariableError(logical_id, typos)
        resolved: dict[str, str] = {name: _scalar_text(overrides[name]) for name in undeclared}
        unresolved: dict[str, str] = {}
        for name, value in declared.items():
            if name in overrides:
                resolved[name] = _scalar_text(overrides[name])
                continue
            try:
                resolved[name] = _scalar_text(resolver.value(value))
            except UnresolvableValueError as reason:
                unresolved[name] = str(reason)
        if unresolved:
            raise UnresolvedEnvironmentError(logical_id, unresolved)
        return resolved

    def _local_dir(self, logical_id: str, key: str, uri: Any) -> Path:
        if not isinstance(uri, str) or uri.startswith("s3://"):
            raise TemplateError(f"{logical_id}: {key} {uri!r} is not a local folder")
        return (self.root / uri).resolve()

    def _layer_dir(self, logical_id: str, layer: Any) -> Path:
        name = layer.get("Ref") if isinstance(layer, dict) else None
        resource = self.resources.get(name) if isinstance(name, str) else None
        if resource is None or resource.get("Type") not in (SERVERLESS_LAYER, LAMBDA_LAYER):
            raise TemplateError(f"{logical_id}: layer {layer!r} is not a layer of this template")
        properties = resource.get("Properties") or {}
        key = "ContentUri" if resource["Type"] == SERVERLESS_LAYER else "Content"
        return self._local_dir(name, key, properties.get(key))  # type: ignore[arg-type]


def load_template(text: str) -> Any:
    """Parse CloudFormation YAML, turning short-form tags (!Ref, !Sub, !GetAtt ...) into long form."""
    return yaml.load(text, Loader=_CFN_LOADER)


def load_event(path: Path) -> dict[str, Any]:
    """An events/ file as the dict a handler receives."""
    event = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(event, dict):
        raise TemplateError(f"{path}: an event must be a JSON object")
    return event


def _construct_intrinsic(loader: Any, tag_suffix: str, node: Any) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {f"Fn::{tag_suffix}": value}


def _make_loader() -> Any:
    loader: Any = type("CfnLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", _construct_intrinsic)
    return loader


_CFN_LOADER = _make_loader()


def _merged_env_vars(logical_id: str, env_vars: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    return {**env_vars.get("Parameters", {}), **env_vars.get(logical_id, {})}


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSIC_KEYS


def _merge_globals(global_value: Any, local_value: Any) -> Any:
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        if _is_intrinsic(global_value) or _is_intrinsic(local_value):
            return local_value
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _scalar_text(value: Any) -> str:
    # Lambda environment values are strings; SAM CLI writes booleans the way CloudFormation does.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise UnresolvableValueError(f"value {value!r} is not a string")


def _resolvable_strings(resolver: _Resolver, mapping: Mapping[str, Any]) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for key, value in mapping.items():
        try:
            resolved[key] = _scalar_text(resolver.value(value))
        except UnresolvableValueError:
            continue
    return resolved


class _Resolver:
    """Evaluates intrinsics over parameter values; anything about a resource is unresolvable."""

    def __init__(self, template: Mapping[str, Any], parameter_values: Mapping[str, str]) -> None:
        self._template = template
        self._values = parameter_values
        self._parameter_types = {
            name: str(definition.get("Type", "String"))
            for name, definition in (template.get("Parameters") or {}).items()
        }

    def pseudo(self, name: str) -> str:
        return self._values[name]

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, dict):
            return node
        if not _is_intrinsic(node):
            return {key: self.value(item) for key, item in node.items()}
        (function, argument), *_ = node.items()
        return self._evaluate(function, argument)

    def condition(self, name: str) -> bool:
        definition = (self._template.get("Conditions") or {}).get(name)
        if definition is None:
            raise UnresolvableValueError(f"condition {name} is not defined")
        return bool(self.value(definition))

    def _evaluate(self, function: str, argument: Any) -> Any:
        match function:
            case "Ref":
                return self._ref(argument)
            case "Fn::GetAtt":
                resource, attribute = argument
                raise UnresolvableValueError(f"Fn::GetAtt {resource}.{attribute} exists only once deployed")
            case "Fn::Sub":
                return self._sub(argument)
            case "Fn::Join":
                delimiter, items = argument
                return str(delimiter).join(_scalar_text(item) for item in self.value(items))
            case "Fn::Select":
                index, items = argument
                return self.value(items)[int(self.value(index))]
            case "Fn::Split":
                delimiter, text = argument
                return str(self.value(text)).split(str(delimiter))
            case "Fn::If":
                name, when_true, when_false = argument
                return self.value(when_true if self.condition(name) else when_false)
            case "Fn::FindInMap":
                mapping, top, second = (self.value(part) for part in argument)
                return self.value(self._template["Mappings"][mapping][top][second])
            case "Fn::Equals":
                left, right = (self.value(part) for part in argument)
                return _scalar_text(left) == _scalar_text(right)
            case "Fn::Not":
                return not self.value(argument[0])
            case "Fn::And":
                return all(self.value(part) for part in argument)
            case "Fn::Or":
                return any(self.value(part) for part in argument)
            case "Condition":
                return self.condition(argument)
            case _:
                raise UnresolvableValueError(f"{function} is not evaluated locally")

    def _ref(self, name: str) -> Any:
        if name in self._values:
            if self._parameter_types.get(name, "").startswith(("CommaDelimitedList", "List<")):
                return self._values[name].split(",")
            return self._values[name]
        resource = (self._template.get("Resources") or {}).get(name)
        if resource is not None:
            raise UnresolvableValueError(
                f"Ref {name} of type {resource.get('Type')} exists only once deployed"
            )
        raise UnresolvableValueError(f"Ref {name} names no parameter or resource")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _scalar_text(self.value(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                resource, _, attribute = name.partition(".")
                return _scalar_text(self._evaluate("Fn::GetAtt", [resource, attribute]))
            return _scalar_text(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous


@contextmanager
def _import_path(directories: list[Path]) -> Iterator[None]:
    # The function's code first, then its layers: /var/task comes before /opt/python in Lambda.
    added = [str(directory) for directory in directories if str(directory) not in sys.path]
    sys.path[0:0] = added
    try:
        yield
    finally:
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)
