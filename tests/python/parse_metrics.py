"""Parses a /metrics exposition read from stdin with the Prometheus Python
client's own parser for FORMAT (`prometheus`: text 0.0.4; `openmetrics`:
OpenMetrics 1.0.0) and prints {family name: type} as JSON. A parse error
raises (exit status 1)."""

import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

fmt = sys.argv[1]
text = sys.stdin.read()
parse = openmetrics_families if fmt == "openmetrics" else text_string_to_metric_families
print(json.dumps({family.name: family.type for family in parse(text)}))
