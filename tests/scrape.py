"""Reading GET /metrics as Prometheus does: with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition, by its name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when it is absent (a counter nothing has counted yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples, prefix: str, label: str) -> set[str]:
    """Every value `label` takes on the samples whose name starts with `prefix`."""
    return {
        dict(labels)[label]
        for name, labels in samples
        if name.startswith(prefix) and label in dict(labels)
    }
