"""Test double: a second metric, registered by a separate plugin, to test adding a metric later."""

from ttsadapt_test_doubles import DoubleRmsMetric

from ttsadapt.markers import hookimpl


class DoubleRmsCopy(DoubleRmsMetric):
    name = "double_rms_copy"


@hookimpl
def ttsadapt_register_metrics():
    return [DoubleRmsCopy]
