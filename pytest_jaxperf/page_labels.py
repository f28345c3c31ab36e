"""How ``jaxperf report``'s page names a check: its test case without the variant's tokens, the model, and
the variant, so that the variants and batch sizes of one case line up in a row or a plot's line."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import CheckRecord

#: A variant's tokens in a test case id (``[bf16-d8-wide]``): what is left names the case itself.
_VARIANT_TOKEN = r"int8-dynamic|fp32|bf16|fp16|int8|d\d+"


def _drop_parameters(label: str, token: str) -> str:
    """``label`` without the parameters of its ``[...]`` that match the regex ``token``, dashes tidied and
    an emptied ``[]`` dropped; repeated, since each removal can bring two dashes together."""
    pattern = re.compile(rf"(?<=[\[-])(?:{token})(?=[\]-])")
    while True:
        shorter = pattern.sub("", label).replace("[-", "[").replace("-]", "]").replace("--", "-")
        if shorter == label:
            return label.replace("[]", "")
        label = shorter


def case_label(record: CheckRecord) -> str:
    """``test_x[wide] Decoder``: the test case without its variant tokens, and the model."""
    return f"{_drop_parameters(record.nodeid.split('::')[-1], _VARIANT_TOKEN)} {record.model}"


def series_label(record: CheckRecord) -> str:
    """The case label without the batch size among its parameters: a model's points at several batch
    sizes (``test_x[1]``, ``test_x[64]``) make one line."""
    batch = str(record.timing.get("items_per_call") or "") if record.timing else ""
    return _drop_parameters(case_label(record), re.escape(batch)) if batch else case_label(record)


def variant_label(record: CheckRecord) -> str:
    """``bf16-d8``, or ``fp32-d1 eager`` for a check measured without jit."""
    return record.variant + ("" if record.jit else " eager")
