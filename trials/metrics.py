"""Reading a trial's numbers: progress reports from its output, metrics from the evaluate step."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from trials.spec import MetricSpec

REPORT_MARKER = "ARBORIST_REPORT"


def parse_report_line(line: str) -> dict[str, Any] | None:
    """The JSON object of an `ARBORIST_REPORT {...}` line; None for any other or broken line.

    The marker may follow a prefix (a logger's "INFO:root:"), and text after the object is
    ignored, so reports survive the usual logging setups.
    """
    at = line.find(REPORT_MARKER)
    if at < 0:
        return None
    text = line[at + len(REPORT_MARKER) :].strip()
    try:
        obj, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def collect_metrics(
    metrics_file: Path, output: str, specs: list[MetricSpec], *, step: str = "evaluate"
) -> tuple[dict[str, float], list[str]]:
    """Every metric the config names, as finite floats, and the problems that kept any out.

    A metric with a regex is read from `output` (the last match wins: the final evaluation,
    not an intermediate one); the others from the JSON object in `metrics_file`. `step`
    names the step that produced them, for the messages.
    """
    values: dict[str, float] = {}
    problems: list[str] = []
    from_file = [spec for spec in specs if spec.regex is None]
    data: dict[str, Any] | None = None
    if from_file:
        data, problem = _read_metrics_file(metrics_file, from_file, step)
        if problem:
            problems.append(problem)
    for spec in specs:
        if spec.regex is None:
            if data is None:
                continue  # the file problem is already reported once
            if spec.name not in data:
                problems.append(
                    f"metric {spec.name} is missing from the metrics file "
                    f"(it has: {', '.join(sorted(data)) or 'nothing'}); the {step} step must "
                    f"write it to $ARBORIST_METRICS_FILE"
                )
                continue
            raw: Any = data[spec.name]
            where, verb = "the metrics file", "write"
        else:
            found, problem = _search(spec.name, spec.regex, output, step)
            if problem:
                problems.append(problem)
                continue
            raw, where, verb = found, f"the {step} output", "print"
        value, problem = _finite(spec.name, raw, where, f"the {step} step must {verb}")
        if problem:
            problems.append(problem)
        else:
            values[spec.name] = value
    return values, problems


def _read_metrics_file(path: Path, specs: list[MetricSpec], step: str) -> tuple[dict[str, Any] | None, str | None]:
    example = json.dumps({spec.name: 0.5 for spec in specs[:2]})
    expected = f"the {step} step must write a JSON object such as {example} to $ARBORIST_METRICS_FILE"
    if not path.is_file():
        return None, f"metrics file {path} was not written; {expected}"
    try:
        data = json.loads(path.read_text(errors="replace"))
    except ValueError as exc:
        return None, f"metrics file {path} is not valid JSON ({exc}); {expected}"
    if not isinstance(data, dict):
        return None, f"metrics file {path} holds a JSON {type(data).__name__}, not an object; {expected}"
    return data, None


def _search(name: str, regex: str, output: str, step: str) -> tuple[str, str | None]:
    try:
        pattern = re.compile(regex, re.MULTILINE)
    except re.error as exc:
        return "", f"metric {name} has an invalid regex {regex!r} ({exc}); fix it in the campaign config"
    last = None
    for last in pattern.finditer(output):  # noqa: B007 - only the last match is wanted
        pass
    if last is None:
        return "", (
            f"metric {name} was not found in the {step} output (no line matches {regex!r}); "
            f"the {step} step must print it (see {step}.log)"
        )
    if "value" in pattern.groupindex:
        text = last.group("value")
    elif pattern.groups:
        text = last.group(1)
    else:
        text = last.group(0)
    return text or "", None


def _finite(name: str, raw: Any, where: str, must: str) -> tuple[float, str | None]:
    # Numeric strings are accepted: a regex group is text anyway, and "0.93" in a JSON file
    # is an honest number. Booleans are not numbers here, whatever Python thinks.
    value = None
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        try:
            value = float(raw)
        except ValueError:
            value = None
    if value is None:
        return 0.0, f"metric {name} is {raw!r} in {where}, not a number; {must} a finite number"
    if not math.isfinite(value):
        return 0.0, f"metric {name} is {value} in {where}; {must} a finite number"
    return value, None
