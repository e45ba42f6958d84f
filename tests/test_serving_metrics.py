"""Prometheus text exposition: format, escaping, cumulative histograms, thread safety."""

import re
import threading

import pytest

from minidl.serving.metrics import Counter, Gauge, Histogram, Registry, ServingMetrics

# one sample line of the text format 0.0.4: name, optional {labels}, value
SAMPLE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})?'
                    r" (-?[0-9.e+-]+|\+Inf|-Inf|NaN)")


def assert_valid_exposition(text: str) -> None:
    assert text.endswith("\n")
    declared = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if parts[1] == "TYPE":
                assert parts[3] in ("counter", "gauge", "histogram")
                declared.add(parts[2])
            continue
        assert SAMPLE.fullmatch(line), line
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in declared or family in declared, f"{line} has no # TYPE before it"


def test_counter_renders_help_type_and_labelled_samples():
    counter = Counter("x_total", "Things.", ("model", "code"))
    counter.inc("m", "200")
    counter.inc("m", "200")
    counter.inc("m", "404")
    registry = Registry()
    registry.register(counter)
    assert registry.render() == (
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        'x_total{model="m",code="200"} 2\nx_total{model="m",code="404"} 1\n')


def test_label_values_are_escaped():
    counter = Counter("x_total", "Things.", ("model",))
    counter.inc('a"b\\c\nd')
    assert counter.samples() == ['x_total{model="a\\"b\\\\c\\nd"} 1']


def test_histogram_buckets_are_cumulative_and_end_with_inf():
    histogram = Histogram("h", "Sizes.", ("model",), buckets=(1, 4, 16))
    for value in (1, 1, 3, 20):
        histogram.observe(value, "m")
    assert histogram.samples() == [
        'h_bucket{model="m",le="1"} 2', 'h_bucket{model="m",le="4"} 3',
        'h_bucket{model="m",le="16"} 3', 'h_bucket{model="m",le="+Inf"} 4',
        'h_sum{model="m"} 25', 'h_count{model="m"} 4']


def test_wrong_number_of_labels_is_refused():
    with pytest.raises(ValueError, match="expected labels"):
        Counter("x_total", "Things.", ("model",)).inc("a", "b")


def test_gauge_reads_its_callback_at_scrape_time():
    values = {("m",): 1}
    gauge = Gauge("g", "Loaded.", ("model",), lambda: values)
    assert gauge.samples() == ['g{model="m"} 1']
    values[("m",)] = 2
    assert gauge.samples() == ['g{model="m"} 2']


def test_serving_metrics_page_is_valid_exposition():
    metrics = ServingMetrics(lambda: {"digits": 1, "moons": 0})
    metrics.requests.inc("digits", "1", "200")
    metrics.latency.observe(0.0123, "digits")
    metrics.batch_size.observe(7, "digits")
    text = metrics.render()
    assert_valid_exposition(text)
    assert 'minidl_model_versions_loaded{model="digits"} 1' in text
    assert 'minidl_batch_size_bucket{model="digits",le="8"} 1' in text
    assert 'minidl_request_latency_seconds_sum{model="digits"} 0.0123' in text


def test_concurrent_updates_are_all_counted():
    counter = Counter("x_total", "Things.", ("model",))
    histogram = Histogram("h", "Sizes.", ("model",), buckets=(1, 2))

    def hammer():
        for i in range(2000):
            counter.inc("m")
            histogram.observe(i % 3, "m")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert counter.value("m") == 8000
    counts, total = histogram.snapshot("m")
    assert sum(counts) == 8000
    assert total == 4 * sum(i % 3 for i in range(2000))
