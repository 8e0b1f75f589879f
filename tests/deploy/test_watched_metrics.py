"""Every metric the alert rules, their unit tests and the Grafana dashboard read is one a
live `gravix ingest-server` exports, with the labels it really has. The object store's
upload metrics are the named exception: each has its own test, which skips with the
metric's name until a node exports it and checks it from then on."""

from __future__ import annotations

from watch_support import (
    PROMETHEUS_MADE,
    STORE_METRICS,
    TARGET_LABELS,
    Exported,
    dashboard_expressions,
    metric_names,
    parse_exposition,
    rules,
    rules_test,
    selector_labels,
    series_name_and_labels,
    used_names,
)

# A healthy node shows no sample of these, so their label names cannot be read.
NO_SAMPLE_ON_A_LIVE_NODE: set[str] = set()


def test_metric_names_finds_what_an_expression_selects() -> None:
    """The name scan is not vacuous, and skips functions, labels, durations, variables."""
    quantile = "histogram_quantile(0.99, sum by (instance, le) "
    assert metric_names(quantile + '(rate(a_bucket{i=~"$x"}[$__rate_interval])))') == {"a_bucket"}
    assert metric_names(
        'time() - max by (instance) (b{table="t"}) > 7200 and on (instance) '
        "sum(increase(c_total[1h] offset 5m)) > 1e3"
    ) == {"b", "c_total"}
    assert metric_names('absent(up{job="j"} == 1) or d unless e') == {"up", "d", "e"}
    assert metric_names("predict_linear(f[6h], 4 * 3600) < g") == {"f", "g"}


def test_parse_exposition_reads_names_and_labels() -> None:
    text = (
        "# TYPE h histogram\n"
        'h_bucket{le="1.0",topic="t"} 1.0\n'
        "# TYPE c_total counter\n"
        "# TYPE g gauge\n"
        "g 2.0\n"
    )
    got = parse_exposition(text)
    assert got.names == {"h_bucket", "h_count", "h_sum", "c_total", "g"}
    assert got.labels == {"h_bucket": {frozenset({"le", "topic"})}, "g": {frozenset()}}


def test_every_name_used_is_exported_by_a_live_node(live: Exported) -> None:
    used = used_names()
    missing = {
        name: sorted(where)
        for name, where in used.items()
        if name not in live.names | PROMETHEUS_MADE | STORE_METRICS
    }
    assert not missing, f"not exported by a live node: {missing}"
    # Every name on the exception list is used (the list is not stale); a node with a
    # store exports them (test_store_node_metrics.py).
    assert set(used) >= STORE_METRICS


def test_input_series_have_the_labels_of_a_live_node(live: Exported) -> None:
    names = {
        series_name_and_labels(series["series"])[0]
        for case in rules_test()["tests"]
        for series in case["input_series"]
    }
    unsampled = {n for n in names if n in live.names and n not in live.labels}
    assert unsampled == NO_SAMPLE_ON_A_LIVE_NODE
    _check_labels(names - STORE_METRICS - PROMETHEUS_MADE - unsampled, live)


def _check_labels(names: set[str], live: Exported) -> None:
    wrong = []
    for case in rules_test()["tests"]:
        for series in case["input_series"]:
            name, labels = series_name_and_labels(series["series"])
            if name not in names:
                continue
            assert set(labels) >= TARGET_LABELS, series["series"]
            keys = frozenset(set(labels) - TARGET_LABELS)
            if keys not in live.labels.get(name, set()):
                wrong.append(f"{series['series']}: a live node has {live.labels.get(name)}")
    assert not wrong, "\n".join(wrong)


def test_selectors_match_on_labels_a_live_node_has(live: Exported) -> None:
    expressions = [rule["expr"] for rule in rules()] + dashboard_expressions()
    wrong = []
    for expr in expressions:
        for name, keys in selector_labels(expr).items():
            if name in PROMETHEUS_MADE or name not in live.labels:
                continue
            known = set().union(*live.labels[name]) | TARGET_LABELS
            if not keys <= known:
                wrong.append(f"{name}: {sorted(keys - known)} in {expr}")
    assert not wrong, "\n".join(wrong)
    assert selector_labels('a{x="1", y=~"b|c"} / b{z!="q"}') == {"a": {"x", "y"}, "b": {"z"}}
