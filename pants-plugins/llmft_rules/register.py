"""A `pants lint` check for the dependency rules of the BUILD files (`__dependencies_rules__`, the visibility backend).

Pants 2.17 enforces visibility rules whenever it calculates a target's dependencies, but none of its linters calculate
them, so `pants lint` alone would pass an import that breaks a rule. This linter calculates the dependencies of every
target it is given, and reports each denied one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pants.core.goals.lint import LintResult, LintTargetsRequest  # pants: no-infer-dep
from pants.core.util_rules.partitions import PartitionerType  # pants: no-infer-dep
from pants.engine.addresses import Addresses  # pants: no-infer-dep
from pants.engine.internals.dep_rules import DependencyRuleActionDeniedError  # pants: no-infer-dep
from pants.engine.rules import Get, collect_rules, rule  # pants: no-infer-dep
from pants.engine.target import Dependencies, DependenciesRequest, FieldSet  # pants: no-infer-dep
from pants.option.option_types import SkipOption  # pants: no-infer-dep
from pants.option.subsystem import Subsystem  # pants: no-infer-dep


class DependencyRules(Subsystem):
    options_scope = "dependency-rules"
    name = "dependency-rules"
    help = "Checks every target's dependencies against the BUILD files' __dependencies_rules__."

    skip = SkipOption("lint")


@dataclass(frozen=True)
class DependencyRulesFieldSet(FieldSet):
    required_fields = (Dependencies,)

    dependencies: Dependencies


class DependencyRulesRequest(LintTargetsRequest):
    field_set_type = DependencyRulesFieldSet
    tool_subsystem = DependencyRules
    partitioner_type = PartitionerType.DEFAULT_SINGLE_PARTITION


@rule(desc="Check dependency rules")
async def check_dependency_rules(request: DependencyRulesRequest.Batch) -> LintResult:
    denied: list[str] = []
    for field_set in request.elements:
        try:
            await Get(Addresses, DependenciesRequest(field_set.dependencies))
        except DependencyRuleActionDeniedError as error:
            denied.append(str(error))
    checked = f"{len(request.elements)} targets checked against the dependency rules\n"
    return LintResult(
        exit_code=1 if denied else 0,
        stdout=checked + "\n".join(denied),
        stderr="",
        linter_name=DependencyRules.options_scope,
        partition_description=None,
    )


def rules() -> Iterable[Any]:
    return [*collect_rules(), *DependencyRulesRequest.rules()]
