"""Known model ids and their maximum output tokens (§9.2, SDK 2.12 ``Model`` literal).

Unknown ids become ``errored`` results in a batch (§3.2: async validation) and a 404 on
``/v1/messages``. The batch-only beta ``output-300k-2026-03-24`` (§1.4) raises the
limit to 300,000 for the models that support it.
"""

from __future__ import annotations

#: §1.4: the anthropic-beta value that lifts max_tokens to 300k in batches.
OUTPUT_300K_BETA = "output-300k-2026-03-24"
OUTPUT_300K_TOKENS = 300_000

_128K = 128_000
_64K = 64_000

MAX_OUTPUT_TOKENS: dict[str, int] = {
    "claude-fable-5-2": _128K,
    "claude-mythos-5-2": _128K,
    "claude-haiku-5-5": _128K,
    "claude-sonnet-5-5": _128K,
    "claude-opus-5-5": _128K,
    "claude-fable-5-1": _128K,
    "claude-mythos-5-1": _128K,
    "claude-sonnet-5": _128K,
    "claude-fable-5": _128K,
    "claude-mythos-5": _128K,
    "claude-opus-5": _128K,
    "claude-opus-4-8": _128K,
    "claude-opus-4-7": _128K,
    "claude-mythos-preview": _128K,
    "claude-opus-4-6": _128K,
    "claude-sonnet-4-6": _128K,
    "claude-haiku-4-5": _64K,
    "claude-haiku-4-5-20251001": _64K,
    "claude-opus-4-5": _64K,
    "claude-opus-4-5-20251101": _64K,
    "claude-sonnet-4-5": _64K,
    "claude-sonnet-4-5-20250929": _64K,
    "claude-opus-4-1": 32_000,
    "claude-opus-4-1-20250805": 32_000,
    "claude-opus-4-0": 32_000,
    "claude-opus-4-20250514": 32_000,
    "claude-sonnet-4-0": _64K,
    "claude-sonnet-4-20250514": _64K,
    "claude-3-7-sonnet-20250219": _64K,
    "claude-3-5-haiku-20241022": 8_192,
    "claude-3-haiku-20240307": 4_096,
}

#: §1.4: models whose batch max_tokens the 300k beta raises.
OUTPUT_300K_MODELS = frozenset(
    {"claude-opus-5", "claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6"}
    | {"claude-sonnet-5", "claude-sonnet-4-6"}
)


def max_output_tokens(model: str, betas: frozenset[str] = frozenset()) -> int | None:
    """The model's max_tokens ceiling, or None for an unknown model."""
    limit = MAX_OUTPUT_TOKENS.get(model)
    if limit is not None and OUTPUT_300K_BETA in betas and model in OUTPUT_300K_MODELS:
        return OUTPUT_300K_TOKENS
    return limit
